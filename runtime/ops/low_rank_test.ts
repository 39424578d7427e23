import { assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { gemmRef } from "../reference/gemm.ts";
import { lowRankAddRef } from "../reference/low_rank.ts";
import { lowRankAdd } from "./low_rank.ts";

Deno.test("low rank: Z + U·Bᵀ with every epilogue term, in place", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [M, N, R] = [18, 21, 5]; // odd N and R; two gate rows of 9
    const g = new Prng(8);
    const [z, u, b] = [g.normals(M * N), g.normals(M * R), g.normals(N * R)];
    const [bias, gate, res] = [g.normals(N), g.normals(2 * N), g.normals(M * N)];
    const t = (a: Float32Array, s: number[]) => uploadTensor(rt, a, s);
    const epi = { bias, gate, residual: res, rowsPerGate: M / 2, activation: "gelu" as const };
    const zt = t(z, [M, N]);
    const got = await runAndRead(rt, (r) => {
      const y = lowRankAdd(r, zt, t(u, [M, R]), t(b, [N, R]), {
        ...epi,
        bias: t(bias, [N]),
        gate: t(gate, [2, N]),
        residual: t(res, [M, N]),
      });
      assertEquals(y, zt);
      return y;
    });
    const ref = lowRankAddRef(z, u, b, M, N, R, epi);
    assertClose(got, ref, { atol: 1e-5, rtol: 1e-5 });
    // The algebra: Z + U·Bᵀ is the GEMM of U against B plus Z (Z as the residual, no epilogue).
    assertClose(lowRankAddRef(z, u, b, M, N, R), gemmRef(u, b, M, N, R, { residual: z }), {
      atol: 1e-5,
      rtol: 1e-5,
    });
    // No epilogue: the sum alone.
    const plain = await runAndRead(
      rt,
      (r) => lowRankAdd(r, t(z, [M, N]), t(u, [M, R]), t(b, [N, R])),
    );
    assertClose(plain, lowRankAddRef(z, u, b, M, N, R), { atol: 1e-5, rtol: 1e-5 });
  });
});

Deno.test("low rank: f16 storage", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const [M, N, R] = [6, 10, 4];
    const g = new Prng(9);
    const h = (n: number) => Float32Array.from(Float16Array.from(g.normals(n)));
    const [z, u, b] = [h(M * N), h(M * R), h(N * R)];
    const t = (a: Float32Array, s: number[]) => uploadTensor(rt, a, s, "f16");
    const got = await runAndRead(
      rt,
      (r) => lowRankAdd(r, t(z, [M, N]), t(u, [M, R]), t(b, [N, R])),
    );
    const ref = Float32Array.from(Float16Array.from(lowRankAddRef(z, u, b, M, N, R)));
    assertClose(got, ref, { atol: 2e-3, rtol: 2e-3 });
  });
});

Deno.test("low rank: errors name the operand", gpuTest, async () => {
  await withRuntime((rt) => {
    const rec = new Recorder(rt, "t");
    const z = uploadTensor(rt, new Float32Array(12), [4, 3]);
    const u = uploadTensor(rt, new Float32Array(8), [4, 2]);
    const b = uploadTensor(rt, new Float32Array(6), [3, 2]);
    assertThrows(() => lowRankAdd(rec, z, u, u), RangeError, "b must be [3, R]");
    assertThrows(() => lowRankAdd(rec, z, b, b), RangeError, "u must be [4, 2]");
    const bad = uploadTensor(rt, new Float32Array(4), [4]);
    assertThrows(() => lowRankAdd(rec, z, u, b, { bias: bad }), RangeError, "bias");
    assertThrows(
      () => lowRankAdd(rec, z, u, b, { residual: z }),
      RangeError,
      "out must not share a buffer with residual",
    );
    if (rt.info.f16) {
      const h = uploadTensor(rt, new Float32Array(8), [4, 2], "f16");
      assertThrows(() => lowRankAdd(rec, z, h, b), TypeError, "u is f16");
    }
  });
});
