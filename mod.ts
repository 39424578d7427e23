/**
 * webdit: diffusion transformers on WebGPU, with low-bit quantization and sparse,
 * quantized attention.
 *
 * ```ts
 * import { createRuntime } from "./mod.ts";
 * const rt = await createRuntime({ adapter: "auto" });
 * console.log(rt.info.description);
 * rt.destroy();
 * ```
 *
 * @module
 */
export { ADAPTER_CHOICES, createRuntime, Runtime } from "./runtime/gpu/device.ts";
export type { AdapterChoice, RuntimeInfo, RuntimeOptions } from "./runtime/gpu/device.ts";
export { finish, Recorder } from "./runtime/gpu/kernel.ts";
export type { KernelSpec } from "./runtime/gpu/kernel.ts";
export { createTensor, readTensor, Tensor, uploadTensor } from "./runtime/gpu/tensor.ts";
export type { DType } from "./runtime/gpu/tensor.ts";
export * from "./runtime/errors.ts";
export { Prng } from "./runtime/io/prng.ts";
export { createDefaultRegistry } from "./runtime/builtins.ts";
export { PluginRegistry } from "./runtime/registry.ts";
export type * from "./plugins/types.ts";
export { DEFAULT_MODEL_DIR, loadPipeline, Pipeline, SAMPLERS } from "./runtime/pipeline.ts";
export { FluxModel, fluxPlugin } from "./plugins/models/flux.ts";
export { loadFlux } from "./plugins/models/flux_load.ts";
export type { FluxLoadOptions } from "./plugins/models/flux_load.ts";
export type { FluxAttentionContext, FluxConditioning } from "./plugins/models/flux.ts";
export { parseFlowSchedulerConfig, parseFluxConfig } from "./plugins/models/flux_config.ts";
export type { FluxConfig } from "./plugins/models/flux_config.ts";
export type {
  CaptionEmbeds,
  GenerateRequest,
  GenerateResult,
  SamplerName,
} from "./runtime/pipeline.ts";
export { createApp } from "./runtime/server/app.ts";
export type { ServerOptions, WebditServer } from "./runtime/server/app.ts";
export { densePlan, loadEntry, ModelCatalog } from "./runtime/server/models.ts";
export type { ModelEntry, PlanInfo } from "./runtime/server/models.ts";
export { GpuQueue, QueueFullError } from "./runtime/server/queue.ts";
export type { GpuQueueOptions, ImageJob, JobResult } from "./runtime/server/queue.ts";
export { cosine, mse, psnr, ssim } from "./runtime/eval/metrics.ts";
export type { DataRange, MetricImage, SsimOptions } from "./runtime/eval/metrics.ts";
export { compareSamples, evaluate, generateSamples } from "./runtime/eval/eval.ts";
export type {
  Comparison,
  EvaluateOptions,
  EvaluateResult,
  SampleSet,
} from "./runtime/eval/eval.ts";
export { loadEmojiDataset } from "./runtime/eval/fidelity.ts";
export type { EmojiDataset, FidelityResult } from "./runtime/eval/fidelity.ts";
export { denseAttention, densePlugin } from "./plugins/attention/dense.ts";
export {
  PARO_CALIBRATION_PROMPTS,
  paroFromArtifact,
  paroPlanData,
  paroPlugin,
  ParoSelfAttention,
  planParoForModel,
} from "./plugins/attention/paro.ts";
export {
  FluxParoAttention,
  jointParoLayer,
  observeImageTokens,
} from "./plugins/attention/paro_flux.ts";
export { ParoPlan, planKeptMass, planParo } from "./runtime/quant/paro_plan.ts";
export type { ParoPlanMeta, ParoPlanOptions, ParoStats } from "./runtime/quant/paro_plan.ts";
export { calibrateParo, ParoStatsObserver } from "./runtime/quant/paro_calibrate.ts";
export { attnSparse, attnSparseQuantized, quantizeQkv } from "./runtime/ops/attn_sparse.ts";
export type { AttnSparseOptions, QuantizedQkv, SparseBits } from "./runtime/ops/attn_sparse.ts";
export { uniformQuantizer } from "./plugins/quantizers/uniform.ts";
export { tlqQuantizer } from "./plugins/quantizers/tlq.ts";
export { quantizeModel, writeArtifact } from "./runtime/quant/quantize.ts";
export type { LayerReport, QuantizeOptions, QuantizeResult } from "./runtime/quant/quantize.ts";
export { isArtifact, openArtifact } from "./runtime/quant/artifact.ts";
export { loadArtifactPipeline } from "./runtime/quant/artifact_pipeline.ts";
export { DEFAULT_KEEP_FP, defaultKeepFp, FLUX_KEEP_FP, parsePlan } from "./runtime/quant/plan.ts";
export type { LayerPlan, QuantPlan, QuantSettings } from "./runtime/quant/plan.ts";
export { IdentityTransform, QuantLinear } from "./runtime/quant/qlinear.ts";
export type { ActBits, QuantLinearOptions } from "./runtime/quant/qlinear.ts";
export { actQuant } from "./runtime/ops/act_quant.ts";
export { qgemmA16, qgemmInt, uploadQWeight } from "./runtime/ops/qgemm.ts";
export type { QWeightGpu } from "./runtime/ops/qgemm.ts";
export {
  calibrate,
  CALIBRATION_PROMPTS,
  layerJ,
  loadCalibration,
  saveCalibration,
  StatsCollector,
  transformerWeightsHash,
} from "./runtime/quant/calibrate.ts";
export type { CalibrationStats, LayerStats } from "./runtime/quant/calibrate.ts";
export { smoothingFactors } from "./runtime/quant/smooth.ts";
export {
  HadamardRotation,
  identityRotation,
  loadLayerRotation,
  OutlierRotation,
} from "./runtime/quant/rotation.ts";
export type {
  LayerRotation,
  RotationChoice,
  RotationKind,
  RotationPlanOptions,
} from "./runtime/quant/rotation.ts";
export {
  buildRotationReport,
  formatRotationReport,
  planRotations,
  ROTATION_PLUGINS,
  rotationReport,
} from "./runtime/quant/rotation_plan.ts";
export type { RotationReportRow } from "./runtime/quant/rotation_plan.ts";
export { rotateHadamard, rotateOutlier, rotqHadamard, rotqOutlier } from "./runtime/ops/rotq.ts";
export { actStats, ActStatsAccumulator } from "./runtime/ops/act_stats.ts";
