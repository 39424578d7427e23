/**
 * What a rotation plan does to a layer's activation-quantization error, measured on the
 * layer's calibration sample rows X in the output domain, weights exact:
 * ‖(Q(X·T) − X·T)·W'ᵀ‖_F / ‖X·Wᵀ + b‖_F with T the plan's online transform and W' its
 * transformed weight (T = I, W' = W for "before"): the measure behind `quantize --report`'s
 * rotation table. {@linkcode layerErrors} adds the weight quantizer: the adaptive rotation's
 * error-based branch choice (`--ars-select error`).
 *
 * @module
 */
import type { HostMatrix } from "../../plugins/types.ts";
import { actDequantRef, actQuantRef } from "../reference/act_quant.ts";
import type { LayerStats } from "./calibrate.ts";
import type { LayerRotation } from "./rotation.ts";
import type { ActGrouping } from "./transform.ts";

/** The activation quantizer the error is of (the plan's --abits, --act-group, --act-asym). */
export interface ActQuantSpec extends ActGrouping {
  /** Bits (4, 6 or 8). */
  bits: number;
}

/** Default sample rows a layer: all the calibration keeps by default (prompts spread over them). */
export const ERROR_ROWS = 256;

/** Q(x) for x [S, K] with the quantizer `q`, dequantized (runtime/reference/act_quant.ts). */
export function actFakeQuant(x: Float32Array, S: number, K: number, q: ActQuantSpec): Float32Array {
  const group = q.group ?? 0;
  const r = actQuantRef(x, S, K, q.bits, group, q.asym ?? false);
  return actDequantRef(r.codes, r.scales, S, K, group, r.zeros);
}

/** Q(x) − x for x [S, K] with the quantizer `q`. */
function actQuantResidual(
  x: Float32Array,
  S: number,
  K: number,
  q: ActQuantSpec,
): Float64Array {
  return Float64Array.from(actFakeQuant(x, S, K, q), (v, i) => v - x[i]);
}

/** X·Wᵀ for X [S, K] and W [N, K] (f64 sums), [S, N]. */
function matmulT(x: ArrayLike<number>, S: number, w: HostMatrix): Float64Array {
  const [N, K] = [w.rows, w.cols];
  const y = new Float64Array(S * N);
  for (let r = 0; r < S; r++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[r * K + k] * w.data[n * K + k];
      y[r * N + n] = acc;
    }
  }
  return y;
}

/**
 * The whole layer's relative output error under each of `plans`, both quantizers on:
 * ‖Q_a(X·T)·Ŵ'ᵀ − X·Wᵀ‖_F / ‖X·Wᵀ + b‖_F with Ŵ' = `weightQuant`(W') the plan's transformed
 * weight through the weight quantizer (quantize → dequantize); without `q` (a weight-only
 * layer) Q_a is the identity. The reference X·Wᵀ is computed once for all the plans. NaN
 * without sample rows.
 */
export function layerErrors(
  plans: readonly LayerRotation[],
  s: LayerStats,
  w: HostMatrix,
  q: ActQuantSpec | undefined,
  weightQuant: (w: HostMatrix) => Float32Array,
  o: { maxRows?: number; bias?: Float32Array } = {},
): number[] {
  const S = Math.min(o.maxRows ?? ERROR_ROWS, s.sampleRows);
  if (S <= 0) return plans.map(() => NaN);
  const K = s.cols;
  const x = s.sample.subarray(0, S * K);
  const ref = matmulT(x, S, w);
  const t = norm2(ref, w.rows, o.bias);
  return plans.map((plan) => {
    const wt = plan.transformWeight(w);
    const xt = plan.transformActivations(x, S);
    const yq = matmulT(q ? actFakeQuant(xt, S, K, q) : xt, S, { ...wt, data: weightQuant(wt) });
    let e = 0;
    for (const [i, v] of yq.entries()) e += (v - ref[i]) ** 2;
    return Math.sqrt(e / t);
  });
}

/** ‖Y + b‖_F² for Y [S, N] row-major, b [N] (or none). */
function norm2(y: Float64Array, N: number, b?: Float32Array): number {
  let t = 0;
  for (const [i, v] of y.entries()) t += (v + (b ? b[i % N] : 0)) ** 2;
  return t;
}

/** ‖E·Wᵀ + b‖_F² for E [S, K], W [N, K], b [N] (or none). */
export function projectedNorm2(
  e: ArrayLike<number>,
  S: number,
  w: HostMatrix,
  b?: Float32Array,
): number {
  return norm2(matmulT(e, S, w), w.rows, b);
}

/** A layer's relative output errors before and after its plan (NaN without sample rows). */
export interface RotationErrors {
  /** With no transform. */
  before: number;
  /** With the plan's transform. */
  after: number;
  /** Sample rows measured. */
  rows: number;
}

/**
 * The errors of one plan on the layer's statistics `s` (as the plan was made on them:
 * centred when the plan centres) and its weight `w` (before the plan's transform).
 */
export function rotationErrors(
  plan: LayerRotation,
  s: LayerStats,
  w: HostMatrix,
  q: ActQuantSpec,
  o: { maxRows?: number; bias?: Float32Array } = {},
): RotationErrors {
  const S = Math.min(o.maxRows ?? ERROR_ROWS, s.sampleRows);
  if (S <= 0) return { before: NaN, after: NaN, rows: 0 };
  const K = s.cols;
  const x = s.sample.subarray(0, S * K);
  const denom = Math.sqrt(projectedNorm2(x, S, w, o.bias));
  const e0 = actQuantResidual(x, S, K, q);
  const e1 = actQuantResidual(plan.transformActivations(x, S), S, K, q);
  return {
    before: Math.sqrt(projectedNorm2(e0, S, w)) / denom,
    after: Math.sqrt(projectedNorm2(e1, S, plan.transformWeight(w))) / denom,
    rows: S,
  };
}
