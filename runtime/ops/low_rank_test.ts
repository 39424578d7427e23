import { assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { gemmRef } from "../reference/gemm.ts";
import { lowRankAddRef } from "../reference/low_rank.ts";
import { lowRankAdd } from "./low_rank.ts";

Deno.test("low rank: Z + (X·Aᵀ)·B with every epilogue term, in place", gpuTest, async () => {
  await withRuntime(async (rt) => {
    // Odd N, K and R; two gate rows.
    const [M, N, K, R] = [18, 21, 70, 5];
    const g = new Prng(8);
    const [z, x, a, b] = [g.normals(M * N), g.normals(M * K), g.normals(R * K), g.normals(N * R)];
    const [bias, gate, res] = [g.normals(N), g.normals(2 * N), g.normals(M * N)];
    const t = (v: Float32Array, s: number[]) => uploadTensor(rt, v, s);
    const epi = { bias, gate, residual: res, rowsPerGate: M / 2, activation: "gelu" as const };
    const zt = t(z, [M, N]);
    const got = await runAndRead(rt, (r) => {
      const y = lowRankAdd(r, zt, t(x, [M, K]), t(a, [R, K]), t(b, [N, R]), {
        ...epi,
        bias: t(bias, [N]),
        gate: t(gate, [2, N]),
        residual: t(res, [M, N]),
      });
      assertEquals(y, zt);
      return y;
    });
    const ref = lowRankAddRef(z, x, a, b, M, N, K, R, epi);
    assertClose(got, ref, { atol: 1e-4, rtol: 1e-4 });
    // The algebra: Z + (X·Aᵀ)·Bᵀ is two GEMMs, Z as the second's residual.
    const u = gemmRef(x, a, M, R, K);
    assertClose(lowRankAddRef(z, x, a, b, M, N, K, R), gemmRef(u, b, M, N, R, { residual: z }), {
      atol: 1e-4,
      rtol: 1e-4,
    });
  });
});

Deno.test("low rank: wide outputs and a deeper rank, no epilogue", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [M, N, K, R] = [33, 150, 16, 40]; // R past K
    const g = new Prng(10);
    const [z, x, a, b] = [g.normals(M * N), g.normals(M * K), g.normals(R * K), g.normals(N * R)];
    const t = (v: Float32Array, s: number[]) => uploadTensor(rt, v, s);
    const got = await runAndRead(
      rt,
      (r) => lowRankAdd(r, t(z, [M, N]), t(x, [M, K]), t(a, [R, K]), t(b, [N, R])),
    );
    assertClose(got, lowRankAddRef(z, x, a, b, M, N, K, R), { atol: 1e-4, rtol: 1e-4 });
  });
});

Deno.test("low rank: f16 storage", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const [M, N, K, R] = [6, 10, 12, 4];
    const g = new Prng(9);
    const h = (n: number) => Float32Array.from(Float16Array.from(g.normals(n).map((v) => v / 2)));
    const [z, x, a, b] = [h(M * N), h(M * K), h(R * K), h(R * N)];
    const t = (v: Float32Array, s: number[]) => uploadTensor(rt, v, s, "f16");
    const got = await runAndRead(
      rt,
      (r) => lowRankAdd(r, t(z, [M, N]), t(x, [M, K]), t(a, [R, K]), t(b, [N, R])),
    );
    const ref = Float32Array.from(Float16Array.from(lowRankAddRef(z, x, a, b, M, N, K, R)));
    assertClose(got, ref, { atol: 4e-3, rtol: 2e-3 });
  });
});

Deno.test("low rank: errors name the operand", gpuTest, async () => {
  await withRuntime((rt) => {
    const rec = new Recorder(rt, "t");
    const f = (n: number, s: number[]) => uploadTensor(rt, new Float32Array(n), s);
    const [z, x, a, b] = [f(12, [4, 3]), f(20, [4, 5]), f(10, [2, 5]), f(6, [3, 2])];
    assertThrows(() => lowRankAdd(rec, z, x, f(8, [2, 4]), b), RangeError, "w must be [N, 5]");
    assertThrows(() => lowRankAdd(rec, z, x, a, a), RangeError, "b must be [N, 2], got [2,5]");
    assertThrows(() => lowRankAdd(rec, z, f(10, [2, 5]), a, b), RangeError, "out must be [2, 3]");
    assertThrows(() => lowRankAdd(rec, z, x, f(129 * 5, [129, 5]), b), RangeError, "rank 129");
    assertThrows(() => lowRankAdd(rec, z, x, a, b, { bias: f(4, [4]) }), RangeError, "bias");
    assertThrows(
      () => lowRankAdd(rec, z, x, a, b, { residual: z }),
      RangeError,
      "out must not share a buffer with residual",
    );
    if (rt.info.f16) {
      const h = uploadTensor(rt, new Float32Array(20), [4, 5], "f16");
      assertThrows(() => lowRankAdd(rec, z, h, a, b), TypeError, "w is f32 but x is f16");
    }
  });
});
