/**
 * What a rotation plan does to a layer's activation-quantization error, measured on the
 * layer's calibration sample rows X in the output domain, weights exact:
 * ‖(Q(X·T) − X·T)·W'ᵀ‖_F / ‖X·Wᵀ + b‖_F with T the plan's online transform and W' its
 * transformed weight (T = I, W' = W for "before"). The measure behind `quantize --report`'s
 * rotation table and the adaptive rotation's error-based branch choice (`--ars-select error`).
 *
 * @module
 */
import type { HostMatrix } from "../../plugins/types.ts";
import { actDequantRef, actQuantRef } from "../reference/act_quant.ts";
import type { LayerStats } from "./calibrate.ts";
import type { LayerRotation } from "./rotation.ts";

/** The activation quantizer the error is of (the plan's --abits, --act-group, --act-asym). */
export interface ActQuantSpec {
  /** Bits (4, 6 or 8). */
  bits: number;
  /** Channels a scale; 0 or absent: one a token. */
  group?: number;
  /** With `group`: asymmetric groups. */
  asym?: boolean;
}

/** Default sample rows a layer (the calibration keeps at most this many anyway). */
export const ERROR_ROWS = 128;

/** Q(x) − x for x [S, K] with the quantizer `q` (runtime/reference/act_quant.ts). */
export function actQuantResidual(
  x: Float32Array,
  S: number,
  K: number,
  q: ActQuantSpec,
): Float64Array {
  const group = q.group ?? 0;
  const r = actQuantRef(x, S, K, q.bits, group, q.asym ?? false);
  const h = actDequantRef(r.codes, r.scales, S, K, group, r.zeros);
  return Float64Array.from(h, (v, i) => v - x[i]);
}

/** ‖E·Wᵀ + b‖_F² for E [S, K], W [N, K], b [N] (or none). */
export function projectedNorm2(
  e: ArrayLike<number>,
  S: number,
  w: HostMatrix,
  b?: Float32Array,
): number {
  const K = w.cols;
  let t = 0;
  for (let r = 0; r < S; r++) {
    for (let n = 0; n < w.rows; n++) {
      let acc = b ? b[n] : 0;
      const o = n * K;
      for (let k = 0; k < K; k++) acc += e[r * K + k] * w.data[o + k];
      t += acc * acc;
    }
  }
  return t;
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
