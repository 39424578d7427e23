/**
 * The bundled emoji model's caption encoder (text_encoder/), on the runtime's kernels:
 * token + position embedding, pre-LN transformer layers (affine LayerNorm, masked
 * multi-head self-attention, GELU-tanh MLP), a final LayerNorm. The definition is in
 * tools/torch/text_encoder.py and text_encoder/config.json.
 *
 * @module
 */
import { CheckpointError } from "../../runtime/errors.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { TensorSource } from "../../runtime/io/safetensors.ts";
import { WeightLoader } from "../../runtime/model/weights.ts";
import { attention } from "../../runtime/ops/attention.ts";
import { gatherRows } from "../../runtime/ops/embed.ts";
import { layerNorm } from "../../runtime/ops/norm.ts";
import { elementwise } from "../../runtime/ops/elementwise.ts";
import type { Tokenized } from "./emoji_tokenizer.ts";
import {
  loadPreLnLayer,
  preLnForward,
  type PreLnLayer,
  type PreLnNames,
  type PreLnRun,
  preLnShapes,
  releasePreLnLayer,
} from "./pre_ln_layer.ts";

/** text_encoder/config.json of the emoji model. */
export interface EmojiEncoderConfig {
  /** Vocabulary size (rows of the token embedding). */
  vocabSize: number;
  /** Hidden width d_model (a multiple of `numHeads`). */
  dModel: number;
  /** Transformer layers. */
  numLayers: number;
  /** Attention heads. */
  numHeads: number;
  /** Longest caption in tokens (rows of the position embedding). */
  maxLength: number;
  /** MLP hidden width as a multiple of d_model. */
  ffnMult: number;
  /** LayerNorm epsilon (default 1e-5). */
  layerNormEps: number;
}

/**
 * Whether a text_encoder/config.json is the bundled model's caption encoder (a real
 * checkpoint's T5 or CLIP sits in the same place: plugins/models/prompt_encoders.ts).
 */
export function isEmojiEncoderConfig(raw: unknown): boolean {
  return (raw as Record<string, unknown> | null)?.["_class_name"] === "EmojiCaptionEncoder";
}

/** Parses text_encoder/config.json. */
export function parseEmojiEncoderConfig(raw: unknown, file = "config.json"): EmojiEncoderConfig {
  if (typeof raw !== "object" || raw === null) {
    throw new CheckpointError(file, "config must be a JSON object");
  }
  const c = raw as Record<string, unknown>;
  if (c["_class_name"] !== "EmojiCaptionEncoder") {
    throw new CheckpointError(
      file,
      `expected EmojiCaptionEncoder, got ${JSON.stringify(c["_class_name"])}`,
      "_class_name",
    );
  }
  const int = (k: string) => {
    const v = c[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new CheckpointError(file, `must be a positive integer, got ${JSON.stringify(v)}`, k);
    }
    return v;
  };
  const eps = c["layer_norm_eps"] ?? 1e-5;
  if (typeof eps !== "number" || !(eps > 0)) {
    throw new CheckpointError(file, "must be a positive number", "layer_norm_eps");
  }
  const cfg = {
    vocabSize: int("vocab_size"),
    dModel: int("d_model"),
    numLayers: int("num_layers"),
    numHeads: int("num_heads"),
    maxLength: int("max_length"),
    ffnMult: int("ffn_mult"),
    layerNormEps: eps,
  };
  if (cfg.dModel % cfg.numHeads) {
    throw new CheckpointError(file, "d_model must be divisible by num_heads", "num_heads");
  }
  return cfg;
}

function shapes(c: EmojiEncoderConfig): Map<string, number[]> {
  const d = c.dModel;
  const m = new Map<string, number[]>([
    ["embed_tokens.weight", [c.vocabSize, d]],
    ["embed_positions.weight", [c.maxLength, d]],
    ["final_norm.weight", [d]],
    ["final_norm.bias", [d]],
  ]);
  for (let i = 0; i < c.numLayers; i++) preLnShapes(m, layerNames(i), d, c.ffnMult * d);
  return m;
}

/** Layer i's checkpoint names. */
function layerNames(i: number): PreLnNames {
  const p = `layers.${i}`;
  return {
    norm1: `${p}.norm1`,
    norm2: `${p}.norm2`,
    q: `${p}.attn.q`,
    k: `${p}.attn.k`,
    v: `${p}.attn.v`,
    o: `${p}.attn.o`,
    fc1: `${p}.mlp.fc1`,
    fc2: `${p}.mlp.fc2`,
  };
}

/** The caption encoder, loaded on the GPU (f32: it runs once per prompt). */
export class EmojiCaptionEncoder {
  /** The parsed config. */
  readonly config: EmojiEncoderConfig;
  readonly #tokens: Tensor;
  readonly #positions: Tensor;
  readonly #layers: PreLnLayer[];
  readonly #fw: Tensor;
  readonly #fb: Tensor;

  private constructor(config: EmojiEncoderConfig, parts: {
    tokens: Tensor;
    positions: Tensor;
    layers: PreLnLayer[];
    fw: Tensor;
    fb: Tensor;
  }) {
    this.config = config;
    this.#tokens = parts.tokens;
    this.#positions = parts.positions;
    this.#layers = parts.layers;
    this.#fw = parts.fw;
    this.#fb = parts.fb;
  }

  /** Loads the encoder's weights from model.safetensors. */
  static async load(
    rt: Runtime,
    source: TensorSource,
    config: EmojiEncoderConfig,
  ): Promise<EmojiCaptionEncoder> {
    const w = new WeightLoader(source, shapes(config));
    const gpu = (n: string) => w.gpu(rt, n, "f32");
    const layers: PreLnLayer[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      layers.push(await loadPreLnLayer(rt, w, layerNames(i)));
    }
    return new EmojiCaptionEncoder(config, {
      tokens: await gpu("embed_tokens.weight"),
      positions: await gpu("embed_positions.weight"),
      layers,
      fw: await gpu("final_norm.weight"),
      fb: await gpu("final_norm.bias"),
    });
  }

  /** Records the encoding of B tokenized captions → [B, L, d] (f32). Mask: see {@link maskTensor}. */
  encode(rec: Recorder, captions: readonly Tokenized[]): { embeds: Tensor; mask: Tensor } {
    const c = this.config;
    const B = captions.length;
    const L = c.maxLength;
    const d = c.dModel;
    const ids = new Uint32Array(B * L);
    const maskHost = new Float32Array(B * L);
    captions.forEach((t, b) => {
      if (t.ids.length !== L) {
        throw new RangeError(`Caption ${b} has ${t.ids.length} tokens, the encoder takes ${L}`);
      }
      ids.set(t.ids, b * L);
      maskHost.set(t.mask, b * L);
    });
    const idT = rec.upload(ids, [B * L], "u32");
    const mask = rec.upload(maskHost, [B, L]);
    const tok = gatherRows(rec, this.#tokens, idT);
    // Position rows repeat per caption: addRow broadcasts the [L, d] table over the batch.
    let x = elementwise(rec, "addRow", tok, { y: this.#positions });
    tok.release();
    idT.release();
    const run: PreLnRun = {
      B,
      L,
      eps: c.layerNormEps,
      // torch fills masked scores with -inf: "drop" excludes masked keys exactly.
      attend: (q, k, v) => attention(rec, q, k, v, { heads: c.numHeads, mask, maskMode: "drop" }),
      activation: "gelu",
    };
    for (const l of this.#layers) x = preLnForward(rec, x, l, run);
    const out = layerNorm(rec, x, { eps: c.layerNormEps, weight: this.#fw, bias: this.#fb });
    x.release();
    return { embeds: out.reshape([B, L, d]), mask };
  }

  /** Frees the encoder's tensors. */
  release(): void {
    for (const l of this.#layers) releasePreLnLayer(l);
    for (const t of [this.#tokens, this.#positions, this.#fw, this.#fb]) t.release();
  }
}
