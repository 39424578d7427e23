/**
 * The k-means weight quantizer: per output row (or group of G input channels) the 2^b levels
 * that minimise Σ(ŵ − w)² with each weight on its nearest level — the optimal scalar
 * codebook of that row (Lloyd-Max on its empirical distribution), found exactly, not by
 * Lloyd's iterations. An option beyond METHODS.md, in the spirit of SqueezeLLM's
 * non-uniform codebooks: no per-row scalar grid of 2^b levels (uniform, TLQ) has a lower
 * weight error, so it measures how much any grid shape can still gain over another.
 *
 * Exact because in one dimension an optimal partition is contiguous in sorted order: the
 * dynamic program D[m][j] = min_i D[m−1][i−1] + SSE(i..j) over the sorted row finds it, and
 * its optimal split point never moves left as j grows, so each of the 2^b − 1 stages is a
 * divide and conquer of O(K log K) interval costs (from prefix sums).
 *
 * Stored form: codes c ∈ [0, 2^b) packed by runtime/quant/pack.ts (the level's index, levels
 * ascending), and `params.lut` [N, K/G, 2^b] (f32 cluster means): a LUT-coded weight, the
 * same tensors as a TLQ LUT, so the LUT kernels (qgemm_dec.wgsl MODE 0, and the integer path's
 * int8 tables, MODE 2) run it unchanged. 3 and 4 bits.
 *
 * @module
 */
import type { HostMatrix, QuantizedWeight, QuantizerPlugin, WeightQuantOptions } from "../types.ts";
import { packCodes } from "../../runtime/quant/pack.ts";
import { checkMatrix } from "./uniform.ts";
import { lutDequantize, lutGrid, tlqGroupSize } from "./tlq.ts";
import { refitFreeLevels } from "../../runtime/quant/gptq_refit.ts";

/** Bit widths of the k-means quantizer. */
export const KMEANS_BITS: readonly number[] = [3, 4];

/**
 * The optimal `k` levels of `v` (sorted ascending, f64) under squared error: the means of the
 * contiguous clusters of an exact 1-D k-means, ascending. Fewer distinct values than `k`
 * give repeated levels. Also returns the total squared error.
 */
export function optimalLevels(v: Float64Array, k: number): { levels: Float64Array; sse: number } {
  const n = v.length;
  const m = Math.min(k, n);
  const s1 = new Float64Array(n + 1);
  const s2 = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) {
    s1[i + 1] = s1[i] + v[i];
    s2[i + 1] = s2[i] + v[i] * v[i];
  }
  // SSE of v[i..j] about its mean.
  const cost = (i: number, j: number): number => {
    const c = j - i + 1;
    const s = s1[j + 1] - s1[i];
    const e = s2[j + 1] - s2[i] - (s * s) / c;
    return e > 0 ? e : 0;
  };
  let prev = new Float64Array(n);
  for (let j = 0; j < n; j++) prev[j] = cost(0, j);
  // start[c][j]: where cluster c begins in the best split of v[0..j] into c + 1 clusters.
  const start: Int32Array[] = [new Int32Array(n)];
  for (let c = 1; c < m; c++) {
    const cur = new Float64Array(n).fill(Infinity);
    const arg = new Int32Array(n);
    // Fills cur[j] for j in [jlo, jhi], the split searched in [ilo, ihi] (monotone in j).
    const solve = (jlo: number, jhi: number, ilo: number, ihi: number): void => {
      if (jlo > jhi) return;
      const j = (jlo + jhi) >> 1;
      let best = Infinity;
      let bi = ilo;
      for (let i = ilo; i <= Math.min(ihi, j); i++) {
        const e = prev[i - 1] + cost(i, j);
        if (e < best) {
          best = e;
          bi = i;
        }
      }
      cur[j] = best;
      arg[j] = bi;
      solve(jlo, j - 1, ilo, bi);
      solve(j + 1, jhi, bi, ihi);
    };
    solve(c, n - 1, c, n - 1);
    start.push(arg);
    prev = cur;
  }
  const levels = new Float64Array(k);
  let j = n - 1;
  for (let c = m - 1; c >= 0; c--) {
    const i = c === 0 ? 0 : start[c][j];
    levels[c] = (s1[j + 1] - s1[i]) / (j - i + 1);
    j = i - 1;
  }
  for (let c = m; c < k; c++) levels[c] = levels[m - 1];
  return { levels, sse: prev[n - 1] };
}

/** The index of the level nearest `x` in ascending `lut[off, off + L)` (ties: the lower). */
function nearestLevel(lut: Float32Array, off: number, L: number, x: number): number {
  let lo = 0;
  let hi = L - 1;
  while (lo < hi) { // first level ≥ x
    const mid = (lo + hi) >> 1;
    if (lut[off + mid] < x) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && x - lut[off + lo - 1] <= lut[off + lo] - x) return lo - 1;
  return lo;
}

/** Quantizes W [N, K] onto each row's (group's) optimal levels (see the module doc). */
export function kmeansQuantize(w: HostMatrix, opts: WeightQuantOptions): QuantizedWeight {
  checkMatrix(w, "kmeans");
  const bits = opts.bits;
  if (!KMEANS_BITS.includes(bits)) {
    throw new RangeError(`kmeans: bits must be one of ${KMEANS_BITS.join(", ")}, got ${bits}`);
  }
  if (opts.symmetric) throw new RangeError("kmeans: symmetric is the uniform quantizer's");
  const { rows: N, cols: K, data } = w;
  const G = tlqGroupSize(K, opts.groupSize, "kmeans");
  const L = 2 ** bits;
  const sets = N * (K / G);
  const lut = new Float32Array(sets * L);
  const codes = new Uint8Array(N * K);
  const v = new Float64Array(G);
  let sse = 0;
  for (let s = 0; s < sets; s++) {
    const off = s * G; // a group's weights are contiguous: row n, group j is set n·K/G + j
    for (let i = 0; i < G; i++) v[i] = data[off + i];
    v.sort();
    const { levels } = optimalLevels(v, L);
    for (let c = 0; c < L; c++) lut[s * L + c] = Math.fround(levels[c]);
    // Levels rounded to f32 stay ascending; each weight takes its nearest f32 level.
    for (let i = 0; i < G; i++) {
      const c = nearestLevel(lut, s * L, L, data[off + i]);
      codes[off + i] = c;
      const d = lut[s * L + c] - data[off + i];
      sse += d * d;
    }
  }
  return {
    quantizer: "kmeans",
    bits,
    rows: N,
    cols: K,
    codes: packCodes(codes, N, K, bits),
    params: { lut },
    meta: { ...(G < K ? { groupSize: G } : {}), mse: sse / (N * K) },
  };
}

/** The k-means quantizer's descriptor. */
export const kmeansQuantizer: QuantizerPlugin = {
  kind: "quantizer",
  name: "kmeans",
  bits: KMEANS_BITS,
  description:
    "optimal per-row (or per-group) codebook: exact 1-D k-means of the weights, 2^b levels in a LUT (the least weight MSE any per-row grid reaches)",
  calibrate: kmeansQuantize,
  dequantize: lutDequantize,
  grid: lutGrid,
  refit: (q, normals) => ({
    ...q,
    params: { ...q.params, lut: refitFreeLevels(normals, lutGrid(q), q.cols) },
  }),
};
