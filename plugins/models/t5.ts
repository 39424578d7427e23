/**
 * The T5 encoder (transformers' T5EncoderModel: PixArt-α/Σ's text_encoder, FLUX's
 * text_encoder_2) on the runtime's kernels, f32 activations (weights f32 or f16:
 * text_weights.ts): token embedding (unscaled, gathered on the host); per layer
 * x += o(attention(RMSNorm(x))) with no score scaling and the relative position bias of
 * layer 0 shared by all layers, then x += wo(act(wi_0(RMSNorm(x))) ⊙ wi_1(RMSNorm(x)));
 * a final RMSNorm.
 *
 * @module
 */
import { CheckpointError } from "../../runtime/errors.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { TensorSource } from "../../runtime/io/safetensors.ts";
import type { DenseLinear } from "../../runtime/model/linear.ts";
import { LoadedSoFar, WeightLoader } from "../../runtime/model/weights.ts";
import { textAttention } from "../../runtime/ops/attention_text.ts";
import { rmsNorm } from "../../runtime/ops/norm.ts";
import { t5Buckets, type T5Config } from "./t5_config.ts";
import { type HostEmbedding, hostEmbedding, textLinear, type TextWeights } from "./text_weights.ts";

const ATT = "layer.0.SelfAttention";
const FF = "layer.1.DenseReluDense";

/** The embedding's name: T5EncoderModel ties `shared` and `encoder.embed_tokens`; either may be stored. */
function embeddingName(source: TensorSource): string {
  for (const n of ["shared.weight", "encoder.embed_tokens.weight"]) {
    if (source.tensors.has(n)) return n;
  }
  throw new CheckpointError(
    source.path,
    "missing tensor (or encoder.embed_tokens.weight)",
    "shared.weight",
  );
}

/** The tensors of a T5 encoder's checkpoint and their shapes (the embedding under `embedding`). */
export function t5WeightShapes(c: T5Config, embedding = "shared.weight"): Map<string, number[]> {
  const d = c.dModel;
  const inner = c.numHeads * c.dKv;
  const m = new Map<string, number[]>([
    [embedding, [c.vocabSize, d]],
    [`encoder.block.0.${ATT}.relative_attention_bias.weight`, [c.numBuckets, c.numHeads]],
    ["encoder.final_layer_norm.weight", [d]],
  ]);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `encoder.block.${i}`;
    for (const n of ["q", "k", "v"]) m.set(`${p}.${ATT}.${n}.weight`, [inner, d]);
    m.set(`${p}.${ATT}.o.weight`, [d, inner]);
    m.set(`${p}.layer.0.layer_norm.weight`, [d]);
    m.set(`${p}.${FF}.wi_0.weight`, [c.dFf, d]);
    m.set(`${p}.${FF}.wi_1.weight`, [c.dFf, d]);
    m.set(`${p}.${FF}.wo.weight`, [d, c.dFf]);
    m.set(`${p}.layer.1.layer_norm.weight`, [d]);
  }
  return m;
}

interface Layer {
  ln0: Tensor;
  q: DenseLinear;
  k: DenseLinear;
  v: DenseLinear;
  o: DenseLinear;
  ln1: Tensor;
  wi0: DenseLinear;
  wi1: DenseLinear;
  wo: DenseLinear;
}

/** A T5 encoder loaded on the GPU. */
export class T5Encoder {
  /** The parsed config. */
  readonly config: T5Config;
  readonly #embed: HostEmbedding;
  readonly #bias: Tensor;
  readonly #layers: Layer[];
  readonly #final: Tensor;

  private constructor(
    config: T5Config,
    embed: HostEmbedding,
    bias: Tensor,
    layers: Layer[],
    final: Tensor,
  ) {
    this.config = config;
    this.#embed = embed;
    this.#bias = bias;
    this.#layers = layers;
    this.#final = final;
  }

  /**
   * Loads the encoder from its checkpoint (model.safetensors, sharded or not; f32, f16 or
   * bf16), its linears' weights stored as `weights` says (default "auto": the checkpoint's
   * precision).
   */
  static async load(
    rt: Runtime,
    source: TensorSource,
    config: T5Config,
    weights: TextWeights = "auto",
  ): Promise<T5Encoder> {
    const emb = embeddingName(source);
    const w = new WeightLoader(source, t5WeightShapes(config, emb));
    const made = new LoadedSoFar();
    const gpu = async (n: string) => made.keep(await w.gpu(rt, n, "f32"));
    const lin = async (name: string) => made.keep(await textLinear(rt, w, name, weights));
    const layers: Layer[] = [];
    try {
      for (let i = 0; i < config.numLayers; i++) {
        const p = `encoder.block.${i}`;
        layers.push({
          ln0: await gpu(`${p}.layer.0.layer_norm.weight`),
          q: await lin(`${p}.${ATT}.q`),
          k: await lin(`${p}.${ATT}.k`),
          v: await lin(`${p}.${ATT}.v`),
          o: await lin(`${p}.${ATT}.o`),
          ln1: await gpu(`${p}.layer.1.layer_norm.weight`),
          wi0: await lin(`${p}.${FF}.wi_0`),
          wi1: await lin(`${p}.${FF}.wi_1`),
          wo: await lin(`${p}.${FF}.wo`),
        });
      }
      return new T5Encoder(
        config,
        await hostEmbedding(w, emb, config.vocabSize, config.dModel, weights),
        await gpu(`encoder.block.0.${ATT}.relative_attention_bias.weight`),
        layers,
        await gpu("encoder.final_layer_norm.weight"),
      );
    } catch (e) {
      made.release();
      throw e;
    }
  }

  /** Bytes of its weights on the GPU (the embedding table is on the host: `hostBytes`). */
  get weightBytes(): number {
    const lin = this.#layers.flatMap((l) => [l.q, l.k, l.v, l.o, l.wi0, l.wi1, l.wo]);
    const norms = this.#layers.flatMap((l) => [l.ln0, l.ln1]);
    return lin.reduce((a, m) => a + m.weightBytes, 0) +
      [...norms, this.#bias, this.#final].reduce((a, t) => a + t.byteLength, 0);
  }

  /** Bytes of its token embedding table on the host. */
  get hostBytes(): number {
    return this.#embed.byteLength;
  }

  /**
   * Records the encoding of B token sequences of L ids ([B·L] u32) → last_hidden_state
   * [B, L, d_model] f32. `mask` [B, L] (1 keep, 0 pad) is the attention mask PixArt passes;
   * without one every token attends to every token (FLUX passes none).
   */
  encode(rec: Recorder, ids: Uint32Array, B: number, L: number, mask?: Float32Array): Tensor {
    const c = this.config;
    if (ids.length !== B * L) throw new RangeError(`T5: ${ids.length} ids are not [${B}, ${L}]`);
    if (mask && mask.length !== B * L) throw new RangeError(`T5: the mask must be [${B}, ${L}]`);
    const bad = ids.findIndex((t) => t >= c.vocabSize);
    if (bad >= 0) {
      throw new RangeError(`T5: token id ${ids[bad]} is past the vocabulary (${c.vocabSize})`);
    }
    const d = c.dModel;
    const inner = c.numHeads * c.dKv;
    let x = rec.upload(this.#embed.gather(ids), [B * L, d]);
    const maskT = mask ? rec.upload(mask, [B, L]) : undefined;
    const buckets = rec.upload(t5Buckets(L, L, c), [2 * L - 1], "u32");
    const relativeBias = { table: this.#bias, buckets };
    const eps = c.eps;
    for (const l of this.#layers) {
      const a = rmsNorm(rec, x, { eps, weight: l.ln0 });
      const q = l.q.forward(rec, a).reshape([B, L, inner]);
      const k = l.k.forward(rec, a).reshape([B, L, inner]);
      const v = l.v.forward(rec, a).reshape([B, L, inner]);
      a.release();
      const att = textAttention(rec, q, k, v, {
        heads: c.numHeads,
        scale: 1,
        mask: maskT,
        relativeBias,
      });
      for (const t of [q, k, v]) t.release();
      const x1 = l.o.forward(rec, att.reshape([B * L, inner]), { residual: x });
      att.release();
      x.release();
      const n = rmsNorm(rec, x1, { eps, weight: l.ln1 });
      const g = l.wi0.forward(rec, n, { activation: c.activation });
      const h = l.wi1.forward(rec, n, { gate: g, rowsPerGate: 1 }); // act(wi_0 n) ⊙ wi_1 n
      n.release();
      g.release();
      x = l.wo.forward(rec, h, { residual: x1 });
      h.release();
      x1.release();
    }
    buckets.release();
    maskT?.release();
    const out = rmsNorm(rec, x, { eps, weight: this.#final });
    x.release();
    return out.reshape([B, L, d]);
  }

  /** Frees the encoder's tensors. */
  release(): void {
    for (const l of this.#layers) releaseLayer(l);
    for (const t of [this.#bias, this.#final]) t.release();
  }
}

function releaseLayer(l: Layer): void {
  for (const t of [l.ln0, l.ln1]) t.release();
  for (const m of [l.q, l.k, l.v, l.o, l.wi0, l.wi1, l.wo]) m.release();
}
