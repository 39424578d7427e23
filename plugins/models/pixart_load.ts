/**
 * Loading a PixArt transformer (pixart.ts): every linear through the
 * {@linkcode LinearFactory} (so a quantization plan applies), the modulation tables, and
 * the blocks' layout.
 *
 * @module
 */
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { TensorSource } from "../../runtime/io/safetensors.ts";
import type { Linear, LinearFactory } from "../../runtime/model/linear.ts";
import { LoadedSoFar, WeightLoader } from "../../runtime/model/weights.ts";
import { type PixArtConfig, pixartWeightShapes } from "./pixart_config.ts";
import { denseSelfAttention, type SelfAttention } from "./dit_common.ts";
import { PixArtModel } from "./pixart.ts";

/** One transformer block's layers and its modulation table. */
export interface Block {
  /** scale_shift_table [6, D]: the block's own shift/scale/gate, added to the timestep's. */
  table: Tensor;
  /** Self-attention query (attn1.to_q). */
  q: Linear;
  /** Self-attention key (attn1.to_k). */
  k: Linear;
  /** Self-attention value (attn1.to_v). */
  v: Linear;
  /** Self-attention output (attn1.to_out.0). */
  out: Linear;
  /** Cross-attention query (attn2.to_q). */
  q2: Linear;
  /** Cross-attention key over the caption (attn2.to_k). */
  k2: Linear;
  /** Cross-attention value over the caption (attn2.to_v). */
  v2: Linear;
  /** Cross-attention output (attn2.to_out.0). */
  out2: Linear;
  /** Feed-forward up projection, GELU (tanh) after it (ff.net.0.proj). */
  ff1: Linear;
  /** Feed-forward down projection (ff.net.2). */
  ff2: Linear;
}

/** Options of {@linkcode loadPixArt}. */
export interface PixArtLoadOptions {
  /** Storage type of activations and FP weights. */
  dtype: "f32" | "f16";
  /** Builds every linear layer (dense, or from a quantization plan). */
  linears: LinearFactory;
  /** Self-attention implementation; default dense. */
  selfAttention?: SelfAttention;
}

/** Loads a PixArt transformer from a checkpoint with a parsed config. */
export async function loadPixArt(
  rt: Runtime,
  source: TensorSource,
  config: PixArtConfig,
  opts: PixArtLoadOptions,
): Promise<PixArtModel> {
  const loader = new WeightLoader(source, pixartWeightShapes(config));
  const made = new LoadedSoFar();
  const linear = async (name: string): Promise<Linear> =>
    made.keep(await opts.linears.create(rt, await loader.linearSource(name)));
  const table = async (name: string) => made.keep(await loader.gpu(rt, name, opts.dtype));
  try {
    const linears: Record<string, Linear> = {};
    const top = [
      "pos_embed.proj",
      "adaln_single.emb.timestep_embedder.linear_1",
      "adaln_single.emb.timestep_embedder.linear_2",
      "adaln_single.linear",
      "proj_out",
    ];
    if (config.useAdditionalConditions) {
      for (const e of ["resolution_embedder", "aspect_ratio_embedder"]) {
        top.push(`adaln_single.emb.${e}.linear_1`, `adaln_single.emb.${e}.linear_2`);
      }
    }
    if (config.captionChannels !== null) {
      top.push("caption_projection.linear_1", "caption_projection.linear_2");
    }
    for (const name of top) linears[name] = await linear(name);
    const blocks: Block[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      const p = `transformer_blocks.${i}`;
      blocks.push({
        table: await table(`${p}.scale_shift_table`),
        q: await linear(`${p}.attn1.to_q`),
        k: await linear(`${p}.attn1.to_k`),
        v: await linear(`${p}.attn1.to_v`),
        out: await linear(`${p}.attn1.to_out.0`),
        q2: await linear(`${p}.attn2.to_q`),
        k2: await linear(`${p}.attn2.to_k`),
        v2: await linear(`${p}.attn2.to_v`),
        out2: await linear(`${p}.attn2.to_out.0`),
        ff1: await linear(`${p}.ff.net.0.proj`),
        ff2: await linear(`${p}.ff.net.2`),
      });
    }
    return new PixArtModel(config, opts.dtype, {
      linears,
      blocks,
      finalTable: await table("scale_shift_table"),
      selfAttention: opts.selfAttention ?? denseSelfAttention,
    });
  } catch (e) {
    made.release();
    throw e;
  }
}
