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
import { vaeDir } from "../vae_load.ts";
import { type AdapterChoice, createRuntime, type Runtime } from "../gpu/device.ts";
import {
  DEFAULT_MODEL_DIR,
  loadPipeline,
  type Pipeline,
  type SamplingDefaults,
} from "../pipeline.ts";
import { hasFluxEncoders, hasT5Encoder } from "../../plugins/models/prompt_encoders.ts";
import type { TextWeights } from "../../plugins/models/text_weights.ts";
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
import { generateSamples, type SampleSet, type SampleSettings, settingsOf } from "./samples.ts";

export {
  generateSamples,
  type GenerateSamplesOptions,
  type Sample,
  type SampleSet,
  type SampleSettings,
} from "./samples.ts";

/** The committed prompt list of `deno task eval`. */
export const DEFAULT_PROMPTS_FILE: string =
  new URL("../../bench/prompts/emoji_fidelity.txt", import.meta.url).pathname;

/** Reads a prompt list: one prompt per line; blank lines and lines starting with # skipped. */
export function parsePromptList(text: string): string[] {
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
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
  for (const k of ["steps", "guidance", "sampler", "batch", "negativePrompt"] as const) {
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
  /**
   * The folder holding the model's prompt encoders (a real checkpoint's T5, or FLUX's CLIP +
   * T5), for an artifact, which carries none; default the model folder's own, and for an
   * artifact the reference folder's when it has them.
   */
  textEncoder?: string;
  /** Storage of both models' prompt encoders' weights (text_weights.ts); default "auto". */
  textEncoderDtype?: TextWeights;
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

/** Whether the folder holds a real checkpoint's prompt encoders (either family's). */
async function hasPromptEncoders(dir: string): Promise<boolean> {
  return await hasT5Encoder(dir) || await hasFluxEncoders(dir);
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
      // An artifact carries no VAE nor prompt encoders: it takes its reference folder's.
      const artifact = phase === "model" && typeof m === "string" && m.endsWith(".safetensors");
      const ref = artifact && typeof o.reference === "string" ? o.reference : undefined;
      const vae = ref && await vaeDir(ref) ? ref : undefined;
      const textEncoder = phase === "reference"
        ? undefined
        : o.textEncoder ?? (ref && await hasPromptEncoders(ref) ? ref : undefined);
      const pipe = typeof m === "string"
        ? await loadPipeline(rt, {
          path: m,
          dtype,
          vae,
          textEncoder,
          textEncoderDtype: o.textEncoderDtype,
        })
        : m;
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
