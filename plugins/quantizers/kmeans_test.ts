import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { unpackCodes } from "../../runtime/quant/pack.ts";
import { gptqRound } from "../../runtime/quant/gptq.ts";
import { kmeansQuantize, kmeansQuantizer, optimalLevels } from "./kmeans.ts";
import { lutDequantize, tlqQuantize } from "./tlq.ts";
import { uniformDequantize, uniformQuantize } from "./uniform.ts";
import { gramRef } from "../../runtime/reference/act_gram.ts";

/** The exact 1-D k-means by the plain O(k·n²) dynamic program: the least total squared error. */
function bruteSse(v: Float64Array, k: number): number {
  const n = v.length;
  const sse = (i: number, j: number) => {
    let m = 0;
    for (let t = i; t <= j; t++) m += v[t];
    m /= j - i + 1;
    let e = 0;
    for (let t = i; t <= j; t++) e += (v[t] - m) ** 2;
    return e;
  };
  let prev = Array.from({ length: n }, (_, j) => sse(0, j));
  for (let c = 1; c < Math.min(k, n); c++) {
    const cur = new Array(n).fill(Infinity);
    for (let j = c; j < n; j++) {
      for (let i = c; i <= j; i++) cur[j] = Math.min(cur[j], prev[i - 1] + sse(i, j));
    }
    prev = cur;
  }
  return prev[n - 1];
}

/** Σ(ŵ − w)² of a set of levels, each value on its nearest level. */
function levelSse(v: Float64Array, levels: Float64Array): number {
  let e = 0;
  for (const x of v) e += Math.min(...Array.from(levels, (l) => (l - x) ** 2));
  return e;
}

function sumSq(a: Float32Array, b: Float32Array): number {
  let e = 0;
  for (let i = 0; i < a.length; i++) e += (a[i] - b[i]) ** 2;
  return e;
}

Deno.test("kmeans: optimalLevels reaches the brute-force optimum (ties, repeats, n < k)", () => {
  const r = new Prng(5);
  const cases: Float64Array[] = [];
  for (const n of [1, 3, 8, 9, 40, 77]) cases.push(Float64Array.from(r.normals(n)));
  // Heavy tails, and repeated values (fewer distinct values than levels).
  cases.push(Float64Array.from(r.normals(60), (x) => x * x * x));
  cases.push(Float64Array.from({ length: 30 }, (_, i) => i % 3));
  for (const v of cases) {
    v.sort();
    for (const k of [8, 16]) {
      const { levels, sse } = optimalLevels(v, k);
      assertEquals(levels.length, k);
      for (let c = 1; c < k; c++) assert(levels[c] >= levels[c - 1], "levels ascend");
      const want = bruteSse(v, k);
      const tol = 1e-9 * (1 + want);
      assert(Math.abs(sse - want) <= tol, `n ${v.length} k ${k}: ${sse} vs ${want}`);
      // The levels themselves give that error with nearest assignment.
      assert(Math.abs(levelSse(v, levels) - want) <= tol, `n ${v.length} k ${k}: levels`);
    }
  }
});

Deno.test("kmeans: no lower weight error exists among uniform's and TLQ's grids, row by row", () => {
  const r = new Prng(11);
  const [N, K] = [12, 96];
  // Gaussian rows and Student-t-like rows (a Gaussian over a random scale): long tails.
  const data = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const g = r.normals(2);
      data[n * K + k] = 0.05 * g[0] * (n % 2 ? 1 / Math.max(0.2, Math.abs(g[1])) : 1);
    }
  }
  const w = { data, rows: N, cols: K };
  for (const bits of [3, 4]) {
    const km = kmeansQuantize(w, { bits });
    const h = lutDequantize(km);
    const hu = uniformDequantize(uniformQuantize(w, { bits }));
    const ht = lutDequantize(tlqQuantize(w, { bits, fit: "mse" }));
    for (let n = 0; n < N; n++) {
      const row = (a: Float32Array) => a.subarray(n * K, (n + 1) * K);
      const e = sumSq(row(data), row(h));
      assert(e <= sumSq(row(data), row(hu)) * (1 + 1e-6), `W${bits} row ${n} vs uniform`);
      assert(e <= sumSq(row(data), row(ht)) * (1 + 1e-6), `W${bits} row ${n} vs tlq mse`);
    }
    assert(Math.abs(Number(km.meta.mse) - sumSq(data, h) / (N * K)) < 1e-12, "meta.mse");
  }
});

Deno.test("kmeans: codes name each weight's nearest level; groups have their own levels", () => {
  const r = new Prng(3);
  const [N, K, G] = [5, 64, 16];
  const w = { data: r.normals(N * K).map((v) => 0.1 * v), rows: N, cols: K };
  const q = kmeansQuantize(w, { bits: 3, groupSize: G });
  assertEquals(q.meta.groupSize, G);
  assertEquals(q.params.lut.length, N * (K / G) * 8);
  const c = unpackCodes(q.codes, N, K, 3);
  const h = lutDequantize(q);
  for (let i = 0; i < N * K; i++) {
    const set = Math.floor(i / G); // row n, group j: set n·K/G + j, as the groups are contiguous
    const lut = q.params.lut.subarray(set * 8, set * 8 + 8);
    assertEquals(h[i], lut[c[i]]);
    for (const l of lut) assert(Math.abs(l - w.data[i]) >= Math.abs(h[i] - w.data[i]));
  }
  // A group of G has a lower error than the row's one codebook.
  const row = kmeansQuantize(w, { bits: 3 });
  assert(Number(q.meta.mse) < Number(row.meta.mse));
  assertEquals(row.meta.groupSize, undefined);
});

Deno.test("kmeans: GPTQ rounds onto its grid (the descriptor's grid is the LUT)", () => {
  const r = new Prng(8);
  const [N, K] = [6, 32];
  const w = { data: r.normals(N * K).map((v) => 0.05 * v), rows: N, cols: K };
  const q = kmeansQuantizer.calibrate(w, { bits: 3 });
  const x = r.normals(64 * K); // calibration inputs [64, K]
  const h = gramRef(x, 64, K);
  const g = gptqRound(w, q, kmeansQuantizer.grid!(q), h);
  assertEquals(g.params.lut, q.params.lut);
  const lut = q.params.lut;
  const hg = kmeansQuantizer.dequantize(g);
  for (let i = 0; i < N * K; i++) {
    const n = Math.floor(i / K);
    assert(lut.subarray(n * 8, n * 8 + 8).includes(hg[i]), `weight ${i} off the grid`);
  }
});

Deno.test("kmeans: bad options name the field", () => {
  const w = { data: new Float32Array(64), rows: 4, cols: 16 };
  assertThrows(() => kmeansQuantize(w, { bits: 8 }), RangeError, "bits");
  assertThrows(() => kmeansQuantize(w, { bits: 4, groupSize: 6 }), RangeError, "groupSize");
  assertThrows(() => kmeansQuantize(w, { bits: 4, symmetric: true }), RangeError, "symmetric");
  const bad = { data: Float32Array.of(0, NaN, 0, 0), rows: 1, cols: 4 };
  assertThrows(() => kmeansQuantize(bad, { bits: 3 }), RangeError, "[0, 1]");
  // An all-zero row decodes to zeros.
  assert(lutDequantize(kmeansQuantize(w, { bits: 3 })).every((v) => v === 0));
});
