/**
 * The seam between the rotation plugins and the quantized linear layers: what happens to
 * a layer's input activations online (smoothing, rotation, per-token quantization), and
 * the matching offline change of its weight, so that (X·T)(W·T⁻ᵀ)ᵀ = X·Wᵀ.
 *
 * The identity transform is the plain per-token activation quantizer (the quantizer
 * issue); hadamard and outlier-aware transforms fuse their rotation into the same single
 * pass (the rotation issue).
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";

/** Activation scales a token: one (both fields absent), or one per `group` values. */
export interface ActGrouping {
  /** Channels a scale (a multiple of 4 dividing K); absent or 0: the whole token. */
  group?: number;
  /** With a group: each group's levels from its min to its max (a zero point each). */
  asym?: boolean;
}

/** Per-token quantized activations in int8 containers. */
export interface QuantizedActivations {
  /** Codes, four int8 per u32 word, row-major [M, ⌈K/4⌉] (K zero-padded to a multiple of 4). */
  q: Tensor;
  /** Per-token scale Δ_t [M], f32: x ≈ Δ_t · q; or per group, [M, K/group]. */
  scales: Tensor;
  /** Activation bits (4, 6 or 8); codes lie in [−2^(b−1), 2^(b−1) − 1]. */
  bits: number;
  /** K (before padding). */
  cols: number;
  /** Channels a scale when grouped (a multiple of 4 dividing K); absent: the whole token. */
  group?: number;
  /** Grouped and asymmetric: scales is [2, M, K/group], the Δs then the zero points z. */
  asym?: boolean;
}

/** The online side of a layer's input transform, on the GPU. */
export interface ActivationTransform {
  /** "none", "hadamard" or "outlier" (what this layer's plan chose). */
  readonly name: string;
  /** Records x [M, K] → x·T (f32/f16, same shape) for weight-only (A16) paths. */
  apply(rec: Recorder, x: Tensor): Tensor;
  /**
   * Records x [M, K] → quantize(x·T) in one pass: a scale a token, or with `grouping.group`
   * a scale per that many values (asymmetric with `grouping.asym`).
   */
  applyQuant(rec: Recorder, x: Tensor, bits: number, grouping?: ActGrouping): QuantizedActivations;
  /** Frees its GPU tensors. */
  release(): void;
}
