/**
 * A PixArt-style (epsilon) model's `scheduler/scheduler_config.json`, read as diffusers
 * does: the pipeline runs the scheduler class the file names, and
 * `DDIMScheduler.from_config(config)` (or DPMSolverMultistepScheduler's) takes every field
 * the other class knows and its own defaults for the rest — so a DPM-Solver config without
 * DDIM's `clip_sample` gives DDIM clip_sample true, and one without `timestep_spacing` gives
 * each class its own default ("linspace" for DPM-Solver, "leading" for DDIM).
 *
 * A field webdit does not implement (Karras sigmas, thresholding, SDE solvers…) is an
 * error naming the file and field when that sampler is used; the other sampler still runs.
 *
 * @module
 */
import { CheckpointError } from "../errors.ts";
import { boolField, enumField, intField, numField, objectOf } from "../io/config_fields.ts";
import type { DdimConfig } from "./ddim.ts";
import type { DpmSolverConfig, PredictionType, TimestepSpacing } from "./dpm_solver.ts";
import type { SamplerOptions } from "./guidance.ts";

/** The samplers of epsilon models, by the scheduler class diffusers runs for them. */
export const VP_SCHEDULER_CLASSES = {
  DPMSolverMultistepScheduler: "dpm++2m",
  DDIMScheduler: "ddim",
} as const;

/** A VP model's two sampler configs, as diffusers would build each from the file. */
export interface VpSchedulerConfigs {
  /** Where the config came from (undefined: none; each class's defaults). */
  readonly file: string | undefined;
  /** The sampler of the class the file names (DPM-Solver++ when it names none). */
  readonly sampler: "dpm++2m" | "ddim";
  /** DPM-Solver++'s config, or why this file cannot give one. */
  readonly dpm: DpmSolverConfig | CheckpointError;
  /** DDIM's config, or why this file cannot give one. */
  readonly ddim: DdimConfig | CheckpointError;
}

/** No scheduler config: each sampler at its diffusers class's defaults. */
export const DEFAULT_VP_SCHEDULERS: VpSchedulerConfigs = {
  file: undefined,
  sampler: "dpm++2m",
  dpm: {},
  ddim: {},
};

/**
 * The sampler options of `kind` for createGpuSampler / createCpuSampler.
 *
 * @throws {CheckpointError} naming the file and field when the config cannot give them.
 */
export function vpSamplerOptions(c: VpSchedulerConfigs, kind: "dpm++2m" | "ddim"): SamplerOptions {
  const v = kind === "dpm++2m" ? c.dpm : c.ddim;
  if (v instanceof CheckpointError) throw v;
  return kind === "dpm++2m" ? { dpm: v } : { ddim: v };
}

/** Flags whose true value neither sampler implements. */
const UNSUPPORTED_FLAGS = ["thresholding", "rescale_betas_zero_snr"] as const;
/** DPM-Solver flags whose true value webdit does not implement. */
const UNSUPPORTED_DPM_FLAGS = [
  "use_karras_sigmas",
  "use_exponential_sigmas",
  "use_beta_sigmas",
  "use_lu_lambdas",
  "use_flow_sigmas",
  "use_dynamic_shifting",
] as const;

/**
 * Parses a scheduler_config.json object into both samplers' configs.
 *
 * @throws {CheckpointError} naming the file and field for a class webdit does not sample
 * with, or a field both samplers share that is malformed or unsupported.
 */
export function parseVpSchedulerConfig(raw: unknown, file: string): VpSchedulerConfigs {
  const cfg = objectOf(raw, file);
  const cls = cfg["_class_name"] ?? "DPMSolverMultistepScheduler";
  if (typeof cls !== "string" || !Object.hasOwn(VP_SCHEDULER_CLASSES, cls)) {
    throw new CheckpointError(
      file,
      `webdit samples epsilon models with ${Object.keys(VP_SCHEDULER_CLASSES).join(" or ")}, got ${
        JSON.stringify(cls)
      }`,
      "_class_name",
    );
  }
  const shared = sharedFields(cfg, file);
  const spacings = ["linspace", "leading", "trailing"] as const;
  enumField(cfg, "timestep_spacing", spacings, "linspace", file); // both classes read it
  const spacing = (def: TimestepSpacing) => enumField(cfg, "timestep_spacing", spacings, def, file);
  return {
    file,
    sampler: VP_SCHEDULER_CLASSES[cls as keyof typeof VP_SCHEDULER_CLASSES],
    dpm: attempt(() => ({
      ...shared,
      ...dpmFields(cfg, file),
      timestepSpacing: spacing("linspace"),
    })),
    ddim: attempt(() => ({
      ...shared,
      ...ddimFields(cfg, file),
      timestepSpacing: spacing("leading"),
    })),
  };
}

function attempt<T>(f: () => T): T | CheckpointError {
  try {
    return f();
  } catch (e) {
    if (e instanceof CheckpointError) return e;
    throw e;
  }
}

/** The VP schedule and prediction fields both classes take. */
function sharedFields(cfg: Record<string, unknown>, file: string) {
  for (const k of UNSUPPORTED_FLAGS) {
    if (boolField(cfg, k, false, file)) {
      throw new CheckpointError(file, "is not supported (must be false)", k);
    }
  }
  const numTrainTimesteps = intField(cfg, "num_train_timesteps", 1000, file, 2);
  const trained = cfg["trained_betas"];
  let trainedBetas: number[] | undefined;
  if (trained !== undefined && trained !== null) {
    if (
      !Array.isArray(trained) || trained.length !== numTrainTimesteps ||
      !trained.every((b) => typeof b === "number" && b > 0 && b < 1)
    ) {
      throw new CheckpointError(
        file,
        `must be null or ${numTrainTimesteps} numbers in (0, 1)`,
        "trained_betas",
      );
    }
    trainedBetas = trained;
  }
  return {
    numTrainTimesteps,
    betaStart: numField(cfg, "beta_start", 0.0001, file),
    betaEnd: numField(cfg, "beta_end", 0.02, file),
    betaSchedule: enumField(cfg, "beta_schedule", ["linear", "scaled_linear"], "linear", file),
    ...(trainedBetas ? { trainedBetas } : {}),
    predictionType: enumField<PredictionType>(
      cfg,
      "prediction_type",
      ["epsilon", "v_prediction", "sample"],
      "epsilon",
      file,
    ),
    stepsOffset: intField(cfg, "steps_offset", 0, file, 0),
  };
}

/** DPMSolverMultistepScheduler's own fields. */
function dpmFields(cfg: Record<string, unknown>, file: string): DpmSolverConfig {
  for (const k of UNSUPPORTED_DPM_FLAGS) {
    if (boolField(cfg, k, false, file)) {
      throw new CheckpointError(file, "is not supported by dpm++2m (must be false)", k);
    }
  }
  enumField(cfg, "algorithm_type", ["dpmsolver++"], "dpmsolver++", file);
  if (cfg["variance_type"] !== undefined && cfg["variance_type"] !== null) {
    // The pipeline splits a learned σ off before the scheduler; diffusers' DPM-Solver would
    // then slice channels again ([:, :3]).
    throw new CheckpointError(file, "is not supported by dpm++2m (must be null)", "variance_type");
  }
  const order = intField(cfg, "solver_order", 2, file);
  if (order > 2) {
    throw new CheckpointError(
      file,
      `dpm++2m implements orders 1 and 2, got ${order}`,
      "solver_order",
    );
  }
  const lmc = cfg["lambda_min_clipped"] ?? -Infinity;
  if (typeof lmc !== "number" || Number.isNaN(lmc) || lmc === Infinity) {
    throw new CheckpointError(
      file,
      `must be a number or -Infinity, got ${JSON.stringify(lmc)}`,
      "lambda_min_clipped",
    );
  }
  return {
    solverOrder: order as 1 | 2,
    solverType: enumField(cfg, "solver_type", ["midpoint", "heun"], "midpoint", file),
    lowerOrderFinal: boolField(cfg, "lower_order_final", true, file),
    eulerAtFinal: boolField(cfg, "euler_at_final", false, file),
    finalSigmasType: enumField(cfg, "final_sigmas_type", ["zero", "sigma_min"], "zero", file),
    lambdaMinClipped: lmc,
  };
}

/** DDIMScheduler's own fields (eta is the step's, not the config's). */
function ddimFields(cfg: Record<string, unknown>, file: string): DdimConfig {
  const clipSampleRange = numField(cfg, "clip_sample_range", 1, file);
  if (!(clipSampleRange > 0)) {
    throw new CheckpointError(file, `must be > 0, got ${clipSampleRange}`, "clip_sample_range");
  }
  return {
    clipSample: boolField(cfg, "clip_sample", true, file),
    clipSampleRange,
    setAlphaToOne: boolField(cfg, "set_alpha_to_one", true, file),
  };
}
