/**
 * CPU reference of the per-token activation quantizer (wgsl/act_quant.wgsl), step for
 * step in f32: Δ_t = max|x_t| / qmax, inv = 1/Δ_t (0 for a zero row),
 * q = clamp(round_half_even(x·inv), −qmax − 1, qmax), qmax = 2^(b−1) − 1. With a group
 * size G (a divisor of K), each run of G channels of a token has its own Δ (scales [M, K/G]);
 * asymmetric groups spread 2^b levels from the group's min lo to its max:
 * Δ = (max − lo)/(2^b − 1), code = clamp(round((x − lo)/Δ), 0, 2^b − 1) − 2^(b−1),
 * x̂ = Δ·code + z, z = lo + 2^(b−1)·Δ (wgsl/act_quant.wgsl's quant_groups with ASYM).
 *
 * @module
 */
import { packInt8 } from "../quant/pack.ts";

const f = Math.fround;

/** Rounds half to even, as WGSL's round(). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Per-token quantized activations on the host. */
export interface ActQuantRef {
  /** Codes [M, K]. */
  codes: Int8Array;
  /** The codes packed four to a word, rows of ⌈K/4⌉ words (the GPU's layout). */
  words: Uint32Array;
  /** Δ_t [M], or Δ per group [M, K/G]. */
  scales: Float32Array;
  /** x·inv before rounding [M, K] (tests use it to spot rounding ties). */
  scaled: Float32Array;
  /** Asymmetric: each group's z (x̂ = Δ·code + z), [M, K/G]. */
  zeros?: Float32Array;
}

/** qmax = 2^(bits−1) − 1 of an activation bit width (4, 6 or 8). */
export function actQmax(bits: number): number {
  return 2 ** (bits - 1) - 1;
}

/** Quantizes x [M, K] per token (or per group of `group` channels) at `bits` bits. */
export function actQuantRef(
  x: Float32Array,
  M: number,
  K: number,
  bits: number,
  group = 0,
  asym = false,
): ActQuantRef {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) { // codes live in an Int8Array
    throw new RangeError(`actQuantRef: bits must be 2…8 (int8 codes), got ${bits}`);
  }
  const qmax = actQmax(bits);
  const G = group || K;
  if (!Number.isInteger(K / G)) throw new RangeError(`actQuantRef: group ${G} must divide K ${K}`);
  const codes = new Int8Array(M * K);
  const scales = new Float32Array(M * (K / G));
  const scaled = new Float32Array(M * K);
  const zeros = asym ? new Float32Array(M * (K / G)) : undefined;
  for (let s = 0; s < scales.length; s++) {
    const k0 = s * G; // rows are whole groups, so group s starts at element s·G
    if (zeros) {
      let lo = x[k0];
      let hi = x[k0];
      for (let k = k0; k < k0 + G; k++) [lo, hi] = [Math.min(lo, x[k]), Math.max(hi, x[k])];
      const delta = f(f(hi - lo) / (2 * qmax + 1));
      const inv = delta > 0 ? f(1 / delta) : 0;
      scales[s] = delta;
      zeros[s] = f(lo + f((qmax + 1) * delta));
      for (let k = k0; k < k0 + G; k++) {
        const t = f(f(x[k] - lo) * inv);
        scaled[k] = t;
        codes[k] = Math.min(2 * qmax + 1, Math.max(0, roundHalfEven(t))) - qmax - 1;
      }
      continue;
    }
    let amax = 0;
    for (let k = k0; k < k0 + G; k++) amax = Math.max(amax, Math.abs(x[k]));
    const delta = f(amax / qmax);
    const inv = amax > 0 ? f(1 / delta) : 0;
    scales[s] = delta;
    for (let k = k0; k < k0 + G; k++) {
      const t = f(x[k] * inv);
      scaled[k] = t;
      codes[k] = Math.min(qmax, Math.max(-qmax - 1, roundHalfEven(t)));
    }
  }
  return { codes, words: packInt8(codes, M, K), scales, scaled, ...(zeros ? { zeros } : {}) };
}

/** x̂ = Δ·q, [M, K] (Δ a token's, or its group's of `group` channels); + z if asymmetric. */
export function actDequantRef(
  codes: Int8Array,
  scales: Float32Array,
  M: number,
  K: number,
  group = 0,
  zeros?: Float32Array,
): Float32Array {
  const G = group || K;
  const out = new Float32Array(M * K);
  for (let i = 0; i < M * K; i++) {
    const g = Math.floor(i / G);
    out[i] = zeros ? f(f(scales[g] * codes[i]) + zeros[g]) : scales[g] * codes[i];
  }
  return out;
}

/** Σ(x − x̂)² and Σx² over all of x [M, K] (what error_acc accumulates). */
export function actQuantErrorRef(
  x: Float32Array,
  M: number,
  K: number,
  bits: number,
  group = 0,
  asym = false,
): { err: number; sum: number } {
  const r = actQuantRef(x, M, K, bits, group, asym);
  const h = actDequantRef(r.codes, r.scales, M, K, group, r.zeros);
  let err = 0;
  let sum = 0;
  for (let i = 0; i < M * K; i++) {
    err += (x[i] - h[i]) ** 2;
    sum += x[i] ** 2;
  }
  return { err, sum };
}
