/**
 * The CLIP text encoder (transformers' CLIPTextModel: FLUX's text_encoder) on the runtime's
 * kernels, f32 activations (weights f32 or f16: text_weights.ts): token + position embedding
 * (gathered on the host); per layer x += out_proj(causal attention(LN₁(x)))
 * and x += fc2(quick_gelu(fc1(LN₂(x)))); a final LayerNorm. The pooled output FLUX takes is
 * the final hidden state at each caption's end-of-text token.
 *
 * @module
 */
import { CheckpointError } from "../../runtime/errors.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { TensorSource } from "../../runtime/io/safetensors.ts";
import { LoadedSoFar, WeightLoader } from "../../runtime/model/weights.ts";
import { textAttention } from "../../runtime/ops/attention_text.ts";
import { gatherRows } from "../../runtime/ops/embed.ts";
import { layerNorm } from "../../runtime/ops/norm.ts";
import { type HostEmbedding, hostEmbedding, type TextWeights } from "./text_weights.ts";
import {
  loadPreLnLayer,
  preLnForward,
  type PreLnLayer,
  preLnLayerBytes,
  type PreLnNames,
  type PreLnRun,
  preLnShapes,
  releasePreLnLayer,
} from "./pre_ln_layer.ts";

/** The fields of a CLIPTextModel's config.json that its forward uses. */
export interface ClipTextConfig {
  /** `vocab_size`. */
  vocabSize: number;
  /** `hidden_size`. */
  hiddenSize: number;
  /** `intermediate_size`. */
  intermediateSize: number;
  /** `num_hidden_layers`. */
  numLayers: number;
  /** `num_attention_heads`. */
  numHeads: number;
  /** `max_position_embeddings` (77). */
  maxPositions: number;
  /** `layer_norm_eps` (1e-5). */
  eps: number;
  /** `eos_token_id`: 2 is the original configs' value, read as "the highest id" (as transformers does). */
  eosTokenId: number;
}

/** Whether a text_encoder config.json describes a CLIP text model. */
export function isClipTextConfig(raw: unknown): boolean {
  const c = raw as Record<string, unknown> | null;
  return typeof c === "object" && c !== null && c["model_type"] === "clip_text_model";
}

/** Parses a CLIPTextModel's config.json. */
export function parseClipTextConfig(raw: unknown, file = "config.json"): ClipTextConfig {
  if (!isClipTextConfig(raw)) {
    throw new CheckpointError(
      file,
      'expected a CLIP text config (model_type "clip_text_model")',
      "model_type",
    );
  }
  const c = raw as Record<string, unknown>;
  const int = (k: string, dflt?: number, min = 1) => {
    const v = c[k] ?? dflt;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      throw new CheckpointError(file, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`, k);
    }
    return v;
  };
  const eps = c["layer_norm_eps"] ?? 1e-5;
  if (typeof eps !== "number" || !(eps > 0)) {
    throw new CheckpointError(file, "must be a positive number", "layer_norm_eps");
  }
  const act = c["hidden_act"] ?? "quick_gelu";
  if (act !== "quick_gelu") {
    throw new CheckpointError(
      file,
      `${
        JSON.stringify(act)
      } is not supported: webdit runs "quick_gelu" (CLIP ViT-L/14, FLUX's encoder)`,
      "hidden_act",
    );
  }
  const cfg: ClipTextConfig = {
    vocabSize: int("vocab_size"),
    hiddenSize: int("hidden_size"),
    intermediateSize: int("intermediate_size"),
    numLayers: int("num_hidden_layers"),
    numHeads: int("num_attention_heads"),
    maxPositions: int("max_position_embeddings", 77),
    eps,
    eosTokenId: int("eos_token_id", 2, 0),
  };
  if (cfg.hiddenSize % cfg.numHeads || cfg.hiddenSize / cfg.numHeads > 128) {
    throw new CheckpointError(
      file,
      `must divide hidden_size ${cfg.hiddenSize} into heads of at most 128`,
      "num_attention_heads",
    );
  }
  return cfg;
}

/**
 * Where each caption's pooled output is read: transformers' rule — with eos_token_id 2 (the
 * original configs) the first position of the highest id (CLIP's end-of-text is its highest
 * id), else the first position of eos_token_id (0 when there is none).
 */
export function clipEosIndex(ids: ArrayLike<number>, eosTokenId: number): number {
  let best = 0;
  for (let i = 0; i < ids.length; i++) {
    if (eosTokenId === 2 ? ids[i]! > ids[best]! : ids[i] === eosTokenId) {
      best = i;
      if (eosTokenId !== 2) break;
    }
  }
  if (eosTokenId !== 2 && ids[best] !== eosTokenId) return 0;
  return best;
}

/**
 * The tensors' prefix: "text_model." as transformers 4 saves CLIPTextModel (FLUX's files), none
 * as transformers 5 does.
 */
function prefixOf(source: TensorSource): string {
  return source.tensors.has("text_model.embeddings.token_embedding.weight") ? "text_model." : "";
}

/** The tensors of a CLIPTextModel's checkpoint and their shapes (`T`: "text_model." or ""). */
export function clipTextWeightShapes(c: ClipTextConfig, T = "text_model."): Map<string, number[]> {
  const d = c.hiddenSize;
  const m = new Map<string, number[]>([
    [`${T}embeddings.token_embedding.weight`, [c.vocabSize, d]],
    [`${T}embeddings.position_embedding.weight`, [c.maxPositions, d]],
    [`${T}final_layer_norm.weight`, [d]],
    [`${T}final_layer_norm.bias`, [d]],
  ]);
  for (let i = 0; i < c.numLayers; i++) preLnShapes(m, layerNames(T, i), d, c.intermediateSize);
  return m;
}

/** Layer i's checkpoint names. */
function layerNames(T: string, i: number): PreLnNames {
  const p = `${T}encoder.layers.${i}`;
  const a = `${p}.self_attn`;
  return {
    norm1: `${p}.layer_norm1`,
    norm2: `${p}.layer_norm2`,
    q: `${a}.q_proj`,
    k: `${a}.k_proj`,
    v: `${a}.v_proj`,
    o: `${a}.out_proj`,
    fc1: `${p}.mlp.fc1`,
    fc2: `${p}.mlp.fc2`,
  };
}

/** A CLIP text encoder loaded on the GPU. */
export class ClipTextEncoder {
  /** The parsed config. */
  readonly config: ClipTextConfig;
  readonly #tokens: HostEmbedding;
  readonly #positions: HostEmbedding;
  readonly #layers: PreLnLayer[];
  readonly #fw: Tensor;
  readonly #fb: Tensor;

  private constructor(
    config: ClipTextConfig,
    t: HostEmbedding,
    p: HostEmbedding,
    layers: PreLnLayer[],
    fw: Tensor,
    fb: Tensor,
  ) {
    this.config = config;
    this.#tokens = t;
    this.#positions = p;
    this.#layers = layers;
    this.#fw = fw;
    this.#fb = fb;
  }

  /**
   * Loads the encoder from its checkpoint (model.safetensors; f32, f16 or bf16), its linears'
   * weights stored as `weights` says (default "auto": the checkpoint's precision).
   */
  static async load(
    rt: Runtime,
    source: TensorSource,
    config: ClipTextConfig,
    weights: TextWeights = "auto",
  ): Promise<ClipTextEncoder> {
    const T = prefixOf(source);
    const w = new WeightLoader(source, clipTextWeightShapes(config, T));
    const made = new LoadedSoFar();
    const gpu = async (n: string) => made.keep(await w.gpu(rt, n, "f32"));
    const table = (name: string, rows: number) =>
      hostEmbedding(w, name, rows, config.hiddenSize, weights);
    const layers: PreLnLayer[] = [];
    try {
      for (let i = 0; i < config.numLayers; i++) {
        const l = await loadPreLnLayer(rt, w, layerNames(T, i), weights);
        layers.push(l);
        made.keep({ release: () => releasePreLnLayer(l) });
      }
      return new ClipTextEncoder(
        config,
        await table(`${T}embeddings.token_embedding.weight`, config.vocabSize),
        await table(`${T}embeddings.position_embedding.weight`, config.maxPositions),
        layers,
        await gpu(`${T}final_layer_norm.weight`),
        await gpu(`${T}final_layer_norm.bias`),
      );
    } catch (e) {
      made.release();
      throw e;
    }
  }

  /** Bytes of its weights on the GPU (the embedding tables are on the host: `hostBytes`). */
  get weightBytes(): number {
    return this.#layers.reduce((a, l) => a + preLnLayerBytes(l), 0) + this.#fw.byteLength +
      this.#fb.byteLength;
  }

  /** Bytes of its token and position embedding tables on the host. */
  get hostBytes(): number {
    return this.#tokens.byteLength + this.#positions.byteLength;
  }

  /**
   * Records the encoding of B sequences of L ids ([B·L] u32, L ≤ max_position_embeddings) →
   * last_hidden_state [B, L, d] and pooler_output [B, d] (f32).
   */
  encode(
    rec: Recorder,
    ids: Uint32Array,
    B: number,
    L: number,
  ): { hidden: Tensor; pooled: Tensor } {
    const c = this.config;
    if (ids.length !== B * L) throw new RangeError(`CLIP: ${ids.length} ids are not [${B}, ${L}]`);
    if (L > c.maxPositions) {
      throw new RangeError(`CLIP: ${L} tokens are over max_position_embeddings ${c.maxPositions}`);
    }
    const bad = ids.findIndex((t) => t >= c.vocabSize);
    if (bad >= 0) {
      throw new RangeError(`CLIP: token id ${ids[bad]} is past the vocabulary (${c.vocabSize})`);
    }
    const d = c.hiddenSize;
    // Token + position embeddings, gathered and summed on the host (text_weights.ts).
    const emb = this.#tokens.gather(ids);
    const pos = this.#positions.gather(Uint32Array.from({ length: L }, (_, i) => i));
    for (let i = 0; i < emb.length; i++) emb[i] += pos[i % (L * d)];
    let x = rec.upload(emb, [B * L, d]);
    const scale = 1 / Math.sqrt(d / c.numHeads);
    const run: PreLnRun = {
      B,
      L,
      eps: c.eps,
      attend: (q, k, v) => textAttention(rec, q, k, v, { heads: c.numHeads, scale, causal: true }),
      activation: "quickGelu",
    };
    for (const l of this.#layers) x = preLnForward(rec, x, l, run);
    const hidden = layerNorm(rec, x, { eps: c.eps, weight: this.#fw, bias: this.#fb });
    x.release();
    const rows = Uint32Array.from(
      { length: B },
      (_, b) => b * L + clipEosIndex(ids.subarray(b * L, (b + 1) * L), c.eosTokenId),
    );
    const rowT = rec.upload(rows, [B], "u32");
    const pooled = gatherRows(rec, hidden.reshape([B * L, d]), rowT);
    rowT.release();
    return { hidden: hidden.reshape([B, L, d]), pooled: pooled.reshape([B, d]) };
  }

  /** Frees the encoder's tensors. */
  release(): void {
    for (const l of this.#layers) releasePreLnLayer(l);
    for (const t of [this.#fw, this.#fb]) t.release();
  }
}
