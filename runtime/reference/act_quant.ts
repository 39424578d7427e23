/**
 * CPU reference of the per-token activation quantizer (wgsl/act_quant.wgsl), step for
 * step in f32: Δ_t = max|x_t| / qmax, inv = 1/Δ_t (0 for a zero row),
 * q = clamp(round_half_even(x·inv), −qmax − 1, qmax), qmax = 2^(b−1) − 1.
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
  /** Δ_t [M]. */
  scales: Float32Array;
  /** x·inv before rounding [M, K] (tests use it to spot rounding ties). */
  scaled: Float32Array;
}

/** qmax = 2^(bits−1) − 1 of an activation bit width (4, 6 or 8). */
export function actQmax(bits: number): number {
  return 2 ** (bits - 1) - 1;
}

/** Quantizes x [M, K] per token at `bits` bits. */
export function actQuantRef(x: Float32Array, M: number, K: number, bits: number): ActQuantRef {
  const qmax = actQmax(bits);
  const codes = new Int8Array(M * K);
  const scales = new Float32Array(M);
  const scaled = new Float32Array(M * K);
  for (let m = 0; m < M; m++) {
    let amax = 0;
    for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(x[m * K + k]));
    const delta = f(amax / qmax);
    const inv = amax > 0 ? f(1 / delta) : 0;
    scales[m] = delta;
    for (let k = 0; k < K; k++) {
      const t = f(x[m * K + k] * inv);
      scaled[m * K + k] = t;
      codes[m * K + k] = Math.min(qmax, Math.max(-qmax - 1, roundHalfEven(t)));
    }
  }
  return { codes, words: packInt8(codes, M, K), scales, scaled };
}

/** x̂ = Δ_t·q, [M, K]. */
export function actDequantRef(
  codes: Int8Array,
  scales: Float32Array,
  M: number,
  K: number,
): Float32Array {
  const out = new Float32Array(M * K);
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) out[m * K + k] = scales[m] * codes[m * K + k];
  }
  return out;
}

/** Σ(x − x̂)² and Σx² over all of x [M, K] (what error_acc accumulates). */
export function actQuantErrorRef(
  x: Float32Array,
  M: number,
  K: number,
  bits: number,
): { err: number; sum: number } {
  const r = actQuantRef(x, M, K, bits);
  const h = actDequantRef(r.codes, r.scales, M, K);
  let err = 0;
  let sum = 0;
  for (let i = 0; i < M * K; i++) {
    err += (x[i] - h[i]) ** 2;
    sum += x[i] ** 2;
  }
  return { err, sum };
}
