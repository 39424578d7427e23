/**
 * The shape of a pipeline's latent space and transformer, for either family (PixArt, FLUX):
 * what the server, eval and the warm-up need to size requests, noise and memory without
 * knowing which transformer class they hold.
 *
 * @module
 */
import { FluxModel } from "../plugins/models/flux.ts";
import { FLUX_DEFAULT_LATENT_SIZE } from "../plugins/models/flux_pipeline.ts";
import type { Pipeline } from "./pipeline.ts";
import { usesGuidance } from "./sampling/guidance.ts";

/** A pipeline's latent space and transformer widths (see the module doc). */
export interface LatentGeometry {
  /** Latent cells a side of the model's own image (PixArt: sample_size; FLUX: 128, diffusers' default). */
  readonly size: number;
  /** Channels of the latents the sampler works on (FLUX: unpacked, in_channels / 4). */
  readonly channels: number;
  /** Latent cells a side must be a multiple of: PixArt's patch, FLUX's 2×2 packing. */
  readonly multiple: number;
  /** Pixels per latent cell: 1 in pixel space, the VAE's scale for latents. */
  readonly pixelsPerCell: number;
  /** The transformer's hidden width. */
  readonly width: number;
  /** Values per token of the widest feed-forward intermediate (PixArt 4·D; FLUX's single blocks 5·D). */
  readonly feedForwardWidth: number;
  /** Values per token of the patch embedding's input (wider than `width` in tiny models). */
  readonly patchValues: number;
  /** Storage type of the transformer. */
  readonly dtype: "f32" | "f16";
  /** Transformer tokens of an h × w latent (FLUX: the image's and the prompt's). */
  tokens(height: number, width: number): number;
  /**
   * Whether guidance doubles the transformer's batch: PixArt's CFG (`guidance` > 1); FLUX's
   * true CFG (`trueCfg` > 1, with a negative prompt; FLUX.1-dev embeds `guidance`).
   */
  doubles(guidance: number, trueCfg?: number): boolean;
}

/**
 * Latent cells of an image side of `px` pixels (undefined: the model's own size).
 * @throws {RangeError} naming `what` when px is not a positive multiple of a cell group
 *   (the patch, or FLUX's 2×2 packing) in pixels.
 */
export function latentCells(g: LatentGeometry, px: number | undefined, what: string): number {
  if (px === undefined) return g.size;
  const step = g.multiple * g.pixelsPerCell;
  if (!Number.isInteger(px) || px < step || px % step) {
    throw new RangeError(`${what} must be a positive multiple of ${step} pixels, got ${px}`);
  }
  return px / g.pixelsPerCell;
}

/** The {@linkcode LatentGeometry} of a loaded pipeline. */
export function latentGeometry(p: Pipeline): LatentGeometry {
  const m = p.model;
  if (m instanceof FluxModel) {
    const c = m.config;
    const text = p.prompts?.length ?? 512; // FLUX's max_sequence_length when embeddings come in
    return {
      size: FLUX_DEFAULT_LATENT_SIZE,
      channels: c.latentChannels,
      multiple: 2,
      pixelsPerCell: p.pixelsPerLatent,
      width: c.innerDim,
      feedForwardWidth: 5 * c.innerDim,
      patchValues: c.inChannels,
      dtype: m.dtype,
      tokens: (h, w) => (h / 2) * (w / 2) + text,
      doubles: (_g, trueCfg) => (trueCfg ?? 1) > 1,
    };
  }
  const c = m.config;
  return {
    size: c.sampleSize,
    channels: c.inChannels,
    multiple: c.patchSize,
    pixelsPerCell: p.pixelsPerLatent,
    width: c.innerDim ?? 0,
    feedForwardWidth: 4 * (c.innerDim ?? 0),
    patchValues: c.patchSize * c.patchSize * Math.max(c.inChannels, c.outChannels ?? 0),
    dtype: m.dtype,
    tokens: (h, w) => (h / c.patchSize) * (w / c.patchSize),
    doubles: usesGuidance,
  };
}
