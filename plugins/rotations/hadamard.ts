/**
 * The "hadamard" rotation (METHODS.md §2): smoothing (α = 0.5) then R = D·H/√n with D a
 * random ±1 diagonal and H a Sylvester Hadamard matrix. Widths that are not a power of
 * two use a block-diagonal H with the largest power-of-two block dividing K (1152 =
 * 9 × 128; the plan records the block). Online it is the fused Walsh–Hadamard + quantize
 * kernel (wgsl/rotq_hadamard_reg.wgsl; rotq_hadamard.wgsl for rows past workgroup memory).
 *
 * @module
 */
import type { RotationLayerInput } from "../types.ts";
import type { PlanningRotationPlugin } from "../../runtime/quant/rotation_plan.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { layerJ } from "../../runtime/quant/calibrate.ts";
import { HadamardRotation, layerSeed } from "../../runtime/quant/rotation.ts";
import { DEFAULT_ALPHA, smoothingFactors } from "../../runtime/quant/smooth.ts";
import { largestPow2Divisor } from "../../runtime/reference/hadamard.ts";

/** The smoothing factors of a layer (ones when smoothing is off or there are no stats). */
export function layerSmoothing(input: RotationLayerInput): {
  m: Float32Array;
  alpha: number | null;
} {
  const o = input.options;
  const K = input.weight.cols;
  if (o.smooth === false || !input.stats) return { m: new Float32Array(K).fill(1), alpha: null };
  const alpha = o.alpha ?? DEFAULT_ALPHA;
  return { m: smoothingFactors(input.stats.absmax, input.weight, alpha), alpha };
}

/** Random ±1 signs of a layer, seeded by the plan's seed and the layer name. */
export function layerSigns(K: number, seed: number, name: string): Float32Array {
  const g = new Prng(layerSeed(seed, `signs:${name}`));
  return Float32Array.from({ length: K }, () => (g.nextU32() & 1 ? -1 : 1));
}

/** Plans the randomised block-Hadamard rotation of one layer. */
export function planHadamard(input: RotationLayerInput): HadamardRotation {
  const K = input.weight.cols;
  const { m, alpha } = layerSmoothing(input);
  const block = largestPow2Divisor(K);
  return new HadamardRotation(m, layerSigns(K, input.options.seed ?? 0, input.name), block, {
    J: input.stats ? layerJ(input.stats) : NaN,
    alpha,
  });
}

/** The "hadamard" rotation plugin. */
export const hadamardRotationPlugin: PlanningRotationPlugin = {
  kind: "rotation",
  name: "hadamard",
  description:
    "Smoothing + randomised (block-diagonal) Hadamard rotation, fused Walsh–Hadamard + quantize online",
  planLayer: planHadamard,
};
