import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { unpackCodes } from "../../runtime/quant/pack.ts";
import { CLIP_RATIOS, uniformDequantize, uniformQuantize, uniformQuantizer } from "./uniform.ts";

/** Signal-to-quantization-noise ratio in dB. */
function sqnr(w: Float32Array, h: Float32Array): number {
  let s = 0;
  let e = 0;
  for (let i = 0; i < w.length; i++) {
    s += w[i] * w[i];
    e += (w[i] - h[i]) ** 2;
  }
  return 10 * Math.log10(s / e);
}

const normalMatrix = (rows: number, cols: number, seed: number) => ({
  data: new Prng(seed).normals(rows * cols).map((v) => 0.05 * v),
  rows,
  cols,
});

Deno.test("uniform: SQNR grows about 6 dB per bit and codes stay in range", () => {
  const w = normalMatrix(9, 70, 1);
  const s: Record<number, number> = {};
  for (const bits of [3, 4, 8]) {
    const q = uniformQuantize(w, { bits });
    const c = unpackCodes(q.codes, 9, 70, bits);
    assert(c.every((v) => v < 2 ** bits));
    s[bits] = sqnr(w.data, uniformDequantize(q));
  }
  assert(s[3] > 12 && s[4] > 17 && s[8] > 38, `SQNR ${JSON.stringify(s)}`);
  assert(s[4] - s[3] > 4 && s[8] - s[4] > 18, `SQNR ${JSON.stringify(s)}`);
});

Deno.test("uniform: symmetric codes are stored offset by 2^(b-1) with zero = 2^(b-1)", () => {
  const w = normalMatrix(4, 33, 2);
  const q = uniformQuantize(w, { bits: 8, symmetric: true });
  assert(q.params.zero.every((z) => z === 128));
  const h = uniformDequantize(q);
  // Each row's largest |w| maps to ±127 levels at the chosen ratio; symmetric range.
  for (let n = 0; n < 4; n++) {
    for (let k = 0; k < 33; k++) {
      const c = unpackCodes(q.codes, 4, 33, 8)[n * 33 + k];
      assertEquals(h[n * 33 + k], Math.fround((c - 128) * q.params.scale[n]));
    }
  }
  assert(sqnr(w.data, h) > 38);
});

Deno.test("uniform: the clip search trims a range stretched by an outlier", () => {
  const g = new Prng(4);
  const data = g.normals(256).map((v) => 0.01 * v);
  data[7] = 1; // one outlier: clipping it costs less than coarse levels for the rest
  const q = uniformQuantize({ data, rows: 1, cols: 256 }, { bits: 3 });
  const full = uniformQuantize({ data, rows: 1, cols: 256 }, { bits: 3 });
  assert(Number(q.meta.clipRatioMean) < 1, `ratio ${q.meta.clipRatioMean}`);
  // The chosen ratio is no worse than ratio 1 (the search includes it).
  assert(CLIP_RATIOS[0] === 1 && sqnr(data, uniformDequantize(full)) > 0);
});

Deno.test("uniform: groups of 64 have one scale per group and beat per-row", () => {
  const w = normalMatrix(3, 150, 5);
  for (let k = 0; k < 64; k++) w.data[k] *= 10; // row 0's first group is much wider
  const g = uniformQuantize(w, { bits: 4, groupSize: 64 });
  const r = uniformQuantize(w, { bits: 4 });
  assertEquals(g.params.scale.length, 3 * 3);
  assertEquals(g.meta.groupSize, 64);
  assert(sqnr(w.data, uniformDequantize(g)) > sqnr(w.data, uniformDequantize(r)));
});

Deno.test("uniform: an all-zero row decodes to zeros", () => {
  const data = new Float32Array(2 * 8);
  data.set([0.5, -0.25, 0.125, 0, 0, 0, 0, 1], 8);
  for (const symmetric of [false, true]) {
    const q = uniformQuantize({ data, rows: 2, cols: 8 }, { bits: 4, symmetric });
    const h = uniformDequantize(q);
    assertEquals(Array.from(h.subarray(0, 8)), new Array(8).fill(0));
  }
});

Deno.test("uniform: rejects bad bits, group sizes and non-finite weights", () => {
  const w = normalMatrix(2, 8, 6);
  assertThrows(() => uniformQuantize(w, { bits: 5 }), RangeError, "bits");
  assertThrows(() => uniformQuantize(w, { bits: 4, groupSize: 6 }), RangeError, "groupSize");
  w.data[3] = NaN;
  assertThrows(() => uniformQuantize(w, { bits: 4 }), RangeError, "[0, 3] is NaN");
  assertEquals(uniformQuantizer.bits, [3, 4, 8]);
});
