/**
 * The evaluation behind `deno task eval` and the ablation harness: generate one image per
 * prompt and seed, score prompt fidelity against the emoji dataset, and, given a reference
 * model (the FP32 model a quantized plan is scored against), compare the two models' images
 * of the same prompts and seeds by PSNR, SSIM and cosine.
 *
 * The image of (prompt, seed) has the initial noise `new Prng(seed).normals(C·H·W)` in any
 * batch; generated one at a time (batch 1, the CPU default) it is exactly `deno task generate
 * --prompt P --seed S` with the same steps, guidance, sampler and dtype. Other batch sizes
 * change the GEMM shapes and so the f32 rounding (~1e-4), which is why a model and its
 * reference are compared only at the same batch size.
 *
 * Figures: PSNR (dB, 8-bit images, R = 255) and SSIM (8-bit images, R = 255; the
 * scikit-image Gaussian form, metrics.ts) are means over images; cosine is the mean cosine
 * similarity of each image's final f32 latents (for the pixel-space emoji model: its pixels
 * in [-1, 1]). The mean PSNR is `Infinity` when an image equals its reference (`identical`
 * counts them).
 *
 * @module
 */
import { join } from "node:path";
import { FluxModel } from "../../plugins/models/flux.ts";
import { vaeDir } from "../vae_load.ts";
import { type AdapterChoice, createRuntime, type Runtime } from "../gpu/device.ts";
import { type Image, tensorToImage } from "../io/png.ts";
import { Prng } from "../io/prng.ts";
import {
  DEFAULT_MODEL_DIR,
  loadPipeline,
  type Pipeline,
  type SamplerName,
  type SamplingDefaults,
} from "../pipeline.ts";
import {
  EMOJI_SIZE,
  type EmojiDataset,
  type FidelityResult,
  loadEmojiDataset,
  promptTarget,
  scoreImage,
  summarizeFidelity,
} from "./fidelity.ts";
import { writeImages } from "./eval_images.ts";
import { cosine, psnr, ssim } from "./metrics.ts";

/** The committed prompt list of `deno task eval`. */
export const DEFAULT_PROMPTS_FILE: string =
  new URL("../../bench/prompts/emoji_fidelity.txt", import.meta.url).pathname;

/** Reads a prompt list: one prompt per line; blank lines and lines starting with # skipped. */
export function parsePromptList(text: string): string[] {
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
}

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

function settingsOf(
  o: Partial<SampleSettings> & { prompts: string[] },
  defaults: SamplingDefaults,
): SampleSettings {
  const s: SampleSettings = {
    prompts: o.prompts,
    seeds: o.seeds ?? [0],
    steps: o.steps ?? defaults.steps,
    guidance: o.guidance ?? defaults.guidance,
    sampler: o.sampler ?? defaults.sampler,
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
  if (pipe.model instanceof FluxModel) { // prompts need a caption encoder; FLUX has none here
    throw new TypeError(
      `${pipe.path}: eval generates from text prompts and FLUX models have no caption encoder ` +
        "here; compare FLUX runs with generate --caption-embeds … --save-latents",
    );
  }
  const c = pipe.transformer.config;
  const C = c.inChannels, H = c.sampleSize, W = c.sampleSize;
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
      latents: noise,
      steps: s.steps,
      guidance: s.guidance,
      sampler: s.sampler,
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

/** One image's agreement with its reference. */
export interface ImageComparison {
  /** The image's prompt. */
  prompt: string;
  /** The image's seed. */
  seed: number;
  /** dB on 8-bit pixels (Infinity when equal). */
  psnr: number;
  /** SSIM on 8-bit pixels (R = 255). */
  ssim: number;
  /** Of the final latents. */
  cosine: number;
}

/** How close a model's images are to the reference's. */
export interface Comparison {
  /** Mean PSNR in dB over images (8-bit, R = 255); Infinity when an image is identical. */
  psnr: number;
  /** Lowest PSNR of one image. */
  psnrMin: number;
  /** Mean SSIM (8-bit, R = 255). */
  ssim: number;
  /** Mean cosine similarity of the final latents. */
  cosine: number;
  /** Images identical to their reference (8-bit). */
  identical: number;
  /** Per image, in the sample order. */
  images: ImageComparison[];
}

/** Checks that two sample sets come from the same prompts, seeds and settings. */
function checkSameSettings(a: SampleSet, b: SampleSet): void {
  const diff: string[] = [];
  if (a.prompts.join("\n") !== b.prompts.join("\n")) diff.push("prompts");
  if (a.seeds.join() !== b.seeds.join()) diff.push("seeds");
  for (const k of ["steps", "guidance", "sampler", "batch"] as const) {
    if (a[k] !== b[k]) diff.push(k);
  }
  if (a.shape.join() !== b.shape.join()) diff.push(`shape [${a.shape}] vs [${b.shape}]`);
  if (diff.length) {
    throw new RangeError(`the reference samples differ from the model's in ${diff.join(", ")}`);
  }
}

/** Compares a model's samples with the reference's (same prompts, seeds and settings). */
export function compareSamples(model: SampleSet, ref: SampleSet): Comparison {
  checkSameSettings(model, ref);
  const images = model.samples.map((m, i): ImageComparison => {
    const r = ref.samples[i];
    if (!m.image || !r.image) {
      throw new RangeError(
        "PSNR/SSIM need images: the model must work in pixel space or have a VAE decoder",
      );
    }
    return {
      prompt: m.prompt,
      seed: m.seed,
      psnr: psnr(m.image.data, r.image.data, 255),
      ssim: ssim(m.image, r.image),
      cosine: cosine(m.latents, r.latents),
    };
  });
  const mean = (f: (c: ImageComparison) => number) =>
    images.reduce((s, c) => s + f(c), 0) / images.length;
  return {
    psnr: mean((c) => c.psnr),
    psnrMin: Math.min(...images.map((c) => c.psnr)),
    ssim: mean((c) => c.ssim),
    cosine: mean((c) => c.cosine),
    identical: images.filter((c) => c.psnr === Infinity).length,
    images,
  };
}

/** Why fidelity cannot be scored for these samples, or undefined when it can. */
export function fidelityBlocker(set: SampleSet, ds?: EmojiDataset): string | undefined {
  const [C, H, W] = set.shape;
  if (C !== 3 || H !== EMOJI_SIZE || W !== EMOJI_SIZE) {
    return `fidelity needs ${EMOJI_SIZE}×${EMOJI_SIZE} RGB images, the model makes ${C}×${H}×${W}`;
  }
  if (!ds) return undefined;
  for (const p of set.prompts) {
    const t = promptTarget(ds, p);
    if (typeof t === "string") return t;
  }
  return undefined;
}

/** Scores prompt fidelity of a sample set against the emoji dataset. */
export function scoreFidelity(set: SampleSet, ds: EmojiDataset): FidelityResult {
  const why = fidelityBlocker(set, ds);
  if (why) throw new RangeError(why);
  const hits = set.samples.map((s) =>
    scoreImage(ds, s.image!.data, promptTarget(ds, s.prompt) as number, s.prompt, s.seed)
  );
  return summarizeFidelity(ds, hits);
}

/** A model to evaluate: a path (folder or artifact) or a loaded pipeline. */
export type ModelSource = string | Pipeline;

/** Options of {@linkcode evaluate}. */
export interface EvaluateOptions extends Partial<SampleSettings> {
  /** The model (default the bundled one). */
  model?: ModelSource;
  /** The reference: a model, or its samples from an earlier run (same settings). */
  reference?: ModelSource | SampleSet;
  /** The prompts (default the lines of `promptsFile`). */
  prompts?: string[];
  /** A prompt list file (default bench/prompts/emoji_fidelity.txt). */
  promptsFile?: string;
  /** Only the first N prompts. */
  limit?: number;
  /** Transformer storage type of the model when loaded from a path (default f32). */
  dtype?: "f32" | "f16";
  /** The same for the reference (default f32: the FP32 model plans are scored against). */
  referenceDtype?: "f32" | "f16";
  /** The runtime (default: one created on `adapter` and destroyed at the end). */
  runtime?: Runtime;
  /** Adapter when no runtime is given (default auto). */
  adapter?: AdapterChoice;
  /** "auto" (default): score fidelity when the images are 64×64 RGB and every prompt names one
   *  dataset emoji; true: require it; false: skip it. */
  fidelity?: boolean | "auto";
  /** The emoji dataset, or the folder of an unpacked package (default: fetched through npm). */
  dataset?: EmojiDataset | string;
  /** Writes every image as PNG under `outDir/model/` and `outDir/reference/`. */
  outDir?: string;
  /** Images per GPU batch (see {@linkcode GenerateSamplesOptions.batch}). */
  batch?: number;
  /** Progress: phase ("model" / "reference"), images·steps done and in all. */
  onProgress?: (phase: "model" | "reference", done: number, total: number) => void;
  /** Cancels between steps. */
  signal?: AbortSignal;
}

/** What {@linkcode evaluate} returns. */
export interface EvaluateResult {
  /** The settings used. */
  settings: SampleSettings;
  /** The model's samples. */
  samples: SampleSet;
  /** The reference's samples when a reference was given (reusable for the next candidate). */
  referenceSamples?: SampleSet;
  /** Prompt fidelity of the model, unless skipped. */
  fidelity?: FidelityResult;
  /** Prompt fidelity of the reference, when there is one and fidelity was scored. */
  referenceFidelity?: FidelityResult;
  /** Why fidelity was skipped ("turned off", or what blocks it), or undefined. */
  fidelitySkipped?: string;
  /** The comparison with the reference. */
  comparison?: Comparison;
  /** The adapter's description. */
  adapter: string;
  /** Whether the adapter is a CPU (fallback) one. */
  fallback: boolean;
  /** Things the caller should know (the reference's own defaults differ from those used…). */
  notes: string[];
}

/**
 * Where the reference's own defaults differ from the settings taken from the model's (an
 * artifact made before artifacts carried their model's defaults samples at PixArt's).
 */
function defaultsDiffer(
  s: SampleSettings,
  given: Partial<SampleSettings>,
  ref: SamplingDefaults,
): string[] {
  return (["steps", "guidance", "sampler"] as const)
    .filter((k) => given[k] === undefined && ref[k] !== s[k])
    .map((k) =>
      `both models sampled with the model's ${k} ${s[k]}; the reference's own default is ` +
      `${ref[k]} (give --${k} to choose)`
    );
}

function label(m: ModelSource): string {
  return typeof m === "string" ? m : m.path;
}

/**
 * Evaluates a model: its images for the prompts × seeds, prompt fidelity, and with a
 * reference, PSNR/SSIM/cosine against the reference's images of the same prompts and seeds.
 */
export async function evaluate(o: EvaluateOptions = {}): Promise<EvaluateResult> {
  let prompts = o.prompts ?? parsePromptList(
    await Deno.readTextFile(o.promptsFile ?? DEFAULT_PROMPTS_FILE),
  );
  if (o.limit !== undefined) {
    if (!Number.isInteger(o.limit) || o.limit < 1) {
      throw new RangeError(`limit must be a positive integer, got ${o.limit}`);
    }
    prompts = prompts.slice(0, o.limit);
  }
  // The model's defaults fill what `o` leaves out; the reference then samples the same way.
  let settings: SampleSettings | undefined;
  const want = o.fidelity ?? "auto";
  const ownRt = !o.runtime;
  const rt = o.runtime ?? await createRuntime({
    adapter: o.adapter ?? "auto",
    f16: o.dtype === "f16" || o.referenceDtype === "f16" ? true : "auto",
  });
  const notes: string[] = [];
  try {
    const run = async (m: ModelSource, phase: "model" | "reference"): Promise<SampleSet> => {
      const dtype = phase === "model" ? o.dtype : o.referenceDtype ?? "f32";
      // An artifact carries no VAE: a latent artifact decodes with its reference folder's.
      const vae = phase === "model" && typeof m === "string" && m.endsWith(".safetensors") &&
          typeof o.reference === "string" && await vaeDir(o.reference)
        ? o.reference
        : undefined;
      const pipe = typeof m === "string" ? await loadPipeline(rt, { path: m, dtype, vae }) : m;
      try {
        settings ??= settingsOf({ ...o, prompts }, pipe.defaults);
        if (phase === "reference") notes.push(...defaultsDiffer(settings, o, pipe.defaults));
        const set = await generateSamples(pipe, {
          ...settings,
          batch: o.batch,
          signal: o.signal,
          onProgress: (d, t) => o.onProgress?.(phase, d, t),
        });
        if (typeof m === "string") set.model = m;
        return set;
      } finally {
        if (typeof m === "string") pipe.release();
      }
    };
    const samples = await run(o.model ?? DEFAULT_MODEL_DIR, "model");
    let referenceSamples: SampleSet | undefined;
    if (o.reference !== undefined) {
      const r = o.reference;
      referenceSamples = typeof r === "object" && "samples" in r ? r : await run(r, "reference");
    }
    const comparison = referenceSamples ? compareSamples(samples, referenceSamples) : undefined;

    let fidelity: FidelityResult | undefined;
    let referenceFidelity: FidelityResult | undefined;
    let fidelitySkipped: string | undefined;
    if (want !== false) {
      let why = fidelityBlocker(samples);
      let ds: EmojiDataset | undefined;
      if (!why) {
        try {
          ds = typeof o.dataset === "object" ? o.dataset : await loadEmojiDataset(o.dataset);
          why = fidelityBlocker(samples, ds);
        } catch (e) {
          if (want === true) throw e;
          why = (e as Error).message; // auto: report why, keep the comparison
        }
      }
      if (why && want === true) throw new RangeError(why);
      if (why) {
        fidelitySkipped = why;
      } else {
        fidelity = scoreFidelity(samples, ds!);
        if (referenceSamples) referenceFidelity = scoreFidelity(referenceSamples, ds!);
      }
    } else {
      fidelitySkipped = "turned off";
    }
    if (o.outDir) {
      await writeImages(join(o.outDir, "model"), samples);
      if (referenceSamples) await writeImages(join(o.outDir, "reference"), referenceSamples);
    }
    return {
      settings: settings!, // set by the model's run, the first
      notes,
      samples,
      referenceSamples,
      fidelity,
      referenceFidelity,
      fidelitySkipped,
      comparison,
      adapter: rt.info.description,
      fallback: rt.info.fallback,
    };
  } finally {
    if (ownRt) rt.destroy();
  }
}

/** The label of a model source, for reports. */
export function modelLabel(m: ModelSource | SampleSet): string {
  return typeof m === "object" && "samples" in m ? m.model : label(m);
}
