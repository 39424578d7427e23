/**
 * Finds and loads a pipeline's prompt encoder for a real checkpoint: PixArt's T5
 * (text_encoder/ + tokenizer/) or FLUX's CLIP + T5 (and text_encoder_2/ + tokenizer_2/), from
 * the model folder or the folder `loadPipeline`'s `textEncoder` option names (e.g. for a
 * quantized artifact, which carries none). The bundled model's own caption encoder is
 * loaded with the transformer (pipeline_load.ts).
 *
 * @module
 */
import { join } from "node:path";
import { FluxModel } from "../plugins/models/flux.ts";
import {
  checkPromptEncoder,
  hasFluxEncoders,
  hasT5Encoder,
  loadFluxPrompts,
  loadT5Prompts,
  type PromptEncoder,
} from "../plugins/models/prompt_encoders.ts";
import type { TextWeights } from "../plugins/models/text_weights.ts";
import { CheckpointError } from "./errors.ts";
import type { Runtime } from "./gpu/device.ts";
import { exists } from "./io/fs.ts";
import { readJsonFile } from "./io/json.ts";
import type { Pipeline } from "./pipeline.ts";

/** diffusers' default max_sequence_length of each pipeline: PixArt-α 120, PixArt-Σ 300, FLUX 512. */
export async function defaultSequenceLength(dir: string, flux: boolean): Promise<number> {
  if (flux) return 512;
  const p = join(dir, "model_index.json");
  if (!(await exists(p))) return 120;
  const raw = await readJsonFile(p) as Record<string, unknown> | null;
  return raw?.["_class_name"] === "PixArtSigmaPipeline" ? 300 : 120;
}

/** Options of {@linkcode attachPromptEncoder}. */
export interface PromptEncoderOptions {
  /** The folder holding the encoders (default the model folder); false: none. */
  where?: string | false;
  /** T5's tokens per caption (default the pipeline's: 120, 300 or 512). */
  maxSequenceLength?: number;
  /** Storage of the encoders' weights (plugins/models/text_weights.ts); default "auto". */
  weights?: TextWeights;
}

/**
 * Gives `pipe` the prompt encoder of the folder `o.where` (default `modelDir`, when it has
 * one); frees the pipeline on failure.
 * @throws {CheckpointError} when a named folder has none, or its widths do not fit the transformer.
 */
export async function attachPromptEncoder(
  rt: Runtime,
  pipe: Pipeline,
  o: PromptEncoderOptions,
  modelDir: string | undefined,
): Promise<Pipeline> {
  if (o.where === false || pipe.encoder) return pipe;
  const dir = o.where ?? modelDir;
  if (dir === undefined) return pipe;
  const m = pipe.model;
  const flux = m instanceof FluxModel;
  const has = flux ? await hasFluxEncoders(dir) : await hasT5Encoder(dir);
  if (!has) {
    if (o.where === undefined) return pipe;
    throw new CheckpointError(
      dir,
      flux
        ? "has no FLUX text encoders (text_encoder/ + tokenizer/, text_encoder_2/ + tokenizer_2/)"
        : "has no T5 text encoder (text_encoder/ with a T5 config, and tokenizer/)",
      "text_encoder",
    );
  }
  const L = o.maxSequenceLength ?? await defaultSequenceLength(dir, flux);
  if (!Number.isInteger(L) || L < 1 || L > 4096) {
    throw new RangeError(`max sequence length must be an integer in [1, 4096], got ${L}`);
  }
  let enc: PromptEncoder | undefined;
  try {
    const w = o.weights ?? "auto";
    enc = flux ? await loadFluxPrompts(rt, dir, L, w) : await loadT5Prompts(rt, dir, L, w);
    checkPromptEncoder(
      enc,
      dir,
      m instanceof FluxModel
        ? { channels: m.config.jointAttentionDim, pooled: m.config.pooledProjectionDim }
        : { channels: m.config.captionChannels },
    );
    pipe.prompts = enc;
  } catch (e) {
    enc?.release();
    pipe.release();
    throw e;
  }
  return pipe;
}
