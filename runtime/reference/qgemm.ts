/**
 * CPU reference of the quantized GEMMs, and the host-side forms of a quantized weight
 * that the kernels read (runtime/ops/qgemm.ts uploads them):
 *
 * - A16 (weight-only): the f32 LUT (a row's, or a group's) of a LUT-coded weight (TLQ), or
 *   the uniform quantizer's scale and zero per group; Y = X·Ŵᵀ with Ŵ the dequantized weight.
 * - Integer (A8/A6/A4): the weight as int8 × one scale per row, ŵ ≈ s_row·w8. For a
 *   uniform per-row weight this is exact (w8 = code − zero, s_row = Δ); for a LUT it is
 *   the re-expression s_row = max|LUT_row| / 127, lut8 = round(127·LUT / max|LUT_row|)
 *   (the exact quotient, ties away from 0: {@linkcode int8Level}), which adds an error
 *   over the exact LUT ({@linkcode int8LutError} measures it).
 *   Y = s_token·s_row·Σ x8·w8 with an exact integer sum. A uniform weight in groups is
 *   int8 = code − zero[row, group] with a scale per (row, group) ({@linkcode int8Groups},
 *   exact): each group's sum is scaled on its own; a LUT-coded weight in groups (TLQ
 *   --group-size) has an int8 table and a scale per (row, group) the same way.
 * - TLQ compact (A16 MODE 5, integer MODE 6): per row Δ± as f16 and z± as i16 (8 bytes),
 *   η once ({@linkcode tlqCompactWords}); the kernels rebuild the LUT (and its int8 form)
 *   in workgroup memory with the integer arithmetic of plugins/quantizers/tlq.ts, so the
 *   rebuilt tables are `params.lut` and int8Lut's, bit for bit.
 *
 * @module
 */
import type { QuantizedWeight } from "../../plugins/types.ts";
import {
  lutGroupSize,
  TLQ_MAX_ZERO,
  tlqLut,
  type TlqParams,
} from "../../plugins/quantizers/tlq.ts";
import { f16Bits, f32Bits } from "../io/f16.ts";
import { unpackCodes } from "../quant/pack.ts";
import { gemmRef, type GemmRefOptions } from "./gemm.ts";

/**
 * How the A16 kernels decode: 0 = f32 LUT [N, 2^b], 1 = affine (scale, zero per group),
 * 5 = TLQ from its compact parameters ({@linkcode tlqCompactWords}).
 */
export type A16Mode = 0 | 1 | 5;

/** The A16 parameters of a weight, as uploaded (qgemm_dec.wgsl MODE 0 or 1). */
export interface A16Params {
  /** Decode mode. */
  mode: A16Mode;
  /** MODE 0: the LUT [N·ng·2^b]; MODE 1: scale [N·ng] then zero [N·ng]. */
  data: Float32Array;
  /** MODE 1: group size along K (K for per-row); MODE 0: the group size, 0 for one LUT a row. */
  groupSize: number;
}

/** True when the weight is LUT-coded (has `params.lut`, as TLQ). */
export function isLutCoded(q: QuantizedWeight): boolean {
  return q.params.lut !== undefined;
}

/** The group size of an affine (uniform) weight: meta.groupSize, or K for per-row. */
export function affineGroupSize(q: QuantizedWeight): number {
  const g = Number(q.meta.groupSize ?? 0);
  return g > 0 ? g : q.cols;
}

/** True for a uniform (affine) weight with groups along K ({@linkcode int8Groups}'s). */
export function isAffineGrouped(q: QuantizedWeight): boolean {
  return !isLutCoded(q) && affineGroupSize(q) < q.cols;
}

/** The A16 parameters of `q`. @throws {RangeError} for a weight of neither kind. */
export function a16Params(q: QuantizedWeight): A16Params {
  if (isLutCoded(q)) {
    const G = lutGroupSize(q);
    if (G % 4 !== 0) throw new RangeError(`${q.quantizer}: group size ${G} is not a multiple of 4`);
    return { mode: 0, data: q.params.lut, groupSize: G < q.cols ? G : 0 };
  }
  const { scale, zero } = q.params;
  const G = affineGroupSize(q);
  const n = q.rows * Math.ceil(q.cols / G);
  if (!scale || !zero || scale.length !== n || zero.length !== n) {
    throw new RangeError(
      `${q.quantizer}: a weight needs params.lut or params.scale/zero [${q.rows}·${
        Math.ceil(q.cols / G)
      }]`,
    );
  }
  if (G % 4 !== 0) throw new RangeError(`${q.quantizer}: group size ${G} is not a multiple of 4`);
  const data = new Float32Array(2 * n);
  data.set(scale, 0);
  data.set(zero, n);
  return { mode: 1, data, groupSize: G };
}

const TLQ_KEYS = ["deltaPos", "zeroPos", "deltaNeg", "zeroNeg"] as const;

/**
 * The compact GPU parameters of a TLQ weight (qgemm_dec.wgsl MODE 5 and 6): [2N + 1] u32,
 * row n as pack2x16float(Δ⁺, Δ⁻) then z⁺ | z⁻ << 16 (i16 each), then η (meta.eta) as f32.
 * @throws {RangeError} naming what does not fit (Δ not an f16, z not an i16, no η).
 */
export function tlqCompactWords(q: QuantizedWeight): Uint32Array {
  const N = q.rows;
  const who = `${q.quantizer} compact parameters`;
  for (const k of TLQ_KEYS) {
    if (q.params[k]?.length !== N) {
      throw new RangeError(`${who}: params.${k} must hold ${N} values`);
    }
  }
  const eta = Number(q.meta.eta);
  if (q.meta.eta === undefined || !Number.isFinite(eta)) {
    throw new RangeError(`${who}: meta.eta (η) is missing`);
  }
  const { deltaPos, zeroPos, deltaNeg, zeroNeg } = q.params;
  const words = new Uint32Array(2 * N + 1);
  const d16 = (d: number, n: number) => {
    if (!Number.isFinite(d) || Math.f16round(d) !== d) {
      throw new RangeError(
        `${who}: Δ ${d} of row ${n} is not an f16 (quantized before Δ was f16?)`,
      );
    }
    return f16Bits(d);
  };
  const z16 = (z: number, n: number) => {
    if (!Number.isInteger(z) || Math.abs(z) > TLQ_MAX_ZERO) {
      throw new RangeError(`${who}: z ${z} of row ${n} does not fit an i16`);
    }
    return z & 0xffff;
  };
  for (let n = 0; n < N; n++) {
    words[2 * n] = (d16(deltaPos[n], n) | (d16(deltaNeg[n], n) << 16)) >>> 0;
    words[2 * n + 1] = (z16(zeroPos[n], n) | (z16(zeroNeg[n], n) << 16)) >>> 0;
  }
  words[2 * N] = f32Bits(eta);
  return words;
}

// hasCompactTlq's answer per weight: quantize, the artifact writer and the upload all ask,
// and each answer rebuilds the whole LUT (a weight's arrays don't change once quantized).
const compactTlq = new WeakMap<QuantizedWeight, boolean>();

/**
 * True when `q` is LUT-coded with TLQ parameters the compact modes take, and the LUT they
 * rebuild is `params.lut` exactly (false for weights quantized before Δ was an f16).
 */
export function hasCompactTlq(q: QuantizedWeight): boolean {
  let yes = compactTlq.get(q);
  if (yes === undefined) {
    yes = rebuildsLut(q);
    compactTlq.set(q, yes);
  }
  return yes;
}

/**
 * Records that `q.params.lut` was just built from q's own TLQ parameters (an artifact's
 * loader), so {@linkcode hasCompactTlq} checks the compact words alone instead of building
 * the whole LUT a second time to compare.
 */
export function noteLutFromParams(q: QuantizedWeight): void {
  compactTlq.set(q, rebuildsLut(q, false));
}

function rebuildsLut(q: QuantizedWeight, compare = true): boolean {
  if (!isLutCoded(q) || TLQ_KEYS.some((k) => !q.params[k])) return false;
  try {
    tlqCompactWords(q);
  } catch {
    return false;
  }
  return !compare || tlqParamsRebuildLut(q);
}

/**
 * True when `q` is LUT-coded and TLQ's parameters and η rebuild `params.lut` exactly, per
 * row or in groups (an artifact then stores the parameters alone; the compact GPU modes
 * further need one table a row: {@linkcode hasCompactTlq}).
 */
export function tlqParamsRebuildLut(q: QuantizedWeight): boolean {
  if (!isLutCoded(q) || TLQ_KEYS.some((k) => !q.params[k])) return false;
  const eta = Number(q.meta.eta);
  if (q.meta.eta === undefined || !Number.isFinite(eta)) return false;
  let lut: Float32Array;
  try {
    lut = tlqLut(q.params as unknown as TlqParams, eta, q.bits);
  } catch {
    return false;
  }
  const have = q.params.lut;
  return lut.length === have.length && lut.every((v, i) => v === have[i]);
}

/**
 * round(127·l / m) for f32 values |l| ≤ m, exactly (integer quotient of the mantissas,
 * ties away from 0), with l's sign; 0 for l = 0 or m = 0. Integer arithmetic, as the
 * kernels' (wgsl/qgemm_tlq.wgsl tlq_q8), so no division rounding separates the two.
 */
export function int8Level(l: number, m: number): number {
  const lb = f32Bits(l) & 0x7fffffff;
  const mb = f32Bits(m) & 0x7fffffff;
  if (lb < 0x00800000 || mb < 0x00800000) return 0; // zero (or subnormal)
  const t = (mb >>> 23) - (lb >>> 23);
  if (t > 8) return 0; // 127·|l|/m < 1/2
  const num = 127 * ((lb & 0x7fffff) | 0x800000);
  const den = ((mb & 0x7fffff) | 0x800000) * 2 ** t;
  let q = Math.floor(num / den);
  const r = num - q * den;
  if (r >= den - r) q++;
  return l < 0 ? -q : q;
}

/**
 * The integer form of a weight: ŵ[n, k] ≈ scale[g]·lut8[g, code], g = n·(K/G) + ⌊k/G⌋ (a
 * LUT-coded weight in groups of G; g = n for one table a row, G = K).
 */
export interface Int8Lut {
  /** Channels a table (K: one a row). */
  groupSize: number;
  /** s_row [N], or per (row, group) [N·K/G]. */
  scale: Float32Array;
  /** [N·K/G, 2^b] int8 values per code. */
  lut8: Int8Array;
  /** True when the re-expression is exact (uniform per-row). */
  exact: boolean;
  /** True when int8 = code − 128 for every row (8-bit symmetric uniform: no LUT needed). */
  direct: boolean;
  /** Uniform per-row: int8 = code − zero[row] (the kernels store the zeros, not the LUT). */
  zero?: Float32Array;
}

/**
 * The integer form of `q`. LUT-coded: s_row = max|LUT_row| / 127 and
 * lut8 = round(127·LUT / max|LUT_row|) ({@linkcode int8Level}); uniform per-row: lut8 = code − zero (exact).
 * @throws {RangeError} for uniform groups, or codes whose code − zero leaves int8
 *   (asymmetric 8-bit: quantize W8 symmetric for the integer path).
 */
export function int8Lut(q: QuantizedWeight): Int8Lut {
  const L = 2 ** q.bits;
  if (isLutCoded(q)) {
    const G = lutGroupSize(q);
    const T = q.rows * (q.cols / G); // tables
    const lut = q.params.lut;
    const scale = new Float32Array(T);
    const lut8 = new Int8Array(T * L);
    for (let n = 0; n < T; n++) {
      let m = 0;
      for (let c = 0; c < L; c++) m = Math.max(m, Math.abs(lut[n * L + c]));
      scale[n] = Math.fround(m / 127);
      for (let c = 0; c < L; c++) lut8[n * L + c] = int8Level(lut[n * L + c], m);
    }
    return { groupSize: G, scale, lut8, exact: false, direct: false };
  }
  const N = q.rows;
  const scale = new Float32Array(N);
  const lut8 = new Int8Array(N * L);
  if (affineGroupSize(q) < q.cols) {
    throw new RangeError(
      `${q.quantizer}: the integer path needs one scale per row; this weight has groups of ${
        affineGroupSize(q)
      }`,
    );
  }
  const { scale: s, zero: z } = q.params;
  if (!s || !z || s.length !== N || z.length !== N) {
    throw new RangeError(`${q.quantizer}: scale and zero must hold ${N} values`);
  }
  let direct = q.bits === 8;
  for (let n = 0; n < N; n++) {
    scale[n] = s[n];
    if (z[n] !== 128) direct = false;
    for (let c = 0; c < L; c++) {
      const v = c - z[n];
      if (v < -128 || v > 127) {
        throw new RangeError(
          `${q.quantizer}: code ${c} − zero ${z[n]} of row ${n} does not fit int8; ` +
            "quantize 8-bit weights symmetric for the integer path",
        );
      }
      lut8[n * L + c] = v;
    }
  }
  return { groupSize: q.cols, scale, lut8, exact: true, direct, zero: Float32Array.from(z) };
}

/** The integer form of a uniform weight in groups along K (exact). */
export interface Int8Groups {
  /** Channels a group (a divisor of K, a multiple of 16). */
  groupSize: number;
  /** Δ per (row, group) [N·K/G]. */
  scale: Float32Array;
  /** The zero points [N·K/G], as the kernels read them (code − zero is the int8). */
  zero: Float32Array;
  /** code − zero [N, K]. */
  w8: Int8Array;
}

/**
 * Whether the integer GEMMs take weight groups of G channels along K: a multiple of 16 that
 * divides K (their sums are scaled per whole group of whole K steps).
 */
export function intWeightGroupsFit(G: number, K: number): boolean {
  return G > 0 && G % 16 === 0 && K % G === 0;
}

/**
 * Throws, naming `who`, unless the integer GEMMs take weight groups of G channels along K
 * ({@linkcode intWeightGroupsFit}).
 */
export function checkIntWeightGroups(G: number, K: number, who: string): void {
  if (!intWeightGroupsFit(G, K)) {
    throw new RangeError(
      `${who}: the integer path takes weight groups that divide K = ${K} and are a multiple ` +
        `of 16, got ${G}`,
    );
  }
}

/**
 * Checks a uniform weight in groups for the integer path — int8 = code − zero[n, g], the
 * scales and zeros as {@linkcode a16Params} lays them out (MODE 1's, which MODE 7 reads) —
 * and returns its group size.
 * @throws {RangeError} for a LUT-coded or per-row weight, groups the integer GEMMs do not
 *   take ({@linkcode intWeightGroupsFit}), or a level whose code − zero leaves int8
 *   (asymmetric W8).
 */
export function checkInt8Groups(q: QuantizedWeight): number {
  const { rows: N, cols: K } = q;
  const G = affineGroupSize(q);
  if (!isAffineGrouped(q)) {
    throw new RangeError(`${q.quantizer}: int8Groups is for uniform weights in groups`);
  }
  checkIntWeightGroups(G, K, q.quantizer);
  const { scale, zero } = q.params;
  const n = N * (K / G);
  if (!scale || !zero || scale.length !== n || zero.length !== n) {
    throw new RangeError(`${q.quantizer}: scale and zero must hold ${N}×${K / G} values`);
  }
  const top = 2 ** q.bits - 1; // every level, as int8Lut checks per row
  for (let i = 0; i < n; i++) {
    if (zero[i] > 128 || top - zero[i] > 127) {
      throw new RangeError(
        `${q.quantizer}: code − zero of row ${Math.floor(i / (K / G))} does not fit int8; ` +
          "quantize 8-bit weights symmetric for the integer path",
      );
    }
  }
  return G;
}

/** The integer form of a uniform weight in groups (checked by {@linkcode checkInt8Groups}). */
export function int8Groups(q: QuantizedWeight): Int8Groups {
  const { rows: N, cols: K } = q;
  const G = checkInt8Groups(q);
  const ng = K / G;
  const { scale, zero } = q.params;
  const c = unpackCodes(q.codes, N, K, q.bits);
  const w8 = new Int8Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) w8[n * K + k] = c[n * K + k] - zero[n * ng + Math.floor(k / G)];
  }
  return { groupSize: G, scale: Float32Array.from(scale), zero: Float32Array.from(zero), w8 };
}

/** The weight decoded to int8 [N, K] through its int8 LUT. */
export function decodeInt8(q: QuantizedWeight, lut: Int8Lut): Int8Array {
  const { rows: N, cols: K } = q;
  const L = 2 ** q.bits;
  const G = lut.groupSize;
  const c = unpackCodes(q.codes, N, K, q.bits);
  const out = new Int8Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      out[n * K + k] = lut.lut8[(n * (K / G) + Math.floor(k / G)) * L + c[n * K + k]];
    }
  }
  return out;
}

/**
 * The error the int8 re-expression adds over the exact dequantized weight ŵ:
 * ‖s·lut8[code] − ŵ‖ / ‖ŵ‖ over the weight (0 for uniform weights, per row or in groups).
 */
export function int8LutError(q: QuantizedWeight, exact: Float32Array): number {
  if (isAffineGrouped(q)) return 0; // int8Groups: exact
  const lut = int8Lut(q);
  const w8 = decodeInt8(q, lut);
  let e = 0;
  let s = 0;
  for (let n = 0; n < q.rows; n++) {
    for (let k = 0; k < q.cols; k++) {
      const i = n * q.cols + k;
      e += (lut.scale[n * (q.cols / lut.groupSize) + Math.floor(k / lut.groupSize)] * w8[i] -
        exact[i]) ** 2;
      s += exact[i] ** 2;
    }
  }
  return s > 0 ? Math.sqrt(e / s) : 0;
}

/** Result of {@linkcode qgemmIntRef}. */
export interface QGemmIntRef {
  /** The exact integer sums Σ_k x8·w8 [M, N]. */
  acc: Int32Array;
  /** Y after scaling (f32, as the kernel: (f32(acc)·s_token)·s_row) and the epilogue. */
  y: Float32Array;
}

/**
 * Entry (m, n) of {@linkcode qgemmIntRef} before its epilogue: the exact integer sum, and
 * the scaled value (the sampled checks of large GEMMs call it alone).
 */
export function qgemmIntEntry(
  x8: Int8Array,
  xScale: Float32Array,
  w8: Int8Array,
  wScale: Float32Array,
  K: number,
  m: number,
  n: number,
  group = 0,
  zeros?: Float32Array,
  wGroup = 0,
): { acc: number; y: number } {
  const f = Math.fround;
  const G = group || K;
  const GW = wGroup || K;
  const span = Math.min(G, GW);
  if (Math.max(G, GW) % span !== 0) {
    throw new RangeError(`qgemmIntRef: groups of ${G} and ${GW}: one must divide the other`);
  }
  let total = 0;
  let y = 0; // per span: the i32 sum times its scale, summed in f32
  for (let k0 = 0; k0 < K; k0 += span) {
    let s = 0;
    let ws = 0; // Σ w8 over the span, for the zero point
    for (let k = k0; k < k0 + span; k++) {
      s += x8[m * K + k] * w8[n * K + k];
      ws += w8[n * K + k];
    }
    total += s;
    const i = m * (K / G) + Math.floor(k0 / G);
    const sx = group ? xScale[i] : xScale[m];
    const sw = wGroup ? wScale[n * (K / GW) + Math.floor(k0 / GW)] : 1;
    if (wGroup) y = f(y + f(s * f(sx * sw)));
    else y = group ? f(y + f(s * sx)) : f(s * sx);
    if (zeros) y = f(y + f(ws * (wGroup ? f(zeros[i] * sw) : zeros[i])));
  }
  return { acc: total, y: wGroup ? y : f(y * wScale[n]) };
}

/**
 * Y = epilogue(s_token·s_row·Σ x8·w8) for int8 activations x8 [M, K] with scales [M] and
 * int8 weights w8 [N, K] with row scales [N]. With `group`, x8's scales are per group of
 * `group` channels ([M, K/group]): Y = epilogue(s_row·Σ_g s_g·Σ_{k∈g} x8·w8), summed in f32;
 * with `zeros` (asymmetric groups, [M, K/group]) each group adds z_g·Σ_{k∈g} w8 too. With
 * `wGroup` the weight's scales are per (row, group of `wGroup` channels) ([N, K/wGroup],
 * {@linkcode int8Groups}): the sums run over spans of the smaller group (one divides the
 * other), each scaled by f32(s_x·s_w) — the zero term by f32(z·s_w) — and summed in f32.
 */
export function qgemmIntRef(
  x8: Int8Array,
  xScale: Float32Array,
  w8: Int8Array,
  wScale: Float32Array,
  M: number,
  N: number,
  K: number,
  opts: GemmRefOptions = {},
  group = 0,
  zeros?: Float32Array,
  wGroup = 0,
): QGemmIntRef {
  const acc = new Int32Array(M * N);
  const scaled = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      const e = qgemmIntEntry(x8, xScale, w8, wScale, K, m, n, group, zeros, wGroup);
      acc[m * N + n] = e.acc;
      scaled[m * N + n] = e.y;
    }
  }
  // The epilogue on the scaled sums: a GEMM with the identity as weight.
  const eye = new Float32Array(N * N);
  for (let n = 0; n < N; n++) eye[n * N + n] = 1;
  return { acc, y: gemmRef(scaled, eye, M, N, N, opts) };
}
