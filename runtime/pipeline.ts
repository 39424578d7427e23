/**
 * A text-to-image pipeline: a model folder in diffusers' layout (transformer/, and for
 * the bundled model text_encoder/ + tokenizer/), loaded on a runtime, and `generate`.
 *
 * @module
 */
import type { EmojiCaptionEncoder } from "../plugins/models/emoji_encoder.ts";
import type { EmojiTokenizer } from "../plugins/models/emoji_tokenizer.ts";
import { FluxModel } from "../plugins/models/flux.ts";
import { FLUX_DEFAULT_LATENT_SIZE, generateFlux } from "../plugins/models/flux_pipeline.ts";
import {
  type AddedConditions,
  addedConditions,
  type PixArtConditioning,
  type PixArtModel,
} from "../plugins/models/pixart.ts";
import type { PromptEncoder } from "../plugins/models/prompt_encoders.ts";
import type { VaeDecoder } from "../plugins/models/vae.ts";
import { decodeLatents, type DecodeOptions, vaeProblemOf } from "./vae_decode.ts";
import type { Runtime } from "./gpu/device.ts";
import { Recorder } from "./gpu/kernel.ts";
import { readAndRelease, readTensor, uploadTensor } from "./gpu/tensor.ts";
import { Prng } from "./io/prng.ts";
import { createGpuSampler } from "./sampling/guidance.ts";
import { type Denoiser, sampleLoop } from "./sampling/generate.ts";
import { usesGuidance } from "./sampling/guidance.ts";
import { type FlowEulerConfig, FLUX_FLOW_CONFIG } from "./sampling/flow_euler.ts";
import {
  DEFAULT_VP_SCHEDULERS,
  vpSamplerOptions,
  type VpSchedulerConfigs,
} from "./sampling/vp_scheduler_config.ts";
import {
  FLUX_SAMPLING,
  PIXART_SAMPLING,
  SAMPLERS,
  type SamplingDefaults,
} from "./model_defaults.ts";

export { type SamplerName, SAMPLERS, type SamplingDefaults } from "./model_defaults.ts";

export { loadPipeline } from "./pipeline_load.ts";
export type {
  CaptionEmbeds,
  EncodedCaptions,
  GenerateRequest,
  GenerateResult,
  LoadPipelineOptions,
  SampledRequest,
} from "./pipeline_types.ts";
import type {
  CaptionEmbeds,
  EncodedCaptions,
  GenerateRequest,
  GenerateResult,
  SampledRequest,
} from "./pipeline_types.ts";

/** The bundled model's folder. */
export const DEFAULT_MODEL_DIR: string = new URL("../models/emoji-s", import.meta.url).pathname;

/** `row` repeated B times. */
function tileRow(row: Float32Array, B: number): Float32Array {
  const out = new Float32Array(B * row.length);
  for (let b = 0; b < B; b++) out.set(row, b * row.length);
  return out;
}

/** The prompt of each image of a request without embeddings (prompt × n, or prompts). */
function promptList(req: GenerateRequest): string[] {
  if (req.prompts !== undefined) {
    // One prompt per image: n, when given, must agree.
    if (req.prompts.length < 1 || req.prompts.some((p) => typeof p !== "string")) {
      throw new TypeError("prompts must be a non-empty array of strings");
    }
    if (req.n !== undefined && req.n !== req.prompts.length) {
      throw new RangeError(`n (${req.n}) must equal prompts.length (${req.prompts.length})`);
    }
    return [...req.prompts];
  }
  if (typeof req.prompt !== "string") throw new TypeError("Give a prompt or caption embeddings");
  const n = req.n ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be a positive integer, got ${n}`);
  return Array(n).fill(req.prompt);
}

/** Added conditions of B images for the guided batch [uncond, cond] (2B). */
function doubled(a: AddedConditions): AddedConditions {
  const r = Array.from(a.resolution);
  const ar = Array.from(a.aspectRatio);
  return { resolution: [...r, ...r], aspectRatio: [...ar, ...ar] };
}

/** A loaded model with its caption encoder (when it has one). */
export class Pipeline {
  /** The runtime it runs on. */
  readonly runtime: Runtime;
  /** The model folder. */
  readonly path: string;
  /** The transformer (PixArt or FLUX). */
  readonly model: PixArtModel | FluxModel;
  /** FLUX: the flow-matching scheduler config (scheduler/scheduler_config.json or FLUX.1-dev's). */
  readonly scheduler: FlowEulerConfig | undefined;
  /** PixArt: DPM-Solver++'s and DDIM's configs from scheduler/scheduler_config.json. */
  readonly vpSchedulers: VpSchedulerConfigs;
  /** The caption encoder (bundled model), or undefined. */
  readonly encoder: EmojiCaptionEncoder | undefined;
  /** The caption tokenizer (bundled model), or undefined. */
  readonly tokenizer: EmojiTokenizer | undefined;
  /** What a request that names no steps, guidance or sampler gets (model_index.json over the architecture's). */
  readonly defaults: SamplingDefaults;
  /** The VAE decoder of a latent-space model (set by loadPipeline), or undefined. */
  vae: VaeDecoder | undefined = undefined;
  /** A real checkpoint's prompt encoder (T5, or FLUX's CLIP + T5; set by loadPipeline), or undefined. */
  prompts: PromptEncoder | undefined = undefined;
  // GPU ms of one sampler step by batch shape, across requests (sampleLoop's stepTimes).
  readonly #stepTimes = new Map<string, number>();

  /** Use {@linkcode loadPipeline}. */
  constructor(
    rt: Runtime,
    path: string,
    transformer: PixArtModel | FluxModel,
    encoder?: EmojiCaptionEncoder,
    tokenizer?: EmojiTokenizer,
    scheduler?: FlowEulerConfig,
    defaults?: SamplingDefaults,
    vpSchedulers: VpSchedulerConfigs = DEFAULT_VP_SCHEDULERS,
  ) {
    this.runtime = rt;
    this.path = path;
    this.model = transformer;
    this.encoder = encoder;
    this.tokenizer = tokenizer;
    this.scheduler = scheduler;
    this.vpSchedulers = vpSchedulers;
    this.defaults = defaults ??
      (transformer instanceof FluxModel ? FLUX_SAMPLING : PIXART_SAMPLING);
  }

  /** The PixArt transformer. @throws {TypeError} for a FLUX pipeline (use `model`). */
  get transformer(): PixArtModel {
    if (this.model instanceof FluxModel) {
      throw new TypeError("This is a FLUX pipeline: use Pipeline.model (a FluxModel)");
    }
    return this.model;
  }

  /**
   * Tokenizes and encodes prompts with the model's own encoder → host embeddings, with
   * `negative` (diffusers' negative_prompt; default "", the null caption) as every image's
   * negative where the model's pipeline makes negatives (PixArt; FLUX only when given).
   */
  encodePrompts(prompts: readonly string[], negative?: string): Promise<EncodedCaptions> {
    return this.runtime.exclusive(() => this.#encodePrompts(prompts, negative));
  }

  async #encodePrompts(prompts: readonly string[], negative?: string): Promise<EncodedCaptions> {
    if (this.prompts) return await this.#encodeReal(this.prompts, prompts, negative);
    if (!this.encoder || !this.tokenizer) {
      throw new TypeError(
        "This model has no caption encoder: pass precomputed caption embeddings (--caption-embeds), " +
          "or name the folder holding its text encoders (--text-encoder)",
      );
    }
    const toks = prompts.map((p) => this.tokenizer!.encode(p));
    const neg = negative === undefined ? undefined : this.#negativeTokens(negative);
    const unknown = [...new Set([...toks, ...(neg ? [neg] : [])].flatMap((t) => t.unknown))];
    const nul = prompts.map(() => neg ?? this.tokenizer!.nullCaption());
    // Both captions in one recording and one read-back (each read-back costs a GPU wait).
    const rec = new Recorder(this.runtime, "caption encoder");
    const c = this.encoder.encode(rec, toks);
    const u = this.encoder.encode(rec, nul);
    await rec.submit();
    const outs = [c.embeds, c.mask, u.embeds, u.mask];
    const [ce, cm, ue, um] = await readAndRelease(this.runtime, outs);
    const cond = { embeds: ce, mask: cm };
    const uncond = { embeds: ue, mask: um };
    const B = prompts.length;
    const L = this.encoder.config.maxLength;
    return {
      embeds: { ...cond, shape: [B, L, this.encoder.config.dModel], negative: uncond },
      unknown,
      truncated: [],
    };
  }

  /** The bundled tokenizer's tokens of a negative prompt; its errors say which prompt. */
  #negativeTokens(negative: string) {
    try {
      return this.tokenizer!.encode(negative);
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      throw new TypeError(`negative prompt: ${e.message}`);
    }
  }

  /**
   * A real checkpoint's encoding: the prompts and, in the same batch, their negative —
   * `negative`, for PixArt by default "" (diffusers' default negative_prompt); FLUX takes
   * one only when given (its true CFG).
   */
  async #encodeReal(
    p: PromptEncoder,
    prompts: readonly string[],
    negative?: string,
  ): Promise<EncodedCaptions> {
    const B = prompts.length;
    const neg = negative ?? (p.kind === "t5" ? "" : undefined);
    // One negative row after the prompts: every image's negative is the same row.
    const e = await p.encode(this.runtime, neg === undefined ? prompts : [...prompts, neg]);
    const row = p.length * p.channels;
    const P = p.pooledChannels ?? 0;
    // The prompts' rows: the arrays themselves when no negative row follows them (no copy).
    const first = <T extends Float32Array | undefined>(a: T, w: number) =>
      (neg === undefined ? a : a?.slice(0, B * w)) as T;
    const last = (a: Float32Array | undefined, w: number) =>
      a ? tileRow(a.subarray(B * w), B) : undefined;
    const embeds: CaptionEmbeds = {
      embeds: first(e.embeds, row),
      mask: first(e.mask, p.length),
      shape: [B, p.length, p.channels],
      pooled: first(e.pooled, P),
      negative: neg === undefined ? undefined : {
        embeds: last(e.embeds, row)!,
        mask: last(e.mask, p.length),
        pooled: last(e.pooled, P),
      },
    };
    return { embeds, unknown: [], truncated: e.truncated.filter((i) => i < B) };
  }

  /**
   * The negative captions of caption embeddings that came without them: `negative` (default
   * the model's own null caption), as diffusers encodes `negative_prompt` when given only
   * `prompt_embeds` (a real PixArt checkpoint: its T5's "").
   */
  async #ownNegative(B: number, L: number, C: number, negative?: string): Promise<{
    embeds: Float32Array;
    mask?: Float32Array;
    pooled?: Float32Array;
  }> {
    const p = this.prompts;
    if (p && p.length === L && p.channels === C && (p.kind === "t5" || negative !== undefined)) {
      const e = await p.encode(this.runtime, [negative ?? ""]);
      const tile = (a: Float32Array | undefined) => a ? tileRow(a, B) : undefined;
      return { embeds: tileRow(e.embeds, B), mask: tile(e.mask), pooled: tile(e.pooled) };
    }
    const e = this.encoder?.config;
    if (!e || !this.tokenizer || e.maxLength !== L || e.dModel !== C) {
      const own = e ? [e.maxLength, e.dModel] : p ? [p.length, p.channels] : undefined;
      const why = own
        ? ` (the model's own encoder gives [${own.join(", ")}], not [${L}, ${C}])`
        : "";
      throw new TypeError(
        "Guidance needs negative prompt embeddings: add negative_prompt_embeds to the caption " +
          `embeddings${why}, or use guidance ≤ 1`,
      );
    }
    const tok = this.tokenizer;
    const neg = negative === undefined ? tok.nullCaption() : this.#negativeTokens(negative);
    const rec = new Recorder(this.runtime, "negative caption");
    const u = this.encoder!.encode(rec, Array.from({ length: B }, () => neg));
    await rec.submit();
    const outs = [u.embeds, u.mask];
    const [embeds, mask] = await readAndRelease(this.runtime, outs);
    return { embeds, mask };
  }

  /**
   * Generates images (latents) for a request. Requests on one runtime run one at a time
   * (Runtime.exclusive): concurrent calls queue.
   */
  generate(request: GenerateRequest): Promise<GenerateResult> {
    return this.runtime.exclusive(() => this.#generate(request));
  }

  async #generate(request: GenerateRequest): Promise<GenerateResult> {
    const d = this.defaults;
    const req: SampledRequest = {
      ...request,
      steps: request.steps ?? d.steps,
      guidance: request.guidance ?? d.guidance,
      sampler: request.sampler ?? d.sampler,
    };
    const negative = req.negativePrompt;
    if (negative !== undefined && req.captionEmbeds?.negative) {
      throw new TypeError("give negative caption embeddings or a negative prompt, not both");
    }
    if (this.model instanceof FluxModel) {
      let truncated: number[] = [];
      const t0 = performance.now();
      // FluxPipeline encodes a negative prompt only for true CFG (true_cfg_scale > 1).
      const neg = (req.trueCfg ?? 1) > 1 ? negative : undefined;
      if (!req.captionEmbeds && this.prompts) {
        const r = await this.#encodePrompts(promptList(req), neg);
        req.captionEmbeds = r.embeds;
        truncated = r.truncated;
      } else if (req.captionEmbeds && neg !== undefined) {
        const [B, L, C] = req.captionEmbeds.shape;
        const own = await this.#ownNegative(B, L, C, neg);
        req.captionEmbeds = { ...req.captionEmbeds, negative: own };
      }
      const encodeMs = performance.now() - t0;
      const res = await generateFlux(
        this.runtime,
        this.model,
        this.scheduler ?? FLUX_FLOW_CONFIG,
        req,
        this.#stepTimes,
      );
      res.timings.encodeMs += encodeMs;
      res.timings.totalMs += encodeMs;
      return truncated.length ? { ...res, truncatedPrompts: truncated } : res;
    }
    const rt = this.runtime;
    const c = this.transformer.config;
    const t0 = performance.now();
    const { steps, guidance, sampler } = req;
    if (!SAMPLERS.includes(sampler) || sampler === "flow-euler") {
      throw new TypeError(
        `sampler must be dpm++2m or ddim for this (epsilon) model, got ${sampler}`,
      );
    }
    if (!Number.isInteger(steps) || steps < 1 || steps > 1000) {
      throw new RangeError(`steps must be an integer in [1, 1000], got ${steps}`);
    }
    if (!Number.isFinite(guidance) || guidance < 0) {
      throw new RangeError(`guidance must be a finite number ≥ 0, got ${guidance}`);
    }
    const samplerOptions = vpSamplerOptions(this.vpSchedulers, sampler);
    let unknown: string[] = [];
    let truncated: number[] = [];
    let emb: CaptionEmbeds;
    if (req.captionEmbeds) {
      emb = req.captionEmbeds;
    } else {
      const r = await this.#encodePrompts(promptList(req), negative);
      emb = r.embeds;
      unknown = r.unknown;
      truncated = r.truncated;
    }
    const [B, L, Cc] = emb.shape;
    const H = req.height ?? c.sampleSize;
    const W = req.width ?? c.sampleSize;
    for (const [k, v] of [["height", H], ["width", W]] as const) {
      if (!Number.isInteger(v) || v < c.patchSize || v % c.patchSize) {
        throw new RangeError(
          `${k} must be a positive multiple of the patch size ${c.patchSize}, got ${v}`,
        );
      }
    }
    const guided = usesGuidance(guidance);
    if (guided && !emb.negative) {
      emb = { ...emb, negative: await this.#ownNegative(B, L, Cc, negative) };
    }
    const encodeMs = performance.now() - t0;

    const n = B * c.inChannels * H * W;
    // Checked before any upload: a bad request leaves nothing behind.
    let noise = req.latents;
    if (noise && noise.length !== n) {
      throw new RangeError(
        `latents must hold [${B}, ${c.inChannels}, ${H}, ${W}] = ${n} values, got ${noise.length}`,
      );
    }
    // Conditioning: [uncond, cond] when guiding, as diffusers concatenates.
    const rows = guided ? 2 * B : B;
    const embeds = new Float32Array(rows * L * Cc);
    const mask = new Float32Array(rows * L).fill(1);
    if (guided) {
      embeds.set(emb.negative!.embeds, 0);
      embeds.set(emb.embeds, B * L * Cc);
      if (emb.negative!.mask) mask.set(emb.negative!.mask, 0);
      if (emb.mask) mask.set(emb.mask, B * L);
    } else {
      embeds.set(emb.embeds);
      if (emb.mask) mask.set(emb.mask);
    }
    const dt = this.transformer.dtype;
    const embT = uploadTensor(rt, embeds, [rows, L, Cc], dt);
    const maskT = uploadTensor(rt, mask, [rows, L], dt);
    const rec = new Recorder(rt, "conditioning");
    const cond: PixArtConditioning = this.transformer.prepare(
      rec,
      embT,
      maskT,
      guided && req.added ? doubled(req.added) : req.added ??
        addedConditions(rows, H * this.pixelsPerLatent, W * this.pixelsPerLatent),
      { cfgPair: guided },
    );
    await rec.submit();
    embT.release();

    noise ??= new Prng(req.seed ?? 0).normals(n);
    const lat = uploadTensor(rt, noise, [B, c.inChannels, H, W]);
    const model = this.transformer;
    const denoiser: Denoiser = {
      inChannels: c.inChannels,
      outChannels: c.outChannels,
      dtype: dt,
      forward: (r, x, t, step) => model.forward(r, x, t, cond, step),
    };
    try {
      const { latents, stepMs, profile } = await sampleLoop(rt, denoiser, lat, {
        sampler: createGpuSampler(sampler, steps, samplerOptions),
        guidance,
        signal: req.signal,
        onStep: req.onStep,
        onSubmitted: req.onSubmitted,
        inFlight: req.inFlight,
        stepTimes: this.#stepTimes,
        profileStep: req.profileStep,
      });
      const host = await readTensor(rt, latents);
      latents.release();
      return {
        latents: host,
        shape: [B, c.inChannels, H, W],
        unknownWords: unknown,
        ...(truncated.length ? { truncatedPrompts: truncated } : {}),
        timings: { encodeMs, stepMs, totalMs: performance.now() - t0 },
        ...(profile ? { profile } : {}),
      };
    } finally {
      lat.release();
      cond.release();
    }
  }

  /** Pixels per latent cell: 1 for pixel-space models, the VAE's scale (8) for latents. */
  get pixelsPerLatent(): number {
    if (this.vae) return this.vae.scale;
    return this.model.config.inChannels === 3 ? 1 : 8;
  }

  /** The model writes images: it works in pixel space, or has a VAE decoder. */
  get makesImages(): boolean {
    return this.pixelsPerLatent === 1 || this.vae !== undefined;
  }

  /**
   * Why the VAE decoder cannot decode an h × w latent (default the model's size) on this
   * runtime — its widest activation (a tile's, when tiling) over the binding limit — or
   * undefined when it can (or there is no VAE). Callers check before sampling, so the error
   * comes before the work.
   */
  vaeProblem(height?: number, width?: number, o: DecodeOptions = {}): string | undefined {
    if (!this.vae) return undefined;
    const m = this.model;
    const def = m instanceof FluxModel ? FLUX_DEFAULT_LATENT_SIZE : m.config.sampleSize;
    return vaeProblemOf(this.runtime, this.vae, height ?? def, width ?? def, o);
  }

  /**
   * Images [B, 3, H, W] in [−1, 1] from generate's latents [B, C, h, w]: the VAE decoder
   * (one image at a time, to bound its memory; in tiles with `tiling`), or the latents
   * themselves in pixel space.
   * @throws {TypeError} for a latent-space model without a VAE.
   */
  decode(
    latents: Float32Array,
    shape: readonly [number, number, number, number],
    o: DecodeOptions = {},
  ): Promise<{ images: Float32Array; shape: [number, number, number, number] }> {
    const [B, C, h, w] = shape;
    if (this.pixelsPerLatent === 1 && !this.vae) {
      return Promise.resolve({ images: latents, shape: [B, C, h, w] });
    }
    const vae = this.vae;
    if (!vae) throw new TypeError(`${this.path} works in a latent space and has no VAE decoder`);
    return this.runtime.exclusive(() => decodeLatents(this.runtime, vae, latents, shape, o));
  }

  /** Frees the GPU tensors. */
  release(): void {
    this.model.release();
    this.encoder?.release();
    this.prompts?.release();
    this.vae?.release();
  }
}
