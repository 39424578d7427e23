/**
 * The "outlier" rotation (DuQuant-style, METHODS.md §2): smoothing, then
 * R = blockdiag(Q1)·P·blockdiag(Q2) built from the calibration statistics:
 *
 * 1. the calibration matrix (as DuQuant, which rotates real activation rows): the
 *    smoothed sample rows of the layer's input (up to 128, drawn over the run) as the
 *    activation quantizer sees them (centred per sample, a CFG delta: `quantSample`, when
 *    the calibration kept it), all divided by m (the whole-matrix objectives add a proxy
 *    row holding per channel the signed extreme over all calibration tokens, max_j or min_j,
 *    whichever is larger);
 * 2. greedy block rotation: up to 256 times take the entry with the largest |v| over all
 *    rows and blocks, at channel c of its block, and rotate every block by
 *    R_step = P_c·G·H/√b (P_c swaps c and 0; G a random signed permutation fixing 0; H
 *    Sylvester Hadamard), whose row c is the constant 1/√b: the outlier is spread evenly
 *    over its block. Keep the prefix of steps that minimised the mean over the sample rows
 *    of their squared max |v| (each token's step under a symmetric per-token quantizer;
 *    METHODS.md's max − min of the matrix is `greedyObjective: "range"`, see
 *    {@linkcode DEFAULT_OBJECTIVE}); Q1 is the product of the kept steps (one b×b matrix,
 *    shared by all blocks);
 * 3. zigzag permutation: sort channels by max |v| after Q1 and deal them to the blocks in the
 *    order 0, 1, …, n−1, n−1, …, 0, 0, 1, …, so every block gets one of the largest;
 * 4. a second greedy rotation on the permuted row gives Q2.
 *
 * Block b = 128, or for widths that are not multiples of 128 the largest power of two
 * below 128 that divides K (192 → 64; an odd K gives b = 1, i.e. smoothing and a
 * permutation only).
 *
 * @module
 */
import type { RotationLayerInput } from "../types.ts";
import type { LayerStats } from "../../runtime/quant/calibrate.ts";
import type { PlanningRotationPlugin } from "../../runtime/quant/rotation_plan.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { layerJ } from "../../runtime/quant/calibrate.ts";
import { layerSeed, OutlierRotation } from "../../runtime/quant/rotation.ts";
import { fwhtF64, largestPow2Divisor } from "../../runtime/reference/hadamard.ts";
import { layerSmoothing } from "./hadamard.ts";

/** Default block of the outlier-aware rotation. */
export const OUTLIER_BLOCK = 128;
/** Default greedy steps per pass. */
export const OUTLIER_MAX_STEPS = 256;

/**
 * What a greedy pass minimises over the calibration matrix: max − min (METHODS.md) or
 * max |v| of the whole matrix, or "rowmax": the mean over its rows of (max |v| of the row)²,
 * the squared step a symmetric per-token quantizer takes (rotations keep each row's norm,
 * so a smaller step is a smaller quantization error, token by token).
 */
export type GreedyObjective = "range" | "absmax" | "rowmax";

/** The objective of `v`, a matrix of rows `rowLen` long (default one row). */
export function spread(
  v: Float64Array,
  objective: GreedyObjective = "range",
  rowLen: number = v.length,
): number {
  if (!v.length) return 0;
  if (objective === "rowmax") {
    let sum = 0;
    for (let o = 0; o < v.length; o += rowLen) {
      let m = 0;
      for (let i = o; i < o + rowLen; i++) m = Math.max(m, Math.abs(v[i]));
      sum += m * m;
    }
    return sum / Math.ceil(v.length / rowLen);
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of v) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return objective === "range" ? hi - lo : Math.max(hi, -lo);
}

/** Applies one greedy step R = P_c·G·H/√b to a b-long row segment in place. */
function stepRow(
  v: Float64Array,
  o: number,
  B: number,
  c: number,
  pi: Uint32Array,
  sigma: Float64Array,
  tmp: Float64Array,
): void {
  // P_c: swap entries 0 and c.
  const t = v[o];
  v[o] = v[o + c];
  v[o + c] = t;
  // G: out[pi[i]] = sigma[i]·v[i].
  for (let i = 0; i < B; i++) tmp[pi[i]] = sigma[i] * v[o + i];
  fwhtF64(tmp, 0, B);
  const norm = 1 / Math.sqrt(B);
  for (let i = 0; i < B; i++) v[o + i] = tmp[i] * norm;
}

/** The result of one greedy pass. */
export interface GreedyResult {
  /** Q [b, b] (row-major), the product of the kept steps. */
  q: Float64Array;
  /** The row after Q. */
  row: Float64Array;
  /** Steps kept. */
  steps: number;
  /** max − min before and after. */
  spread: [number, number];
}

/**
 * Greedy block rotation of `v` (K = n·b): up to `maxSteps` steps, each spreading the
 * largest |v| over its block with one b×b matrix applied to every block; returns the
 * prefix that minimised the objective (max − min by default).
 */
export function greedyRotation(
  v: Float64Array,
  B: number,
  maxSteps: number,
  prng: Prng,
  objective: GreedyObjective = "range",
  rowLen: number = v.length,
): GreedyResult {
  const K = v.length;
  if (K % B !== 0) throw new RangeError(`block ${B} does not divide ${K}`);
  const cur = v.slice();
  const q = new Float64Array(B * B);
  for (let i = 0; i < B; i++) q[i * B + i] = 1;
  const s0 = spread(cur, objective, rowLen);
  let best = { q: q.slice(), row: cur.slice(), steps: 0, spread: s0 };
  if (B < 2) return { ...best, spread: [s0, s0] };
  const pi = new Uint32Array(B);
  const sigma = new Float64Array(B);
  const tmp = new Float64Array(B);
  for (let step = 1; step <= maxSteps; step++) {
    let at = 0;
    for (let k = 1; k < K; k++) if (Math.abs(cur[k]) > Math.abs(cur[at])) at = k;
    if (cur[at] === 0) break;
    const c = at % B;
    // G: a random permutation of 1..b−1 with random signs; 0 stays with sign +1.
    for (let i = 0; i < B; i++) pi[i] = i;
    for (let i = B - 1; i > 1; i--) {
      const j = 1 + Math.floor(prng.uniform() * i);
      const t = pi[i];
      pi[i] = pi[j];
      pi[j] = t;
    }
    sigma[0] = 1;
    for (let i = 1; i < B; i++) sigma[i] = prng.nextU32() & 1 ? -1 : 1;
    for (let o = 0; o < K; o += B) stepRow(cur, o, B, c, pi, sigma, tmp);
    for (let r = 0; r < B; r++) stepRow(q, r * B, B, c, pi, sigma, tmp); // Q ← Q·R_step
    const s = spread(cur, objective, rowLen);
    if (s < best.spread) best = { q: q.slice(), row: cur.slice(), steps: step, spread: s };
  }
  return { q: best.q, row: best.row, steps: best.steps, spread: [s0, best.spread] };
}

/**
 * The zigzag permutation (a gather: z[k] = v[perm[k]]): channels sorted by |v|
 * descending are dealt to the n blocks in the order 0…n−1, n−1…0, 0…, each block
 * filling its positions in turn.
 */
export function zigzagPermutation(v: Float64Array, B: number): Uint32Array {
  const K = v.length;
  const nb = K / B;
  if (!Number.isInteger(nb)) throw new RangeError(`block ${B} does not divide ${K}`);
  const order = Array.from({ length: K }, (_, i) => i).sort((a, b) =>
    Math.abs(v[b]) - Math.abs(v[a]) || a - b
  );
  const perm = new Uint32Array(K);
  const fill = new Uint32Array(nb);
  order.forEach((ch, t) => {
    const pos = t % nb;
    const blk = Math.floor(t / nb) % 2 === 0 ? pos : nb - 1 - pos;
    perm[blk * B + fill[blk]++] = ch;
  });
  return perm;
}

/** The block of the outlier-aware rotation for width K (see the module header). */
export function outlierBlock(K: number, cap = OUTLIER_BLOCK): number {
  return largestPow2Divisor(K, cap);
}

/**
 * Default greedy objective: "rowmax", the mean over the sample tokens of their squared max
 * |v| (the proxy row left out). METHODS.md (after DuQuant) says max − min; a symmetric
 * per-token quantizer's error follows each token's own max, and the whole matrix's max (or
 * range) is set by the proxy row, which no rotation step lowered on the bundled model: the
 * greedy kept no step on 24 of its 33 J ≥ 1 layers. Per-token A4 error of the calibration
 * sample (mean over those 33 layers): rowmax 0.117, absmax 0.157, hadamard 0.114; on the
 * salient-channel model (tools/salient_model.ts, A8): rowmax 0.0051, hadamard 0.0052,
 * absmax 0.0062.
 */
export const DEFAULT_OBJECTIVE: GreedyObjective = "rowmax";

/** Default calibration rows the greedy passes work on (besides the proxy row). */
export const GREEDY_ROWS = 128;

/**
 * The matrix the greedy passes rotate, smoothed (÷ m): with `proxy`, first the proxy row
 * (per channel the signed extreme over all calibration tokens), then up to `maxRows`
 * sample rows — the quantizer's own (`quantSample`) when the statistics hold them.
 */
export function calibrationRows(
  stats: LayerStats,
  m: Float32Array,
  maxRows: number,
  proxy = true,
): { data: Float64Array; rows: number } {
  const K = stats.cols;
  const S = Math.min(Math.max(0, maxRows), stats.sampleRows);
  const first = proxy ? 1 : 0;
  const data = new Float64Array((first + S) * K);
  if (proxy) {
    for (let j = 0; j < K; j++) {
      const hi = stats.max[j];
      const lo = stats.min[j];
      const e = Math.abs(hi) >= Math.abs(lo) ? hi : lo;
      data[j] = Number.isFinite(e) ? e / m[j] : 0;
    }
  }
  // Spread over the sample: rows from every part of the run, not only the first calls.
  const sample = stats.quantSample ?? stats.sample;
  for (let r = 0; r < S; r++) {
    const src = Math.floor((r * stats.sampleRows) / S);
    for (let j = 0; j < K; j++) data[(first + r) * K + j] = sample[src * K + j] / m[j];
  }
  return { data, rows: first + S };
}

/** Plans the outlier-aware rotation of one layer (needs its calibration statistics). */
export function planOutlier(input: RotationLayerInput): OutlierRotation {
  const stats = input.stats;
  if (!stats) {
    throw new RangeError(`The outlier-aware rotation needs calibration statistics (${input.name})`);
  }
  const K = input.weight.cols;
  const o = input.options;
  const { m, alpha } = layerSmoothing(input);
  const B = outlierBlock(K, o.outlierBlock ?? OUTLIER_BLOCK);
  const maxSteps = o.maxSteps ?? OUTLIER_MAX_STEPS;
  const obj = o.greedyObjective ?? DEFAULT_OBJECTIVE;
  // Per-token steps are judged on real tokens: the proxy row (every channel's extreme at
  // once) is no token, and its max² would outweigh the sample's. Without sample rows it
  // stays, so the greedy still has a row to work on.
  const rows = o.greedyRows ?? GREEDY_ROWS;
  const proxy = obj !== "rowmax" || Math.min(rows, stats.sampleRows) < 1;
  const cal = calibrationRows(stats, m, rows, proxy);
  const g = new Prng(layerSeed(o.seed ?? 0, `outlier:${input.name}`));
  const first = greedyRotation(cal.data, B, maxSteps, g, obj, K);
  // Zigzag on each channel's largest |value| over the rows after the first rotation.
  const mag = new Float64Array(K);
  for (let r = 0; r < cal.rows; r++) {
    for (let j = 0; j < K; j++) mag[j] = Math.max(mag[j], Math.abs(first.row[r * K + j]));
  }
  const perm = zigzagPermutation(mag, B);
  const z = new Float64Array(cal.rows * K);
  for (let r = 0; r < cal.rows; r++) {
    for (let k = 0; k < K; k++) z[r * K + k] = first.row[r * K + perm[k]];
  }
  const second = greedyRotation(z, B, maxSteps, g, obj, K);
  return new OutlierRotation(
    m,
    Float32Array.from(first.q),
    Float32Array.from(second.q),
    perm,
    {
      J: layerJ(stats),
      alpha,
      greedySteps: [first.steps, second.steps],
      proxySpread: [first.spread[0], second.spread[1]],
    },
  );
}

/** The "outlier" rotation plugin. */
export const outlierRotationPlugin: PlanningRotationPlugin = {
  kind: "rotation",
  name: "outlier",
  description:
    "Smoothing + DuQuant-style greedy block rotation, zigzag permutation, second rotation; fused online",
  planLayer: planOutlier,
};
