/**
 * The "adaptive" rotation (ARS, METHODS.md §2): per layer, J = ‖X‖_F/√(tokens·channels)
 * of its calibration input; J < τ → hadamard, J ≥ τ → outlier-aware (τ = 1 by default).
 * With `select: "error"` the branch (hadamard, outlier-aware or none) is instead the one with
 * the least measured output error on the calibration rows ("act-error": of the activation
 * quantizer alone). The plan's overrides (exact layer names or `*` patterns) force a branch.
 *
 * @module
 */
import type { RotationLayerInput } from "../types.ts";
import type { PlanningRotationPlugin } from "../../runtime/quant/rotation_plan.ts";
import { layerJ } from "../../runtime/quant/calibrate.ts";
import type { LayerRotation, RotationKind } from "../../runtime/quant/rotation.ts";
import { planHadamard } from "./hadamard.ts";
import { planIdentity } from "./identity.ts";
import { planOutlier } from "./outlier_aware.ts";
import { layerErrors, rotationErrors } from "../../runtime/quant/rotation_error.ts";

/** Default ARS threshold τ. */
export const DEFAULT_TAU = 1;

/** True when `name` matches `pattern` (exact, or with `*` matching any run of characters). */
export function matchesLayer(pattern: string, name: string): boolean {
  if (!pattern.includes("*")) return pattern === name;
  const re = new RegExp(
    "^" + pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$",
  );
  return re.test(name);
}

/** The override for a layer: an exact name wins over patterns; the first pattern that matches. */
export function overrideFor(
  overrides: Record<string, RotationKind> | undefined,
  name: string,
): RotationKind | undefined {
  if (!overrides) return undefined;
  if (Object.hasOwn(overrides, name)) return overrides[name];
  for (const [p, k] of Object.entries(overrides)) if (matchesLayer(p, name)) return k;
  return undefined;
}

/** Plans one layer by the given branch. */
export function planBranch(kind: RotationKind, input: RotationLayerInput): LayerRotation {
  if (kind === "hadamard") return planHadamard(input);
  if (kind === "outlier") return planOutlier(input);
  if (kind === "none") return planIdentity(input);
  throw new RangeError(`Unknown rotation branch "${kind}" for ${input.name}`);
}

/** Plans one layer by ARS: the override, else J against τ. */
export function planAdaptive(input: RotationLayerInput): LayerRotation {
  const forced = overrideFor(input.options.overrides, input.name);
  if (forced) {
    const r = planBranch(forced, input);
    r.report.reason = "override";
    return r;
  }
  if (!input.stats) {
    throw new RangeError(`The adaptive rotation needs calibration statistics (${input.name})`);
  }
  const select = input.options.select ?? "rms";
  if (select !== "rms" && input.stats.sampleRows > 0) return planByError(input, select);
  const tau = input.options.tau ?? DEFAULT_TAU;
  const J = layerJ(input.stats);
  const r = J < tau ? planHadamard(input) : planOutlier(input);
  r.report.reason = J < tau
    ? `J ${J.toPrecision(3)} < τ ${tau}`
    : `J ${J.toPrecision(3)} ≥ τ ${tau}`;
  return r;
}

/**
 * ARS by measurement: plans hadamard, outlier-aware and none, and keeps the one of least
 * output error on the layer's calibration sample rows — with the plan's weight quantizer
 * too for "error" when the options carry it — (the first of that order on a tie).
 */
function planByError(input: RotationLayerInput, select: "error" | "act-error"): LayerRotation {
  const act = input.options.act;
  const weightQuant = select === "error" ? input.options.weightQuant : undefined;
  const s = input.stats!;
  const plans = [planHadamard(input), planOutlier(input), planIdentity(input)];
  const errs = weightQuant
    ? layerErrors(plans, s, input.weight, act, weightQuant)
    : plans.map((p) => rotationErrors(p, s, input.weight, act ?? { bits: 8 }).after);
  let best = 0;
  for (let i = 1; i < plans.length; i++) if (errs[i] < errs[best]) best = i;
  const what = weightQuant ? "layer" : "activations";
  const list = plans.map((p, i) => `${p.kind} ${errs[i].toPrecision(3)}`).join(", ");
  plans[best].report.reason = `least error (${what}): ${list}`;
  return plans[best];
}

/** The "adaptive" (ARS) rotation plugin. */
export const adaptiveRotationPlugin: PlanningRotationPlugin = {
  kind: "rotation",
  name: "adaptive",
  description: "ARS: per layer, hadamard when the input RMS J < τ (default 1), else outlier-aware",
  planLayer: planAdaptive,
};
