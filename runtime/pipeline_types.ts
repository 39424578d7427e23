/**
 * The types of a pipeline's loading and generation (runtime/pipeline.ts re-exports them): the
 * load options, caption embeddings under diffusers' names, a generate request and its result.
 *
 * @module
 */
import type { AddedConditions } from "../plugins/models/pixart.ts";
import type { TextWeights } from "../plugins/models/text_weights.ts";
import type { LaunchTime } from "./gpu/kernel.ts";
import type { LinearFactory } from "./model/linear.ts";
import type { SamplerName } from "./model_defaults.ts";
import type { StepInfo } from "./sampling/generate.ts";

/** Options of {@linkcode loadPipeline}. */
export interface LoadPipelineOptions {
  /** Model folder; default the bundled emoji model. */
  path?: string;
  /** Storage type of the transformer; default f32. */
  dtype?: "f32" | "f16";
  /** Builds the transformer's linears (a quantization plan); default dense in `dtype`. */
  linears?: LinearFactory;
  /**
   * The VAE decoder that turns latents into images: a folder holding vae/config.json (or
   * the vae folder itself); default the model folder's vae/ when it has one; false: none.
   */
  vae?: string | false;
  /**
   * The prompt encoders of a real checkpoint (PixArt: T5 in text_encoder/ + tokenizer/; FLUX:
   * CLIP there and T5 in text_encoder_2/ + tokenizer_2/): the folder holding them; default the
   * model folder's when it has them; false: none (prompts then need caption embeddings).
   */
  textEncoder?: string | false;
  /** T5's tokens per caption; default the diffusers pipeline's (PixArt-α 120, Σ 300, FLUX 512). */
  maxSequenceLength?: number;
  /**
   * Storage of the prompt encoders' weights: "auto" (default: f16 where the checkpoint stores
   * 16-bit floats, else f32), "f32" or "f16"; activations are f32 (text_weights.ts).
   */
  textEncoderDtype?: TextWeights;
}

/** Caption embeddings on the host, as diffusers' pipeline names them. */
export interface CaptionEmbeds {
  /** prompt_embeds [B, L, C]. */
  embeds: Float32Array;
  /** prompt_attention_mask [B, L] (1 keep, 0 drop), or undefined. */
  mask?: Float32Array;
  /** [B, L, C]. */
  shape: [number, number, number];
  /** negative_prompt_embeds and mask (same shape), for guidance (FLUX: + negative_pooled_prompt_embeds). */
  negative?: { embeds: Float32Array; mask?: Float32Array; pooled?: Float32Array };
  /** FLUX: pooled_prompt_embeds [B, pooled_projection_dim]. */
  pooled?: Float32Array;
}

/** A request to {@linkcode Pipeline.generate}. */
export interface GenerateRequest {
  /** The prompt (needs the model's own caption encoder), or use `captionEmbeds`. */
  prompt?: string;
  /** One prompt per image (a batch of different prompts, e.g. the server's micro-batches). */
  prompts?: readonly string[];
  /** Precomputed caption embeddings instead of the prompt. */
  captionEmbeds?: CaptionEmbeds;
  /**
   * diffusers' negative_prompt: every image's negative caption, encoded by the model's own
   * encoder (PixArt: instead of "", the default; FLUX: only with `trueCfg` > 1, as
   * FluxPipeline). Not with negatives in `captionEmbeds`.
   */
  negativePrompt?: string;
  /** Images to generate; default 1 (or the embeddings' batch). */
  n?: number;
  /** Seed of the initial noise. */
  seed?: number;
  /** Sampler steps; default the model's (`Pipeline.defaults`: PixArt 20, FLUX 28). */
  steps?: number;
  /** Guidance scale; default the model's (PixArt 4.5, FLUX 3.5; ≤ 1 turns CFG off). */
  guidance?: number;
  /** Sampler; default the model's (PixArt dpm++2m, FLUX flow-euler). */
  sampler?: SamplerName;
  /** Latent height; default the model's sample size. */
  height?: number;
  /** Latent width; default the model's sample size. */
  width?: number;
  /** The initial noise [B, C, H, W] instead of the seeded PRNG (diffusers' latents=). */
  latents?: Float32Array;
  /** The 1024-MS model's resolution / aspect-ratio per image (B); default from the size. */
  added?: AddedConditions;
  /** FLUX: true classifier-free guidance scale (> 1 with negative embeddings); default 1 (off). */
  trueCfg?: number;
  /** Cancels between steps. */
  signal?: AbortSignal;
  /** Progress after every step. */
  onStep?: (info: StepInfo) => void | Promise<void>;
  /** Called as each step (0-based) is submitted to the GPU (`sampleLoop`'s `onSubmitted`). */
  onSubmitted?: (step: number) => void;
  /** Steps submitted and not yet reported (1–16, default 4; `sampleLoop`'s `inFlight`). */
  inFlight?: number;
  /** Profile this sampler step (0-based; `sampleLoop`'s `profileStep`). */
  profileStep?: number;
}

/** A request with the model's defaults filled in: what {@linkcode Pipeline.generate} samples. */
export type SampledRequest =
  & GenerateRequest
  & Required<Pick<GenerateRequest, "steps" | "guidance" | "sampler">>;

/** What {@linkcode Pipeline.generate} returns. */
export interface GenerateResult {
  /** Final latents [B, C, H, W] (for pixel-space models: the images in [-1, 1]). */
  latents: Float32Array;
  /** Their shape. */
  shape: [number, number, number, number];
  /** Words of the prompt the tokenizer did not know (they became <unk>). */
  unknownWords: string[];
  /** Indexes of the prompts cut to fit the text encoder (T5's or CLIP's length), if any. */
  truncatedPrompts?: number[];
  /** Timings in ms. */
  timings: { encodeMs: number; stepMs: number[]; totalMs: number };
  /** With `profileStep`: that step's launches with their GPU ms. */
  profile?: LaunchTime[];
}

/** Prompts encoded for a pipeline: embeddings, unknown words (the bundled model), cut prompts. */
export interface EncodedCaptions {
  /** The embeddings (with the negatives where the model's pipeline makes them). */
  embeds: CaptionEmbeds;
  /** Words the bundled model's tokenizer did not know. */
  unknown: string[];
  /** Indexes of the prompts cut to fit a real checkpoint's encoder. */
  truncated: number[];
}
