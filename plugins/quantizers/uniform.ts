/**
 * The uniform weight quantizer (the baseline of METHODS.md §1): per output row, or per
 * group of G input channels, asymmetric q = clamp(round(w/Δ) + z, 0, 2^b − 1) or
 * symmetric q ∈ [−2^(b−1), 2^(b−1) − 1], ŵ = (q − z)·Δ, with the range clipped by the
 * ratio in 1.0, 0.95, …, 0.5 that minimises Σ(ŵ − w)² of that row (group).
 *
 * Stored form: codes c ∈ [0, 2^b) packed by runtime/quant/pack.ts, `params.scale` and
 * `params.zero` [N, ⌈K/G⌉] (f32; zero is an integer), ŵ = (c − zero)·scale for both
 * kinds: a symmetric code is stored offset by 2^(b−1) with zero = 2^(b−1), so the
 * kernels need one formula. 3, 4 and 8 bits.
 *
 * @module
 */
import type {
  CodeGrid,
  HostMatrix,
  QuantizedWeight,
  QuantizerPlugin,
  WeightQuantOptions,
} from "../types.ts";
import { packCodes, unpackCodes } from "../../runtime/quant/pack.ts";
import { levelError, type LevelNormals } from "../../runtime/quant/gptq_refit.ts";

/** Bit widths of the uniform quantizer. */
export const UNIFORM_BITS: readonly number[] = [3, 4, 8];

/** The clip ratios searched, largest first (ties keep the larger range). */
export const CLIP_RATIOS: readonly number[] = Array.from({ length: 11 }, (_, i) => 1 - 0.05 * i);

/** Checks HostMatrix shape and finiteness. */
export function checkMatrix(w: HostMatrix, who: string): void {
  if (!Number.isInteger(w.rows) || !Number.isInteger(w.cols) || w.rows < 1 || w.cols < 1) {
    throw new RangeError(
      `${who}: rows and cols must be positive integers, got ${w.rows}×${w.cols}`,
    );
  }
  if (w.data.length !== w.rows * w.cols) {
    throw new RangeError(`${who}: data has ${w.data.length} values, not ${w.rows}×${w.cols}`);
  }
  for (let i = 0; i < w.data.length; i++) {
    if (!Number.isFinite(w.data[i])) {
      throw new RangeError(
        `${who}: weight [${Math.floor(i / w.cols)}, ${i % w.cols}] is ${w.data[i]}`,
      );
    }
  }
}

interface GroupFit {
  scale: number;
  zero: number;
  ratio: number;
}

/** The best clip ratio for one group; writes its codes into `codes`. */
function fitGroup(
  w: Float32Array,
  off: number,
  len: number,
  bits: number,
  symmetric: boolean,
  codes: Uint8Array,
): GroupFit {
  let lo = 0;
  let hi = 0;
  for (let i = off; i < off + len; i++) {
    if (w[i] < lo) lo = w[i];
    if (w[i] > hi) hi = w[i];
  }
  const levels = 2 ** bits - 1;
  const half = 2 ** (bits - 1);
  if (hi === lo) { // all zero: every code decodes to 0
    codes.fill(symmetric ? half : 0, off, off + len);
    return { scale: 0, zero: symmetric ? half : 0, ratio: 1 };
  }
  let best: GroupFit = { scale: 0, zero: 0, ratio: 1 };
  let bestErr = Infinity;
  for (const r of CLIP_RATIOS) {
    let scale: number;
    let zero: number;
    if (symmetric) {
      scale = Math.fround((r * Math.max(-lo, hi)) / (half - 1));
      zero = half;
    } else {
      scale = Math.fround((r * (hi - lo)) / levels);
      zero = Math.min(levels, Math.max(0, Math.round(-(r * lo) / scale)));
    }
    let err = 0;
    for (let i = off; i < off + len; i++) {
      const q = Math.min(levels, Math.max(0, Math.round(w[i] / scale) + zero));
      const d = Math.fround((q - zero) * scale) - w[i];
      err += d * d;
    }
    if (err < bestErr) {
      bestErr = err;
      best = { scale, zero, ratio: r };
    }
  }
  for (let i = off; i < off + len; i++) {
    codes[i] = Math.min(levels, Math.max(0, Math.round(w[i] / best.scale) + best.zero));
  }
  return best;
}

/** Quantizes W [N, K] uniformly (see the module doc). */
export function uniformQuantize(w: HostMatrix, opts: WeightQuantOptions): QuantizedWeight {
  checkMatrix(w, "uniform");
  const bits = opts.bits;
  if (!UNIFORM_BITS.includes(bits)) {
    throw new RangeError(`uniform: bits must be one of ${UNIFORM_BITS.join(", ")}, got ${bits}`);
  }
  const g = opts.groupSize ?? 0;
  if (!Number.isInteger(g) || g < 0 || g % 4 !== 0) {
    throw new RangeError(`uniform: groupSize must be 0 (per row) or a multiple of 4, got ${g}`);
  }
  const { rows: N, cols: K, data } = w;
  const G = g === 0 ? K : Math.min(g, K);
  const ng = Math.ceil(K / G);
  const symmetric = opts.symmetric ?? false;
  const codes = new Uint8Array(N * K);
  const scale = new Float32Array(N * ng);
  const zero = new Float32Array(N * ng);
  let ratioSum = 0;
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < ng; j++) {
      const off = n * K + j * G;
      const f = fitGroup(data, off, Math.min(G, K - j * G), bits, symmetric, codes);
      scale[n * ng + j] = f.scale;
      zero[n * ng + j] = f.zero;
      ratioSum += f.ratio;
    }
  }
  return {
    quantizer: "uniform",
    bits,
    rows: N,
    cols: K,
    codes: packCodes(codes, N, K, bits),
    params: { scale, zero },
    meta: {
      symmetric,
      groupSize: g === 0 ? 0 : G,
      clipRatioMean: Number((ratioSum / (N * ng)).toFixed(4)),
    },
  };
}

/** The group size along K of a uniform weight (K for per-row). */
export function uniformGroupSize(q: QuantizedWeight): number {
  const g = Number(q.meta.groupSize ?? 0);
  return g > 0 ? g : q.cols;
}

/** Dequantizes a uniform weight: ŵ = (c − zero)·scale per group. */
export function uniformDequantize(q: QuantizedWeight): Float32Array {
  const { rows: N, cols: K } = q;
  const G = uniformGroupSize(q);
  const ng = Math.ceil(K / G);
  const { scale, zero } = q.params;
  if (!scale || !zero || scale.length !== N * ng || zero.length !== N * ng) {
    throw new RangeError(`uniform: scale and zero must hold ${N}×${ng} values`);
  }
  const c = unpackCodes(q.codes, N, K, q.bits);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const j = n * ng + Math.floor(k / G);
      out[n * K + k] = (c[n * K + k] - zero[j]) * scale[j];
    }
  }
  return out;
}

/** The values (c − zero)·scale of every code, per row and group (see CodeGrid). */
export function uniformGrid(q: QuantizedWeight): CodeGrid {
  const G = uniformGroupSize(q);
  const sets = q.rows * Math.ceil(q.cols / G);
  const { scale, zero } = q.params;
  if (!scale || !zero || scale.length !== sets || zero.length !== sets) {
    throw new RangeError(`uniform: scale and zero must hold ${sets} values`);
  }
  const L = 2 ** q.bits;
  const values = new Float32Array(sets * L);
  for (let s = 0; s < sets; s++) {
    for (let c = 0; c < L; c++) values[s * L + c] = (c - zero[s]) * scale[s];
  }
  return { groupSize: G, values };
}

/**
 * The scale of each row refitted to GPTQ's codes, its zero kept (runtime/quant/gptq_refit.ts):
 * levels (c − z)·s are linear in s, so the least-squares s = uᵀb / uᵀA·u with u_c = c − z. One
 * scale a row; a row keeps its scale where the new one (in f32) errs no less.
 */
export function uniformRefit(q: QuantizedWeight, m: LevelNormals): QuantizedWeight {
  if (uniformGroupSize(q) < q.cols) {
    throw new RangeError("uniform: the refit takes one scale a row, not groups");
  }
  const L = 2 ** q.bits;
  const { zero } = q.params;
  const scale = Float32Array.from(q.params.scale);
  const u = new Float64Array(L);
  const lut = new Float64Array(L);
  for (let n = 0; n < q.rows; n++) {
    for (let c = 0; c < L; c++) u[c] = c - zero[n];
    let ub = 0;
    let uau = 0;
    for (let i = 0; i < L; i++) {
      ub += u[i] * m.b[n * L + i];
      for (let j = 0; j < L; j++) uau += u[i] * m.a[(n * L + i) * L + j] * u[j];
    }
    if (!(uau > 0)) continue;
    const s = Math.fround(ub / uau);
    const err = (sc: number) => {
      for (let c = 0; c < L; c++) lut[c] = Math.fround(u[c] * sc);
      return levelError(m, n, lut);
    };
    if (Number.isFinite(s) && err(s) < err(scale[n])) scale[n] = s;
  }
  return { ...q, params: { ...q.params, scale } };
}

/** The uniform quantizer's descriptor. */
export const uniformQuantizer: QuantizerPlugin = {
  kind: "quantizer",
  name: "uniform",
  bits: UNIFORM_BITS,
  description:
    "uniform per-row (or per-group) asymmetric/symmetric, clip ratio searched by weight MSE",
  calibrate: uniformQuantize,
  dequantize: uniformDequantize,
  grid: uniformGrid,
  refit: uniformRefit,
};
