/**
 * Sample generation for eval and the ablation harness: one image per prompt and seed, with
 * the initial noise `new Prng(seed).normals(C·H·W)` in any batch (eval.ts' module doc says
 * why a model and its reference are compared only at the same batch size). Either family:
 * PixArt (the bundled caption encoder or a real T5) and FLUX (CLIP + T5).
 *
 * @module
 */
import { latentCells, latentGeometry } from "../latent_geometry.ts";
import { type Image, tensorToImage } from "../io/png.ts";
import { Prng } from "../io/prng.ts";
import type { Pipeline, SamplerName, SamplingDefaults } from "../pipeline.ts";

/** How images are generated: the same for the model and its reference. */
export interface SampleSettings {
  /** The prompts, in order. */
  prompts: string[];
  /** The seeds; every prompt is drawn once per seed. */
  seeds: number[];
  /** Sampler steps (default the model's, as `generate`: `Pipeline.defaults`). */
  steps: number;
  /** Guidance scale (default the model's). */
  guidance: number;
  /** Sampler (default the model's). */
  sampler: SamplerName;
  /** Image height in pixels; default the model's own (FLUX 1024 with an 8× VAE). */
  height?: number;
  /** Image width in pixels; default the model's own. */
  width?: number;
  /** Every image's negative prompt (diffusers' negative_prompt); default the model's own. */
  negativePrompt?: string;
}

/** One generated image. */
export interface Sample {
  /** Its prompt. */
  prompt: string;
  /** Its seed. */
  seed: number;
  /** Final latents [C, H, W] f32 (pixel-space models: the image in [-1, 1]). */
  latents: Float32Array;
  /** The 8-bit RGB image (pixel-space models), or undefined. */
  image?: Image;
}

/** The images of one model for a set of prompts and seeds. */
export interface SampleSet extends SampleSettings {
  /** The model (path or label). */
  model: string;
  /** Latent shape of each sample [C, H, W]. */
  shape: [number, number, number];
  /** Images per GPU batch they were generated in. */
  batch: number;
  /** Prompt-major: prompt i, seed j at i · seeds.length + j. */
  samples: Sample[];
  /** Words of the prompts the tokenizer did not know. */
  unknownWords: string[];
  /** Milliseconds spent generating (encode + sampling). */
  ms: number;
  /**
   * Milliseconds a sampler step takes once running: each batch's time from its first step's
   * report to its last, over its remaining steps (so one-off costs, such as the first use of
   * a kernel or encoding the prompts, are left out); NaN with one step a batch.
   */
  steadyStepMs: number;
}

/** Options of {@linkcode generateSamples}. */
export interface GenerateSamplesOptions extends Partial<SampleSettings> {
  /** The prompts (required). */
  prompts: string[];
  /** Images per GPU batch (default 1 on a CPU adapter, else 8); see the module doc. */
  batch?: number;
  /** Called after every sampler step with images·steps done and in all. */
  onProgress?: (done: number, total: number) => void;
  /** Cancels between steps. */
  signal?: AbortSignal;
}

/** `o`'s settings with the model's defaults where it leaves them out; checked. */
export function settingsOf(
  o: Partial<SampleSettings> & { prompts: string[] },
  defaults: SamplingDefaults,
): SampleSettings {
  const s: SampleSettings = {
    prompts: o.prompts,
    seeds: o.seeds ?? [0],
    steps: o.steps ?? defaults.steps,
    guidance: o.guidance ?? defaults.guidance,
    sampler: o.sampler ?? defaults.sampler,
    ...(o.height !== undefined ? { height: o.height } : {}),
    ...(o.width !== undefined ? { width: o.width } : {}),
    ...(o.negativePrompt !== undefined ? { negativePrompt: o.negativePrompt } : {}),
  };
  if (!Array.isArray(s.prompts) || s.prompts.length === 0) {
    throw new RangeError("prompts must be a non-empty list");
  }
  if (
    !Array.isArray(s.seeds) || s.seeds.length === 0 ||
    s.seeds.some((x) => !Number.isInteger(x) || x < 0 || x >= 2 ** 32)
  ) {
    throw new RangeError("seeds must be a non-empty list of integers in [0, 2^32)");
  }
  return s;
}

/** Generates one image per prompt and seed with a loaded pipeline. */
export async function generateSamples(
  pipe: Pipeline,
  o: GenerateSamplesOptions,
): Promise<SampleSet> {
  const s = settingsOf(o, pipe.defaults);
  if (!pipe.encoder && !pipe.prompts) {
    throw new TypeError(
      `${pipe.path}: has no text encoder, and eval generates from text prompts; name the ` +
        "folder holding its model's (eval --text-encoder; a quantized artifact carries none)",
    );
  }
  const g = latentGeometry(pipe);
  const C = g.channels;
  const H = latentCells(g, s.height, `${pipe.path}: height`);
  const W = latentCells(g, s.width, `${pipe.path}: width`);
  const tooBig = pipe.vaeProblem(H, W);
  if (tooBig) throw new RangeError(`${pipe.path}: ${tooBig}`);
  const batch = o.batch ?? (pipe.runtime.info.fallback ? 1 : 8);
  if (!Number.isInteger(batch) || batch < 1) {
    throw new RangeError(`batch must be a positive integer, got ${batch}`);
  }
  const jobs = s.prompts.flatMap((prompt) => s.seeds.map((seed) => ({ prompt, seed })));
  const total = jobs.length * s.steps;
  const per = C * H * W;
  const samples: Sample[] = [];
  const unknown = new Set<string>();
  const t0 = performance.now();
  let steadyMs = 0;
  let steadySteps = 0;
  o.onProgress?.(0, total);
  for (let b = 0; b < jobs.length; b += batch) {
    const part = jobs.slice(b, b + batch);
    const noise = new Float32Array(part.length * per);
    part.forEach((j, i) => noise.set(new Prng(j.seed).normals(per), i * per));
    const res = await pipe.generate({
      prompts: part.map((j) => j.prompt),
      negativePrompt: s.negativePrompt,
      latents: noise,
      steps: s.steps,
      guidance: s.guidance,
      sampler: s.sampler,
      height: H,
      width: W,
      signal: o.signal,
      onStep: (st) => o.onProgress?.(b * s.steps + part.length * st.step, total),
    });
    res.unknownWords.forEach((w) => unknown.add(w));
    const st = res.timings.stepMs;
    for (let i = 1; i < st.length; i++) steadyMs += st[i];
    steadySteps += Math.max(0, st.length - 1);
    // A latent model's images are its VAE's (none without one: latents only).
    const dec = pipe.vae ? await pipe.decode(res.latents, res.shape) : undefined;
    part.forEach((j, i) => {
      const latents = res.latents.slice(i * per, (i + 1) * per);
      let image = C === 3 || C === 1 ? tensorToImage(latents, C, H, W) : undefined;
      if (dec) {
        const [, oc, oh, ow] = dec.shape;
        image = tensorToImage(
          dec.images.subarray(i * oc * oh * ow, (i + 1) * oc * oh * ow),
          oc,
          oh,
          ow,
        );
      }
      samples.push({ ...j, latents, image });
    });
  }
  return {
    ...s,
    model: pipe.path,
    shape: [C, H, W],
    batch,
    samples,
    unknownWords: [...unknown],
    ms: performance.now() - t0,
    steadyStepMs: steadySteps ? steadyMs / steadySteps : NaN,
  };
}
