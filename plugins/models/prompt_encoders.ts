/**
 * Prompt encoders of real checkpoints, as diffusers' pipelines encode prompts: PixArt-α/Σ's
 * T5 (`PixArtAlphaPipeline.encode_prompt`: lower().strip(), padded to 120 / 300 tokens, the
 * mask into T5 and out with the embeddings, "" as the negative) and FLUX's CLIP + T5
 * (`FluxPipeline.encode_prompt`: CLIP's pooled output at 77 tokens, T5 at 512 with no mask).
 * Loaded from a folder's text_encoder/ + tokenizer/ (and text_encoder_2/ + tokenizer_2/).
 *
 * @module
 */
import { join } from "node:path";
import { CheckpointError } from "../../runtime/errors.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import { Recorder } from "../../runtime/gpu/kernel.ts";
import { readAndRelease } from "../../runtime/gpu/tensor.ts";
import { exists } from "../../runtime/io/fs.ts";
import { readJsonFile as readJson } from "../../runtime/io/json.ts";
import { openCheckpoint } from "../../runtime/io/safetensors_index.ts";
import { ClipTextEncoder, parseClipTextConfig } from "./clip_text.ts";
import { HfTokenizer } from "./hf_tokenizer.ts";
import { T5Encoder } from "./t5.ts";
import { isT5Config, parseT5Config } from "./t5_config.ts";
import type { TextWeights } from "./text_weights.ts";

/** Encoded captions on the host (diffusers' names). */
export interface EncodedPrompts {
  /** prompt_embeds [B, L, C]. */
  embeds: Float32Array;
  /** prompt_attention_mask [B, L] (PixArt), or undefined (FLUX: every token counts). */
  mask?: Float32Array;
  /** pooled_prompt_embeds [B, P] (FLUX). */
  pooled?: Float32Array;
  /** Indexes of the prompts that were cut to fit the encoder (diffusers warns about them). */
  truncated: number[];
}

/** A prompt encoder of a real checkpoint. */
export interface PromptEncoder {
  /** "t5" (PixArt) or "clip+t5" (FLUX). */
  readonly kind: "t5" | "clip+t5";
  /** Tokens per caption (T5's max_sequence_length). */
  readonly length: number;
  /** Embedding width (T5's d_model). */
  readonly channels: number;
  /** Pooled width (FLUX: CLIP's hidden size), or undefined. */
  readonly pooledChannels: number | undefined;
  /** Encodes prompts in one recording and one read-back. */
  encode(rt: Runtime, prompts: readonly string[]): Promise<EncodedPrompts>;
  /** T5 tokens the prompt takes (its end of sequence included, at most `length`). */
  tokens(prompt: string): number;
  /** Frees the GPU tensors. */
  release(): void;
}

function maskSum(m: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < m.length; i++) n += m[i];
  return n;
}

/** Token ids and masks of B prompts, each padded or cut to L. */
function tokenize(tok: HfTokenizer, prompts: readonly string[], L: number) {
  const ids = new Uint32Array(prompts.length * L);
  const mask = new Float32Array(prompts.length * L);
  const truncated: number[] = [];
  prompts.forEach((p, i) => {
    const t = tok.encode(p, L);
    ids.set(t.ids, i * L);
    mask.set(t.mask, i * L);
    if (t.truncated) truncated.push(i);
  });
  return { ids, mask, truncated };
}

/** Python's str.isspace() characters, which str.strip() removes (JS's trim differs: U+FEFF). */
const PY_SPACE = "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004" +
  "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";

/**
 * diffusers' PixArt `_text_preprocessing` without `clean_caption` (its bs4 + ftfy cleaning):
 * Python's `text.lower().strip()`.
 */
export function pixartPreprocess(text: string): string {
  const t = text.toLowerCase();
  let a = 0;
  let b = t.length;
  while (a < b && PY_SPACE.includes(t[a])) a++;
  while (b > a && PY_SPACE.includes(t[b - 1])) b--;
  return t.slice(a, b);
}

/** PixArt-α/Σ: T5 with its attention mask. */
class T5Prompts implements PromptEncoder {
  readonly kind = "t5";
  readonly pooledChannels = undefined;
  constructor(readonly tokenizer: HfTokenizer, readonly t5: T5Encoder, readonly length: number) {}
  get channels(): number {
    return this.t5.config.dModel;
  }
  async encode(rt: Runtime, prompts: readonly string[]): Promise<EncodedPrompts> {
    const L = this.length;
    const t = tokenize(this.tokenizer, prompts.map(pixartPreprocess), L);
    const rec = new Recorder(rt, "T5 encoder");
    const out = this.t5.encode(rec, t.ids, prompts.length, L, t.mask);
    await rec.submit();
    const [embeds] = await readAndRelease(rt, [out]);
    return { embeds: embeds!, mask: t.mask, truncated: t.truncated };
  }
  tokens(prompt: string): number {
    return maskSum(this.tokenizer.encode(pixartPreprocess(prompt), this.length).mask);
  }
  release(): void {
    this.t5.release();
  }
}

/** FLUX: CLIP's pooled output and T5's embeddings, no masks. */
class FluxPrompts implements PromptEncoder {
  readonly kind = "clip+t5";
  constructor(
    readonly clipTokenizer: HfTokenizer,
    readonly clip: ClipTextEncoder,
    readonly t5Tokenizer: HfTokenizer,
    readonly t5: T5Encoder,
    readonly length: number,
  ) {}
  get channels(): number {
    return this.t5.config.dModel;
  }
  get pooledChannels(): number {
    return this.clip.config.hiddenSize;
  }
  async encode(rt: Runtime, prompts: readonly string[]): Promise<EncodedPrompts> {
    const B = prompts.length;
    const Lc = this.clipTokenizer.modelMaxLength ?? 77;
    const c = tokenize(this.clipTokenizer, prompts, Lc);
    const t = tokenize(this.t5Tokenizer, prompts, this.length);
    const rec = new Recorder(rt, "CLIP + T5 encoders");
    const clip = this.clip.encode(rec, c.ids, B, Lc);
    clip.hidden.release(); // FLUX takes the pooled output only
    const t5 = this.t5.encode(rec, t.ids, B, this.length);
    await rec.submit();
    const [embeds, pooled] = await readAndRelease(rt, [t5, clip.pooled]);
    return { embeds: embeds!, pooled, truncated: [...new Set([...c.truncated, ...t.truncated])] };
  }
  tokens(prompt: string): number {
    return maskSum(this.t5Tokenizer.encode(prompt, this.length).mask);
  }
  release(): void {
    this.clip.release();
    this.t5.release();
  }
}

async function loadT5(rt: Runtime, dir: string, weights: TextWeights): Promise<T5Encoder> {
  const cfgPath = join(dir, "config.json");
  const cfg = parseT5Config(await readJson(cfgPath), cfgPath);
  const src = await openCheckpoint(dir);
  try {
    return await T5Encoder.load(rt, src, cfg, weights);
  } finally {
    src.close();
  }
}

/** Whether `dir` has a T5 text_encoder/ with a tokenizer/ (a PixArt folder's). */
export async function hasT5Encoder(dir: string): Promise<boolean> {
  const p = join(dir, "text_encoder", "config.json");
  return await exists(p) && await exists(join(dir, "tokenizer")) && isT5Config(await readJson(p));
}

/** Whether `dir` has FLUX's text encoders (text_encoder/ and text_encoder_2/ with their tokenizers). */
export async function hasFluxEncoders(dir: string): Promise<boolean> {
  const all = await Promise.all(
    ["text_encoder/config.json", "text_encoder_2/config.json", "tokenizer", "tokenizer_2"].map((
      p,
    ) => exists(join(dir, p))),
  );
  return all.every(Boolean);
}

/**
 * PixArt's T5 from `dir`/text_encoder + tokenizer, at `length` tokens (α 120, Σ 300), its
 * weights stored as `weights` says (default "auto": the checkpoint's precision).
 */
export async function loadT5Prompts(
  rt: Runtime,
  dir: string,
  length: number,
  weights: TextWeights = "auto",
): Promise<PromptEncoder> {
  const tokenizer = await HfTokenizer.load(join(dir, "tokenizer"));
  return new T5Prompts(tokenizer, await loadT5(rt, join(dir, "text_encoder"), weights), length);
}

/**
 * FLUX's CLIP (`dir`/text_encoder + tokenizer) and T5 (text_encoder_2 + tokenizer_2), T5 at
 * `length` tokens, their weights stored as `weights` says (default "auto").
 */
export async function loadFluxPrompts(
  rt: Runtime,
  dir: string,
  length: number,
  weights: TextWeights = "auto",
): Promise<PromptEncoder> {
  const cpath = join(dir, "text_encoder", "config.json");
  const ccfg = parseClipTextConfig(await readJson(cpath), cpath);
  const clipTok = await HfTokenizer.load(join(dir, "tokenizer"));
  const t5Tok = await HfTokenizer.load(join(dir, "tokenizer_2"));
  const csrc = await openCheckpoint(join(dir, "text_encoder"));
  let clip: ClipTextEncoder;
  try {
    clip = await ClipTextEncoder.load(rt, csrc, ccfg, weights);
  } finally {
    csrc.close();
  }
  try {
    return new FluxPrompts(
      clipTok,
      clip,
      t5Tok,
      await loadT5(rt, join(dir, "text_encoder_2"), weights),
      length,
    );
  } catch (e) {
    clip.release();
    throw e;
  }
}

/**
 * Checks that a prompt encoder's embeddings fit the transformer: T5's d_model against
 * caption_channels (PixArt) or joint_attention_dim (FLUX), CLIP's width against
 * pooled_projection_dim.
 */
export function checkPromptEncoder(
  p: PromptEncoder,
  dir: string,
  want: { channels: number | null; pooled?: number },
): void {
  if (want.channels !== null && p.channels !== want.channels) {
    throw new CheckpointError(
      join(dir, p.kind === "t5" ? "text_encoder" : "text_encoder_2", "config.json"),
      `d_model ${p.channels} does not match the transformer's ${want.channels}`,
      "d_model",
    );
  }
  if (want.pooled !== undefined && p.pooledChannels !== want.pooled) {
    throw new CheckpointError(
      join(dir, "text_encoder", "config.json"),
      `hidden_size ${p.pooledChannels} does not match pooled_projection_dim ${want.pooled}`,
      "hidden_size",
    );
  }
}
