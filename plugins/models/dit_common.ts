/**
 * What the DiT families (pixart.ts, flux.ts) share: the sinusoidal timestep embedding, the
 * self-attention hook (its context, and the dense default) that PARO plugs into, and the
 * gated feed-forward of a block.
 *
 * @module
 */
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { Linear } from "../../runtime/model/linear.ts";
import { type RowBatch, rowChunked } from "../../runtime/model/row_chunks.ts";
import { attention, type AttentionInput } from "../../runtime/ops/attention.ts";
import { timestepEmbeddingRef } from "../../runtime/reference/embed.ts";

/**
 * diffusers' Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0): [cos | sin] of
 * t·exp(−ln(10000)·k/half), k < half, with torch's float32 roundings (exponent, exp, t·freq)
 * as get_timestep_embedding computes it.
 */
export function sinusoid(t: ArrayLike<number>, dim: number): Float32Array {
  return timestepEmbeddingRef(t, dim, { flipSinToCos: true, downscaleFreqShift: 0 });
}

/** Where a self-attention call sits: heads, the h×w token grid, the sampler step. */
export interface AttentionContext {
  /** Heads H. */
  heads: number;
  /** Token grid height. */
  h: number;
  /** Token grid width. */
  w: number;
  /** Sampler step index (0-based), or -1 outside a sampling loop. */
  step: number;
  /** Sampler steps in all, or 0 outside a sampling loop. */
  steps: number;
}

/** Per-block attention implementation hook (dense by default; PARO plugs in here). */
export interface SelfAttention {
  /** Records self-attention of block `layer` for q/k/v [B, T, H·D] (tokens in raster order). */
  run(
    rec: Recorder,
    layer: number,
    q: AttentionInput,
    k: AttentionInput,
    v: AttentionInput,
    ctx: AttentionContext,
  ): Tensor;
}

/** Dense self-attention through the flash kernel. */
export const denseSelfAttention: SelfAttention = {
  run: (rec, _layer, q, k, v, g) => attention(rec, q, k, v, { heads: g.heads }),
};

/** The operands of {@linkcode gatedFeedForward}. */
export interface GatedFeedForward {
  /** The block's normalised, modulated rows [B·T, D]. */
  x: Tensor;
  /** The residual rows [B·T, D]. */
  residual: Tensor;
  /** The per-sample gate [B, D] (gate_mlp). */
  gate: Tensor;
  /** The two linears: D → 4D (GELU, tanh form) and 4D → D. */
  ff1: Linear;
  ff2: Linear;
  /** The batch's samples, rows per sample and CFG pairing. */
  batch: RowBatch;
  /** Names the part in errors, e.g. "transformer_blocks.3.ff". */
  what: string;
}

/**
 * residual + gate ⊙ ff2(gelu(ff1(x))): a DiT block's feed-forward, in row chunks where its
 * [B·T, 4D] intermediate would not bind (runtime/model/row_chunks.ts). Returns a new tensor.
 */
export function gatedFeedForward(rec: Recorder, o: GatedFeedForward): Tensor {
  const { ff1, ff2 } = o;
  const part = { batch: o.batch, layers: [ff1, ff2], width: ff1.outFeatures, what: o.what };
  return rowChunked(rec, part, (c) => {
    const f = ff1.forward(rec, c.rows(o.x), { activation: "gelu", ...c.tokens });
    try {
      return ff2.forward(rec, f, {
        residual: c.rows(o.residual),
        gate: c.perSample(o.gate),
        rowsPerGate: c.rowsPerGate,
        ...c.tokens,
      });
    } finally {
      f.release();
    }
  });
}
