/**
 * The calibration runner shared by the rotation (linear-input statistics) and attention
 * (attention maps) plugins: it runs the FP model on calibration prompts over every
 * sampler timestep with observers installed, and nothing else. Observers accumulate
 * their statistics on the GPU and read them back when asked; nothing here keeps
 * activations.
 *
 * @module
 */
import type { SelfAttention } from "../../plugins/models/pixart.ts";
import type { Runtime } from "../gpu/device.ts";
import type { LinearFactory } from "../model/linear.ts";
import { denseLinears } from "../model/linear.ts";
import { loadPipeline, type SamplerName } from "../pipeline.ts";

/** Options of {@linkcode runCalibration}. */
export interface CalibrationRunOptions {
  /** Model folder; default the bundled model. */
  path?: string;
  /** Calibration prompts (≥ 8 across categories for linear statistics). */
  prompts: readonly string[];
  /** Sampler steps (every timestep is observed); default 20. */
  steps?: number;
  /** Guidance scale; default 4.5 (the batch is [uncond, cond], as in generation). */
  guidance?: number;
  /** Sampler; default dpm++2m. */
  sampler?: SamplerName;
  /** First seed; prompt i uses seed + i. Default 0. */
  seed?: number;
  /** Wraps the dense layers, e.g. with an input-statistics observer. */
  linears?: (inner: LinearFactory) => LinearFactory;
  /** Wraps dense self-attention, e.g. with an attention-map observer. */
  selfAttention?: (inner: SelfAttention) => SelfAttention;
  /** Progress: prompt index, step and totals. */
  onProgress?: (p: { prompt: number; prompts: number; step: number; steps: number }) => void;
}

/** Runs the FP32 model over the prompts and timesteps with the observers installed. */
export async function runCalibration(rt: Runtime, o: CalibrationRunOptions): Promise<void> {
  if (o.prompts.length === 0) throw new RangeError("Calibration needs at least one prompt");
  const dense = denseLinears("f32");
  const pipe = await loadPipeline(rt, {
    path: o.path,
    linears: o.linears ? o.linears(dense) : dense,
  });
  try {
    if (o.selfAttention) {
      pipe.model.selfAttention = o.selfAttention(pipe.model.selfAttention);
    }
    const steps = o.steps ?? 20;
    for (let i = 0; i < o.prompts.length; i++) {
      await pipe.generate({
        prompt: o.prompts[i],
        seed: (o.seed ?? 0) + i,
        steps,
        guidance: o.guidance ?? 4.5,
        sampler: o.sampler ?? "dpm++2m",
        onStep: (s) =>
          o.onProgress?.({ prompt: i, prompts: o.prompts.length, step: s.step, steps }),
      });
    }
  } finally {
    pipe.release();
  }
}
