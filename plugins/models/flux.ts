/**
 * diffusers' FluxTransformer2DModel (MMDiT) on WebGPU: x/context embedders, the
 * timestep + guidance + pooled-text conditioning, double-stream blocks (separate weights
 * for text and image tokens, one joint attention), single-stream blocks (parallel
 * attention and MLP over the joint sequence), AdaLayerNormContinuous and proj_out; RoPE
 * over (index, row, column) ids and the 2×2 latent packing.
 *
 * Every linear, the FFNs and the adaLN modulation linears included, comes from the
 * {@linkcode LinearFactory}, so a quantization plan applies to all of them. Attention goes
 * through {@linkcode FluxModel.selfAttention}, the PixArt `SelfAttention` hook with a
 * {@linkcode FluxAttentionContext}: q/k/v are the joint [B, L + h·w, H·D] sequences, the
 * L text tokens first (keep them dense), then the image tokens in raster order — where
 * PARO applies.
 *
 * The prompt-dependent work (context_embedder over the T5 embeddings, the pooled-text
 * and guidance embeddings) runs once per prompt batch in {@linkcode FluxModel.prepare}.
 *
 * @module
 */
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { Linear } from "../../runtime/model/linear.ts";
import { rowChunked } from "../../runtime/model/row_chunks.ts";
import { elementwise } from "../../runtime/ops/elementwise.ts";
import { packLatents, unpackLatents } from "../../runtime/ops/latent_pack.ts";
import { layerNorm } from "../../runtime/ops/norm.ts";
import { concat, slice } from "../../runtime/ops/patch.ts";
import { rope } from "../../runtime/ops/rope.ts";
import { fluxPositionIds, ropeFreqs } from "../../runtime/reference/rope.ts";
import type { FluxConfig } from "./flux_config.ts";
import { times1000 } from "./flux_time.ts";
import { type FluxConditioning, prepareFlux } from "./flux_prepare.ts";

export type { FluxConditioning } from "./flux_prepare.ts";
import {
  type AttentionContext,
  gatedFeedForward,
  type SelfAttention,
  sinusoid,
} from "./dit_common.ts";
import type { DoubleBlock, SingleBlock } from "./flux_load.ts";
import type { ModelPlugin } from "../types.ts";

/**
 * What a FLUX attention call passes to the {@linkcode SelfAttention} hook besides
 * PixArt's context. q/k/v are [B, L + h·w, H·D] (rotated q and k): rows 0…L−1 of each
 * batch item are the text tokens (attend and are attended densely), rows L… the h×w
 * image tokens in raster order. `layer` counts double blocks 0…N−1, then single blocks
 * N…N+M−1.
 */
export interface FluxAttentionContext extends AttentionContext {
  /** Text tokens L at the start of the sequence. */
  textTokens: number;
  /** "double" (transformer_blocks) or "single" (single_transformer_blocks). */
  block: "double" | "single";
}

/** Shapes of one forward. */
interface Dims {
  B: number;
  L: number;
  T: number;
  S: number;
  h: number;
  w: number;
  D: number;
  step: { index: number; total: number };
  freqs: Tensor;
  /** The batch is a CFG pair (passed to the linears beside their rows per sample). */
  cfgPair: boolean;
}

/** A loaded FLUX transformer. */
export class FluxModel {
  /** The parsed config. */
  readonly config: FluxConfig;
  /** Activation storage type. */
  readonly dtype: "f32" | "f16";
  /** Attention implementation (swappable for ablations and PARO); see the module doc. */
  selfAttention: SelfAttention;
  readonly #l: Record<string, Linear>;
  readonly #double: DoubleBlock[];
  readonly #single: SingleBlock[];
  readonly #freqCache = new Map<string, Tensor>();

  /** Use {@linkcode loadFlux}. */
  constructor(
    config: FluxConfig,
    dtype: "f32" | "f16",
    parts: {
      linears: Record<string, Linear>;
      double: DoubleBlock[];
      single: SingleBlock[];
      selfAttention: SelfAttention;
    },
  ) {
    this.config = config;
    this.dtype = dtype;
    this.#l = parts.linears;
    this.#double = parts.double;
    this.#single = parts.single;
    this.selfAttention = parts.selfAttention;
  }

  /** Every linear layer. */
  get linears(): Linear[] {
    return [
      ...Object.values(this.#l),
      ...this.#double.flatMap((b) => [
        b.mod,
        b.modCtx,
        b.q,
        b.k,
        b.v,
        b.addQ,
        b.addK,
        b.addV,
        b.out,
        b.addOut,
        b.ff1,
        b.ff2,
        b.ffc1,
        b.ffc2,
      ]),
      ...this.#single.flatMap((b) => [b.mod, b.q, b.k, b.v, b.mlp, b.out]),
    ];
  }

  #norms(): Tensor[] {
    return [
      ...this.#double.flatMap((b) => [b.normQ, b.normK, b.normAddQ, b.normAddK]),
      ...this.#single.flatMap((b) => [b.normQ, b.normK]),
    ];
  }

  /** Bytes of all weights on the GPU. */
  get weightBytes(): number {
    return this.linears.reduce((s, l) => s + l.weightBytes, 0) +
      this.#norms().reduce((s, t) => s + t.byteLength, 0);
  }

  /**
   * Embeds the prompt: prompt_embeds [B, L, joint_attention_dim] → context [B, L, D];
   * pooled [B, pooled_projection_dim] → text_embedder(pooled), plus the guidance embedding
   * of `guidance` (B scales, as the pipeline's guidance_scale; dev models only). `cfgPair`:
   * the batch is [negative…, positive…] of B/2 each (true CFG).
   */
  prepare(
    rec: Recorder,
    promptEmbeds: Tensor,
    pooled: Tensor,
    guidance?: readonly number[],
    opts: { cfgPair?: boolean } = {},
  ): FluxConditioning {
    const m = { config: this.config, dtype: this.dtype, linears: this.#l };
    return prepareFlux(rec, m, promptEmbeds, pooled, guidance, opts);
  }

  /** The RoPE table [L + h·w, D/2, 2] (f32) of L text tokens and an h×w grid, cached. */
  #freqs(rec: Recorder, L: number, h: number, w: number): Tensor {
    const key = `${L}:${h}x${w}`;
    let t = this.#freqCache.get(key);
    if (!t) {
      const f = ropeFreqs(fluxPositionIds(L, h, w), this.config.axesDimsRope, 10000);
      // Uploaded inside the recording: a pooled buffer may have been released earlier in it.
      t = rec.upload(f, [L + h * w, this.config.attentionHeadDim / 2, 2], "f32");
      this.#freqCache.set(key, t);
    }
    return t;
  }

  /**
   * Records one forward: latents x [B, C, H, W] (C = in_channels / 4, H and W even) at
   * model times t (B numbers in [0, 1]: the scheduler's timestep / 1000, as the FLUX
   * pipeline passes them) → the velocity [B, out_channels / 4, H, W].
   */
  forward(
    rec: Recorder,
    x: Tensor,
    t: readonly number[],
    cond: FluxConditioning,
    step: { index: number; total: number } = { index: -1, total: 0 },
  ): Tensor {
    const c = this.config;
    const C = c.latentChannels;
    if (x.shape.length !== 4 || x.shape[1] !== C) {
      throw new RangeError(`latents must be [B, ${C}, H, W], got [${x.shape}]`);
    }
    const [B, , H, W] = x.shape;
    if (H % 2 || W % 2) throw new RangeError(`latent height and width must be even, got ${H}×${W}`);
    if (B !== cond.batch) {
      throw new RangeError(`latents have batch ${B}, the conditioning ${cond.batch}`);
    }
    if (t.length !== B) throw new RangeError(`expected ${B} timesteps, got ${t.length}`);
    const h = H / 2;
    const w = W / 2;
    const L = cond.textTokens;
    const d: Dims = {
      B,
      L,
      T: h * w,
      S: L + h * w,
      h,
      w,
      D: c.innerDim,
      step,
      freqs: this.#freqs(rec, L, h, w),
      cfgPair: cond.cfgPair,
    };
    const l = this.#l;

    const packed = packLatents(rec, x);
    let img = l["x_embedder"].forward(rec, packed);
    packed.release();
    // temb = (timestep_embedder(sinusoid(1000·t)) + guidance) + text, summed in diffusers'
    // order; every modulation reads SiLU(temb).
    const sin = rec.upload(
      sinusoid(t.map((v) => times1000(v, this.dtype)), 256),
      [B, 256],
      this.dtype,
    );
    const t1 = l["time_text_embed.timestep_embedder.linear_1"].forward(rec, sin, {
      activation: "silu",
    });
    let temb = l["time_text_embed.timestep_embedder.linear_2"].forward(rec, t1, {
      residual: cond.guidance ?? cond.static,
    });
    sin.release();
    t1.release();
    if (cond.guidance) {
      const withText = elementwise(rec, "axpby", temb, { y: cond.static, alpha: 1, beta: 1 });
      temb.release();
      temb = withText;
    }
    const act = elementwise(rec, "silu", temb);
    temb.release();

    let txt = cond.context.reshape([B * L, d.D]);
    for (let i = 0; i < this.#double.length; i++) {
      const [t2, i2] = this.#doubleBlock(rec, i, txt, img, act, d);
      if (i > 0) txt.release(); // the first block reads cond.context, kept for later steps
      img.release();
      txt = t2;
      img = i2;
    }
    let joint = concat(rec, [txt.reshape([B, L, d.D]), img.reshape([B, d.T, d.D])], 1);
    if (this.#double.length > 0) txt.release();
    img.release();
    for (let j = 0; j < this.#single.length; j++) {
      const next = this.#singleBlock(rec, j, joint, act, d);
      joint.release();
      joint = next;
    }
    const imgOut = slice(rec, joint, 1, L, d.T);
    joint.release();
    // AdaLayerNormContinuous: chunk 0 is the scale, chunk 1 the shift.
    const mod = l["norm_out.linear"].forward(rec, act);
    act.release();
    const n = layerNorm(rec, imgOut, { eps: 1e-6, modulation: { emb: mod, scale: 0, shift: 1 } });
    imgOut.release();
    mod.release();
    const y = l["proj_out"].forward(rec, n.reshape([B * d.T, d.D]));
    n.release();
    const out = unpackLatents(rec, y, { height: H, width: W, channels: c.latentOutChannels });
    y.release();
    return out;
  }

  #attend(
    rec: Recorder,
    layer: number,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    d: Dims,
    block: "double" | "single",
  ): Tensor {
    const ctx: FluxAttentionContext = {
      heads: this.config.numAttentionHeads,
      h: d.h,
      w: d.w,
      step: d.step.index,
      steps: d.step.total,
      textTokens: d.L,
      block,
    };
    return this.selfAttention.run(rec, layer, q, k, v, ctx);
  }

  /** One double-stream block on text [B·L, D] and image [B·T, D] rows; returns new tensors. */
  #doubleBlock(
    rec: Recorder,
    i: number,
    txt: Tensor,
    img: Tensor,
    act: Tensor,
    d: Dims,
  ): [Tensor, Tensor] {
    const b = this.#double[i];
    const { B, L, T, S, D } = d;
    const H = this.config.numAttentionHeads;
    // AdaLayerNormZero chunks: shift_msa 0, scale_msa 1, gate_msa 2, shift_mlp 3, scale_mlp 4, gate_mlp 5.
    const modI = b.mod.forward(rec, act);
    const modT = b.modCtx.forward(rec, act);
    const nI = layerNorm(rec, img, { eps: 1e-6, modulation: { emb: modI, shift: 0, scale: 1 } });
    const nT = layerNorm(rec, txt, { eps: 1e-6, modulation: { emb: modT, shift: 0, scale: 1 } });
    const img1 = { rowsPerSample: T, cfgPair: d.cfgPair };
    const txt1 = { rowsPerSample: L, cfgPair: d.cfgPair };
    const qI = b.q.forward(rec, nI, img1);
    const kI = b.k.forward(rec, nI, img1);
    const vI = b.v.forward(rec, nI, img1);
    const qT = b.addQ.forward(rec, nT, txt1);
    const kT = b.addK.forward(rec, nT, txt1);
    const vT = b.addV.forward(rec, nT, txt1);
    nI.release();
    nT.release();
    const ro = { heads: H, normalize: true, eps: 1e-6, batch: B };
    const q = rope(
      rec,
      [{ tensor: qT, normWeight: b.normAddQ }, { tensor: qI, normWeight: b.normQ }],
      d.freqs,
      ro,
    );
    const k = rope(
      rec,
      [{ tensor: kT, normWeight: b.normAddK }, { tensor: kI, normWeight: b.normK }],
      d.freqs,
      ro,
    );
    const v = concat(rec, [vT.reshape([B, L, D]), vI.reshape([B, T, D])], 1);
    for (const x of [qI, kI, vI, qT, kT, vT]) x.release();
    const a = this.#attend(rec, i, q, k, v, d, "double");
    q.release();
    k.release();
    v.release();
    const aT = slice(rec, a.reshape([B, S, D]), 1, 0, L);
    const aI = slice(rec, a.reshape([B, S, D]), 1, L, T);
    a.release();

    const gate = (m: Tensor, chunk: number) => slice(rec, m, -1, chunk * D, D);
    const stream = (
      x: Tensor,
      attn: Tensor,
      mod: Tensor,
      out: Linear,
      ff1: Linear,
      ff2: Linear,
      rows: number,
    ) => {
      const tokens = { rowsPerSample: rows, cfgPair: d.cfgPair };
      const gMsa = gate(mod, 2);
      const gMlp = gate(mod, 5);
      const x1 = out.forward(rec, attn.reshape([B * rows, D]), {
        residual: x,
        gate: gMsa,
        rowsPerGate: rows,
        ...tokens,
      });
      const n2 = layerNorm(rec, x1, { eps: 1e-6, modulation: { emb: mod, shift: 3, scale: 4 } });
      try {
        return gatedFeedForward(rec, {
          x: n2,
          residual: x1,
          gate: gMlp,
          ff1,
          ff2,
          batch: { samples: B, rowsPerSample: rows, cfgPair: d.cfgPair },
          what: `${ff1.name} and ${ff2.name}`,
        });
      } finally { // also when the feed-forward cannot split (rowChunked's RangeError)
        for (const t of [n2, x1, gMsa, gMlp, mod]) t.release();
      }
    };
    try {
      const img2 = stream(img, aI, modI, b.out, b.ff1, b.ff2, T);
      try {
        return [this.#clipF16(rec, stream(txt, aT, modT, b.addOut, b.ffc1, b.ffc2, L)), img2];
      } catch (e) {
        img2.release();
        throw e;
      }
    } finally {
      for (const t of [aI, aT, modI, modT]) t.release();
    }
  }

  /** One single-stream block on the joint rows [B, S, D]; returns a new tensor. */
  #singleBlock(rec: Recorder, j: number, x: Tensor, act: Tensor, d: Dims): Tensor {
    const b = this.#single[j];
    const { B, S, D } = d;
    const H = this.config.numAttentionHeads;
    // AdaLayerNormZeroSingle chunks: shift 0, scale 1, gate 2.
    const mod = b.mod.forward(rec, act);
    const n = layerNorm(rec, x, { eps: 1e-6, modulation: { emb: mod, shift: 0, scale: 1 } });
    const rows = n.reshape([B * S, D]);
    const tokens = { rowsPerSample: S, cfgPair: d.cfgPair };
    const q0 = b.q.forward(rec, rows, tokens);
    const k0 = b.k.forward(rec, rows, tokens);
    const v = b.v.forward(rec, rows, tokens);
    const ro = { heads: H, normalize: true, eps: 1e-6, batch: B };
    const q = rope(rec, [{ tensor: q0, normWeight: b.normQ }], d.freqs, ro);
    const k = rope(rec, [{ tensor: k0, normWeight: b.normK }], d.freqs, ro);
    q0.release();
    k0.release();
    const a = this.#attend(rec, this.#double.length + j, q, k, v.reshape([B, S, D]), d, "single");
    q.release();
    k.release();
    v.release();
    // proj_out over [attn, mlp] concatenated along channels (one linear of 5D inputs); the
    // MLP's rows and the concatenation go in row chunks where [B·S, 5D] would not bind.
    const g = slice(rec, mod, -1, 2 * D, D);
    const part = {
      batch: { samples: B, rowsPerSample: S, cfgPair: d.cfgPair },
      layers: [b.mlp, b.out],
      width: b.out.inFeatures,
      what: `single_transformer_blocks.${j}`,
    };
    let y: Tensor;
    try {
      y = rowChunked(rec, part, (c) => {
        const mlp = b.mlp.forward(rec, c.rows(rows), { activation: "gelu", ...c.tokens });
        let cat: Tensor;
        try {
          cat = concat(rec, [c.rows(a.reshape([B * S, D])), mlp], -1);
        } finally {
          mlp.release();
        }
        try {
          return b.out.forward(rec, cat, {
            residual: c.rows(x.reshape([B * S, D])),
            gate: c.perSample(g),
            rowsPerGate: c.rowsPerGate,
            ...c.tokens,
          });
        } finally {
          cat.release();
        }
      });
    } finally { // also when the part cannot split (rowChunked's RangeError)
      for (const t of [a, n, g, mod]) t.release();
    }
    return this.#clipF16(rec, y).reshape([B, S, D]);
  }

  /**
   * diffusers clips f16 hidden states to ±65504 after the single blocks and the double
   * blocks' text stream, so an overflow (±inf) continues as the largest f16 instead of
   * turning into NaN; f32 models pass `x` through.
   */
  #clipF16(rec: Recorder, x: Tensor): Tensor {
    if (this.dtype !== "f16") return x;
    const y = elementwise(rec, "clamp", x, { alpha: -65504, beta: 65504 });
    x.release();
    return y;
  }

  /** Frees every GPU tensor of the model. */
  release(): void {
    for (const l of this.linears) l.release();
    for (const t of this.#norms()) t.release();
    for (const t of this.#freqCache.values()) t.release();
    this.#freqCache.clear();
  }
}

/** The FLUX model family's descriptor. */
export const fluxPlugin: ModelPlugin = {
  kind: "model",
  name: "flux",
  className: "FluxTransformer2DModel",
  description:
    "diffusers' FluxTransformer2DModel (FLUX.1 dev/schnell: MMDiT double + single blocks, RoPE, flow matching)",
};
