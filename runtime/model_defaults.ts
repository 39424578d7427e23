/**
 * A model's sampling defaults: the steps, guidance and sampler that generate, eval, serve,
 * calibration and the ablations use when a request leaves them out.
 *
 * The architecture gives them, as diffusers' pipelines do (PixArtAlphaPipeline: 20 steps,
 * guidance 4.5, DPM-Solver++; FluxPipeline: 28 steps, guidance 3.5, flow-matching Euler), and a
 * model may declare its own in the `webdit` section of its `model_index.json`
 * (`default_steps`, `default_guidance`, `default_sampler`), as a model card states the settings
 * a model was tuned for. A quantized artifact carries its model's `model_index.json`.
 *
 * @module
 */
import { join } from "node:path";
import { CheckpointError } from "./errors.ts";
import { parseJson } from "./io/json.ts";

/** The samplers `generate` offers (flow-euler: flow-matching models, FLUX). */
export const SAMPLERS = ["dpm++2m", "ddim", "flow-euler"] as const;
/** A sampler name. */
export type SamplerName = typeof SAMPLERS[number];

/** What a request that names no steps, guidance or sampler gets. */
export interface SamplingDefaults {
  /** Sampler steps. */
  readonly steps: number;
  /** Guidance scale (PixArt: classifier-free guidance; FLUX.1-dev: the guidance embedder's input). */
  readonly guidance: number;
  /** The sampler. */
  readonly sampler: SamplerName;
}

/** PixArt-style (epsilon) models: diffusers' PixArtAlphaPipeline defaults. */
export const PIXART_SAMPLING: SamplingDefaults = { steps: 20, guidance: 4.5, sampler: "dpm++2m" };
/** FLUX-style (flow-matching) models: diffusers' FluxPipeline defaults. */
export const FLUX_SAMPLING: SamplingDefaults = { steps: 28, guidance: 3.5, sampler: "flow-euler" };

/** The samplers an architecture's models can use. */
export function samplersFor(base: SamplingDefaults): readonly SamplerName[] {
  return base.sampler === "flow-euler" ? ["flow-euler"] : ["dpm++2m", "ddim"];
}

/**
 * Reads the `webdit.default_*` fields of a parsed `model_index.json` over the architecture's
 * defaults. Absent fields keep `base`'s values.
 *
 * @param raw The parsed JSON (undefined: no model_index.json).
 * @param file Where it came from, for errors.
 * @throws {CheckpointError} naming the file and the field for a value out of range.
 */
export function parseSamplingDefaults(
  raw: unknown,
  file: string,
  base: SamplingDefaults,
): SamplingDefaults {
  if (raw === undefined) return base;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CheckpointError(file, "must be a JSON object");
  }
  const w = (raw as Record<string, unknown>).webdit;
  if (w === undefined) return base;
  if (typeof w !== "object" || w === null || Array.isArray(w)) {
    throw new CheckpointError(file, "must be an object", "webdit");
  }
  const o = w as Record<string, unknown>;
  const steps = o.default_steps ?? base.steps;
  if (typeof steps !== "number" || !Number.isInteger(steps) || steps < 1 || steps > 1000) {
    throw new CheckpointError(
      file,
      `must be an integer in [1, 1000], got ${JSON.stringify(steps)}`,
      "webdit.default_steps",
    );
  }
  const guidance = o.default_guidance ?? base.guidance;
  if (typeof guidance !== "number" || !(guidance >= 0 && guidance <= 100)) {
    throw new CheckpointError(
      file,
      `must be a number in [0, 100], got ${JSON.stringify(guidance)}`,
      "webdit.default_guidance",
    );
  }
  const sampler = o.default_sampler ?? base.sampler;
  const allowed = samplersFor(base);
  if (!allowed.includes(sampler as SamplerName)) {
    throw new CheckpointError(
      file,
      `must be ${allowed.join(" or ")} for this model, got ${JSON.stringify(sampler)}`,
      "webdit.default_sampler",
    );
  }
  return { steps, guidance, sampler: sampler as SamplerName };
}

/**
 * A model folder's sampling defaults: its `model_index.json` (when there is one) over `base`.
 *
 * @throws {CheckpointError} for a model_index.json that is not JSON or has a bad default.
 */
export async function readSamplingDefaults(
  dir: string,
  base: SamplingDefaults,
): Promise<SamplingDefaults> {
  const text = await readModelIndex(dir);
  const file = join(dir, "model_index.json");
  return parseSamplingDefaults(text === undefined ? undefined : parseJson(text, file), file, base);
}

/** The text of a folder's `model_index.json`, or undefined when it has none. */
export async function readModelIndex(dir: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(join(dir, "model_index.json"));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}
