/**
 * The configuration of diffusers' FluxTransformer2DModel (transformer/config.json) and of
 * its FlowMatchEulerDiscreteScheduler (scheduler/scheduler_config.json), parsed with
 * diffusers' defaults and validated with errors naming the field; and the checkpoint's key
 * layout.
 *
 * @module
 */
import { CheckpointError } from "../../runtime/errors.ts";
import { boolField, intField, numField, objectOf } from "../../runtime/io/config_fields.ts";
import type { FlowEulerConfig } from "../../runtime/sampling/flow_euler.ts";

/** A parsed FLUX transformer config, defaults filled in as diffusers does. */
export interface FluxConfig {
  /** Always 1: FLUX packs 2×2 latent patches on the host side of the model (in_channels = 4·C). */
  patchSize: number;
  /** Packed input channels (4 × latent channels); FLUX.1: 64. */
  inChannels: number;
  /** Packed output channels (default in_channels). */
  outChannels: number;
  /** Double-stream (MMDiT) blocks, transformer_blocks.N; FLUX.1: 19. */
  numLayers: number;
  /** Single-stream blocks, single_transformer_blocks.N; FLUX.1: 38. */
  numSingleLayers: number;
  /** Channels per head; FLUX.1: 128. */
  attentionHeadDim: number;
  /** Heads; FLUX.1: 24. */
  numAttentionHeads: number;
  /** heads × head_dim (diffusers' inner_dim). */
  innerDim: number;
  /** Width of the T5 prompt embeddings (context_embedder's input); FLUX.1: 4096. */
  jointAttentionDim: number;
  /** Width of the pooled CLIP embedding (text_embedder's input); FLUX.1: 768. */
  pooledProjectionDim: number;
  /** Guidance embedder present (FLUX.1-dev) or not (schnell). */
  guidanceEmbeds: boolean;
  /** RoPE dims per id axis (text/index, row, column), summing to head_dim; FLUX.1: 16, 56, 56. */
  axesDimsRope: number[];
  /** Latent channels C = in_channels / 4 (the unpacked [B, C, H, W] latents). */
  latentChannels: number;
  /** Output latent channels = out_channels / 4. */
  latentOutChannels: number;
}

/** Parses a FluxTransformer2DModel config.json object. */
export function parseFluxConfig(raw: unknown, file = "config.json"): FluxConfig {
  const cfg = objectOf(raw, file);
  const cls = cfg["_class_name"];
  if (cls !== undefined && cls !== "FluxTransformer2DModel") {
    throw new CheckpointError(
      file,
      `expected FluxTransformer2DModel, got ${JSON.stringify(cls)}`,
      "_class_name",
    );
  }
  const patchSize = intField(cfg, "patch_size", 1, file);
  if (patchSize !== 1) {
    // diffusers' x_embedder is a Linear over packed channels whatever patch_size says.
    throw new CheckpointError(file, `only 1 is supported, got ${patchSize}`, "patch_size");
  }
  const inChannels = intField(cfg, "in_channels", 64, file);
  const outChannels = cfg["out_channels"] === null
    ? inChannels
    : intField(cfg, "out_channels", inChannels, file);
  for (const [k, v] of [["in_channels", inChannels], ["out_channels", outChannels]] as const) {
    if (v % 4 !== 0) {
      throw new CheckpointError(file, `must be a multiple of 4 (2×2 packing), got ${v}`, k);
    }
  }
  const headDim = intField(cfg, "attention_head_dim", 128, file);
  if (headDim > 128) {
    throw new CheckpointError(
      file,
      `the attention kernel takes head dims ≤ 128, got ${headDim}`,
      "attention_head_dim",
    );
  }
  const heads = intField(cfg, "num_attention_heads", 24, file);
  const axesRaw = cfg["axes_dims_rope"] ?? [16, 56, 56];
  if (
    !Array.isArray(axesRaw) || axesRaw.length < 1 ||
    axesRaw.some((d) => typeof d !== "number" || !Number.isInteger(d) || d < 0 || d % 2 !== 0)
  ) {
    throw new CheckpointError(
      file,
      `must be a list of even non-negative integers, got ${JSON.stringify(axesRaw)}`,
      "axes_dims_rope",
    );
  }
  const axes = axesRaw as number[];
  if (axes.reduce((a, b) => a + b, 0) !== headDim) {
    throw new CheckpointError(
      file,
      `must sum to attention_head_dim ${headDim}, got ${JSON.stringify(axes)}`,
      "axes_dims_rope",
    );
  }
  if (axes.length < 3) {
    throw new CheckpointError(file, "needs 3 axes (index, row, column)", "axes_dims_rope");
  }
  return {
    patchSize,
    inChannels,
    outChannels,
    numLayers: intField(cfg, "num_layers", 19, file, 0),
    numSingleLayers: intField(cfg, "num_single_layers", 38, file, 0),
    attentionHeadDim: headDim,
    numAttentionHeads: heads,
    innerDim: heads * headDim,
    jointAttentionDim: intField(cfg, "joint_attention_dim", 4096, file),
    pooledProjectionDim: intField(cfg, "pooled_projection_dim", 768, file),
    guidanceEmbeds: boolField(cfg, "guidance_embeds", false, file),
    axesDimsRope: [...axes],
    latentChannels: inChannels / 4,
    latentOutChannels: outChannels / 4,
  };
}

/** Every tensor a FLUX checkpoint must hold, with its shape (diffusers' key layout). */
export function fluxWeightShapes(c: FluxConfig): Map<string, number[]> {
  const D = c.innerDim;
  const hd = c.attentionHeadDim;
  const m = new Map<string, number[]>();
  const linear = (name: string, out: number, inp: number) => {
    m.set(`${name}.weight`, [out, inp]);
    m.set(`${name}.bias`, [out]);
  };
  linear("x_embedder", D, c.inChannels);
  linear("context_embedder", D, c.jointAttentionDim);
  const tte = "time_text_embed";
  linear(`${tte}.timestep_embedder.linear_1`, D, 256);
  linear(`${tte}.timestep_embedder.linear_2`, D, D);
  if (c.guidanceEmbeds) {
    linear(`${tte}.guidance_embedder.linear_1`, D, 256);
    linear(`${tte}.guidance_embedder.linear_2`, D, D);
  }
  linear(`${tte}.text_embedder.linear_1`, D, c.pooledProjectionDim);
  linear(`${tte}.text_embedder.linear_2`, D, D);
  for (let i = 0; i < c.numLayers; i++) {
    const b = `transformer_blocks.${i}`;
    linear(`${b}.norm1.linear`, 6 * D, D);
    linear(`${b}.norm1_context.linear`, 6 * D, D);
    for (const p of ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"]) {
      linear(`${b}.attn.${p}`, D, D);
    }
    for (const n of ["norm_q", "norm_k", "norm_added_q", "norm_added_k"]) {
      m.set(`${b}.attn.${n}.weight`, [hd]);
    }
    linear(`${b}.attn.to_out.0`, D, D);
    linear(`${b}.attn.to_add_out`, D, D);
    for (const f of ["ff", "ff_context"]) {
      linear(`${b}.${f}.net.0.proj`, 4 * D, D);
      linear(`${b}.${f}.net.2`, D, 4 * D);
    }
  }
  for (let i = 0; i < c.numSingleLayers; i++) {
    const b = `single_transformer_blocks.${i}`;
    linear(`${b}.norm.linear`, 3 * D, D);
    linear(`${b}.proj_mlp`, 4 * D, D);
    linear(`${b}.proj_out`, D, 5 * D);
    for (const p of ["to_q", "to_k", "to_v"]) linear(`${b}.attn.${p}`, D, D);
    for (const n of ["norm_q", "norm_k"]) m.set(`${b}.attn.${n}.weight`, [hd]);
  }
  linear("norm_out.linear", 2 * D, D);
  linear("proj_out", c.patchSize * c.patchSize * c.outChannels, D);
  return m;
}

/** Scheduler options the runtime does not implement; a config that turns one on is refused. */
const UNSUPPORTED_SCHEDULER_FLAGS = [
  "invert_sigmas",
  "use_karras_sigmas",
  "use_exponential_sigmas",
  "use_beta_sigmas",
  "stochastic_sampling",
] as const;

/**
 * Parses a FlowMatchEulerDiscreteScheduler scheduler_config.json object (diffusers'
 * defaults for absent fields). FLUX.1-dev: dynamic shifting (μ from the image sequence
 * length); FLUX.1-schnell: a fixed shift of 1.
 */
export function parseFlowSchedulerConfig(
  raw: unknown,
  file = "scheduler_config.json",
): FlowEulerConfig {
  const cfg = objectOf(raw, file);
  const cls = cfg["_class_name"];
  if (cls !== undefined && cls !== "FlowMatchEulerDiscreteScheduler") {
    throw new CheckpointError(
      file,
      `expected FlowMatchEulerDiscreteScheduler, got ${JSON.stringify(cls)}`,
      "_class_name",
    );
  }
  for (const k of UNSUPPORTED_SCHEDULER_FLAGS) {
    if (cfg[k]) throw new CheckpointError(file, "is not supported (must be false)", k);
  }
  if (cfg["shift_terminal"]) {
    throw new CheckpointError(file, "is not supported (must be null)", "shift_terminal");
  }
  const tst = cfg["time_shift_type"] ?? "exponential";
  if (tst !== "exponential" && tst !== "linear") {
    throw new CheckpointError(
      file,
      `must be "exponential" or "linear", got ${JSON.stringify(tst)}`,
      "time_shift_type",
    );
  }
  const out: FlowEulerConfig = {
    numTrainTimesteps: intField(cfg, "num_train_timesteps", 1000, file),
    shift: numField(cfg, "shift", 1, file),
    useDynamicShifting: boolField(cfg, "use_dynamic_shifting", false, file),
    baseShift: numField(cfg, "base_shift", 0.5, file),
    maxShift: numField(cfg, "max_shift", 1.15, file),
    baseImageSeqLen: intField(cfg, "base_image_seq_len", 256, file),
    maxImageSeqLen: intField(cfg, "max_image_seq_len", 4096, file),
    timeShiftType: tst,
  };
  if (out.maxImageSeqLen === out.baseImageSeqLen) {
    throw new CheckpointError(file, "must differ from base_image_seq_len", "max_image_seq_len");
  }
  return out;
}
