import { assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { uniformQuantize } from "../../plugins/quantizers/uniform.ts";
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, readTensorRaw, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { unpackInt8 } from "../quant/pack.ts";
import type { QuantizedActivations } from "../quant/transform.ts";
import type { GemmRefOptions } from "../reference/gemm.ts";
import { lowRankAddRef } from "../reference/low_rank.ts";
import { decodeInt8, int8Groups, int8Lut, qgemmIntRef } from "../reference/qgemm.ts";
import { actQuant } from "./act_quant.ts";
import { lowRankDown, qgemmIntLowRank } from "./low_rank.ts";
import { qgemmInt, uploadQWeight } from "./qgemm.ts";
import { epilogue, makeCase, quantize } from "./qgemm_test_util.ts";

/** The weight's int8 codes and their scales (a row's, or a group's with `wGroup`). */
interface IntWeight {
  w8: Int8Array;
  scale: Float32Array;
  wGroup: number;
}

/**
 * The reference: the integer product with the bias (qgemmIntRef), then the branch and the
 * rest of the epilogue (lowRankAddRef), as the unfused path computes it.
 */
async function reference(
  rt: Runtime,
  xa: QuantizedActivations,
  w: IntWeight,
  c: ReturnType<typeof makeCase>,
  lr: { a: Float32Array; b: Float32Array; R: number },
  ref: GemmRefOptions,
  group: number,
): Promise<Float32Array> {
  const { M, N, K } = c;
  const x8 = unpackInt8((await readTensorRaw(rt, xa.q)) as Uint32Array, M, K);
  const xs = await readTensor(rt, xa.scales);
  const z =
    qgemmIntRef(x8, xs, w.w8, w.scale, M, N, K, { bias: ref.bias }, group, undefined, w.wGroup).y;
  const { activation, residual, gate, rowsPerGate } = ref;
  return lowRankAddRef(z, c.xs, lr.a, lr.b, M, N, K, lr.R, {
    activation,
    residual,
    gate,
    rowsPerGate,
  });
}

Deno.test(
  "qgemmIntLowRank: fused in the tiled GEMM, unfused on the CPU one, matches the reference",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Partial tiles in M and N; per-token A8 on a TLQ weight, A6 in groups of 32 on it,
      // and A8 on a uniform weight in groups of 64 (MODE 7: its scales inside the sums).
      const c = makeCase(35, 27, 128, 31);
      const e = epilogue(rt, c, "f32");
      const g = new Prng(5);
      const tlq = quantize("tlq4", c.ws, 27, 128);
      const lut = int8Lut(tlq);
      const uni = uniformQuantize({ data: c.ws, rows: 27, cols: 128 }, { bits: 4, groupSize: 64 });
      const ug = int8Groups(uni);
      const weights = [
        { name: "tlq4", q: tlq, int: { w8: decodeInt8(tlq, lut), scale: lut.scale, wGroup: 0 } },
        { name: "u4 g64", q: uni, int: { w8: ug.w8, scale: ug.scale, wGroup: 64 } },
      ];
      const x = uploadTensor(rt, c.xs, [35, 128]);
      // [weight, activation bits, activation group, rank]
      const cases = [[0, 8, 0, 32], [0, 6, 32, 8], [1, 8, 0, 8]] as const;
      for (const [wi, bits, group, R] of cases) {
        const wt = weights[wi];
        const lr = {
          a: g.normals(R * 128).map((v) => v / Math.sqrt(128)),
          b: g.normals(27 * R).map((v) => v / Math.sqrt(R)),
          R,
        };
        const a = uploadTensor(rt, lr.a, [R, 128]);
        const b = uploadTensor(rt, lr.b, [27, R]);
        const w = uploadQWeight(rt, wt.q, { int: true });
        const rec = new Recorder(rt);
        const xa = actQuant(rec, x, bits, group ? { group } : {});
        await rec.submit();
        const want = await reference(rt, xa, wt.int, c, lr, e.ref, group);
        for (const version of ["tiled", "cpu"] as const) {
          const r2 = new Recorder(rt);
          const y = qgemmIntLowRank(r2, xa, w, x, a, b, { ...e.gpu, version });
          await r2.submit();
          const what = `${wt.name} A${bits} g${group} R ${R} ${version}`;
          assertClose(await readTensor(rt, y), want, { atol: 1e-4, rtol: 1e-4, msg: what });
        }
        xa.q.release();
        xa.scales.release();
        w.release();
      }
    });
  },
);

Deno.test(
  "qgemmIntLowRank: f16 output, and a rank the fused kernel does not take",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const c = makeCase(20, 19, 64, 33);
      const q = quantize("tlq4", c.ws, 19, 64);
      const lut = int8Lut(q);
      const w = uploadQWeight(rt, q, { int: true });
      const int = { w8: decodeInt8(q, lut), scale: lut.scale, wGroup: 0 };
      const g = new Prng(6);
      const dts = rt.info.f16 ? ["f32", "f16"] as const : ["f32"] as const;
      for (const dt of dts) {
        const r16 = (v: Float32Array) => dt === "f16" ? Float32Array.from(Float16Array.from(v)) : v;
        for (const R of [6, 20]) { // 6: not a multiple of 4, so the unfused path; 20: 16 ranks, then 4
          const lr = { a: r16(g.normals(R * 64).map((v) => v / 8)), b: r16(g.normals(19 * R)), R };
          const cx = { ...c, xs: r16(c.xs) };
          const e = epilogue(rt, cx, dt);
          const x = uploadTensor(rt, cx.xs, [20, 64], dt);
          const rec = new Recorder(rt);
          const xa = actQuant(rec, x, 8);
          await rec.submit();
          const want = await reference(rt, xa, int, cx, lr, e.ref, 0);
          const a = uploadTensor(rt, lr.a, [R, 64], dt);
          const b = uploadTensor(rt, lr.b, [19, R], dt);
          for (const version of ["tiled", "cpu"] as const) {
            const r2 = new Recorder(rt);
            const y = qgemmIntLowRank(r2, xa, w, x, a, b, { ...e.gpu, dtype: dt, version });
            await r2.submit();
            const tol = dt === "f32" ? 1e-4 : 1e-2;
            const msg = `${dt} R ${R} ${version}`;
            assertClose(await readTensor(rt, y), want, { atol: tol, rtol: tol, msg });
          }
        }
      }
      w.release();
    });
  },
);

Deno.test("qgemmInt's lowRank operands: errors name them", gpuTest, async () => {
  await withRuntime((rt) => {
    const c = makeCase(8, 12, 16, 3);
    const w = uploadQWeight(rt, quantize("tlq4", c.ws, 12, 16), { int: true });
    const f = (n: number, s: number[]) => uploadTensor(rt, new Float32Array(n), s);
    const rec = new Recorder(rt, "t");
    const xa = actQuant(rec, f(8 * 16, [8, 16]), 8);
    const u = lowRankDown(rec, f(8 * 16, [8, 16]), f(4 * 16, [4, 16]));
    assertEquals(u.shape, [8, 4]);
    const call =
      (lowRank: { u: typeof u; b: typeof u }, version: "tiled" | "cpu" = "tiled") => () =>
        qgemmInt(rec, xa, w, { lowRank, version });
    assertThrows(
      call({ u: f(8 * 6, [8, 6]), b: f(12 * 6, [12, 6]) }),
      RangeError,
      "lowRank.u must be [8, R]",
    );
    assertThrows(call({ u, b: f(11 * 4, [11, 4]) }), RangeError, "lowRank.b must be [12, 4]");
    assertThrows(call({ u, b: f(12 * 4, [12, 4]) }, "cpu"), RangeError, "tiled version only");
    if (rt.info.f16) {
      const h = uploadTensor(rt, new Float32Array(48), [12, 4], "f16");
      assertThrows(call({ u, b: h }), TypeError, "lowRank.b is f16");
    }
  });
});
