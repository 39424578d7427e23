/**
 * Checks of a request against the model it selected, made before the request is queued so
 * that a request the model cannot run is the client's 400 (naming the field), never a 500,
 * and never fails the other requests of its batch: the prompt against the model's
 * vocabulary, the sampler against the model's own samplers and scheduler config, and the
 * size and image count against what the adapter can bind as one tensor.
 *
 * @module
 */
import { CheckpointError } from "../errors.ts";
import { FluxModel } from "../../plugins/models/flux.ts";
import { samplersFor } from "../model_defaults.ts";
import type { SamplerName } from "../pipeline.ts";
import { vpSamplerOptions } from "../sampling/vp_scheduler_config.ts";
import type { RowScope } from "../model/linear.ts";
import { widestScope } from "../model/row_chunks.ts";
import { vaeDecodeBytes } from "../../plugins/models/vae_tiling.ts";
import { latentGeometry } from "../latent_geometry.ts";
import { badRequest } from "./errors.ts";
import type { ModelEntry } from "./models.ts";

/**
 * Checks that the model's tokenizer can encode `text` (at least one known word), else a 400
 * naming `param`. A model without a tokenizer (a real checkpoint's T5) accepts any text.
 */
function checkEncodes(entry: ModelEntry, text: string, param: string): void {
  const tok = entry.pipeline.tokenizer;
  if (!tok) return;
  try {
    tok.encode(text);
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    const why = e.message.charAt(0).toLowerCase() + e.message.slice(1);
    throw badRequest(
      `Invalid value for '${param}': ${why.replace(/\.$/, "")} (${entry.id}).`,
      param,
    );
  }
}

/**
 * Checks that the model's tokenizer can encode the prompt (at least one known word).
 * @throws {ApiError} 400 with param "prompt".
 */
export function checkPrompt(entry: ModelEntry, prompt: string): void {
  checkEncodes(entry, prompt, "prompt");
}

/**
 * Checks a negative prompt and FLUX's true-CFG scale against the model: `true_cfg` is FLUX's
 * (FluxPipeline's true_cfg_scale), and there it and a negative prompt go together (the
 * pipeline ignores either alone); the bundled tokenizer must know a word of the negative.
 * @throws {ApiError} 400 with param "negative_prompt" or "true_cfg".
 */
export function checkNegativePrompt(
  entry: ModelEntry,
  negative: string | undefined,
  trueCfg: number | undefined,
): void {
  const flux = entry.pipeline.model instanceof FluxModel;
  if (trueCfg !== undefined && !flux) {
    throw badRequest(
      `Invalid value for 'true_cfg': ${entry.id} is not a FLUX model; its guidance is 'guidance'.`,
      "true_cfg",
      "unsupported_value",
    );
  }
  const cfg = (trueCfg ?? 1) > 1;
  if (flux && negative !== undefined && !cfg) {
    throw badRequest(
      `Invalid value for 'negative_prompt': ${entry.id} is a FLUX model, which takes a negative ` +
        "prompt only with true classifier-free guidance: add 'true_cfg' > 1.",
      "negative_prompt",
    );
  }
  if (flux && cfg && negative === undefined) {
    throw badRequest(
      "Invalid value for 'true_cfg': true classifier-free guidance needs a 'negative_prompt'.",
      "true_cfg",
    );
  }
  if (negative !== undefined) checkEncodes(entry, negative, "negative_prompt");
}

/** The samplers a model can run: its architecture's, less those its scheduler config refuses. */
export function modelSamplers(entry: ModelEntry): SamplerName[] {
  return samplersFor(entry.pipeline.defaults).filter((s) => samplerRefusal(entry, s) === null);
}

/** Why the model's scheduler config refuses `sampler`, or null when it does not. */
function samplerRefusal(entry: ModelEntry, sampler: SamplerName): CheckpointError | null {
  if (sampler === "flow-euler") return null;
  const vp = entry.pipeline.vpSchedulers;
  if (!vp) return null; // a stand-in pipeline without scheduler configs
  try {
    vpSamplerOptions(vp, sampler);
    return null;
  } catch (e) {
    if (e instanceof CheckpointError) return e;
    throw e;
  }
}

/** A checkpoint error's message without the server's path of the file (clients see no paths). */
function withoutPath(e: CheckpointError): string {
  const prefix = `${e.file}: `;
  const m = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
  return m.replace(/\.$/, "");
}

/**
 * Checks `sampler` against the selected model's samplers (samplersFor) and its scheduler
 * config (vpSamplerOptions' CheckpointError).
 * @throws {ApiError} 400 with param "sampler", listing the model's samplers.
 */
export function checkSampler(entry: ModelEntry, sampler: string): SamplerName {
  const list = modelSamplers(entry).map((s) => `'${s}'`).join(", ") || "no sampler";
  if (!(samplersFor(entry.pipeline.defaults) as readonly string[]).includes(sampler)) {
    throw badRequest(
      `Invalid value for 'sampler': ${entry.id} samples with ${list}, not '${sampler}'.`,
      "sampler",
    );
  }
  const refused = samplerRefusal(entry, sampler as SamplerName);
  if (refused) {
    throw badRequest(
      `Invalid value for 'sampler': ${entry.id} cannot sample with '${sampler}': its ` +
        `scheduler config refuses it (${withoutPath(refused)}); it samples with ${list}.`,
      "sampler",
      "unsupported_value",
    );
  }
  return sampler as SamplerName;
}

/** What one batch of a model is: images, size in model cells, guidance. */
export interface BatchShape {
  /** Images in the batch. */
  images: number;
  /** Height in model cells. */
  height: number;
  /** Width in model cells. */
  width: number;
  /** Guidance scale (above 1 the transformer runs each image twice: a CFG pair). */
  guidance: number;
  /** FLUX's true-CFG scale (> 1: a CFG pair, with a negative prompt); default 1. */
  trueCfg?: number;
}

/**
 * Bytes of the largest tensor one sampler step must bind whole for a batch. Its hidden
 * states: transformer rows (images, doubled under guidance) × tokens × the model width (or
 * a patch's values when wider), at the activations' element size (4 bytes when the model
 * is f32 or its plan quantizes activations, whose quantizers work in f32). And the
 * feed-forward's 4·D-wide intermediate, which goes in row chunks (runtime/model/row_chunks.ts)
 * of one row, one sample or one CFG pair, as its layers' scope allows, sized at 4 bytes. And
 * a latent model's VAE decoder's widest activation at full resolution.
 */
export function largestTensorBytes(entry: ModelEntry, b: BatchShape): number {
  return Math.max(hiddenBytes(entry, b), feedForwardChunkBytes(entry, b), vaeBytes(entry, b));
}

/**
 * Bytes of the VAE decoder's widest activation (it decodes one image at a time; one tile at a
 * time with serve --vae-tiling), or 0.
 */
function vaeBytes(entry: ModelEntry, b: BatchShape): number {
  const vae = entry.pipeline.vae;
  if (!vae) return 0;
  return vaeDecodeBytes(vae.config, b.height, b.width, entry.vaeTiling);
}

/** Bytes of a step's widest hidden-state tensor for the batch (grows with the images). */
function hiddenBytes(entry: ModelEntry, b: BatchShape): number {
  const g = latentGeometry(entry.pipeline);
  const rows = b.images * (g.doubles(b.guidance, b.trueCfg) ? 2 : 1);
  const width = Math.max(g.width, g.patchValues);
  const bytes = g.dtype === "f16" && entry.plan.abits === null ? 2 : 4;
  return rows * g.tokens(b.height, b.width) * width * bytes;
}

/** Bytes of the smallest row chunk of the feed-forward's intermediate the layers allow. */
function feedForwardChunkBytes(entry: ModelEntry, b: BatchShape): number {
  const g = latentGeometry(entry.pipeline);
  const guided = g.doubles(b.guidance, b.trueCfg);
  const tokens = g.tokens(b.height, b.width);
  const scope = feedForwardScope(entry);
  const rows = scope === "batch"
    ? b.images * (guided ? 2 : 1) * tokens
    : scope === "pair" && guided
    ? 2 * tokens
    : scope === "row"
    ? 1
    : tokens;
  return rows * g.feedForwardWidth * 4;
}

// The layers whose intermediate goes in row chunks: feed-forwards, FLUX's single-block MLP.
const FEED_FORWARD = /\.ff(_context)?\.|^single_transformer_blocks\.\d+\.proj_(mlp|out)$/;

/** What the feed-forward layers couple (their widest row scope); all linears where none is named so. */
function feedForwardScope(entry: ModelEntry): RowScope {
  const all = entry.pipeline.model.linears ?? [];
  const ff = all.filter((l) => l.name !== undefined && FEED_FORWARD.test(l.name));
  return widestScope(ff.length ? ff : all);
}

/** The largest tensor the runtime can bind (Runtime.bindingLimit), or Infinity. */
export function bindingLimit(entry: ModelEntry): number {
  return entry.pipeline.runtime?.bindingLimit ?? Infinity; // a stand-in pipeline: no runtime
}

/** The most images of this size and guidance one batch can hold on the adapter (≥ 0). */
export function maxImagesThatFit(entry: ModelEntry, b: Omit<BatchShape, "images">): number {
  const limit = bindingLimit(entry);
  const one = hiddenBytes(entry, { ...b, images: 1 });
  if (!(one > 0) || limit === Infinity) return Infinity;
  // The feed-forward's chunk does not grow with the batch (a "batch" scope's does: it is
  // the hidden states times four then, and counted per image here).
  const chunk = feedForwardChunkBytes(entry, { ...b, images: 1 });
  if (chunk > limit || vaeBytes(entry, { ...b, images: 1 }) > limit) return 0;
  const perImage = feedForwardScope(entry) === "batch" ? Math.max(one, chunk) : one;
  return Math.floor(limit / perImage);
}

function mb(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

/**
 * Checks that a request's batch fits the adapter.
 * @throws {ApiError} 400 with param "size" (even one image does not fit) or "n".
 */
export function checkFits(entry: ModelEntry, b: BatchShape, sizeText: string): void {
  const fit = maxImagesThatFit(entry, b);
  if (b.images <= fit) return;
  const limit = bindingLimit(entry);
  const need = largestTensorBytes(entry, b);
  if (fit < 1) {
    throw badRequest(
      `Invalid value for 'size': ${sizeText} is too large for this server's GPU adapter ` +
        `(one step of ${entry.id} would need a ${mb(need)} tensor, over its limit of ` +
        `${mb(limit)}); ask for a smaller size.`,
      "size",
    );
  }
  throw badRequest(
    `Invalid value for 'n': ${b.images} images of ${sizeText} are too many for this server's ` +
      `GPU adapter (a ${mb(need)} tensor, over its limit of ${mb(limit)}); at most ${fit} fit.`,
    "n",
  );
}
