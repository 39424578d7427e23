/**
 * Typed plugin descriptors. A plan names plugins by name; the registry (runtime/registry.ts)
 * maps names to these descriptors, so swapping a plugin is a change of the plan, not of
 * the code. Every plugin has a CPU reference beside its GPU kernels.
 *
 * @module
 */
import type { TextWeights } from "./models/text_weights.ts";
import type { Runtime } from "../runtime/gpu/device.ts";
import type { Linear } from "../runtime/model/linear.ts";
import type { SelfAttention } from "./models/pixart.ts";
import type { LayerStats } from "../runtime/quant/calibrate.ts";
import type { CalibrationEmbeds } from "../runtime/quant/calibration_run.ts";
import type { LayerRotation, RotationPlanOptions } from "../runtime/quant/rotation.ts";
import type { LevelNormals } from "../runtime/quant/gptq_refit.ts";

/** A weight matrix on the host: W [rows = N_out, cols = K_in], row-major f32. */
export interface HostMatrix {
  /** Values, rows × cols. */
  data: Float32Array;
  /** N (output features). */
  rows: number;
  /** K (input features). */
  cols: number;
}

/** A quantized weight: packed codes plus named per-row (or per-group) parameters. */
export interface QuantizedWeight {
  /** Quantizer name ("uniform", "tlq", "kmeans"). */
  quantizer: string;
  /** Bits per weight. */
  bits: number;
  /** N. */
  rows: number;
  /** K. */
  cols: number;
  /** Codes packed little-endian into u32 words, row by row (see the quantizer). */
  codes: Uint32Array;
  /** Quantizer-specific tensors (e.g. "lut" [N, 2^b], "scale"/"zero" per group). */
  params: Record<string, Float32Array>;
  /** Scalar settings found by calibration (η, p⁺, p⁻, clip ratio, group size…). */
  meta: Record<string, number | string | boolean>;
}

/**
 * The values a quantized weight's codes decode to, for rounding onto that grid (GPTQ,
 * runtime/quant/gptq.ts): code c at (row, col) decodes to
 * `values[(row·groups + ⌊col / groupSize⌋)·2^bits + c]`, exactly as the quantizer's
 * `dequantize` does.
 */
export interface CodeGrid {
  /** Columns along K sharing one set of values (K: one set per row). */
  groupSize: number;
  /** The values [rows, ⌈K / groupSize⌉, 2^bits]. */
  values: Float32Array;
}

/** Options a weight quantizer is calibrated with. */
export interface WeightQuantOptions {
  /** Bits per weight (3, 4 or 8). */
  bits: number;
  /** Uniform: group size along K (0 = per row). */
  groupSize?: number;
  /** Uniform: symmetric (z = 0) instead of asymmetric. */
  symmetric?: boolean;
  /**
   * TLQ: how each row's (Δ, z) is chosen: "percentile" is METHODS.md's (lo = min L, hi = the
   * p-th percentile; the default); "mse" fits them to least squared error, each weight on its
   * nearest level (same grid family and artifact; an option beyond the paper).
   */
  fit?: TlqFit;
  /**
   * TLQ: how a weight picks its level: "log" rounds in the log domain (METHODS.md's formula,
   * the default with fit "percentile"); "nearest" takes the nearest level in the linear domain
   * (same grid and LUT, lower weight error; the only one with fit "mse").
   */
  assign?: "log" | "nearest";
}

/** How TLQ chooses each row's grid ({@linkcode WeightQuantOptions.fit}). */
export type TlqFit = "percentile" | "mse";

/** A weight quantizer plugin (uniform, TLQ). */
export interface QuantizerPlugin {
  /** Discriminator. */
  readonly kind: "quantizer";
  /** Name used in plans and on the command line. */
  readonly name: string;
  /** Supported weight bit widths. */
  readonly bits: readonly number[];
  /** One-line description for help and /v1/plugins. */
  readonly description: string;
  /** Offline, CPU: quantizes one layer's (smoothed, rotated) weight. */
  calibrate(w: HostMatrix, opts: WeightQuantOptions): QuantizedWeight;
  /** CPU reference: the dequantized weight [N, K]. */
  dequantize(q: QuantizedWeight): Float32Array;
  /** The values its codes decode to (optional: GPTQ rounding needs it). */
  grid?(q: QuantizedWeight): CodeGrid;
  /**
   * Refits its parameters to codes GPTQ chose (`quantize --gptq-refit`, one set of levels a
   * row): the weight with new parameters whose levels err least by the rows' level normal
   * equations (runtime/quant/gptq_refit.ts), never more than `q`'s own.
   */
  refit?(q: QuantizedWeight, normals: LevelNormals): QuantizedWeight;
}

/** What a rotation plugin plans one layer from. */
export interface RotationLayerInput {
  /** Checkpoint name of the layer. */
  name: string;
  /** W [N, K] (before smoothing and rotation). */
  weight: HostMatrix;
  /** Calibration statistics of the layer's input (needed for smoothing, outlier, ARS). */
  stats?: LayerStats;
  /** The plan's options. */
  options: RotationPlanOptions;
}

/** A rotation plugin (none, hadamard, outlier, adaptive). */
export interface RotationPlugin {
  /** Discriminator. */
  readonly kind: "rotation";
  /** Name used in plans and on the command line. */
  readonly name: string;
  /** One-line description. */
  readonly description: string;
  /**
   * Offline, CPU: plans one layer's smoothing + rotation (runtime/quant/rotation.ts). Every
   * built-in rotation has it; optional so that a descriptor can be registered by name alone.
   */
  planLayer?(input: RotationLayerInput): LayerRotation;
}

/** What an attention plugin stores in a quantized artifact: JSON metadata and u32 tensors. */
export interface AttentionPlanData {
  /** JSON-serialisable metadata (e.g. PARO's ParoPlanMeta). */
  meta: unknown;
  /** Tensors by artifact name (safetensors dtype "U32"). */
  tensors: Record<string, { data: Uint32Array; shape: number[]; dtype: "u32" }>;
}

/** Options of {@linkcode AttentionPlugin.plan} (offline calibration of an attention plan). */
export interface AttentionPlanOptions {
  /** Model folder; default the bundled model. */
  path?: string;
  /** Target block density (PARO: 0.5, 0.3, 0.2…). */
  density?: number;
  /** Attention bits: 8, 4, or 16 (float). */
  bits?: number;
  /** PARO: the weight α of the sparse-share term in the order score (METHODS.md §3); default 0.5. */
  orderAlpha?: number;
  /** Calibration prompts; default the plugin's own. */
  prompts?: readonly string[];
  /** Precomputed calibration inputs instead of prompts (FLUX without its text encoders: required). */
  embeds?: CalibrationEmbeds;
  /** The folder holding a real checkpoint's prompt encoders; default the model folder's. */
  textEncoder?: string;
  /** T5's tokens per prompt; default the diffusers pipeline's (PixArt-α 120, Σ 300, FLUX 512). */
  maxSequenceLength?: number;
  /** Storage of the prompt encoders' weights (models/text_weights.ts); default "auto". */
  textEncoderDtype?: TextWeights;
  /** Image height in pixels calibrated on prompts (the plan's size); default the model's own. */
  height?: number;
  /** Image width in pixels calibrated on prompts; default the model's own. */
  width?: number;
  /** Sampler steps calibrated; default the model's. */
  steps?: number;
  /** Guidance of the calibration run; default the model's. */
  guidance?: number;
  /** Progress after every calibration step. */
  onProgress?: (p: { prompt: number; prompts: number; step: number; steps: number }) => void;
}

/** A self-attention implementation built by an attention plugin (holds GPU tensors). */
export interface AttentionImpl extends SelfAttention {
  /** Frees its GPU tensors. */
  release(): void;
}

/** An attention plugin (dense, paro). */
export interface AttentionPlugin {
  /** Discriminator. */
  readonly kind: "attention";
  /** Name used in plans and on the command line. */
  readonly name: string;
  /** One-line description. */
  readonly description: string;
  /** Attention bit widths it runs (16 = float). */
  readonly bits: readonly number[];
  /** Offline: calibrates on the model and returns what to store (absent: no plan needed). */
  plan?(rt: Runtime, opts: AttentionPlanOptions): Promise<AttentionPlanData>;
  /** Builds the self-attention, from the stored plan when the plugin has one. */
  create(rt: Runtime, data?: AttentionPlanData): AttentionImpl;
}

/** A model family plugin (pixart, flux). */
export interface ModelPlugin {
  /** Discriminator. */
  readonly kind: "model";
  /** Name. */
  readonly name: string;
  /** diffusers' `_class_name` of the transformer config it reads. */
  readonly className: string;
  /** One-line description. */
  readonly description: string;
}

/** Any plugin. */
export type Plugin = QuantizerPlugin | RotationPlugin | AttentionPlugin | ModelPlugin;

/** Builds a GPU linear layer from a quantized weight (the quantizer's WGSL paths). */
export type QuantLinearBuilder = (rt: Runtime, q: QuantizedWeight, bias?: Float32Array) => Linear;
