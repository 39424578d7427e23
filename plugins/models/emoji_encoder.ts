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
import { DenseLinear } from "../../runtime/model/linear.ts";
import { WeightLoader } from "../../runtime/model/weights.ts";
import { attention } from "../../runtime/ops/attention.ts";
import { gatherRows } from "../../runtime/ops/embed.ts";
import { layerNorm } from "../../runtime/ops/norm.ts";
import { elementwise } from "../../runtime/ops/elementwise.ts";
import type { Tokenized } from "./emoji_tokenizer.ts";

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
  for (let i = 0; i < c.numLayers; i++) {
    for (const n of ["norm1", "norm2"]) {
      m.set(`layers.${i}.${n}.weight`, [d]);
      m.set(`layers.${i}.${n}.bias`, [d]);
    }
    for (const p of ["q", "k", "v", "o"]) {
      m.set(`layers.${i}.attn.${p}.weight`, [d, d]);
      m.set(`layers.${i}.attn.${p}.bias`, [d]);
    }
    m.set(`layers.${i}.mlp.fc1.weight`, [c.ffnMult * d, d]);
    m.set(`layers.${i}.mlp.fc1.bias`, [c.ffnMult * d]);
    m.set(`layers.${i}.mlp.fc2.weight`, [d, c.ffnMult * d]);
    m.set(`layers.${i}.mlp.fc2.bias`, [d]);
  }
  return m;
}

interface Layer {
  n1w: Tensor;
  n1b: Tensor;
  n2w: Tensor;
  n2b: Tensor;
  q: DenseLinear;
  k: DenseLinear;
  v: DenseLinear;
  o: DenseLinear;
  fc1: DenseLinear;
  fc2: DenseLinear;
}

/** The caption encoder, loaded on the GPU (f32: it runs once per prompt). */
export class EmojiCaptionEncoder {
  /** The parsed config. */
  readonly config: EmojiEncoderConfig;
  readonly #tokens: Tensor;
  readonly #positions: Tensor;
  readonly #layers: Layer[];
  readonly #fw: Tensor;
  readonly #fb: Tensor;

  private constructor(config: EmojiEncoderConfig, parts: {
    tokens: Tensor;
    positions: Tensor;
    layers: Layer[];
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
    const d = config.dModel;
    const gpu = (n: string) => w.gpu(rt, n, "f32");
    const lin = async (n: string, out: number, inp: number) =>
      new DenseLinear(rt, {
        name: n,
        weight: await w.host(`${n}.weight`),
        bias: await w.host(`${n}.bias`),
        outFeatures: out,
        inFeatures: inp,
      }, "f32");
    const layers: Layer[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      const p = `layers.${i}`;
      const f = config.ffnMult * d;
      layers.push({
        n1w: await gpu(`${p}.norm1.weight`),
        n1b: await gpu(`${p}.norm1.bias`),
        n2w: await gpu(`${p}.norm2.weight`),
        n2b: await gpu(`${p}.norm2.bias`),
        q: await lin(`${p}.attn.q`, d, d),
        k: await lin(`${p}.attn.k`, d, d),
        v: await lin(`${p}.attn.v`, d, d),
        o: await lin(`${p}.attn.o`, d, d),
        fc1: await lin(`${p}.mlp.fc1`, f, d),
        fc2: await lin(`${p}.mlp.fc2`, d, f),
      });
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
    const eps = c.layerNormEps;
    for (const l of this.#layers) {
      const a = layerNorm(rec, x, { eps, weight: l.n1w, bias: l.n1b });
      const q = l.q.forward(rec, a).reshape([B, L, d]);
      const k = l.k.forward(rec, a).reshape([B, L, d]);
      const v = l.v.forward(rec, a).reshape([B, L, d]);
      a.release();
      // torch fills masked scores with -inf: "drop" excludes masked keys exactly.
      const att = attention(rec, q, k, v, { heads: c.numHeads, mask, maskMode: "drop" });
      q.release();
      k.release();
      v.release();
      const x1 = l.o.forward(rec, att.reshape([B * L, d]), { residual: x });
      att.release();
      x.release();
      const n2 = layerNorm(rec, x1, { eps, weight: l.n2w, bias: l.n2b });
      const h = l.fc1.forward(rec, n2, { activation: "gelu" });
      n2.release();
      x = l.fc2.forward(rec, h, { residual: x1 });
      h.release();
      x1.release();
    }
    const out = layerNorm(rec, x, { eps, weight: this.#fw, bias: this.#fb });
    x.release();
    return { embeds: out.reshape([B, L, d]), mask };
  }

  /** Frees the encoder's tensors. */
  release(): void {
    for (const l of this.#layers) {
      for (const t of [l.n1w, l.n1b, l.n2w, l.n2b]) t.release();
      for (const m of [l.q, l.k, l.v, l.o, l.fc1, l.fc2]) m.release();
    }
    for (const t of [this.#tokens, this.#positions, this.#fw, this.#fb]) t.release();
  }
}
