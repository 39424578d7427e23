import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../../tests/assert.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { unpackCodes } from "../../runtime/quant/pack.ts";
import { f16Bits } from "../../runtime/io/f16.ts";
import {
  lutDequantize,
  TLQ_ETAS,
  TLQ_EXP2_TABLE,
  TLQ_PERCENTILES,
  tlqExp2,
  tlqLut,
  type TlqParams,
  tlqQuantize,
  tlqQuantizer,
} from "./tlq.ts";
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
  assertThrows(() => tlqQuantize(w, { bits: 4, groupSize: 3 }), RangeError, "divide K = 8");
  for (const g of [NaN, 2.5, -4]) {
    assertThrows(() => tlqQuantize(w, { bits: 4, groupSize: g }), RangeError, "positive integer");
  }
  assertThrows(() => tlqQuantize(w, { bits: 4, etas: [-1] }), RangeError, "etas");
  assertThrows(() => tlqQuantize(w, { bits: 4, percentiles: [0] }), RangeError, "percentiles");
  assertEquals(tlqQuantizer.name, "tlq");
});

function sqnr(w: Float32Array, h: Float32Array): number {
  return 10 * Math.log10(w.reduce((s, v) => s + v * v, 0) / (mse(w, h) * w.length));
}

Deno.test("tlq: Δ± are f16 values (f16 normals or 0), z± fit an i16, the LUT is rebuilt bit for bit", () => {
  const cases = [[studentT(9, 70, 4, 6), 4], [studentT(5, 33, 3, 7), 3]] as const;
  for (const [[w, bits], fit] of cases.flatMap((c) => [[c, "percentile"], [c, "mse"]] as const)) {
    const q = tlqQuantize(w, { bits, fit });
    const p = q.params as unknown as TlqParams;
    for (const d of [...p.deltaPos, ...p.deltaNeg]) {
      assertEquals(Math.f16round(d), d, `Δ ${d} is not an f16`);
      assert(d === 0 || d >= 2 ** -14, `Δ ${d} is an f16 subnormal`);
    }
    for (const z of [...p.zeroPos, ...p.zeroNeg]) {
      assert(Number.isInteger(z) && Math.abs(z) <= 32767, `z ${z}`);
    }
    const lut = tlqLut(p, Number(q.meta.eta), bits);
    assertEquals(Array.from(lut), Array.from(q.params.lut));
  }
});

Deno.test("tlq: a constant plane keeps its value; a plane without weights gets Δ = 0", () => {
  // Row 0: one positive value; row 1: three equal negatives, no positives.
  const data = Float32Array.from([0.3, -0.1, -0.2, 0, -0.05, -0.05, -0.05, 0]);
  const q = tlqQuantize({ data, rows: 2, cols: 4 }, { bits: 3, etas: [0] });
  const h = lutDequantize(q);
  assertAlmostEquals(h[0], 0.3, 1e-4 * 0.3);
  for (const i of [4, 5, 6]) assertAlmostEquals(h[i], -0.05, 1e-4 * 0.05);
  assertEquals(q.params.deltaPos[1], 0);
  assertEquals(h[7], 0);
});

// SQNR (dB) of these cases before Δ was rounded to f16 (commit 419619a).
const SQNR_BEFORE_F16: [
  string,
  () => ReturnType<typeof studentT>,
  number,
  "log" | "nearest",
  number,
][] = [
  ["t4 6x50 W3", () => studentT(6, 50, 4, 1), 3, "log", 12.4873],
  ["t4 6x50 W4", () => studentT(6, 50, 4, 1), 4, "log", 18.6427],
  ["t3 4x40 W3", () => studentT(4, 40, 3, 2), 3, "log", 13.9166],
  ["t3 64x256 W4", () => studentT(64, 256, 3, 3), 4, "log", 15.7696],
  ["t5 8x64 W3", () => studentT(8, 64, 5, 4), 3, "log", 12.9177],
  ["t5 8x64 W3 nearest", () => studentT(8, 64, 5, 4), 3, "nearest", 12.9987],
];

Deno.test("tlq: SQNR within 0.05 dB of the f64-Δ quantizer on the cases above", () => {
  for (const [name, make, bits, assign, before] of SQNR_BEFORE_F16) {
    const w = make();
    const got = sqnr(w.data, lutDequantize(tlqQuantize(w, { bits, assign })));
    assert(Math.abs(got - before) <= 0.05, `${name}: ${got.toFixed(4)} dB vs ${before} before`);
  }
});

Deno.test("tlq: tlqExp2 is 2^x within one f32 ulp, exact on integers, 0/∞ outside f32", () => {
  for (let j = 0; j < 16; j++) assertEquals(TLQ_EXP2_TABLE[j], Math.round(2 ** (31 + j / 16)));
  const g = new Prng(8);
  const f = new Float32Array(2);
  const u = new Uint32Array(f.buffer);
  let off = 0;
  for (let i = 0; i < 20000; i++) {
    const d = Math.f16round(2 ** (-14 + 16 * g.uniform()));
    const kz = Math.round((g.uniform() - 0.5) * 200);
    if (Math.abs(kz * d) > 120) continue;
    f[0] = tlqExp2(f16Bits(d), kz);
    f[1] = Math.fround(2 ** (kz * d));
    assert(Math.abs(u[0] - u[1]) <= 1, `2^(${kz}·${d}): ${f[0]} vs ${f[1]}`);
    if (u[0] !== u[1]) off++;
  }
  assert(off < 200, `${off} of 20000 off by an ulp`);
  for (let x = -126; x <= 127; x++) assertEquals(tlqExp2(f16Bits(1), x), 2 ** x);
  assertEquals(tlqExp2(f16Bits(-0.5), 6), 0.125);
  assertEquals(tlqExp2(f16Bits(1), -127), 0);
  assertEquals(tlqExp2(f16Bits(1), 128), Infinity);
});

Deno.test("tlq: in groups, each run of G weights of a row is quantized as a row of its own", () => {
  const [N, K, G] = [5, 96, 32];
  const w = studentT(N, K, 4, 17);
  const opts = { bits: 4, etas: [0.01], fit: "mse" as const }; // one η: no layer-wide choice
  const q = tlqQuantize(w, { ...opts, groupSize: G });
  assertEquals([q.meta.groupSize, q.params.deltaPos.length, q.params.lut.length], [G, 15, 240]);
  assertEquals(tlqQuantizer.grid!(q).groupSize, G);
  // The same weights as [N·K/G, G], group g of row n its row n·K/G + g: same parameters and
  // values, in the same order (the codes too: the runs are contiguous in the rows).
  const rows = tlqQuantize({ data: w.data, rows: N * K / G, cols: G }, opts);
  for (const k of ["deltaPos", "zeroPos", "deltaNeg", "zeroNeg", "lut"]) {
    assertEquals(Array.from(q.params[k]), Array.from(rows.params[k]), k);
  }
  assertEquals(Array.from(lutDequantize(q)), Array.from(lutDequantize(rows)));
  // Grids fitted to 32 weights instead of 96 err less (heavy tails: each run its own range).
  const perRow = lutDequantize(tlqQuantize(w, opts));
  assert(mse(w.data, lutDequantize(q)) < 0.8 * mse(w.data, perRow));
  // A group of K (or more) is one grid a row, stored as such.
  assertEquals(tlqQuantize(w, { ...opts, groupSize: K }).meta.groupSize, undefined);
  // A LUT of the wrong size for its groups is named.
  const bad = { ...q, meta: { ...q.meta, groupSize: 48 } };
  assertThrows(() => lutDequantize(bad), RangeError, "lut must hold 5×2×16");
});
