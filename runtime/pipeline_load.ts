/**
 * Loading a pipeline: a model folder in diffusers' layout (PixArt with its caption encoder
 * and scheduler config, or FLUX) or a quantized artifact, onto a runtime.
 *
 * @module
 */
import { join } from "node:path";
import {
  EmojiCaptionEncoder,
  isEmojiEncoderConfig,
  parseEmojiEncoderConfig,
} from "../plugins/models/emoji_encoder.ts";
import { EmojiTokenizer } from "../plugins/models/emoji_tokenizer.ts";
import { loadFlux } from "../plugins/models/flux_load.ts";
import { parseFlowSchedulerConfig, parseFluxConfig } from "../plugins/models/flux_config.ts";
import type { PixArtModel } from "../plugins/models/pixart.ts";
import { loadPixArt } from "../plugins/models/pixart_load.ts";
import { parsePixArtConfig } from "../plugins/models/pixart_config.ts";
import { CheckpointError } from "./errors.ts";
import { exists } from "./io/fs.ts";
import { readJsonFile as readJson } from "./io/json.ts";
import type { Runtime } from "./gpu/device.ts";
import { openCheckpoint, transformerDir } from "./io/safetensors_index.ts";
import { denseLinears } from "./model/linear.ts";
import { FLUX_FLOW_CONFIG } from "./sampling/flow_euler.ts";
import {
  DEFAULT_VP_SCHEDULERS,
  parseVpSchedulerConfig,
  vpSamplerOptions,
  type VpSchedulerConfigs,
} from "./sampling/vp_scheduler_config.ts";
import {
  FLUX_SAMPLING,
  PIXART_SAMPLING,
  readSamplingDefaults,
  type SamplingDefaults,
} from "./model_defaults.ts";
import { DEFAULT_MODEL_DIR, type LoadPipelineOptions, Pipeline } from "./pipeline.ts";
import { attachPromptEncoder } from "./prompts_load.ts";
import { attachVae } from "./vae_load.ts";

/**
 * A PixArt folder's scheduler/scheduler_config.json as both samplers' configs (none: each
 * sampler's diffusers defaults).
 */
export async function readVpSchedulers(dir: string): Promise<VpSchedulerConfigs> {
  const path = join(dir, "scheduler", "scheduler_config.json");
  const has = await exists(path);
  return has ? parseVpSchedulerConfig(await readJson(path), path) : DEFAULT_VP_SCHEDULERS;
}

/**
 * PixArt's sampling defaults with the sampler of the scheduler class the folder names
 * (DDIMScheduler: ddim), as diffusers' pipeline runs it.
 */
export function pixArtSampling(schedulers: VpSchedulerConfigs): SamplingDefaults {
  return { ...PIXART_SAMPLING, sampler: schedulers.sampler };
}

/** Throws the scheduler config's error now if it cannot give the default sampler. */
export function checkDefaultSampler(s: VpSchedulerConfigs, d: SamplingDefaults): void {
  if (d.sampler !== "flow-euler") vpSamplerOptions(s, d.sampler);
}

/** Loads a model folder (diffusers layout) onto `rt`. */
export async function loadPipeline(rt: Runtime, o: LoadPipelineOptions = {}): Promise<Pipeline> {
  const dir = o.path ?? DEFAULT_MODEL_DIR;
  const pipe = await loadModel(rt, dir, o);
  // An artifact carries no VAE: only one named by the option.
  const modelDir = dir.endsWith(".safetensors") ? undefined : dir;
  const withText = await attachPromptEncoder(rt, pipe, {
    where: o.textEncoder,
    maxSequenceLength: o.maxSequenceLength,
    weights: o.textEncoderDtype,
  }, modelDir);
  return await attachVae(rt, withText, o.vae, modelDir);
}

/** The transformer, its scheduler configs and caption encoder, from a folder or an artifact. */
async function loadModel(rt: Runtime, dir: string, o: LoadPipelineOptions): Promise<Pipeline> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(dir);
  } catch {
    throw new CheckpointError(dir, "no such model folder", "path");
  }
  if (stat.isFile && dir.endsWith(".safetensors")) { // a quantized artifact (deno task quantize)
    const { loadArtifactPipeline } = await import("./quant/artifact_pipeline.ts");
    return await loadArtifactPipeline(rt, dir, { dtype: o.dtype });
  }
  if (!stat.isDirectory) {
    throw new CheckpointError(
      dir,
      "expected a model folder (with transformer/config.json)",
      "path",
    );
  }
  const tdir = await transformerDir(dir);
  const cfgPath = join(tdir, "config.json");
  const raw = await readJson(cfgPath);
  const dtype = o.dtype ?? "f32";
  if ((raw as Record<string, unknown>)?.["_class_name"] === "FluxTransformer2DModel") {
    return await loadFluxPipeline(rt, dir, tdir, raw, o);
  }
  const config = parsePixArtConfig(raw, cfgPath);
  const schedulers = await readVpSchedulers(dir);
  const defaults = await readSamplingDefaults(dir, pixArtSampling(schedulers));
  checkDefaultSampler(schedulers, defaults);
  const source = await openCheckpoint(tdir);
  let transformer: PixArtModel;
  try {
    transformer = await loadPixArt(rt, source, config, {
      dtype,
      linears: o.linears ?? denseLinears(dtype),
    });
  } finally {
    source.close();
  }
  let encoder: EmojiCaptionEncoder | undefined;
  let tokenizer: EmojiTokenizer | undefined;
  const edir = join(dir, "text_encoder");
  const ecfgPath = join(edir, "config.json");
  if (await exists(ecfgPath)) {
    try {
      // The bundled model's own caption encoder; a T5 there is a real checkpoint's (prompts_load.ts).
      const raw = await readJson(ecfgPath);
      if (isEmojiEncoderConfig(raw)) {
        const ecfg = parseEmojiEncoderConfig(raw, ecfgPath);
        const vocabPath = join(dir, "tokenizer", "vocab.json");
        tokenizer = new EmojiTokenizer(
          await readJson(vocabPath) as string[],
          ecfg.maxLength,
          vocabPath,
        );
        if (tokenizer.vocab.length !== ecfg.vocabSize) {
          throw new CheckpointError(
            vocabPath,
            `has ${tokenizer.vocab.length} words, the encoder ${ecfg.vocabSize}`,
          );
        }
        const esrc = await openCheckpoint(join(edir, "model.safetensors"));
        try {
          encoder = await EmojiCaptionEncoder.load(rt, esrc, ecfg);
        } finally {
          esrc.close();
        }
        if (config.captionChannels !== null && ecfg.dModel !== config.captionChannels) {
          throw new CheckpointError(
            ecfgPath,
            `d_model ${ecfg.dModel} does not match caption_channels ${config.captionChannels}`,
            "d_model",
          );
        }
      }
    } catch (e) {
      transformer.release();
      encoder?.release();
      throw e;
    }
  }
  return new Pipeline(rt, dir, transformer, encoder, tokenizer, undefined, defaults, schedulers);
}

/** A FLUX folder: transformer/ (+ scheduler/scheduler_config.json; default FLUX.1-dev's). */
async function loadFluxPipeline(
  rt: Runtime,
  dir: string,
  tdir: string,
  raw: unknown,
  o: LoadPipelineOptions,
): Promise<Pipeline> {
  const config = parseFluxConfig(raw, join(tdir, "config.json"));
  const spath = join(dir, "scheduler", "scheduler_config.json");
  const hasScheduler = await exists(spath);
  const scheduler = hasScheduler
    ? parseFlowSchedulerConfig(await readJson(spath), spath)
    : { ...FLUX_FLOW_CONFIG };
  const defaults = await readSamplingDefaults(dir, FLUX_SAMPLING);
  const dtype = o.dtype ?? "f32";
  const source = await openCheckpoint(tdir);
  try {
    const model = await loadFlux(rt, source, config, {
      dtype,
      linears: o.linears ?? denseLinears(dtype),
    });
    return new Pipeline(rt, dir, model, undefined, undefined, scheduler, defaults);
  } finally {
    source.close();
  }
}
