/**
 * diffusers' PixArtTransformer2DModel on WebGPU: patch embedding, adaLN-single,
 * caption projection, N blocks (self-attention, cross-attention, GELU feed-forward,
 * each gated by the timestep modulation) and the modulated output layer.
 *
 * The cross-attention keys and values depend only on the caption, so
 * {@linkcode PixArtModel.prepare} computes them once per prompt batch and every sampler
 * step reuses them.
 *
 * @module
 */
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { Linear } from "../../runtime/model/linear.ts";
import { attention } from "../../runtime/ops/attention.ts";
import { cast } from "../../runtime/ops/cast.ts";
import { elementwise } from "../../runtime/ops/elementwise.ts";
import { layerNorm } from "../../runtime/ops/norm.ts";
import { concat, im2col, slice, unpatchify } from "../../runtime/ops/patch.ts";
import { posEmbed2dRef } from "../../runtime/reference/embed.ts";
import type { AddedConditions, PixArtConfig } from "./pixart_config.ts";
import type { Block } from "./pixart_load.ts";
import type { ModelPlugin } from "../types.ts";

export {
  type AttentionContext,
  denseSelfAttention,
  type SelfAttention,
  sinusoid,
} from "./dit_common.ts";
import { gatedFeedForward, type SelfAttention, sinusoid } from "./dit_common.ts";
export { type AddedConditions, addedConditions } from "./pixart_config.ts";

/** The caption-dependent state of one prompt batch: projected keys/values per block. */
export interface PixArtConditioning {
  /** Batch size B the conditioning was made for. */
  batch: number;
  /** Per block, cross-attention keys [B, L, D]. */
  keys: Tensor[];
  /** Per block, cross-attention values [B, L, D]. */
  values: Tensor[];
  /** Caption mask [B, L] in the model's dtype, or undefined (all kept). */
  mask: Tensor | undefined;
  /** Sinusoids of the resolution [2B, 256] (1024-MS model), or undefined. */
  resolution: Tensor | undefined;
  /** Sinusoids of the aspect ratio [B, 256] (1024-MS model), or undefined. */
  aspectRatio: Tensor | undefined;
  /** The batch is a CFG pair [uncond…, cond…] (quantized layers may quantize by CFG delta). */
  cfgPair: boolean;
  /** Frees the tensors. */
  release(): void;
}

/** A loaded PixArt transformer. */
export class PixArtModel {
  /** The parsed config. */
  readonly config: PixArtConfig;
  /** Activation storage type. */
  readonly dtype: "f32" | "f16";
  /** Self-attention implementation (swappable for ablations). */
  selfAttention: SelfAttention;
  readonly #l: Record<string, Linear>;
  readonly #blocks: Block[];
  readonly #finalTable: Tensor;
  readonly #posCache = new Map<string, Tensor>();

  /** Use {@linkcode loadPixArt}. */
  constructor(
    config: PixArtConfig,
    dtype: "f32" | "f16",
    parts: {
      linears: Record<string, Linear>;
      blocks: Block[];
      finalTable: Tensor;
      selfAttention: SelfAttention;
    },
  ) {
    this.config = config;
    this.dtype = dtype;
    this.#l = parts.linears;
    this.#blocks = parts.blocks;
    this.#finalTable = parts.finalTable;
    this.selfAttention = parts.selfAttention;
  }

  /** Every linear layer, by checkpoint name. */
  get linears(): Linear[] {
    return [
      ...Object.values(this.#l),
      ...this.#blocks.flatMap((
        b,
      ) => [b.q, b.k, b.v, b.out, b.q2, b.k2, b.v2, b.out2, b.ff1, b.ff2]),
    ];
  }

  /** Bytes of all weights on the GPU. */
  get weightBytes(): number {
    const t = [this.#finalTable, ...this.#blocks.map((b) => b.table)];
    return this.linears.reduce((s, l) => s + l.weightBytes, 0) +
      t.reduce((s, x) => s + x.byteLength, 0);
  }

  /**
   * Projects the caption embeddings [B, L, caption_channels] (mask [B, L], 1 keep / 0 drop)
   * and computes every block's cross-attention keys and values. `cfgPair`: the batch is
   * [uncond…, cond…] of B/2 each, as the pipeline builds it under guidance.
   */
  prepare(
    rec: Recorder,
    embeds: Tensor,
    mask: Tensor | undefined,
    added?: AddedConditions,
    opts: { cfgPair?: boolean } = {},
  ): PixArtConditioning {
    const c = this.config;
    const [B, L] = embeds.shape;
    if (embeds.shape.length !== 3) {
      throw new RangeError(`caption embeddings must be [B, L, C], got [${embeds.shape}]`);
    }
    if (c.captionChannels !== null && embeds.shape[2] !== c.captionChannels) {
      throw new RangeError(
        `caption embeddings have ${embeds.shape[2]} channels, the model takes ${c.captionChannels}`,
      );
    }
    const cfgPair = opts.cfgPair ?? false;
    if (cfgPair && B % 2 !== 0) throw new RangeError(`a CFG pair needs an even batch, got ${B}`);
    if (mask && (mask.size !== B * L || mask.dtype !== this.dtype)) {
      throw new RangeError(
        `caption mask must be [${B}, ${L}] ${this.dtype}, got [${mask.shape}] ${mask.dtype}`,
      );
    }
    const flat = embeds.reshape([B * L, embeds.shape[2]]);
    let cap = flat;
    if (c.captionChannels !== null) {
      const h = this.#l["caption_projection.linear_1"].forward(rec, flat, { activation: "gelu" });
      cap = this.#l["caption_projection.linear_2"].forward(rec, h);
      h.release();
    }
    const keys: Tensor[] = [];
    const values: Tensor[] = [];
    for (const b of this.#blocks) {
      const tokens = { rowsPerSample: L };
      keys.push(b.k2.forward(rec, cap, tokens).reshape([B, L, c.innerDim]));
      values.push(b.v2.forward(rec, cap, tokens).reshape([B, L, c.innerDim]));
    }
    if (cap !== flat) cap.release();
    let resolution: Tensor | undefined;
    let aspectRatio: Tensor | undefined;
    if (c.useAdditionalConditions) {
      if (!added) {
        throw new TypeError(
          "This model uses additional conditions: pass resolution and aspect ratio",
        );
      }
      const res = Float32Array.from(added.resolution);
      const ar = Float32Array.from(added.aspectRatio);
      if (res.length !== 2 * B || ar.length !== B) {
        throw new RangeError(`resolution must hold ${2 * B} values and aspect ratio ${B}`);
      }
      resolution = rec.upload(sinusoid(res, 256), [2 * B, 256], this.dtype);
      aspectRatio = rec.upload(sinusoid(ar, 256), [B, 256], this.dtype);
    }
    const all = [...keys, ...values, mask, resolution, aspectRatio];
    return {
      batch: B,
      keys,
      values,
      mask,
      resolution,
      aspectRatio,
      cfgPair,
      release: () => all.forEach((t) => t?.release()),
    };
  }

  /** The 2-D position embedding [h·w, D] for a token grid in `dtype`, cached per grid. */
  #posEmbed(rec: Recorder, h: number, w: number, dtype: "f32" | "f16"): Tensor {
    const key = `${h}x${w}:${dtype}`;
    let t = this.#posCache.get(key);
    if (!t) {
      const c = this.config;
      const e = posEmbed2dRef({
        embedDim: c.innerDim,
        gridH: h,
        gridW: w,
        baseSize: Math.floor(c.sampleSize / c.patchSize),
        interpolationScale: c.interpolationScale,
      });
      // Uploaded inside the recording: a pooled buffer may have been released earlier in it.
      t = rec.upload(e, [h * w, c.innerDim], dtype);
      this.#posCache.set(key, t);
    }
    return t;
  }

  /** Timestep (and size) conditioning: the modulation [B, 6D] and embedded timestep [B, D]. */
  #timestep(
    rec: Recorder,
    t: readonly number[],
    cond: PixArtConditioning,
  ): { t6: Tensor; emb: Tensor } {
    const l = this.#l;
    // Intermediates; released here whether or not a dispatch throws (the results are not).
    const tmp: Tensor[] = [];
    const keep = (x: Tensor) => (tmp.push(x), x);
    try {
      const sin = keep(rec.upload(sinusoid(t, 256), [t.length, 256], this.dtype));
      const h = keep(l["adaln_single.emb.timestep_embedder.linear_1"].forward(rec, sin, {
        activation: "silu",
      }));
      let emb = keep(l["adaln_single.emb.timestep_embedder.linear_2"].forward(rec, h));
      sin.release();
      h.release();
      if (this.config.useAdditionalConditions && cond.resolution && cond.aspectRatio) {
        const B = cond.batch;
        const embedder = (name: string, s: Tensor) => {
          const a = keep(
            l[`adaln_single.emb.${name}.linear_1`].forward(rec, s, { activation: "silu" }),
          );
          const o = keep(l[`adaln_single.emb.${name}.linear_2`].forward(rec, a));
          a.release();
          return o;
        };
        const res = embedder("resolution_embedder", cond.resolution); // [2B, D/3] = [B, 2D/3]
        const ar = embedder("aspect_ratio_embedder", cond.aspectRatio); // [B, D/3]
        const D3 = this.config.innerDim / 3;
        const extra = keep(concat(rec, [res.reshape([B, 2 * D3]), ar.reshape([B, D3])], -1));
        const sum = keep(elementwise(rec, "axpby", emb, { y: extra }));
        for (const x of [res, ar, extra, emb]) x.release();
        emb = sum;
      }
      const act = keep(elementwise(rec, "silu", emb));
      const t6 = l["adaln_single.linear"].forward(rec, act);
      act.release();
      tmp.splice(tmp.indexOf(emb), 1); // a result
      return { t6, emb };
    } finally {
      for (const x of tmp) x.release();
    }
  }

  /**
   * Records one forward: x [B, C, H, W] at timesteps t (B numbers) → [B, out_channels, H, W].
   */
  forward(
    rec: Recorder,
    x: Tensor,
    t: readonly number[],
    cond: PixArtConditioning,
    step: { index: number; total: number } = { index: -1, total: 0 },
  ): Tensor {
    const c = this.config;
    const p = c.patchSize;
    if (x.shape.length !== 4 || x.shape[1] !== c.inChannels) {
      throw new RangeError(`latents must be [B, ${c.inChannels}, H, W], got [${x.shape}]`);
    }
    const [B, , H, W] = x.shape;
    if (H % p || W % p) {
      throw new RangeError(`latent height and width must be multiples of ${p}, got ${H}×${W}`);
    }
    if (B !== cond.batch) {
      throw new RangeError(`latents have batch ${B}, the conditioning ${cond.batch}`);
    }
    if (t.length !== B) throw new RangeError(`expected ${B} timesteps, got ${t.length}`);
    const h = H / p;
    const w = W / p;
    const T = h * w;
    const D = c.innerDim;

    // Intermediates; released whether or not a dispatch throws (a tensor over the adapter's
    // binding limit, say), so a failed forward leaks nothing.
    const tmp: Tensor[] = [];
    const keep = (t: Tensor) => (tmp.push(t), t);
    try {
      const patches = keep(im2col(rec, x, p));
      let hs = keep(this.#patchEmbed(rec, patches, h, w));
      patches.release();
      const { t6, emb } = this.#timestep(rec, t, cond);
      keep(t6);
      keep(emb);

      for (let i = 0; i < this.#blocks.length; i++) {
        hs = keep(this.#block(rec, i, hs, t6, cond, { B, T, h, w, D, step }));
      }

      const n = keep(layerNorm(rec, hs, {
        eps: 1e-6,
        modulation: { emb, table: this.#finalTable, shift: 0, scale: 1 },
      }));
      hs.release();
      const y = keep(this.#l["proj_out"].forward(rec, n));
      n.release();
      t6.release();
      emb.release();
      const out = unpatchify(rec, y.reshape([B, T, p * p * c.outChannels]), {
        height: h,
        width: w,
        patch: p,
        channels: c.outChannels,
      });
      y.release();
      return out;
    } finally {
      for (const t of tmp) t.release();
    }
  }

  /**
   * Records block `i` alone (benchmarks, tests): hidden states x [B·T, D] of an h×w token
   * grid → the block's output, with `t6` the adaLN-single modulation [B, 6D] that
   * {@linkcode forward} computes from the timestep. Consumes x, as the forward does.
   */
  blockForward(
    rec: Recorder,
    i: number,
    x: Tensor,
    t6: Tensor,
    cond: PixArtConditioning,
    grid: { h: number; w: number },
    step: { index: number; total: number } = { index: -1, total: 0 },
  ): Tensor {
    const D = this.config.innerDim;
    const B = cond.batch;
    const T = grid.h * grid.w;
    if (!(i >= 0 && i < this.#blocks.length)) throw new RangeError(`no block ${i}`);
    if (x.size !== B * T * D || t6.size !== B * 6 * D) {
      throw new RangeError(`block input must be [${B}·${T}, ${D}] and t6 [${B}, ${6 * D}]`);
    }
    return this.#block(rec, i, x, t6, cond, { B, T, h: grid.h, w: grid.w, D, step });
  }

  #patchEmbed(rec: Recorder, patches: Tensor, h: number, w: number): Tensor {
    const tokens = this.#l["pos_embed.proj"].forward(rec, patches);
    try {
      const native = Math.floor(this.config.sampleSize / this.config.patchSize);
      if (this.dtype === "f32" || (h === native && w === native)) {
        return elementwise(rec, "addRow", tokens, { y: this.#posEmbed(rec, h, w, this.dtype) });
      }
      // diffusers' PatchEmbed keeps its table in the model's dtype only for the native grid;
      // for another it builds an f32 table and adds it in f32: (latent + pos).to(f16).
      const t32 = cast(rec, tokens, "f32");
      const sum = elementwise(rec, "addRow", t32, { y: this.#posEmbed(rec, h, w, "f32") });
      t32.release();
      try {
        return cast(rec, sum, "f16");
      } finally {
        sum.release();
      }
    } finally {
      tokens.release();
    }
  }

  #block(
    rec: Recorder,
    i: number,
    x: Tensor,
    t6: Tensor,
    cond: PixArtConditioning,
    s: {
      B: number;
      T: number;
      h: number;
      w: number;
      D: number;
      step: { index: number; total: number };
    },
  ): Tensor {
    const b = this.#blocks[i];
    const { B, T, D } = s;
    const heads = this.config.numAttentionHeads;
    const eps = this.config.normEps;
    // Intermediates, and x (consumed): released whether or not a dispatch throws.
    const tmp: Tensor[] = [x];
    const keep = (t: Tensor) => (tmp.push(t), t);
    try {
      // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = chunks of t6 + table.
      const mod = keep(elementwise(rec, "addRow", t6, { y: b.table }));
      const gateMsa = keep(slice(rec, mod, -1, 2 * D, D));
      const gateMlp = keep(slice(rec, mod, -1, 5 * D, D));

      const n1 = keep(layerNorm(rec, x, { eps, modulation: { emb: mod, shift: 0, scale: 1 } }));
      // Each sample's rows (for layers that centre inputs), and whether the batch is a CFG pair.
      const tokens = { rowsPerSample: T, cfgPair: cond.cfgPair };
      const q = keep(b.q.forward(rec, n1, tokens).reshape([B, T, D]));
      const k = keep(b.k.forward(rec, n1, tokens).reshape([B, T, D]));
      const v = keep(b.v.forward(rec, n1, tokens).reshape([B, T, D]));
      n1.release();
      const a = keep(this.selfAttention.run(rec, i, q, k, v, {
        heads,
        h: s.h,
        w: s.w,
        step: s.step.index,
        steps: s.step.total,
      }));
      q.release();
      k.release();
      v.release();
      const x1 = keep(b.out.forward(rec, a.reshape([B * T, D]), {
        residual: x,
        gate: gateMsa,
        rowsPerGate: T,
        ...tokens,
      }));
      a.release();
      x.release();

      // Cross-attention: PixArt feeds the un-normalised hidden states (diffusers attention.py).
      const q2 = keep(b.q2.forward(rec, x1, tokens).reshape([B, T, D]));
      const a2 = keep(attention(rec, q2, cond.keys[i], cond.values[i], { heads, mask: cond.mask }));
      q2.release();
      const x2 = keep(b.out2.forward(rec, a2.reshape([B * T, D]), { residual: x1, ...tokens }));
      a2.release();
      x1.release();

      const n2 = keep(layerNorm(rec, x2, { eps, modulation: { emb: mod, shift: 3, scale: 4 } }));
      const x3 = gatedFeedForward(rec, {
        x: n2,
        residual: x2,
        gate: gateMlp,
        ff1: b.ff1,
        ff2: b.ff2,
        batch: { samples: B, rowsPerSample: T, cfgPair: cond.cfgPair },
        what: `transformer_blocks.${i}.ff`,
      });
      n2.release();
      x2.release();
      mod.release();
      gateMsa.release();
      gateMlp.release();
      return x3;
    } finally {
      for (const t of tmp) t.release();
    }
  }

  /** Frees every GPU tensor of the model. */
  release(): void {
    for (const l of this.linears) l.release();
    for (const b of this.#blocks) b.table.release();
    this.#finalTable.release();
    for (const t of this.#posCache.values()) t.release();
    this.#posCache.clear();
  }
}

/** The PixArt model family's descriptor. */
export const pixartPlugin: ModelPlugin = {
  kind: "model",
  name: "pixart",
  className: "PixArtTransformer2DModel",
  description: "diffusers' PixArtTransformer2DModel (PixArt-α/Σ, adaLN-single, cross-attention)",
};
