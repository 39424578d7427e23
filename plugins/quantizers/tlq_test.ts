import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../../tests/assert.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { unpackCodes } from "../../runtime/quant/pack.ts";
import { lutDequantize, TLQ_ETAS, TLQ_PERCENTILES, tlqQuantize, tlqQuantizer } from "./tlq.ts";
import { uniformDequantize, uniformQuantize } from "./uniform.ts";

function mse(w: Float32Array, h: Float32Array): number {
  let e = 0;
  for (let i = 0; i < w.length; i++) e += (w[i] - h[i]) ** 2;
  return e / w.length;
}

/** Student-t (ν) weights: Gaussian with heavy tails, like trained DiT weights. */
function studentT(rows: number, cols: number, nu: number, seed: number) {
  const g = new Prng(seed);
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    let c = 0;
    for (let j = 0; j < nu; j++) c += g.normal() ** 2;
    data[i] = (0.02 * g.normal()) / Math.sqrt(c / nu);
  }
  return { data, rows, cols };
}

Deno.test("tlq: codes carry the sign bit; each row has at most 2^b values, signs kept", () => {
  const w = studentT(6, 50, 4, 1);
  for (const bits of [3, 4]) {
    const q = tlqQuantize(w, { bits });
    const h = lutDequantize(q);
    const c = unpackCodes(q.codes, 6, 50, bits);
    const half = 2 ** (bits - 1);
    for (let i = 0; i < h.length; i++) {
      assertEquals(c[i] >= half, w.data[i] < 0, `sign bit of weight ${i}`);
      assert(Math.sign(h[i]) === Math.sign(w.data[i]) || h[i] === 0, `sign of ŵ ${i}`);
    }
    for (let n = 0; n < 6; n++) {
      assert(new Set(h.subarray(n * 50, n * 50 + 50)).size <= 2 ** bits);
    }
    assertAlmostEquals(mse(w.data, h), Number(q.meta.mse), 1e-3 * Number(q.meta.mse));
  }
});

Deno.test("tlq: the layer search finds the best (η, p) of the grid", () => {
  const w = studentT(4, 40, 3, 2);
  const q = tlqQuantize(w, { bits: 3 });
  const got = Number(q.meta.mse);
  // Every single grid point (with p⁺ = p⁻) is at least as bad as the searched optimum,
  // and the optimum's (η, p⁺) alone, searched over p⁻, is no better.
  let diag = Infinity;
  for (const eta of TLQ_ETAS) {
    for (const p of TLQ_PERCENTILES) {
      const e = Number(tlqQuantize(w, { bits: 3, etas: [eta], percentiles: [p] }).meta.mse);
      assert(got <= e * (1 + 1e-9), `η ${eta} p ${p}: ${e} < ${got}`);
      diag = Math.min(diag, e);
    }
  }
  assert(got <= diag);
  assert(TLQ_ETAS.includes(Number(q.meta.eta)));
  assert(TLQ_PERCENTILES.includes(Number(q.meta.pPos)));
});

Deno.test("tlq: beats uniform on heavy-tailed weights at W4 (the case it is built for)", () => {
  const w = studentT(64, 256, 3, 3);
  const t = mse(w.data, lutDequantize(tlqQuantize(w, { bits: 4 })));
  const u = mse(w.data, uniformDequantize(uniformQuantize(w, { bits: 4 })));
  assert(t < u, `tlq ${t} vs uniform ${u}`);
});

Deno.test("tlq: exact zeros take the smallest positive level; a row without positives keeps 0", () => {
  const data = Float32Array.from([0.1, 0.2, 0, -0.3, 0.4, -0.05, 0, -0.2, -0.1, -0.4]);
  const q = tlqQuantize({ data, rows: 2, cols: 5 }, { bits: 3 });
  const h = lutDequantize(q);
  const lut = q.params.lut;
  assertEquals(h[2], lut[0]);
  assert(lut[0] > 0 && lut[0] < 0.15, `smallest positive level ${lut[0]}`);
  assertEquals(h[6], 0); // row 1 has no positive weights
  assertEquals(q.meta.zeros, "smallest-positive");
});

Deno.test("tlq: nearest assignment uses the same grid and never raises the error", () => {
  const w = studentT(8, 64, 5, 4);
  const a = tlqQuantize(w, { bits: 3 });
  const b = tlqQuantize(w, { bits: 3, assign: "nearest" });
  assert(Number(b.meta.mse) <= Number(a.meta.mse) * (1 + 1e-9));
});

Deno.test("tlq: rejects bad bits, groups and search grids", () => {
  const w = studentT(2, 8, 4, 5);
  assertThrows(() => tlqQuantize(w, { bits: 8 }), RangeError, "bits");
  assertThrows(() => tlqQuantize(w, { bits: 4, groupSize: 64 }), RangeError, "groups");
  assertThrows(() => tlqQuantize(w, { bits: 4, etas: [-1] }), RangeError, "etas");
  assertThrows(() => tlqQuantize(w, { bits: 4, percentiles: [0] }), RangeError, "percentiles");
  assertEquals(tlqQuantizer.name, "tlq");
});
