/**
 * The configuration of diffusers' PixArtTransformer2DModel (transformer/config.json),
 * parsed with diffusers' defaults and validated with errors naming the field.
 *
 * @module
 */
import { CheckpointError } from "../../runtime/errors.ts";
import { intField, objectOf } from "../../runtime/io/config_fields.ts";

/** A parsed PixArt transformer config, defaults filled in as diffusers does. */
export interface PixArtConfig {
  /** Heads of every attention. */
  numAttentionHeads: number;
  /** Channels per head. */
  attentionHeadDim: number;
  /** heads × head_dim (diffusers' inner_dim). */
  innerDim: number;
  /** Latent (or pixel) channels in. */
  inChannels: number;
  /** Channels out; 2·inChannels means learned sigma (the first half is epsilon). */
  outChannels: number;
  /** Transformer blocks. */
  numLayers: number;
  /** Cross-attention key/value width (= innerDim after caption projection). */
  crossAttentionDim: number;
  /** Width of the caption embeddings the caption projection takes; null = no projection. */
  captionChannels: number | null;
  /** Latent size the position embedding's base grid is built for. */
  sampleSize: number;
  /** Patch size (conv kernel = stride). */
  patchSize: number;
  /** LayerNorm epsilon of the blocks. */
  normEps: number;
  /** Position-embedding interpolation scale. */
  interpolationScale: number;
  /** Resolution and aspect-ratio embedders (the 1024-MS model). */
  useAdditionalConditions: boolean;
  /** Linear layers of the attentions have biases. */
  attentionBias: boolean;
}

/** Parses a PixArtTransformer2DModel config.json object. */
export function parsePixArtConfig(raw: unknown, file = "config.json"): PixArtConfig {
  const cfg = objectOf(raw, file);
  const cls = cfg["_class_name"];
  if (cls !== undefined && cls !== "PixArtTransformer2DModel") {
    throw new CheckpointError(
      file,
      `expected PixArtTransformer2DModel, got ${JSON.stringify(cls)}`,
      "_class_name",
    );
  }
  const normType = cfg["norm_type"] ?? "ada_norm_single";
  if (normType !== "ada_norm_single") {
    throw new CheckpointError(
      file,
      `only "ada_norm_single" is supported, got ${JSON.stringify(normType)}`,
      "norm_type",
    );
  }
  const act = cfg["activation_fn"] ?? "gelu-approximate";
  if (act !== "gelu-approximate") {
    throw new CheckpointError(
      file,
      `only "gelu-approximate" is supported, got ${JSON.stringify(act)}`,
      "activation_fn",
    );
  }
  const heads = intField(cfg, "num_attention_heads", 16, file);
  const headDim = intField(cfg, "attention_head_dim", 72, file);
  const inChannels = intField(cfg, "in_channels", 4, file);
  const outChannels = cfg["out_channels"] === null
    ? inChannels
    : intField(cfg, "out_channels", 8, file);
  const sampleSize = intField(cfg, "sample_size", 128, file);
  const patchSize = intField(cfg, "patch_size", 2, file);
  const innerDim = heads * headDim;
  const cross = cfg["cross_attention_dim"] === undefined ? 1152 : cfg["cross_attention_dim"];
  if (cross !== innerDim) {
    throw new CheckpointError(
      file,
      `must equal heads × head_dim (${innerDim}), got ${JSON.stringify(cross)}`,
      "cross_attention_dim",
    );
  }
  const capRaw = cfg["caption_channels"] ?? null;
  const captionChannels = capRaw === null
    ? null
    : intField(cfg, "caption_channels", undefined, file);
  const eps = cfg["norm_eps"] ?? 1e-6;
  if (typeof eps !== "number" || !(eps > 0)) {
    throw new CheckpointError(
      file,
      `must be a positive number, got ${JSON.stringify(eps)}`,
      "norm_eps",
    );
  }
  const interp = cfg["interpolation_scale"] ?? Math.max(Math.floor(sampleSize / 64), 1);
  if (typeof interp !== "number" || !(interp > 0)) {
    throw new CheckpointError(
      file,
      `must be a positive number, got ${JSON.stringify(interp)}`,
      "interpolation_scale",
    );
  }
  const addRaw = cfg["use_additional_conditions"] ?? null;
  if (addRaw !== null && typeof addRaw !== "boolean") {
    throw new CheckpointError(
      file,
      `must be true, false or null, got ${JSON.stringify(addRaw)}`,
      "use_additional_conditions",
    );
  }
  // diffusers: None means "on exactly for sample_size 128" (the 1024-MS checkpoints).
  const useAdditionalConditions = addRaw ?? sampleSize === 128;
  if (useAdditionalConditions && innerDim % 3 !== 0) {
    throw new CheckpointError(
      file,
      `additional conditions need inner_dim divisible by 3, got ${innerDim}`,
      "use_additional_conditions",
    );
  }
  const bias = cfg["attention_bias"] ?? true;
  if (typeof bias !== "boolean") {
    throw new CheckpointError(
      file,
      `must be a boolean, got ${JSON.stringify(bias)}`,
      "attention_bias",
    );
  }
  return {
    numAttentionHeads: heads,
    attentionHeadDim: headDim,
    innerDim,
    inChannels,
    outChannels,
    numLayers: intField(cfg, "num_layers", 28, file),
    crossAttentionDim: innerDim,
    captionChannels,
    sampleSize,
    patchSize,
    normEps: eps,
    interpolationScale: interp,
    useAdditionalConditions,
    attentionBias: bias,
  };
}

/** True when out_channels carries a learned sigma (diffusers: out // 2 == in). */
export function hasLearnedSigma(c: PixArtConfig): boolean {
  return Math.floor(c.outChannels / 2) === c.inChannels;
}

/** Every tensor a PixArt checkpoint must hold, with its shape (diffusers' key layout). */
export function pixartWeightShapes(c: PixArtConfig): Map<string, number[]> {
  const D = c.innerDim;
  const m = new Map<string, number[]>();
  const linear = (name: string, out: number, inp: number, bias = true) => {
    m.set(`${name}.weight`, [out, inp]);
    if (bias) m.set(`${name}.bias`, [out]);
  };
  m.set("pos_embed.proj.weight", [D, c.inChannels, c.patchSize, c.patchSize]);
  m.set("pos_embed.proj.bias", [D]);
  linear("adaln_single.emb.timestep_embedder.linear_1", D, 256);
  linear("adaln_single.emb.timestep_embedder.linear_2", D, D);
  if (c.useAdditionalConditions) {
    for (const e of ["resolution_embedder", "aspect_ratio_embedder"]) {
      linear(`adaln_single.emb.${e}.linear_1`, D / 3, 256);
      linear(`adaln_single.emb.${e}.linear_2`, D / 3, D / 3);
    }
  }
  linear("adaln_single.linear", 6 * D, D);
  if (c.captionChannels !== null) {
    linear("caption_projection.linear_1", D, c.captionChannels);
    linear("caption_projection.linear_2", D, D);
  }
  for (let i = 0; i < c.numLayers; i++) {
    const b = `transformer_blocks.${i}`;
    m.set(`${b}.scale_shift_table`, [6, D]);
    for (const a of ["attn1", "attn2"]) {
      for (const p of ["to_q", "to_k", "to_v"]) linear(`${b}.${a}.${p}`, D, D, c.attentionBias);
      linear(`${b}.${a}.to_out.0`, D, D);
    }
    linear(`${b}.ff.net.0.proj`, 4 * D, D);
    linear(`${b}.ff.net.2`, D, 4 * D);
  }
  m.set("scale_shift_table", [2, D]);
  linear("proj_out", c.patchSize * c.patchSize * c.outChannels, D);
  return m;
}

/**
 * The 1024-MS model's added conditions per batch item, as the diffusers pipeline makes
 * them: resolution [height, width] and aspect ratio height / width, in pixels, rounded to f32.
 */
export interface AddedConditions {
  /** [B, 2] flattened: height, width per item. */
  resolution: ArrayLike<number>;
  /** [B]: height / width per item. */
  aspectRatio: ArrayLike<number>;
}

/** The added conditions for B items of one image size. */
export function addedConditions(B: number, height: number, width: number): AddedConditions {
  return {
    resolution: Array.from({ length: 2 * B }, (_, i) => (i % 2 ? width : height)),
    aspectRatio: new Array(B).fill(height / width),
  };
}
