/**
 * The calibration runner shared by the rotation (linear-input statistics) and attention
 * (attention maps) plugins: it runs the FP model on calibration prompts over every
 * sampler timestep with observers installed, and nothing else. Observers accumulate
 * their statistics on the GPU and read them back when asked; nothing here keeps
 * activations.
 *
 * A model with its own caption encoder (the bundled PixArt) or a real checkpoint's (PixArt's
 * T5, FLUX's CLIP + T5: in the model folder or the folder `textEncoder` names) runs text
 * prompts; a FLUX model without its encoders runs precomputed embeddings
 * ({@linkcode CalibrationEmbeds}: each batch row one prompt). Each samples as `generate`
 * does (PixArt dpm++2m, FLUX flow-euler with the model's scheduler config).
 *
 * @module
 */
import { FluxModel } from "../../plugins/models/flux.ts";
import type { SelfAttention } from "../../plugins/models/pixart.ts";
import type { Runtime } from "../gpu/device.ts";
import type { LinearFactory } from "../model/linear.ts";
import { denseLinears } from "../model/linear.ts";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { transformerDir } from "../io/safetensors_index.ts";
import { hasFluxEncoders, hasT5Encoder } from "../../plugins/models/prompt_encoders.ts";
import type { TextWeights } from "../../plugins/models/text_weights.ts";
import { defaultSequenceLength } from "../prompts_load.ts";
import { foldersHash } from "./model_hash.ts";
import { latentCells, latentGeometry } from "../latent_geometry.ts";
import {
  FLUX_SAMPLING,
  PIXART_SAMPLING,
  readSamplingDefaults,
  type SamplingDefaults,
} from "../model_defaults.ts";
import {
  type CaptionEmbeds,
  DEFAULT_MODEL_DIR,
  loadPipeline,
  type SamplerName,
} from "../pipeline.ts";

/** The model families calibration tells its observers apart by. */
export type CalibrationFamily = "pixart" | "flux";

/**
 * Precomputed calibration inputs (`quantize --calib-embeds`): caption embeddings under
 * diffusers' names, each batch row one calibration prompt, and optionally the initial
 * noise [B, C, H, W] (its H×W is the calibrated latent size).
 */
export interface CalibrationEmbeds {
  /** prompt_embeds [B, L, C] (+ mask, negatives; FLUX: pooled_prompt_embeds [B, P]). */
  embeds: CaptionEmbeds;
  /** Initial noise of each row, [B, C, H, W]; default seeded noise at the model's size. */
  latents?: { data: Float32Array; shape: number[] };
}

/** The family of a model folder, from its transformer config's `_class_name`. */
export async function modelFamily(path: string = DEFAULT_MODEL_DIR): Promise<CalibrationFamily> {
  const file = join(await transformerDir(path), "config.json");
  const cfg = JSON.parse(await Deno.readTextFile(file).catch(() => "{}"));
  return cfg?._class_name === "FluxTransformer2DModel" ? "flux" : "pixart";
}

/**
 * The sampling defaults of the model at `path` (folder): its model_index.json over its
 * family's (`family` when the caller has read it already).
 */
export async function modelSamplingDefaults(
  path: string = DEFAULT_MODEL_DIR,
  family?: CalibrationFamily,
): Promise<SamplingDefaults> {
  family ??= await modelFamily(path);
  return await readSamplingDefaults(path, family === "flux" ? FLUX_SAMPLING : PIXART_SAMPLING);
}

/** sha-256 (hex) of calibration embeddings: shapes and every value (the cache key's part). */
export function calibrationEmbedsHash(e: CalibrationEmbeds): string {
  const h = createHash("sha256");
  const put = (name: string, a: Float32Array | undefined) => {
    h.update(`${name}:${a ? a.length : -1};`);
    if (a) h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  };
  h.update(JSON.stringify({ shape: e.embeds.shape, latents: e.latents?.shape ?? null }));
  put("embeds", e.embeds.embeds);
  put("mask", e.embeds.mask);
  put("pooled", e.embeds.pooled);
  put("negative", e.embeds.negative?.embeds);
  put("negative_mask", e.embeds.negative?.mask);
  put("negative_pooled", e.embeds.negative?.pooled);
  put("latents", e.latents?.data);
  return h.digest("hex");
}

/**
 * The image size a calibration on prompts runs at, in pixels (default the model's own: PARO
 * plans and the statistics are of this size). Embeddings bring theirs in their latents.
 */
export interface CalibrationSize {
  /** Image height in pixels. */
  height?: number;
  /** Image width in pixels. */
  width?: number;
}

/** Where a real checkpoint's prompt encoders come from (loadPipeline's options of these names). */
export interface PromptEncoderSource {
  /** The folder holding them (PixArt: T5; FLUX: CLIP + T5); default the model folder's. */
  textEncoder?: string;
  /** T5's tokens per prompt; default the diffusers pipeline's (PixArt-α 120, Σ 300, FLUX 512). */
  maxSequenceLength?: number;
  /** Storage of their weights (plugins/models/text_weights.ts); default "auto". */
  textEncoderDtype?: TextWeights;
}

/**
 * `o`'s prompt-encoder source and calibration size alone, for the next step of a calibration
 * to take (the options objects they travel in carry other fields the next step must not get).
 */
export function encoderAndSize(
  o: PromptEncoderSource & CalibrationSize,
): PromptEncoderSource & CalibrationSize {
  const { textEncoder, maxSequenceLength, textEncoderDtype, height, width } = o;
  return { textEncoder, maxSequenceLength, textEncoderDtype, height, width };
}

/**
 * Calibration prompts for a real checkpoint's text encoders (T5, CLIP + T5): sixteen captions
 * over the categories text-to-image prompts span (people, animals, landscapes, cities, food,
 * vehicles, science fiction, interiors, lettering, macro, and painting, watercolour, anime and
 * 3D styles). The bundled model, whose vocabulary is emoji names, keeps its own list
 * (calibrate.ts: CALIBRATION_PROMPTS).
 */
export const CAPTION_CALIBRATION_PROMPTS: readonly string[] = [
  "a photo of a woman reading a book in a sunlit cafe",
  "portrait of an old fisherman with a grey beard, dramatic lighting",
  "a golden retriever puppy playing in fresh snow",
  "a red fox in an autumn forest, telephoto photograph",
  "a mountain lake at sunrise with mist over the water",
  "a busy city street at night with neon signs and rain",
  "a bowl of ramen with a soft-boiled egg, overhead shot",
  "a vintage red sports car parked by the sea",
  "an astronaut floating inside a space station, cinematic",
  "a watercolor painting of a lighthouse on a cliff",
  "a cozy living room with a fireplace and wooden furniture",
  'a shop window with a sign that says "OPEN" in bold letters',
  "a macro photo of a dewdrop on a green leaf",
  "an anime illustration of a girl with a sword under cherry blossoms",
  "a 3D render of a glass chess set on a marble table",
  "an oil painting of a stormy sea with a sailing ship",
];

/**
 * Whether calibration on prompts runs through a real checkpoint's text encoders (the model
 * folder's or `textEncoder`'s): their default prompts are {@linkcode CAPTION_CALIBRATION_PROMPTS}.
 * `family`: the model's, when the caller has read it.
 */
export async function usesCaptionEncoder(
  path: string,
  o: PromptEncoderSource & { embeds?: CalibrationEmbeds } = {},
  family?: CalibrationFamily,
): Promise<boolean> {
  if (o.embeds || path.endsWith(".safetensors")) return false;
  const dir = o.textEncoder ?? path;
  const flux = (family ?? await modelFamily(path)) === "flux";
  return flux ? await hasFluxEncoders(dir) : await hasT5Encoder(dir);
}

/** The error a FLUX calibration with neither text encoders nor embeddings gives (names the flags). */
export function fluxNeedsEmbedsError(what: string): RangeError {
  return new RangeError(
    `${what} on a FLUX model runs it on calibration prompts, which need its text encoders ` +
      "(text_encoder/ + tokenizer/, text_encoder_2/ + tokenizer_2/ in the model folder, or " +
      "--text-encoder PATH naming the folder holding them), or precomputed embeddings: " +
      "--calib-embeds FILE (safetensors with prompt_embeds [B, L, C] and " +
      "pooled_prompt_embeds [B, P]; each batch row is one calibration prompt)",
  );
}

/**
 * Throws {@linkcode fluxNeedsEmbedsError} when a FLUX model would calibrate on text prompts
 * without its text encoders (checked before any work, so the flag is named at once).
 */
export async function checkFluxPrompts(
  path: string,
  family: CalibrationFamily,
  o: PromptEncoderSource & { embeds?: CalibrationEmbeds },
  what: string,
): Promise<void> {
  if (family !== "flux" || o.embeds) return;
  if (!await hasFluxEncoders(o.textEncoder ?? path)) throw fluxNeedsEmbedsError(what);
}

/**
 * The identity of the real checkpoint's prompt encoders a calibration on text prompts runs
 * (their files' sha-256 and T5's tokens per prompt), for cache keys; undefined when the
 * model has its own caption encoder, none, or calibrates on embeddings.
 */
export async function promptEncoderKey(
  path: string,
  family: CalibrationFamily,
  o: PromptEncoderSource & { embeds?: CalibrationEmbeds },
): Promise<{ sha256: string; length: number; weights?: TextWeights } | undefined> {
  if (!await usesCaptionEncoder(path, o, family)) return undefined;
  const dir = o.textEncoder ?? path;
  const flux = family === "flux";
  const parts = flux
    ? ["text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"]
    : ["text_encoder", "tokenizer"];
  const weights = o.textEncoderDtype ?? "auto";
  return {
    sha256: await foldersHash(dir, parts),
    length: o.maxSequenceLength ?? await defaultSequenceLength(dir, flux),
    ...(weights === "auto" ? {} : { weights }), // absent: earlier cache keys still match
  };
}

/** Options of {@linkcode runCalibration}. */
export interface CalibrationRunOptions extends PromptEncoderSource, CalibrationSize {
  /** Model folder; default the bundled model. */
  path?: string;
  /** Calibration prompts (≥ 8 across categories for linear statistics); unused with `embeds`. */
  prompts: readonly string[];
  /** Precomputed inputs instead of the prompts (FLUX without its text encoders: required). */
  embeds?: CalibrationEmbeds;
  /** Sampler steps (every timestep is observed); default the model's (`Pipeline.defaults`). */
  steps?: number;
  /** Guidance scale; default the model's (> 1: the batch is [uncond, cond]). */
  guidance?: number;
  /** Sampler; default the model's (FLUX: flow-euler, the only one). */
  sampler?: SamplerName;
  /** First seed; prompt i uses seed + i. Default 0. */
  seed?: number;
  /** Wraps the dense layers, e.g. with an input-statistics observer. */
  linears?: (inner: LinearFactory) => LinearFactory;
  /** Wraps dense self-attention, e.g. with an attention-map observer (told the family). */
  selfAttention?: (inner: SelfAttention, family: CalibrationFamily) => SelfAttention;
  /** Progress: prompt index, step and totals. */
  onProgress?: (p: { prompt: number; prompts: number; step: number; steps: number }) => void;
}

/** Row `i` of batched embeddings (and of its latents) as a batch of one. */
function embedsRow(e: CalibrationEmbeds, i: number): CalibrationEmbeds {
  const [B, L, C] = e.embeds.shape;
  const n = L * C;
  const row = (a: Float32Array | undefined, w: number) => a?.slice(i * w, (i + 1) * w);
  const p = e.embeds.pooled ? e.embeds.pooled.length / B : 0;
  const neg = e.embeds.negative;
  const lat = e.latents;
  const ln = lat ? lat.data.length / lat.shape[0] : 0;
  return {
    embeds: {
      embeds: row(e.embeds.embeds, n)!,
      mask: row(e.embeds.mask, L),
      shape: [1, L, C],
      pooled: row(e.embeds.pooled, p),
      negative: neg
        ? { embeds: row(neg.embeds, n)!, mask: row(neg.mask, L), pooled: row(neg.pooled, p) }
        : undefined,
    },
    latents: lat ? { data: row(lat.data, ln)!, shape: [1, ...lat.shape.slice(1)] } : undefined,
  };
}

/** Runs the FP32 model over the prompts and timesteps with the observers installed. */
export async function runCalibration(rt: Runtime, o: CalibrationRunOptions): Promise<void> {
  const count = o.embeds ? o.embeds.embeds.shape[0] : o.prompts.length;
  if (count === 0) throw new RangeError("Calibration needs at least one prompt");
  const dense = denseLinears("f32");
  // FLUX on embeddings needs no encoder (no CFG); PixArt's T5 may still encode the negative.
  const noEncoder = o.embeds !== undefined && await modelFamily(o.path) === "flux";
  const pipe = await loadPipeline(rt, {
    path: o.path,
    linears: o.linears ? o.linears(dense) : dense,
    vae: false, // calibration reads the transformer alone
    textEncoder: noEncoder ? false : o.textEncoder,
    maxSequenceLength: o.maxSequenceLength,
    textEncoderDtype: o.textEncoderDtype,
  });
  try {
    const flux = pipe.model instanceof FluxModel;
    if (flux && !o.embeds && !pipe.prompts) throw fluxNeedsEmbedsError("Calibration");
    if (o.selfAttention) {
      pipe.model.selfAttention = o.selfAttention(
        pipe.model.selfAttention,
        flux ? "flux" : "pixart",
      );
    }
    // Every prompt checked before the first is run: a bad line fails at once, not minutes in.
    if (!o.embeds && pipe.tokenizer) {
      for (const [i, p] of o.prompts.entries()) {
        try {
          pipe.tokenizer.encode(p);
        } catch (e) {
          throw new TypeError(`calibration prompt ${i + 1} ("${p}"): ${(e as Error).message}`);
        }
      }
    }
    const steps = o.steps ?? pipe.defaults.steps;
    const sized = o.height !== undefined || o.width !== undefined;
    if (sized && o.embeds?.latents) {
      throw new RangeError(
        "give the calibration size or latents in the embeddings (their H×W is the size), not both",
      );
    }
    const g = latentGeometry(pipe);
    const H = sized ? latentCells(g, o.height, "calibration height") : undefined;
    const W = sized ? latentCells(g, o.width, "calibration width") : undefined;
    for (let i = 0; i < count; i++) {
      const row = o.embeds ? embedsRow(o.embeds, i) : undefined;
      await pipe.generate({
        prompt: row ? undefined : o.prompts[i],
        captionEmbeds: row?.embeds,
        latents: row?.latents?.data,
        height: row?.latents?.shape[2] ?? H,
        width: row?.latents?.shape[3] ?? W,
        seed: (o.seed ?? 0) + i,
        steps,
        guidance: o.guidance, // undefined: the model's
        sampler: o.sampler,
        onStep: (s) => o.onProgress?.({ prompt: i, prompts: count, step: s.step, steps }),
      });
    }
  } finally {
    pipe.release();
  }
}
