/**
 * The "none" rotation: no smoothing, no rotation; the layer's input goes straight to the
 * per-token quantizer (the ablation baseline).
 *
 * @module
 */
import type { RotationLayerInput } from "../types.ts";
import type { PlanningRotationPlugin } from "../../runtime/quant/rotation_plan.ts";
import { identityRotation, type LayerRotation } from "../../runtime/quant/rotation.ts";
import { layerJ } from "../../runtime/quant/calibrate.ts";

/** Plans the identity for one layer. */
export function planIdentity(input: RotationLayerInput): LayerRotation {
  return identityRotation(input.weight.cols, {
    J: input.stats ? layerJ(input.stats) : NaN,
    reason: "none",
  });
}

/** The "none" rotation plugin. */
export const identityRotationPlugin: PlanningRotationPlugin = {
  kind: "rotation",
  name: "none",
  description: "No rotation: plain per-token activation quantization (ablation baseline)",
  planLayer: planIdentity,
};
