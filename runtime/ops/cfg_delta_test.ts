import { assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { cfgCombineRef, cfgDeltaRef } from "../reference/cfg_delta.ts";
import { gemmRef } from "../reference/gemm.ts";
import { cfgCombine, cfgDelta } from "./cfg_delta.ts";

Deno.test(
  "cfg delta: [u; c − u] exactly, and the combine rebuilds X·Wᵀ + epilogue",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [M, K, N] = [2 * 18, 24, 19]; // N odd; four "samples" of 9 rows for the per-sample bias
      const g = new Prng(3);
      const xs = g.normals(M * K);
      const x = uploadTensor(rt, xs, [M, K]);
      const d = await runAndRead(rt, (r) => cfgDelta(r, x));
      assertEquals(Array.from(d), Array.from(cfgDeltaRef(xs)));

      // The product of the pair, then the combine with every epilogue term.
      const ws = g.normals(N * K);
      const bias = g.normals(N);
      const gate = g.normals(2 * N); // one gate row per half
      const res = g.normals(M * N);
      const z = gemmRef(d, ws, M, N, K);
      const t = (a: Float32Array, s: number[]) => uploadTensor(rt, a, s);
      const [bt, gt, rs] = [t(bias, [N]), t(gate, [2, N]), t(res, [M, N])];
      const epi = { bias, gate, residual: res, rowsPerGate: M / 2, activation: "gelu" as const };
      // In place: the product's tensor becomes the output.
      const zt = t(z, [M, N]);
      const got = await runAndRead(rt, (r) => {
        const y = cfgCombine(r, zt, { ...epi, bias: bt, gate: gt, residual: rs });
        assertEquals(y, zt);
        return y;
      });
      const ref = cfgCombineRef(z, M, N, epi);
      assertClose(got, ref, { atol: 1e-5, rtol: 1e-5 });
      // The algebra: the same as the plain GEMM of x with that epilogue.
      assertClose(got, gemmRef(xs, ws, M, N, K, epi), { atol: 1e-4, rtol: 1e-4 });
      // A per-sample bias [B, N] (centring) and no epilogue but the bias.
      const sb = g.normals(4 * N);
      const plain = await runAndRead(
        rt,
        (r) => cfgCombine(r, t(z, [M, N]), { bias: t(sb, [4, N]), rowsPerGate: M / 4 }),
      );
      const refPlain = cfgCombineRef(z, M, N).map((v, i) =>
        v + sb[Math.floor(Math.floor(i / N) / (M / 4)) * N + (i % N)]
      );
      assertClose(plain, refPlain, { atol: 1e-5, rtol: 1e-5 });
    });
  },
);

Deno.test("cfg delta: f16 storage", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const [M, K] = [8, 12];
    const xs = Float32Array.from(Float16Array.from(new Prng(4).normals(M * K)));
    const x = uploadTensor(rt, xs, [M, K], "f16");
    const d = await runAndRead(rt, (r) => cfgDelta(r, x));
    assertEquals(Array.from(d), Array.from(Float16Array.from(cfgDeltaRef(xs))));
  });
});

Deno.test("cfg delta: errors name the operand", gpuTest, async () => {
  await withRuntime((rt) => {
    const rec = new Recorder(rt, "t");
    const odd = uploadTensor(rt, new Float32Array(15), [5, 3]);
    assertThrows(() => cfgDelta(rec, odd), RangeError, "5 rows, not a CFG pair");
    const z = uploadTensor(rt, new Float32Array(12), [4, 3]);
    const bad = uploadTensor(rt, new Float32Array(4), [4]);
    assertThrows(() => cfgCombine(rec, z, { bias: bad }), RangeError, "bias");
    assertThrows(
      () => cfgCombine(rec, z, { residual: z }),
      RangeError,
      "out must not share a buffer with residual",
    );
  });
});
