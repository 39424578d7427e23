import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { kmeansQuantize } from "../../plugins/quantizers/kmeans.ts";
import { Prng } from "../io/prng.ts";
import { gptqRound } from "./gptq.ts";
import { type GptqJob, runGptqJob } from "./gptq_pool.ts";
import { refitLevels } from "./gptq_refit.ts";
import { unpackCodes } from "./pack.ts";

/** A layer [N, K], its inputs' Gram matrix (correlated channels), and kmeans W3 + GPTQ codes. */
function layer(N: number, K: number, seed: number) {
  const r = new Prng(seed);
  const w = { data: r.normals(N * K).map((v) => 0.05 * v), rows: N, cols: K };
  const T = 4 * K;
  const x = r.normals(T * K);
  for (let t = 0; t < T; t++) { // neighbouring channels share a component
    for (let k = 1; k < K; k++) x[t * K + k] += 0.7 * x[t * K + k - 1];
  }
  const h = new Float64Array(K * K);
  for (let t = 0; t < T; t++) {
    for (let a = 0; a < K; a++) {
      for (let b = 0; b < K; b++) h[a * K + b] += x[t * K + a] * x[t * K + b];
    }
  }
  const q = kmeansQuantize(w, { bits: 3 });
  const grid = { groupSize: K, values: q.params.lut };
  const g = gptqRound(w, q, grid, h);
  return { w, h, q, g, grid };
}

/** (w − ŵ)ᵀ H (w − ŵ) of row n, ŵ_k = values[n, c_k]. */
function rowError(
  w: Float32Array,
  c: ArrayLike<number>,
  values: Float32Array,
  h: Float64Array,
  n: number,
  K: number,
) {
  const e = new Float64Array(K);
  for (let k = 0; k < K; k++) e[k] = w[n * K + k] - values[n * 8 + c[n * K + k]];
  let s = 0;
  for (let a = 0; a < K; a++) for (let b = 0; b < K; b++) s += e[a] * h[a * K + b] * e[b];
  return s;
}

Deno.test("refitLevels: each row's levels solve its least squares, with less output error", () => {
  const [N, K] = [7, 24];
  const { w, h, g, grid } = layer(N, K, 4);
  const values = refitLevels(w.data, N, K, 3, g.codes, grid, h);
  const c = unpackCodes(g.codes, N, K, 3);
  let before = 0;
  let after = 0;
  for (let n = 0; n < N; n++) {
    const e0 = rowError(w.data, c, grid.values, h, n, K);
    const e1 = rowError(w.data, c, values, h, n, K);
    assert(e1 <= e0 * (1 + 1e-6), `row ${n}: ${e1} > ${e0}`);
    before += e0;
    after += e1;
    // The optimum: the gradient Cᵀ H (w − ŵ) vanishes for every level a weight uses, and a
    // level no weight uses keeps its value.
    for (let l = 0; l < 8; l++) {
      const used = Array.from(c.subarray(n * K, (n + 1) * K)).includes(l);
      if (!used) {
        assertEquals(values[n * 8 + l], grid.values[n * 8 + l]);
        continue;
      }
      let grad = 0;
      let scale = 0;
      for (let i = 0; i < K; i++) {
        if (c[n * K + i] !== l) continue;
        for (let j = 0; j < K; j++) {
          const ej = w.data[n * K + j] - values[n * 8 + c[n * K + j]];
          grad += h[i * K + j] * ej;
          scale += Math.abs(h[i * K + j] * w.data[n * K + j]);
        }
      }
      assert(Math.abs(grad) < 1e-4 * scale, `row ${n} level ${l}: gradient ${grad} of ${scale}`);
    }
  }
  assert(after < 0.99 * before, `output error ${before} → ${after}`);
});

Deno.test("a GPTQ job with refit returns the new levels and their (higher) output SQNR", () => {
  const [N, K] = [6, 32];
  const { w, h, q, grid } = layer(N, K, 9);
  const job = (refit: boolean): GptqJob => ({
    id: 0,
    name: "l",
    w: w.data.slice(),
    rows: N,
    cols: K,
    bits: 3,
    codes: q.codes,
    grid,
    h: Float32Array.from(h),
    refit,
  });
  const plain = runGptqJob(job(false));
  const refit = runGptqJob(job(true));
  assertEquals(plain.values, undefined);
  assertEquals(refit.values!.length, N * 8);
  assertEquals(refit.codes, plain.codes); // the codes are GPTQ's either way
  assert(refit.outSqnrDb! > plain.outSqnrDb!, `${refit.outSqnrDb} vs ${plain.outSqnrDb}`);
});

Deno.test("refitLevels refuses grids in groups and shapes that do not match", () => {
  const [N, K] = [2, 16];
  const { w, h, g, grid } = layer(N, K, 1);
  assertThrows(
    () => refitLevels(w.data, N, K, 3, g.codes, { ...grid, groupSize: 8 }, h),
    RangeError,
    "groups",
  );
  assertThrows(() => refitLevels(w.data, N, K, 3, g.codes, grid, h.subarray(1)), RangeError);
});
