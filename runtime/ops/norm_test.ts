import { assertClose, assertEquals, assertThrows, rms } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { type DType, readTensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { layerNormRef, rmsNormRef } from "../reference/norm.ts";
import { layerNorm, rmsNorm } from "./norm.ts";

/** f32: 1e-5·RMS(ref) (+1e-6 relative); f16: 1e-2·RMS (inputs rounded to f16 first). */
function tol(ref: Float32Array, dtype: DType) {
  const r = rms(ref);
  return dtype === "f32" ? { atol: 1e-5 * r, rtol: 1e-6 } : { atol: 1e-2 * r, rtol: 0 };
}

function stored(x: Float32Array, dtype: DType): Float32Array {
  return dtype === "f16" ? Float32Array.from(Float16Array.from(x)) : x;
}

Deno.test(
  "layerNorm matches the reference: plain, affine, one row, C = 4608",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const g = new Prng(3);
      for (const [M, C] of [[37, 1152], [1, 77], [3, 4608]]) {
        // An offset mean (+5) checks that the variance does not cancel.
        const xs = g.normals(M * C).map((v) => 2 * v + 5);
        const w = g.normals(C);
        const b = g.normals(C);
        const x = uploadTensor(rt, xs, [M, C]);
        const plain = await runAndRead(rt, (r) => layerNorm(r, x));
        const ref = layerNormRef(xs, C);
        assertClose(plain, ref, { ...tol(ref, "f32"), msg: `plain ${M}×${C}` });
        const wt = uploadTensor(rt, w, [C]);
        const bt = uploadTensor(rt, b, [C]);
        const aff = await runAndRead(
          rt,
          (r) => layerNorm(r, x, { weight: wt, bias: bt, eps: 1e-5 }),
        );
        const refAff = layerNormRef(xs, C, { weight: w, bias: b, eps: 1e-5 });
        assertClose(aff, refAff, { ...tol(refAff, "f32"), msg: `affine ${M}×${C}` });
      }
    });
  },
);

Deno.test(
  "layerNorm fuses PixArt's adaLN modulation from chunks of [B, 6C] + table",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [B, T, C] = [3, 19, 72];
      const g = new Prng(4);
      const xs = g.normals(B * T * C);
      const es = g.normals(B * 6 * C);
      const ts = g.normals(6 * C);
      const x = uploadTensor(rt, xs, [B, T, C]);
      const emb = uploadTensor(rt, es, [B, 6 * C]);
      const table = uploadTensor(rt, ts, [6, C]);
      // norm2 of a block: shift_mlp = chunk 3, scale_mlp = chunk 4.
      const got = await runAndRead(
        rt,
        (r) => layerNorm(r, x, { modulation: { emb, table, shift: 3, scale: 4 } }),
      );
      const ref = layerNormRef(xs, C, {
        modulation: { emb: es, embWidth: 6 * C, table: ts, shift: 3, scale: 4 },
      });
      assertClose(got, ref, tol(ref, "f32"));
      // Final layer: emb [B, C] broadcast to both chunks, table [2, C] (shift 0, scale 1).
      const e1 = es.subarray(0, B * C);
      const t2 = ts.subarray(0, 2 * C);
      const emb1 = uploadTensor(rt, e1, [B, C]);
      const table2 = uploadTensor(rt, t2, [2, C]);
      const fin = await runAndRead(
        rt,
        (r) => layerNorm(r, x, { modulation: { emb: emb1, table: table2, shift: 0, scale: 1 } }),
      );
      const refFin = layerNormRef(xs, C, {
        modulation: { emb: e1, embWidth: C, table: t2, shift: 0, scale: 1 },
      });
      assertClose(fin, refFin, tol(refFin, "f32"));
    });
  },
);

Deno.test("layerNorm f16 storage", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const [B, T, C] = [2, 9, 1152];
    const g = new Prng(5);
    const xs = stored(g.normals(B * T * C).map((v) => 3 * v + 1), "f16");
    const es = stored(g.normals(B * 6 * C).map((v) => 0.3 * v), "f16");
    const x = uploadTensor(rt, xs, [B, T, C], "f16");
    const emb = uploadTensor(rt, es, [B, 6 * C], "f16");
    const got = await runAndRead(
      rt,
      (r) => layerNorm(r, x, { modulation: { emb, shift: 0, scale: 1 } }),
    );
    const ref = layerNormRef(xs, C, {
      modulation: { emb: es, embWidth: 6 * C, shift: 0, scale: 1 },
    });
    assertClose(got, ref, tol(ref, "f16"));
  });
});

Deno.test(
  "rmsNorm: whole rows, per-head groups, weight, a column range, in place",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const g = new Prng(6);
      const [M, H, D] = [13, 3, 72];
      const W = 3 * H * D; // a fused qkv row
      const xs = g.normals(M * W).map((v) => v * 4);
      const ws = g.normals(D);
      const x = uploadTensor(rt, xs, [M, W]);
      const w = uploadTensor(rt, ws, [D]);
      const whole = await runAndRead(rt, (r) => rmsNorm(r, x, { eps: 1e-5 }));
      const refWhole = rmsNormRef(xs, W, { eps: 1e-5 });
      assertClose(whole, refWhole, tol(refWhole, "f32"));
      // k of the fused row: columns H·D .. 2·H·D, per head of D, with weight.
      const kOpts = { groupSize: D, column: H * D, width: H * D };
      const k = await runAndRead(rt, (r) => rmsNorm(r, x, { ...kOpts, weight: w }));
      const refK = rmsNormRef(xs, W, { ...kOpts, weight: ws });
      assertClose(k, refK, tol(refK, "f32"));
      // In place: only the k columns change.
      const rec = new Recorder(rt);
      rmsNorm(rec, x, { ...kOpts, weight: w, out: x });
      await rec.submit();
      const after = await readTensor(rt, x);
      const expect = Float32Array.from(xs);
      for (let r = 0; r < M; r++) {
        expect.set(refK.subarray(r * H * D, (r + 1) * H * D), r * W + H * D);
      }
      assertClose(after, expect, tol(refK, "f32"));
      // One row of one small group.
      const one = uploadTensor(rt, xs.subarray(0, 10), [1, 10]);
      const r1 = await runAndRead(rt, (r) => rmsNorm(r, one, { groupSize: 5 }));
      const ref1 = rmsNormRef(xs.subarray(0, 10), 10, { groupSize: 5 });
      assertClose(r1, ref1, tol(ref1, "f32"));
      assertEquals(r1.length, 10);
    });
  },
);

Deno.test("rmsNorm f16 storage", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const xs = stored(new Prng(7).normals(5 * 256), "f16");
    const x = uploadTensor(rt, xs, [5, 256], "f16");
    const got = await runAndRead(rt, (r) => rmsNorm(r, x, { groupSize: 128 }));
    const ref = rmsNormRef(xs, 256, { groupSize: 128 });
    assertClose(got, ref, tol(ref, "f16"));
  });
});

Deno.test("norms validate their arguments", gpuTest, async () => {
  await withRuntime((rt) => {
    const x = uploadTensor(rt, new Float32Array(24), [2, 3, 4]);
    const emb = uploadTensor(rt, new Float32Array(3 * 8), [3, 8]);
    const w3 = uploadTensor(rt, new Float32Array(3), [3]);
    const rec = new Recorder(rt);
    assertThrows(() => layerNorm(rec, x, { weight: w3 }), RangeError, "weight");
    assertThrows(
      () => layerNorm(rec, x, { modulation: { emb, shift: 0, scale: 1 } }),
      RangeError,
      "batches",
    );
    const emb2 = uploadTensor(rt, new Float32Array(2 * 8), [2, 8]);
    assertThrows(
      () => layerNorm(rec, x, { modulation: { emb: emb2, shift: 0, scale: 2 } }),
      RangeError,
      "chunk",
    );
    assertThrows(() => layerNorm(rec, x, { out: x }), RangeError, "share");
    assertThrows(() => rmsNorm(rec, x, { groupSize: 3 }), RangeError, "groupSize");
    assertThrows(() => rmsNorm(rec, x, { column: 2, width: 4 }), RangeError, "columns");
    assertThrows(() => layerNorm(rec, x, { eps: -1 }), RangeError, "eps");
  });
});
