/**
 * Loading a FLUX transformer (flux.ts): every linear through the {@linkcode LinearFactory}
 * (so a quantization plan applies), the RMSNorm weights, and the blocks' layout.
 *
 * @module
 */
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { TensorSource } from "../../runtime/io/safetensors.ts";
import type { Linear, LinearFactory } from "../../runtime/model/linear.ts";
import { LoadedSoFar, WeightLoader } from "../../runtime/model/weights.ts";
import { type FluxConfig, fluxWeightShapes } from "./flux_config.ts";
import { denseSelfAttention, type SelfAttention } from "./dit_common.ts";
import { FluxModel } from "./flux.ts";

/** One double-stream block's layers. */
export interface DoubleBlock {
  mod: Linear;
  modCtx: Linear;
  q: Linear;
  k: Linear;
  v: Linear;
  addQ: Linear;
  addK: Linear;
  addV: Linear;
  out: Linear;
  addOut: Linear;
  ff1: Linear;
  ff2: Linear;
  ffc1: Linear;
  ffc2: Linear;
  normQ: Tensor;
  normK: Tensor;
  normAddQ: Tensor;
  normAddK: Tensor;
}

/** One single-stream block's layers. */
export interface SingleBlock {
  mod: Linear;
  q: Linear;
  k: Linear;
  v: Linear;
  mlp: Linear;
  out: Linear;
  normQ: Tensor;
  normK: Tensor;
}

/** Options of {@linkcode loadFlux}. */
export interface FluxLoadOptions {
  /** Storage type of activations and FP weights. */
  dtype: "f32" | "f16";
  /** Builds every linear layer (dense, or from a quantization plan). */
  linears: LinearFactory;
  /** Attention implementation; default dense. */
  selfAttention?: SelfAttention;
}

/** Loads a FLUX transformer from a checkpoint with a parsed config. */
export async function loadFlux(
  rt: Runtime,
  source: TensorSource,
  config: FluxConfig,
  opts: FluxLoadOptions,
): Promise<FluxModel> {
  const loader = new WeightLoader(source, fluxWeightShapes(config));
  const made = new LoadedSoFar();
  const linear = async (name: string): Promise<Linear> =>
    made.keep(await opts.linears.create(rt, await loader.linearSource(name)));
  const norm = async (name: string): Promise<Tensor> =>
    made.keep(await loader.gpu(rt, `${name}.weight`, opts.dtype));
  try {
    const linears: Record<string, Linear> = {};
    const tte = "time_text_embed";
    const top = [
      "x_embedder",
      "context_embedder",
      `${tte}.timestep_embedder.linear_1`,
      `${tte}.timestep_embedder.linear_2`,
      `${tte}.text_embedder.linear_1`,
      `${tte}.text_embedder.linear_2`,
      "norm_out.linear",
      "proj_out",
    ];
    if (config.guidanceEmbeds) {
      top.push(`${tte}.guidance_embedder.linear_1`, `${tte}.guidance_embedder.linear_2`);
    }
    for (const name of top) linears[name] = await linear(name);
    const double: DoubleBlock[] = [];
    for (let i = 0; i < config.numLayers; i++) {
      const p = `transformer_blocks.${i}`;
      double.push({
        mod: await linear(`${p}.norm1.linear`),
        modCtx: await linear(`${p}.norm1_context.linear`),
        q: await linear(`${p}.attn.to_q`),
        k: await linear(`${p}.attn.to_k`),
        v: await linear(`${p}.attn.to_v`),
        addQ: await linear(`${p}.attn.add_q_proj`),
        addK: await linear(`${p}.attn.add_k_proj`),
        addV: await linear(`${p}.attn.add_v_proj`),
        out: await linear(`${p}.attn.to_out.0`),
        addOut: await linear(`${p}.attn.to_add_out`),
        ff1: await linear(`${p}.ff.net.0.proj`),
        ff2: await linear(`${p}.ff.net.2`),
        ffc1: await linear(`${p}.ff_context.net.0.proj`),
        ffc2: await linear(`${p}.ff_context.net.2`),
        normQ: await norm(`${p}.attn.norm_q`),
        normK: await norm(`${p}.attn.norm_k`),
        normAddQ: await norm(`${p}.attn.norm_added_q`),
        normAddK: await norm(`${p}.attn.norm_added_k`),
      });
    }
    const single: SingleBlock[] = [];
    for (let i = 0; i < config.numSingleLayers; i++) {
      const p = `single_transformer_blocks.${i}`;
      single.push({
        mod: await linear(`${p}.norm.linear`),
        q: await linear(`${p}.attn.to_q`),
        k: await linear(`${p}.attn.to_k`),
        v: await linear(`${p}.attn.to_v`),
        mlp: await linear(`${p}.proj_mlp`),
        out: await linear(`${p}.proj_out`),
        normQ: await norm(`${p}.attn.norm_q`),
        normK: await norm(`${p}.attn.norm_k`),
      });
    }
    return new FluxModel(config, opts.dtype, {
      linears,
      double,
      single,
      selfAttention: opts.selfAttention ?? denseSelfAttention,
    });
  } catch (e) {
    made.release();
    throw e;
  }
}
