/**
 * What a rotation plan does to a layer's output error, measured on the layer's calibration
 * sample rows: x its input rows (sample + shift) and x̃ the same rows as the activation
 * quantizer sees them (`quantSample`: centred per sample, a CFG delta; without it, the
 * sample as it is). The quantized layer computes Q(x̃·T)·Ŵ'ᵀ + (x − x̃)·T·Ŵ'ᵀ — the part
 * the quantizer does not see (a centre, u) goes through the weights in float — so its error
 * against x·Wᵀ is (Q(x̃·T) − x̃·T)·Ŵ'ᵀ + x·(T·Ŵ'ᵀ − Wᵀ), relative to ‖x·Wᵀ + b‖_F.
 * {@linkcode rotationErrors} keeps the weights exact (the activation quantizer's share,
 * behind `quantize --report`'s rotation table and `--ars-select act-error`);
 * {@linkcode layerErrors} adds the weight
 * quantizer (the adaptive rotation's error-based branch choice, `--ars-select error`).
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

/** Default sample rows a layer: all the calibration keeps by default (calls drawn over the run). */
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

/** The S sample rows errors are measured on: x (the layer's input) and x̃ (the quantizer's). */
function errorRows(s: LayerStats, S: number): { x: Float32Array; xq: Float32Array } {
  const K = s.cols;
  const sample = s.sample.subarray(0, S * K);
  const x = s.shift ? sample.map((v, i) => v + s.shift![i % K]) : sample;
  return { x, xq: s.quantSample?.subarray(0, S * K) ?? sample };
}

/**
 * The layer input x·T with the activation quantizer's error on x̃·T added: what the
 * quantized layer multiplies by Ŵ'ᵀ (Q(x̃·T) + (x − x̃)·T); without `q`, x·T.
 */
function quantizedInput(
  plan: LayerRotation,
  x: Float32Array,
  xq: Float32Array,
  S: number,
  K: number,
  q: ActQuantSpec | undefined,
): Float64Array {
  const xt = plan.transformActivations(x, S);
  if (!q) return Float64Array.from(xt);
  const e = actQuantResidual(plan.transformActivations(xq, S), S, K, q);
  return Float64Array.from(xt, (v, i) => v + e[i]);
}

/**
 * The whole layer's relative output error under each of `plans`, both quantizers on:
 * ‖(Q_a(x̃·T) + (x − x̃)·T)·Ŵ'ᵀ − x·Wᵀ‖_F / ‖x·Wᵀ + b‖_F with Ŵ' = `weightQuant`(W') the
 * plan's transformed weight through the weight quantizer (quantize → dequantize); without
 * `q` (a weight-only layer) Q_a is the identity. The reference x·Wᵀ is computed once for
 * all the plans. NaN without sample rows.
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
  const { x, xq } = errorRows(s, S);
  const ref = matmulT(x, S, w);
  const t = norm2(ref, w.rows, o.bias);
  return plans.map((plan) => {
    const wt = plan.transformWeight(w);
    const yq = matmulT(quantizedInput(plan, x, xq, S, K, q), S, { ...wt, data: weightQuant(wt) });
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
 * The activation quantizer's errors (weights exact) of one plan on the layer's statistics
 * `s` (as the plan was made on them: centred when the plan centres) and its weight `w`
 * (before the plan's transform).
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
  const { x, xq } = errorRows(s, S);
  const denom = Math.sqrt(projectedNorm2(x, S, w, o.bias));
  const e0 = actQuantResidual(xq, S, K, q);
  const e1 = actQuantResidual(plan.transformActivations(xq, S), S, K, q);
  return {
    before: Math.sqrt(projectedNorm2(e0, S, w)) / denom,
    after: Math.sqrt(projectedNorm2(e1, S, plan.transformWeight(w))) / denom,
    rows: S,
  };
}
