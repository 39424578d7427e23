/**
 * What `quantizeModel` (runtime/quant/quantize.ts) takes and returns: its options (the
 * settings, the model, the calibration run, hooks) and its result (the artifact's content,
 * the per-layer report, the rotations and statistics it used).
 *
 * @module
 */
import type { PluginRegistry } from "../registry.ts";
import type { Runtime } from "../gpu/device.ts";
import type { TensorToWrite } from "../io/safetensors.ts";
import type { CalibrationStats } from "./calibrate.ts";
import type { CalibrationEmbeds, CalibrationSize, PromptEncoderSource } from "./calibration_run.ts";
import type { LayerRotation, RotationPlanOptions } from "./rotation.ts";
import type { QuantPlan, QuantSettings } from "./plan.ts";
import type { LayerReport } from "./report.ts";

/** Options of `quantizeModel` (runtime/quant/quantize.ts): the settings, the model, hooks. */
export interface QuantizeOptions extends Partial<QuantSettings> {
  /** Model folder (diffusers layout); default the bundled model. */
  model?: string;
  /**
   * PARO: the weight α of the sparse-share term in each head's order score (METHODS.md §3;
   * default 0.5); the plan's metadata records it.
   */
  paroAlpha?: number;
  /** Weight quantizer plugin name. */
  quantizer: string;
  /** Weight bits. */
  wbits: number;
  /** Activation bits (16 = weight-only). */
  abits: number;
  /** Plugins; default the built-in registry. */
  registry?: PluginRegistry;
  /** Called before each layer is quantized. */
  onLayer?: (done: number, total: number, name: string) => void;
  /**
   * Called as each layer is finished: FP and plainly rounded layers at once, GPTQ's when its
   * job is (they run behind the loop), so `done` reaching `total` means the weights are done.
   */
  onLayerDone?: (done: number, total: number) => void;
  /**
   * Host workers for the quantizer's own search (runtime/quant/calibrate_pool.ts), GPTQ and
   * the hessian low-rank fit; default WEBDIT_QUANT_WORKERS, else every core (≤ 1: this thread).
   */
  workers?: number;
  /**
   * GPTQ: also measure each layer's output SQNR with plain rounding and with GPTQ
   * (LayerReport.outSqnrRtnDb / outSqnrDb); default true. Each costs N·K² more a layer, more
   * than the rounding itself, so the CLI asks only for `--report`.
   */
  gptqSqnr?: boolean;
  /**
   * Where GPTQ runs: "gpu" (runtime/quant/gptq_gpu.ts, f32, on the calibration's runtime),
   * "cpu" (f64 workers), or "auto" (default): on a GPU (not the CPU fallback) the layers of
   * N·K² ≥ GPTQ_GPU_MIN_WORK, the others on the CPU.
   */
  gptqDevice?: "auto" | "gpu" | "cpu";
  /** GPTQ's dampening λ, a fraction of H's mean diagonal added to it; default GPTQ_DAMP (0.01). */
  gptqDamp?: number;
  /**
   * After GPTQ, refit each row's levels to its codes in H's norm (runtime/quant/gptq_refit.ts,
   * the plugin's `refit`: kmeans its levels, TLQ its (Δ, z), uniform its scale); one grid a row.
   */
  gptqRefit?: boolean;
  /** Runtime for the calibration run a rotation needs; default a new one (auto adapter). */
  runtime?: Runtime;
  /**
   * Calibration run of the rotations and PARO: prompts (a real checkpoint's encoders: the
   * model folder's or `textEncoder`'s), or precomputed embeddings (FLUX without its text
   * encoders: required), steps and guidance (default the model's), cache (calibrate.ts).
   */
  calibration?: PromptEncoderSource & CalibrationSize & {
    prompts?: readonly string[];
    embeds?: CalibrationEmbeds;
    steps?: number;
    guidance?: number;
    cacheDir?: string | false;
  };
  /** Rotation plan knobs (τ, α, smoothing, seed…; runtime/quant/rotation.ts). */
  rotationOptions?: Partial<Omit<RotationPlanOptions, "rotation">>;
  /** Progress of the calibration run. */
  onCalibration?: (p: { prompt: number; prompts: number; step: number; steps: number }) => void;
}

/** Result of `quantizeModel`: the artifact's content and the per-layer report. */
export interface QuantizeResult {
  /** The plan. */
  plan: QuantPlan;
  /** Every tensor of the artifact. */
  tensors: Record<string, TensorToWrite>;
  /** Its metadata. */
  metadata: Record<string, string>;
  /** Per linear layer. */
  layers: LayerReport[];
  /** Wall time of the weight quantization, ms. */
  ms: number;
  /** With `gptq`: the layers it ran on the GPU (the others on the CPU; each layer's meta says). */
  gptqGpuLayers?: number;
  /** The rotated layers' plans (for the activation report). */
  rotations: Map<string, LayerRotation>;
  /** The calibration statistics the rotations and GPTQ used (none without a calibration run). */
  stats?: CalibrationStats;
}
