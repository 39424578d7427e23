import { assert, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { kmeansQuantize } from "../../plugins/quantizers/kmeans.ts";
import { lutDequantize, tlqQuantize } from "../../plugins/quantizers/tlq.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, readTensorRaw, uploadTensor } from "../gpu/tensor.ts";
import { unpackInt8 } from "../quant/pack.ts";
import { quantizedBytes } from "../quant/quantize.ts";
import { decodeInt8, int8Lut, qgemmIntRef } from "../reference/qgemm.ts";
import { actQuant } from "./act_quant.ts";
import { qgemmA16, qgemmInt, uploadQWeight } from "./qgemm.ts";
import { A16, epilogue, identityInput, makeCase } from "./qgemm_test_util.ts";

// LUT-coded weights in groups (TLQ and k-means --group-size): MODE 0 and MODE 2 with a table a
// (row, group).

const tlqGroups = (data: Float32Array, N: number, K: number, bits: number, groupSize: number) =>
  tlqQuantize({ data, rows: N, cols: K }, { bits, groupSize, etas: [0, 0.02] });

Deno.test(
  "TLQ in groups, A16 (MODE 0; MODE 8 beside A8): every version decodes each group's LUT",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [N, K] = [37, 128];
      const x = identityInput(rt, K); // Y = Ŵᵀ exactly
      const c = makeCase(1, N, K, 31);
      const cases = [[4, 32, false], [3, 64, false], [4, 16, false], [4, 32, true], [3, 64, true]];
      for (const [bits, G, int] of cases as [number, number, boolean][]) {
        const q = tlqGroups(c.ws, N, K, bits, G);
        const w = uploadQWeight(rt, q, { int });
        let deq = lutDequantize(q);
        if (int) {
          // Beside the integer path the weight-only GEMM reads its tables: s_g·lut8[g, code].
          assertEquals([w.a16?.mode, w.a16?.groupSize, w.int?.mode], [8, G, 2]);
          assert(w.a16?.params === w.int?.params, "one params tensor");
          assertEquals(w.byteLength, quantizedBytes(q, 8));
          const lut = int8Lut(q);
          const w8 = decodeInt8(q, lut);
          deq = Float32Array.from(w8, (v, i) => Math.fround(v * lut.scale[Math.floor(i / G)]));
        } else {
          assertEquals([w.a16?.mode, w.a16?.groupSize, w.int], [0, G, undefined]);
          assertEquals(w.byteLength, quantizedBytes(q, 16));
        }
        const want = new Float32Array(K * N);
        for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) want[k * N + n] = deq[n * K + k];
        for (const version of A16) {
          const rec = new Recorder(rt);
          const y = qgemmA16(rec, x, w, { version });
          await rec.submit();
          assertEquals(
            Array.from(await readTensor(rt, y), (v) => v + 0),
            Array.from(want, (v) => v + 0), // ±0 alike
            `W${bits} g${G}${int ? " MODE 8" : ""} ${version}`,
          );
          y.release();
        }
        w.release();
      }
      // A LUT a row beside the integer path keeps its f32 LUT (MODE 0) for the centre product:
      // its int8 tables there cost 0.2–0.3 dB on the bundled model
      // (bench/results/nvidia-h200/2026-11-29_ablation_kmeans_shared_lut.md).
      const km = kmeansQuantize({ data: c.ws, rows: N, cols: K }, { bits: 4 });
      const wk = uploadQWeight(rt, km, { int: true });
      assertEquals([wk.a16?.mode, wk.a16?.groupSize, wk.int?.mode], [0, 0, 2]);
      wk.release();
      x.release();
    });
  },
);

Deno.test(
  "TLQ in groups, integer (MODE 2, a table a group): per-token and grouped activations, every version",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [M, N, K] = [37, 29, 256];
      const c = makeCase(M, N, K, 29);
      const e = epilogue(rt, c, "f32");
      const x = uploadTensor(rt, c.xs.map((v, i) => (i % 50 === 7 ? 30 : 1) * v), [M, K]);
      // [weight group, activation group, asym, bits, quantizer]: per token; groups larger,
      // smaller and equal; W3 (two-word tables); k-means tables.
      const cases = [
        [64, 0, false, 4, "tlq"],
        [32, 0, false, 4, "tlq"],
        [64, 16, true, 4, "tlq"],
        [32, 64, false, 4, "tlq"],
        [128, 128, true, 4, "tlq"],
        [32, 16, false, 3, "tlq"],
        [32, 0, false, 4, "kmeans"],
        [64, 16, true, 3, "kmeans"],
      ] as const;
      for (const [wg, group, asym, bits, quantizer] of cases) {
        const q = quantizer === "tlq"
          ? tlqGroups(c.ws, N, K, bits, wg)
          : kmeansQuantize({ data: c.ws, rows: N, cols: K }, { bits, groupSize: wg });
        const w = uploadQWeight(rt, q, { a16: false, int: true });
        assertEquals([w.int?.mode, w.int?.groupSize], [2, wg]);
        assertEquals(w.byteLength, quantizedBytes(q, 8));
        const lut = int8Lut(q);
        assertEquals([lut.groupSize, lut.scale.length], [wg, N * K / wg]);
        const rec = new Recorder(rt);
        const xa = actQuant(rec, x, group ? 4 : 8, group ? { group, asym } : {});
        await rec.submit();
        const x8 = unpackInt8((await readTensorRaw(rt, xa.q)) as Uint32Array, M, K);
        const sz = await readTensor(rt, xa.scales);
        const n = group ? M * K / group : M;
        const [xs, zs] = asym ? [sz.subarray(0, n), sz.subarray(n)] : [sz, undefined];
        const w8 = decodeInt8(q, lut);
        const ref = qgemmIntRef(x8, xs, w8, lut.scale, M, N, K, e.ref, group, zs, wg);
        // The groups' own scales matter: one scale a row (each group's table at the row's
        // largest level) would give another product.
        const flat = qgemmIntRef(
          x8,
          xs,
          w8,
          lut.scale.filter((_, i) => i % (K / wg) === 0),
          M,
          N,
          K,
          e.ref,
          group,
          zs,
        );
        assert(flat.y.some((v, i) => Math.abs(v - ref.y[i]) > 1e-3), `w groups ${wg}: scales`);
        for (const [version, bkw] of [["cpu", 4], ["tiled", 4], ["tiled", 8]] as const) {
          const opts = { ...e.gpu, version, tune: { bkw } };
          if (version === "tiled" && (group || wg) % (4 * bkw) !== 0) continue; // refused: tile
          const r2 = new Recorder(rt);
          const y = qgemmInt(r2, xa, w, opts);
          await r2.submit();
          const what = `${quantizer} W${bits} groups ${wg}, x groups ${group}${
            asym ? " asym" : ""
          }, ${version} ${bkw}`;
          assertClose(await readTensor(rt, y), ref.y, { atol: 1e-5, rtol: 1e-5, msg: what });
          y.release();
        }
        xa.q.release();
        xa.scales.release();
        w.release();
      }
      x.release();
      // Groups the integer GEMMs do not take (not a multiple of 16) are refused on upload; the
      // A16 path takes them.
      const q24 = tlqGroups(c.ws.subarray(0, N * 96), N, 96, 4, 24);
      assertThrows(() => uploadQWeight(rt, q24, { int: true }), RangeError, "multiple of 16");
      uploadQWeight(rt, q24).release();
    });
  },
);
