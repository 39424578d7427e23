/**
 * TLQ — Twin-Log Quantization (LRQ-DiT; METHODS.md §1). Per output row, the non-zero
 * weights are split into a positive and a negative plane; each plane is quantized on its
 * own log grid L = log2(|w| + η): lo = min L, hi = the p-th percentile of L,
 * Δ = (hi − lo)/2^(b−1), z = round(lo/Δ), k = clamp(round(L/Δ) − z, 0, 2^(b−1) − 1),
 * ŵ = sign·(2^((k+z)Δ) − η). η, p⁺ and p⁻ are searched per layer over the METHODS.md grid
 * to minimise Σ(ŵ − w)² over the layer.
 *
 * Code of a weight: (sign bit) << (b−1) | k, the sign bit set for negative weights, packed
 * by runtime/quant/pack.ts. Each row has 2^b distinct values. The parameters are
 * `deltaPos`, `zeroPos`, `deltaNeg`, `zeroNeg` [N] (Δ rounded to f16 before the codes are
 * chosen, z an i16; Δ = 0 marks a plane without weights) and η (meta.eta): 8 bytes a row
 * and 4 a layer, what the compact GPU modes hold (runtime/ops/qweight.ts). `params.lut`
 * [N, 2^b] (f32) is the table {@linkcode tlqLut} rebuilds from them, bit for bit: the host
 * keeps it (CPU reference, LUT kernels); levels use {@linkcode tlqExp2}, a fixed-point 2^x
 * the WGSL rebuild (wgsl/qgemm_tlq.wgsl) computes identically.
 *
 * Choices the method leaves open, made here:
 * - Exact zeros take code 0, the positive plane's smallest magnitude (≈ the row's smallest
 *   positive |w|), not a reserved code: they are rare in trained weights and the level is
 *   tiny, so all 2^b codes stay available. A row with no positive weights has a LUT⁺ of
 *   zeros, so its zeros stay exact.
 * - A level 2^((k+z)Δ) − η that rounding pushed below zero is clamped to 0 (no sign flip).
 * - Δ is at least max(2^−14, |lo|/32767) (an f16 normal, and |z| ≤ 32767): a plane whose
 *   values are all equal (hi = lo) gets that Δ, its levels 2^((k+z)Δ) − η within Δ/2 of
 *   its value in the exponent.
 * - The percentile interpolates linearly between ranks (numpy's default).
 *
 * With `groupSize` G (a divisor of K; an option beyond METHODS.md's per-row grids) each run of
 * G weights of a row has its own planes, (Δ, z) and LUT, as if it were a row: the parameters
 * are [N·K/G] and the LUT [N, K/G, 2^b], meta.groupSize = G; η stays one per layer.
 *
 * With `fit: "mse"` each row's (Δ, z) are instead fitted to least squared error, weights on
 * their nearest level (tlq_fit.ts; an option beyond the paper, same format).
 *
 * The search is cheap because it decomposes: the layer's error is the positive plane's
 * plus the negative plane's, each depending on η and its own p only, so it runs
 * 13 η × (5 + 5) plane passes over sorted |w| instead of 13 × 5 × 5 full ones; and (log
 * assignment) a pass finds each code's run by binary search, its error from prefix sums.
 *
 * @module
 */
import type {
  CodeGrid,
  HostMatrix,
  QuantizedWeight,
  QuantizerPlugin,
  TlqFit,
  WeightQuantOptions,
} from "../types.ts";
import { f16Bits, f16FromBits } from "../../runtime/io/f16.ts";
import { packCodes, unpackCodes } from "../../runtime/quant/pack.ts";
import { checkMatrix } from "./uniform.ts";
import { TLQ_MAX_ZERO, tlqLevel, tlqLut } from "./tlq_levels.ts";
import { tlqRefit } from "./tlq_refit.ts";
import {
  fitRows,
  gridError,
  type RowGrids,
  rowGrids,
  type SortedPlanes,
  withPrefixSums,
} from "./tlq_fit.ts";

export {
  TLQ_EXP2_TABLE,
  TLQ_MAX_ZERO,
  tlqExp2,
  tlqLevel,
  tlqLut,
  type TlqParams,
} from "./tlq_levels.ts";

/** Bit widths of TLQ. */
export const TLQ_BITS: readonly number[] = [3, 4];

/** The offsets η searched (METHODS.md). */
export const TLQ_ETAS: readonly number[] = [
  0,
  0.001,
  0.005,
  0.01,
  0.02,
  0.03,
  0.04,
  0.05,
  0.1,
  0.2,
  0.3,
  0.4,
  0.5,
];

/** The clipping percentiles searched for each plane (METHODS.md). */
export const TLQ_PERCENTILES: readonly number[] = [0.98, 0.99, 0.999, 0.9999, 0.99999];

/** Every way TLQ chooses a row's grid ({@linkcode WeightQuantOptions.fit}). */
export const TLQ_FITS: readonly TlqFit[] = ["percentile", "mse"];

/** Options of TLQ beyond the bits (the search grid, for tests and ablations). */
export interface TlqOptions extends WeightQuantOptions {
  /** η values to search; default {@linkcode TLQ_ETAS}. */
  etas?: readonly number[];
  /** Percentiles to search for p⁺ and p⁻; default {@linkcode TLQ_PERCENTILES}. */
  percentiles?: readonly number[];
}

/** One row's plane: sorted |w| of one sign (a slice of a flat array). */
interface Planes {
  /** Sorted |w| of every row's plane, row after row. */
  abs: Float64Array;
  /** Row r's plane is abs[off[r] … off[r+1]). */
  off: Int32Array;
}

function buildPlanes(w: HostMatrix, sign: 1 | -1): Planes {
  const { rows: N, cols: K, data } = w;
  const off = new Int32Array(N + 1);
  for (let n = 0; n < N; n++) {
    let c = 0;
    for (let k = 0; k < K; k++) if (sign * data[n * K + k] > 0) c++;
    off[n + 1] = off[n] + c;
  }
  const abs = new Float64Array(off[N]);
  for (let n = 0; n < N; n++) {
    let j = off[n];
    for (let k = 0; k < K; k++) {
      const v = sign * data[n * K + k];
      if (v > 0) abs[j++] = v;
    }
    abs.subarray(off[n], off[n + 1]).sort();
  }
  return { abs, off };
}

/** The log grid of one plane: Δ, z and the 2^(b−1) magnitudes. */
interface Grid {
  delta: number;
  zero: number;
  levels: Float64Array;
}

/**
 * The plane's Δ as an f16 ≥ max(2^−14, |lo|/32767) (so |round(lo/Δ)| ≤ 32767): of the two
 * f16 around the exact Δ, the one whose grid point z·Δ lands nearer lo (rounding Δ moves
 * z·Δ by z·δΔ, up to |lo|·2^−12, and can flip z; this keeps the anchor as good as it was).
 */
function f16Delta(raw: number, lo: number): number {
  const min = Math.max(2 ** -14, Math.abs(lo) / TLQ_MAX_ZERO);
  const x = Math.max(raw, min);
  const near = Math.f16round(x);
  // Its neighbour on the other side of x (x > 0: the next pattern up is the next f16 up).
  const other = f16FromBits(f16Bits(near) + (near < x ? 1 : near > x ? -1 : 0));
  let best = NaN;
  for (const d of [near, other]) {
    if (d < min || !Number.isFinite(d)) continue;
    const miss = Math.abs(Math.round(lo / d) * d - lo);
    if (!(Math.abs(Math.round(lo / best) * best - lo) <= miss)) best = d;
  }
  if (!Number.isFinite(best)) throw new RangeError(`tlq: Δ ${raw} does not fit an f16`);
  return best;
}

/** METHODS.md's grid of the plane abs[a … a+n) (sorted |w|) at (η, p). */
function planeGrid(abs: Float64Array, a: number, n: number, p: number, eta: number, half: number) {
  const L = (i: number) => Math.log2(abs[i] + eta);
  const lo = L(a);
  const pos = p * (n - 1);
  const i = Math.floor(pos);
  const hi = i + 1 < n ? L(a + i) + (pos - i) * (L(a + i + 1) - L(a + i)) : L(a + n - 1);
  const delta = f16Delta((hi - lo) / half, lo);
  return grid(delta, Math.round(lo / delta), eta, half);
}

/** METHODS.md's grid of row n's plane at (η, p); none for a plane without weights. */
function rowGrid(pl: Planes, n: number, p: number, eta: number, half: number): Grid | undefined {
  const a = pl.off[n];
  const len = pl.off[n + 1] - a;
  return len > 0 ? planeGrid(pl.abs, a, len, p, eta, half) : undefined;
}

function codeOf(l: number, a: number, g: Grid, half: number, nearest: boolean): number {
  if (nearest) { // the first nearest: levels clamped to 0 can repeat, so no early stop
    let k = 0;
    for (let j = 1; j < half; j++) {
      if (Math.abs(g.levels[j] - a) < Math.abs(g.levels[k] - a)) k = j;
    }
    return k;
  }
  return Math.min(half - 1, Math.max(0, Math.round(l / g.delta) - g.zero));
}

/**
 * Σ(ŵ − |w|)² of every row's plane at (η, p), plus `zeros[r]`·level₀² when given, from
 * prefix sums: nearest levels by tlq_fit.ts's {@linkcode gridError}; in the log domain a
 * plane's codes ascend with |w|, so each code's run is found by binary search on the code's
 * own expression.
 */
function planeError(
  pl: SortedPlanes,
  p: number,
  eta: number,
  bits: number,
  nearest: boolean,
  zeros?: Int32Array,
): number {
  const half = 2 ** (bits - 1);
  let err = 0;
  const N = pl.off.length - 1;
  for (let r = 0; r < N; r++) {
    const a = pl.off[r];
    const n = pl.off[r + 1] - a;
    if (n === 0) continue;
    const g = planeGrid(pl.abs, a, n, p, eta, half);
    if (nearest) {
      err += gridError(pl, r, eta, bits, zeros?.[r] ?? 0, g);
      continue;
    }
    const code = (i: number) => codeOf(Math.log2(pl.abs[i] + eta), pl.abs[i], g, half, false);
    let start = a;
    for (let k = 0; k < half; k++) {
      let lo = start;
      let hi = a + n;
      while (k < half - 1 && lo < hi) { // the first weight past code k
        const m = (lo + hi) >>> 1;
        if (code(m) > k) hi = m;
        else lo = m + 1;
      }
      const end = k < half - 1 ? lo : a + n;
      const l = g.levels[k];
      err += pl.s2[end] - pl.s2[start] - 2 * l * (pl.s1[end] - pl.s1[start]) +
        l * l * (end - start);
      start = end;
    }
    if (zeros) err += zeros[r] * g.levels[0] * g.levels[0];
  }
  return err;
}

function grid(delta: number, zero: number, eta: number, half: number): Grid {
  const levels = new Float64Array(half);
  for (let k = 0; k < half; k++) levels[k] = tlqLevel(delta, zero, k, eta);
  return { delta, zero, levels };
}

/** METHODS.md's grids: every row's planes at (η, p⁺, p⁻). */
function percentileRows(
  pos: Planes,
  neg: Planes,
  eta: number,
  pPos: number,
  pNeg: number,
  half: number,
): RowGrids {
  const out = rowGrids(pos.off.length - 1, eta);
  const none = { delta: 0, zero: 0 }; // Δ = 0 marks a plane without weights
  for (let n = 0; n < out.deltaPos.length; n++) {
    ({ delta: out.deltaPos[n], zero: out.zeroPos[n] } = rowGrid(pos, n, pPos, eta, half) ?? none);
    ({ delta: out.deltaNeg[n], zero: out.zeroNeg[n] } = rowGrid(neg, n, pNeg, eta, half) ?? none);
  }
  return out;
}

/**
 * METHODS.md's search: per η, the best p of each plane independently (the error is
 * additive), then every row's grids at the best (η, p⁺, p⁻).
 */
function percentileSearch(
  pos: Planes,
  neg: Planes,
  zeros: Int32Array,
  etas: readonly number[],
  ps: readonly number[],
  bits: number,
  nearest: boolean,
): RowGrids {
  const sp = withPrefixSums(pos);
  const sn = withPrefixSums(neg);
  let best = { err: Infinity, eta: 0, pPos: ps[0], pNeg: ps[0] };
  for (const eta of etas) {
    let ep = { err: Infinity, p: ps[0] };
    let en = { err: Infinity, p: ps[0] };
    for (const p of ps) {
      const e1 = planeError(sp, p, eta, bits, nearest, zeros);
      if (e1 < ep.err) ep = { err: e1, p };
      const e2 = planeError(sn, p, eta, bits, nearest);
      if (e2 < en.err) en = { err: e2, p };
    }
    if (ep.err + en.err < best.err) {
      best = { err: ep.err + en.err, eta, pPos: ep.p, pNeg: en.p };
    }
  }
  const rows = percentileRows(pos, neg, best.eta, best.pPos, best.pNeg, 2 ** (bits - 1));
  return { ...rows, ...best };
}

/** Quantizes W [N, K] with TLQ (see the module doc). */
export function tlqQuantize(w: HostMatrix, opts: TlqOptions): QuantizedWeight {
  checkMatrix(w, "tlq");
  const bits = opts.bits;
  if (!TLQ_BITS.includes(bits)) {
    throw new RangeError(`tlq: bits must be one of ${TLQ_BITS.join(", ")}, got ${bits}`);
  }
  const G = tlqGroupSize(w.cols, opts.groupSize);
  const etas = opts.etas ?? TLQ_ETAS;
  const ps = opts.percentiles ?? TLQ_PERCENTILES;
  if (etas.length === 0 || etas.some((e) => !(e >= 0) || !Number.isFinite(e))) {
    throw new RangeError("tlq: etas must be finite numbers ≥ 0");
  }
  if (ps.length === 0 || ps.some((p) => !(p > 0 && p <= 1))) {
    throw new RangeError("tlq: percentiles must lie in (0, 1]");
  }
  const fit = opts.fit ?? "percentile";
  if (!TLQ_FITS.includes(fit)) {
    throw new RangeError(`tlq: fit must be ${TLQ_FITS.join(" or ")}, got ${JSON.stringify(fit)}`);
  }
  const assign = opts.assign ?? (fit === "mse" ? "nearest" : "log");
  if (assign !== "log" && assign !== "nearest") {
    throw new RangeError(`tlq: assign must be "log" or "nearest", got ${JSON.stringify(assign)}`);
  }
  if (fit === "mse" && assign !== "nearest") {
    throw new RangeError('tlq: fit "mse" puts each weight on its nearest level (assign "nearest")');
  }
  const nearest = assign === "nearest";
  // Groups are rows of their own: a row of K weights is K/G rows of G, in the same order.
  const N = w.rows * (w.cols / G);
  const K = G;
  const data = w.data;
  const half = 2 ** (bits - 1);
  const v = { data, rows: N, cols: K };
  const pos = buildPlanes(v, 1);
  const neg = buildPlanes(v, -1);
  const zeros = new Int32Array(N);
  for (let n = 0; n < N; n++) {
    zeros[n] = K - (pos.off[n + 1] - pos.off[n]) - (neg.off[n + 1] - neg.off[n]);
  }

  const rows = fit === "mse"
    ? fitRows(
      pos,
      neg,
      zeros,
      etas,
      bits,
      (pl, n, eta) => ps.flatMap((p) => rowGrid(pl, n, p, eta, half) ?? []),
    )
    : percentileSearch(pos, neg, zeros, etas, ps, bits, nearest);

  // The final codes and LUTs.
  const { eta, deltaPos, zeroPos, deltaNeg, zeroNeg } = rows;
  const codes = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) {
    const gp = grid(deltaPos[n], zeroPos[n], eta, half);
    const gn = grid(deltaNeg[n], zeroNeg[n], eta, half);
    for (let k = 0; k < K; k++) {
      const v = data[n * K + k];
      if (v > 0) codes[n * K + k] = codeOf(Math.log2(v + eta), v, gp, half, nearest);
      else if (v < 0) codes[n * K + k] = half + codeOf(Math.log2(-v + eta), -v, gn, half, nearest);
      else codes[n * K + k] = 0;
    }
  }
  // The LUT from the parameters, as the GPU rebuilds it (planeGrid's levels are these).
  const lut = tlqLut({ deltaPos, zeroPos, deltaNeg, zeroNeg }, eta, bits);
  return {
    quantizer: "tlq",
    bits,
    rows: w.rows,
    cols: w.cols,
    codes: packCodes(codes, w.rows, w.cols, bits),
    params: { lut, deltaPos, zeroPos, deltaNeg, zeroNeg },
    meta: {
      ...(G < w.cols ? { groupSize: G } : {}),
      eta,
      ...(rows.pPos === undefined ? { fit } : { pPos: rows.pPos, pNeg: rows.pNeg! }),
      assign,
      zeros: "smallest-positive",
      mse: rows.err / (N * K),
    },
  };
}

/**
 * The group size along K of a LUT-coded quantizer (TLQ, kmeans; `who` names it in errors):
 * `groupSize` when it is set and below K, else K (one grid a row).
 * @throws {RangeError} for a group size that is not a positive divisor of K.
 */
export function tlqGroupSize(K: number, groupSize: number | undefined, who = "tlq"): number {
  if (groupSize === undefined || groupSize === 0) return K;
  if (!Number.isInteger(groupSize) || groupSize < 1) {
    throw new RangeError(`${who}: groupSize must be a positive integer, got ${groupSize}`);
  }
  if (groupSize >= K) return K;
  if (K % groupSize !== 0) {
    throw new RangeError(`${who}: groupSize must divide K = ${K}, got ${groupSize}`);
  }
  return groupSize;
}

/**
 * The group size of a LUT-coded weight (meta.groupSize, or K: one LUT a row) after checking
 * that `params.lut` holds 2^b values for each (row, group).
 */
export function lutGroupSize(q: QuantizedWeight): number {
  const G = tlqGroupSize(q.cols, Number(q.meta.groupSize ?? 0), q.quantizer);
  const n = q.rows * (q.cols / G);
  if (q.params.lut?.length !== n * 2 ** q.bits) {
    throw new RangeError(
      `${q.quantizer}: lut must hold ${q.rows}×${q.cols / G}×${2 ** q.bits} values`,
    );
  }
  return G;
}

/** Dequantizes a LUT-coded weight (TLQ): ŵ[n, k] = lut[n, ⌊k/G⌋, code]. */
export function lutDequantize(q: QuantizedWeight): Float32Array {
  const { rows: N, cols: K, bits } = q;
  const L = 2 ** bits;
  const G = lutGroupSize(q);
  const lut = q.params.lut;
  const c = unpackCodes(q.codes, N, K, bits);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      out[n * K + k] = lut[(n * (K / G) + Math.floor(k / G)) * L + c[n * K + k]];
    }
  }
  return out;
}

/** The grid of a LUT-coded weight: each row's (group's) LUT (see CodeGrid). */
export function lutGrid(q: QuantizedWeight): CodeGrid {
  return { groupSize: lutGroupSize(q), values: q.params.lut };
}

/** The TLQ quantizer's descriptor. */
export const tlqQuantizer: QuantizerPlugin = {
  kind: "quantizer",
  name: "tlq",
  bits: TLQ_BITS,
  description:
    "Twin-Log Quantization: separate log2(|w|+η) grids for ± weights, a LUT a row (or a group of --group-size), η/p± searched per layer (fit mse: grids fitted by least squares)",
  calibrate: tlqQuantize,
  dequantize: lutDequantize,
  grid: lutGrid,
  refit: tlqRefit,
};
