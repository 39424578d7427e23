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
    const [z, x, a, bt] = [g.normals(M * N), g.normals(M * K), g.normals(R * K), g.normals(R * N)];
    const [bias, gate, res] = [g.normals(N), g.normals(2 * N), g.normals(M * N)];
    const t = (v: Float32Array, s: number[]) => uploadTensor(rt, v, s);
    const epi = { bias, gate, residual: res, rowsPerGate: M / 2, activation: "gelu" as const };
    const zt = t(z, [M, N]);
    const got = await runAndRead(rt, (r) => {
      const y = lowRankAdd(r, zt, t(x, [M, K]), t(a, [R, K]), t(bt, [R, N]), {
        ...epi,
        bias: t(bias, [N]),
        gate: t(gate, [2, N]),
        residual: t(res, [M, N]),
      });
      assertEquals(y, zt);
      return y;
    });
    const ref = lowRankAddRef(z, x, a, bt, M, N, K, R, epi);
    assertClose(got, ref, { atol: 1e-4, rtol: 1e-4 });
    // The algebra: Z + (X·Aᵀ)·B is two GEMMs, Z as the second's residual.
    const u = gemmRef(x, a, M, R, K);
    const b = new Float32Array(N * R).map((_, i) => bt[(i % R) * N + Math.floor(i / R)]);
    assertClose(lowRankAddRef(z, x, a, bt, M, N, K, R), gemmRef(u, b, M, N, R, { residual: z }), {
      atol: 1e-4,
      rtol: 1e-4,
    });
  });
});

Deno.test("low rank: wide outputs and a deeper rank, no epilogue", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [M, N, K, R] = [33, 150, 16, 40]; // M·N past one workgroup, R past the K
    const g = new Prng(10);
    const [z, x, a, bt] = [g.normals(M * N), g.normals(M * K), g.normals(R * K), g.normals(R * N)];
    const t = (v: Float32Array, s: number[]) => uploadTensor(rt, v, s);
    const got = await runAndRead(
      rt,
      (r) => lowRankAdd(r, t(z, [M, N]), t(x, [M, K]), t(a, [R, K]), t(bt, [R, N])),
    );
    assertClose(got, lowRankAddRef(z, x, a, bt, M, N, K, R), { atol: 1e-4, rtol: 1e-4 });
  });
});

Deno.test("low rank: f16 storage", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const [M, N, K, R] = [6, 10, 12, 4];
    const g = new Prng(9);
    const h = (n: number) => Float32Array.from(Float16Array.from(g.normals(n).map((v) => v / 2)));
    const [z, x, a, bt] = [h(M * N), h(M * K), h(R * K), h(R * N)];
    const t = (v: Float32Array, s: number[]) => uploadTensor(rt, v, s, "f16");
    const got = await runAndRead(
      rt,
      (r) => lowRankAdd(r, t(z, [M, N]), t(x, [M, K]), t(a, [R, K]), t(bt, [R, N])),
    );
    const ref = Float32Array.from(Float16Array.from(lowRankAddRef(z, x, a, bt, M, N, K, R)));
    assertClose(got, ref, { atol: 4e-3, rtol: 2e-3 });
  });
});

Deno.test("low rank: errors name the operand", gpuTest, async () => {
  await withRuntime((rt) => {
    const rec = new Recorder(rt, "t");
    const f = (n: number, s: number[]) => uploadTensor(rt, new Float32Array(n), s);
    const [z, x, a, bt] = [f(12, [4, 3]), f(20, [4, 5]), f(10, [2, 5]), f(6, [2, 3])];
    assertThrows(() => lowRankAdd(rec, z, x, bt, bt), RangeError, "a must be [R, 5]");
    assertThrows(() => lowRankAdd(rec, z, x, a, a), RangeError, "bt must be [2, 3]");
    assertThrows(() => lowRankAdd(rec, z, f(10, [2, 5]), a, bt), RangeError, "x has 2 rows, z 4");
    assertThrows(() => lowRankAdd(rec, z, x, f(129 * 5, [129, 5]), bt), RangeError, "rank 129");
    assertThrows(() => lowRankAdd(rec, z, x, a, bt, { bias: f(4, [4]) }), RangeError, "bias");
    assertThrows(
      () => lowRankAdd(rec, z, x, a, bt, { residual: z }),
      RangeError,
      "out must not share a buffer with residual",
    );
    if (rt.info.f16) {
      const h = uploadTensor(rt, new Float32Array(20), [4, 5], "f16");
      assertThrows(() => lowRankAdd(rec, z, h, a, bt), TypeError, "x is f16");
    }
  });
});
