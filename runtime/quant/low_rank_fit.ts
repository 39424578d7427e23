/**
 * A layer's weight quantized with its low-rank branch fitted as the plan says
 * (`QuantSettings.lowRankFit`): "svd" keeps SVDQuant's split, "refit" refits the branch's down
 * factor to the codes, "hessian" alternates — the branch fitted to what the codes left in the
 * calibration inputs' norm, the rest re-quantized — {@linkcode LOW_RANK_ROUNDS} times, then
 * refits it once more (runtime/quant/low_rank.ts has the algebra).
 *
 * @module
 */
import type { HostMatrix, QuantizedWeight } from "../../plugins/types.ts";
import type { GptqResult } from "./gptq_pool.ts";
import { branchResidual, type LowRankSplit, refitLowRank } from "./low_rank.ts";
import { type HessianFitter, LOCAL_FITTER } from "./low_rank_pool.ts";
import { fpReason, layerLowRank, type LowRankFit, type QuantSettings } from "./plan.ts";
import { weightSqnr } from "./report.ts";
import type { LayerRotation } from "./rotation.ts";

/**
 * Rounds of the "hessian" fit after the first quantization: each fits the branch to what the
 * codes left and re-quantizes the rest (the branch is fitted once more at the end).
 */
export const LOW_RANK_ROUNDS = 2;

/**
 * The widest input (K) at which quantize's default with GPTQ is the hessian fit: its CPU cost
 * grows as K³ (~40 s a layer at K 4608, minutes past 8192), so a model with wider branched
 * layers (FLUX's FFN down, its single blocks' output) defaults to refit.
 */
export const HESSIAN_FIT_MAX_K = 8192;

/**
 * The plan's fit once the checkpoint's shapes are known: `settings.lowRankFit`, except that a
 * defaulted hessian fit becomes refit when a branched layer is wider than
 * {@linkcode HESSIAN_FIT_MAX_K} (`given`: the caller chose the fit; it stands).
 */
export function fitForShapes(
  settings: QuantSettings,
  tensors: Iterable<[string, { shape: readonly number[] }]>,
  given: boolean,
): LowRankFit | undefined {
  if (given || settings.lowRankFit !== "hessian") return settings.lowRankFit;
  for (const [n, t] of tensors) {
    if (!n.endsWith(".weight") || t.shape.length < 2) continue;
    const name = n.slice(0, -".weight".length);
    const K = t.shape.slice(1).reduce((a, b) => a * b, 1);
    const branched = !fpReason(name, K, settings.keepFp) && layerLowRank(name, settings) > 0;
    if (branched && K > HESSIAN_FIT_MAX_K) return "refit";
  }
  return "hessian";
}

/** A layer's rest quantized, with GPTQ's result when it ran. */
export interface Quantized {
  /** The codes and the grid. */
  q: QuantizedWeight;
  /** Milliseconds the quantization (all rounds) took. */
  ms: number;
  /** GPTQ's result (of the last round), when it ran. */
  g?: GptqResult;
}

/** What {@linkcode quantizeWithBranch} needs of the layer. */
export interface BranchFitInput {
  /** W', the weight in the quantizer's basis (after any rotation). */
  wt: HostMatrix;
  /** W, the layer's own weight (`wt` without a rotation). */
  own: HostMatrix;
  /** SVDQuant's split of W', or none for a layer without a branch. */
  split?: LowRankSplit;
  /** How to fit the branch; default "svd". */
  fit?: LowRankFit;
  /** "hessian": the calibration inputs' Gram matrix in W''s basis [K, K]. */
  h?: ArrayLike<number>;
  /** "hessian": the dampening of H (GPTQ's). */
  damp?: number;
  /** The layer's rotation, to bring the branch back to its own input space. */
  rotation?: Pick<LayerRotation, "restoreWeight">;
  /** The quantizer's dequantization. */
  dequantize: (q: QuantizedWeight) => Float32Array;
  /** Quantizes a rest (the plugin's codes, then GPTQ's). */
  quantizeRest: (rest: HostMatrix) => Promise<Quantized>;
  /** "hessian": where H's factor and the branch are computed; default the calling thread. */
  fitter?: HessianFitter;
}

/** The quantized layer: codes, their dequantized values, weight SQNR, and the branch. */
export interface BranchFitResult {
  /** The final rest's quantization. */
  r: Quantized;
  /** Its dequantized weight Ê. */
  deq: Float32Array;
  /** Weight SQNR (dB) of branch + Ê against W'. */
  sqnrDb: number;
  /**
   * The branch as stored: A [R, K] on the layer's own input, B [N, R], and its share of W''s
   * squared norm, ‖B·A'‖² / ‖W'‖².
   */
  branch?: { a: Float32Array; b: Float32Array; energy: number };
}

/** Quantizes W' (or the rest of its split) and fits the branch as `fit` says. */
export async function quantizeWithBranch(o: BranchFitInput): Promise<BranchFitResult> {
  const { wt, split } = o;
  const { rows: N, cols: K } = wt;
  let rest = split?.residual ?? wt;
  let r = await o.quantizeRest(rest);
  let b = split?.b;
  if (split && o.fit === "hessian") { // alternate: branch, rest, branch…
    if (!o.h) throw new RangeError("the hessian low-rank fit needs the layer's Gram matrix");
    const R = split.b.length / N;
    const fitter = o.fitter ?? LOCAL_FITTER;
    const c = await fitter.factor(o.h, K, o.damp); // the same norm every round
    for (let round = 0;; round++) {
      const deq = o.dequantize(r.q);
      const d = { data: wt.data.map((v, i) => v - deq[i]), rows: N, cols: K };
      b = await fitter.branch(d, c, R);
      if (round === LOW_RANK_ROUNDS) break;
      rest = branchResidual(wt, b, d);
      const next = await o.quantizeRest(rest);
      r = { ...next, ms: r.ms + next.ms };
    }
  }
  const deq = o.dequantize(r.q);
  if (!split || !b) return { r, deq, sqnrDb: weightSqnr(rest.data, deq, wt.data) };
  if ((o.fit ?? "svd") === "svd") {
    const branch = { a: split.a, b, energy: split.energy };
    return { r, deq, sqnrDb: weightSqnr(rest.data, deq, wt.data), branch };
  }
  const rot = o.rotation;
  const fit = refitLowRank(b, o.own, wt, deq, rot && ((m) => rot.restoreWeight(m)));
  let total = 0;
  for (const v of wt.data) total += v * v;
  return {
    r,
    deq,
    sqnrDb: weightSqnr(wt.data, deq, wt.data, fit.absorbed),
    // A' = Bᵀ(W' − Ê) with B orthonormal: ‖B·A'‖² = ‖A'‖², what refitLowRank absorbed.
    branch: { a: fit.a, b, energy: total > 0 ? fit.absorbed / total : 0 },
  };
}
