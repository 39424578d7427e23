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

// GPU runtime: device, kernels, tensors, errors.
export { ADAPTER_CHOICES, createRuntime, Runtime } from "./runtime/gpu/device.ts";
export type { AdapterChoice, RuntimeInfo, RuntimeOptions } from "./runtime/gpu/device.ts";
export { finish, Recorder } from "./runtime/gpu/kernel.ts";
export type {
  Bindable,
  BindingKind,
  CachedPipeline,
  KernelSpec,
  PipelineCache,
  UniformField,
  UniformSpec,
} from "./runtime/gpu/kernel.ts";
export { createTensor, readTensor, Tensor, uploadTensor } from "./runtime/gpu/tensor.ts";
export type { BufferPool, DType, HostArray } from "./runtime/gpu/tensor.ts";
export type { StorageType } from "./runtime/gpu/compose.ts";
export * from "./runtime/errors.ts";
export { Prng } from "./runtime/io/prng.ts";
export { SAFETENSORS_DTYPES } from "./runtime/io/safetensors.ts";
export type {
  SafetensorsDtype,
  SafetensorsFile,
  TensorInfo,
  TensorSource,
  TensorToWrite,
} from "./runtime/io/safetensors.ts";
export type { Image } from "./runtime/io/png.ts";

// Plugins and their registry.
export { createDefaultRegistry } from "./runtime/builtins.ts";
export { PluginRegistry } from "./runtime/registry.ts";
export type { PluginOf } from "./runtime/registry.ts";
export type * from "./plugins/types.ts";

// Model building blocks.
export type {
  Linear,
  LinearEpilogue,
  LinearFactory,
  LinearSource,
  RowScope,
} from "./runtime/model/linear.ts";
export { planRowChunks, rowChunked, widestScope } from "./runtime/model/row_chunks.ts";
export type {
  ChunkScope,
  RowBatch,
  RowChunk,
  RowChunkedOptions,
} from "./runtime/model/row_chunks.ts";
export type { GemmActivation } from "./runtime/reference/gemm.ts";
export type { GemmEpilogue } from "./runtime/ops/gemm.ts";
export type { AttentionContext, SelfAttention } from "./plugins/models/dit_common.ts";
export type { AttentionInput, HeadsView } from "./runtime/ops/attention.ts";

// Pipelines and sampling.
export { DEFAULT_MODEL_DIR, loadPipeline, Pipeline, SAMPLERS } from "./runtime/pipeline.ts";
export {
  FLUX_SAMPLING,
  PIXART_SAMPLING,
  readSamplingDefaults,
  type SamplingDefaults,
} from "./runtime/model_defaults.ts";
export type {
  CaptionEmbeds,
  GenerateRequest,
  GenerateResult,
  LoadPipelineOptions,
  SamplerName,
} from "./runtime/pipeline.ts";
export type { AddedConditions, PixArtConditioning, PixArtModel } from "./plugins/models/pixart.ts";
export { loadPixArt } from "./plugins/models/pixart_load.ts";
export type { PixArtLoadOptions } from "./plugins/models/pixart_load.ts";
export type { PixArtConfig } from "./plugins/models/pixart_config.ts";
export type { EmojiCaptionEncoder, EmojiEncoderConfig } from "./plugins/models/emoji_encoder.ts";
export type { EmojiTokenizer, Tokenized } from "./plugins/models/emoji_tokenizer.ts";
export type { FlowEulerConfig } from "./runtime/sampling/flow_euler.ts";
export {
  parseVpSchedulerConfig,
  VP_SCHEDULER_CLASSES,
  vpSamplerOptions,
} from "./runtime/sampling/vp_scheduler_config.ts";
export type { VpSchedulerConfigs } from "./runtime/sampling/vp_scheduler_config.ts";
export type { DpmSolverConfig } from "./runtime/sampling/dpm_solver.ts";
export type { DdimConfig } from "./runtime/sampling/ddim.ts";
export type { StepInfo } from "./runtime/sampling/generate.ts";

// FLUX.
export { FluxModel, fluxPlugin } from "./plugins/models/flux.ts";
export { loadFlux } from "./plugins/models/flux_load.ts";
// The VAE decoder of latent models (a model folder's vae/).
export { loadVaeDecoder, VaeDecoder } from "./plugins/models/vae.ts";
export { parseVaeConfig } from "./plugins/models/vae_config.ts";
export type { VaeConfig } from "./plugins/models/vae_config.ts";
export { tiledDecode } from "./plugins/models/vae_tiling.ts";
export type { DecodeOptions } from "./runtime/vae_decode.ts";
export type { FluxLoadOptions } from "./plugins/models/flux_load.ts";
export type { FluxAttentionContext, FluxConditioning } from "./plugins/models/flux.ts";
export { parseFlowSchedulerConfig, parseFluxConfig } from "./plugins/models/flux_config.ts";
export type { FluxConfig } from "./plugins/models/flux_config.ts";

// HTTP server.
export { createApp } from "./runtime/server/app.ts";
export type { Env, ServerOptions, WebditServer } from "./runtime/server/app.ts";
export type { GenerationDefaults } from "./runtime/server/generations.ts";
export type {
  Counter,
  Gauge,
  Histogram,
  Labels,
  Metric,
  MetricsRegistry,
  ServerMetrics,
} from "./runtime/server/metrics.ts";
export type { ServerLimits } from "./runtime/server/schemas.ts";
export { densePlan, loadEntry, ModelCatalog } from "./runtime/server/models.ts";
export type { EntryOptions, ModelEntry, PlanInfo, Selection } from "./runtime/server/models.ts";
export { GpuQueue, QueueFullError } from "./runtime/server/queue.ts";
export type {
  GpuQueueOptions,
  ImageJob,
  JobPreview,
  JobResult,
  QueueObserver,
} from "./runtime/server/queue.ts";

// Evaluation.
export { cosine, mse, psnr, ssim } from "./runtime/eval/metrics.ts";
export type { DataRange, MetricImage, SsimOptions, Values } from "./runtime/eval/metrics.ts";
export { compareSamples, evaluate, generateSamples } from "./runtime/eval/eval.ts";
export type {
  Comparison,
  EvaluateOptions,
  EvaluateResult,
  GenerateSamplesOptions,
  ImageComparison,
  ModelSource,
  Sample,
  SampleSet,
  SampleSettings,
} from "./runtime/eval/eval.ts";
export { loadEmojiDataset } from "./runtime/eval/fidelity.ts";
export type {
  EmojiDataset,
  EmojiEntry,
  FidelityHit,
  FidelityResult,
} from "./runtime/eval/fidelity.ts";

// Attention: dense, and PARO's sparse, quantized attention.
export { denseAttention, densePlugin } from "./plugins/attention/dense.ts";
export {
  PARO_CALIBRATION_PROMPTS,
  paroFromArtifact,
  paroPlanData,
  paroPlugin,
  ParoSelfAttention,
  planParoForModel,
} from "./plugins/attention/paro.ts";
export type { ParoForm, ParoModelPlanOptions } from "./plugins/attention/paro.ts";
export {
  FluxParoAttention,
  jointParoLayer,
  observeImageTokens,
} from "./plugins/attention/paro_flux.ts";
export type { JointParoLayer } from "./plugins/attention/paro_flux.ts";
export { ParoPlan, planKeptMass, planParo } from "./runtime/quant/paro_plan.ts";
export type {
  BlockStats,
  ParoLayerPlan,
  ParoPlanMeta,
  ParoPlanOptions,
  ParoStats,
  PlanTensor,
} from "./runtime/quant/paro_plan.ts";
export { calibrateParo, ParoStatsObserver } from "./runtime/quant/paro_calibrate.ts";
export type {
  ParoCalibrationOptions,
  ParoObserverOptions,
} from "./runtime/quant/paro_calibrate.ts";
export type { CandidateOptions } from "./runtime/quant/paro_orders.ts";
export { attnSparse, attnSparseQuantized, quantizeQkv } from "./runtime/ops/attn_sparse.ts";
export type {
  AttnSparseOptions,
  AttnSparseTuning,
  QuantizedQkv,
  QuantizeQkvOptions,
  SparseBits,
} from "./runtime/ops/attn_sparse.ts";

// Weight quantization: quantizers, plans, artifacts.
export { uniformQuantizer } from "./plugins/quantizers/uniform.ts";
export { TLQ_FITS, tlqQuantizer } from "./plugins/quantizers/tlq.ts";
export type { TlqOptions } from "./plugins/quantizers/tlq.ts";
export { quantizeModel, writeArtifact } from "./runtime/quant/quantize.ts";
export type { LayerReport } from "./runtime/quant/quantize.ts";
export type { QuantizeOptions, QuantizeResult } from "./runtime/quant/quantize_types.ts";
export { isArtifact, openArtifact } from "./runtime/quant/artifact.ts";
export type { Artifact, RotationLoader } from "./runtime/quant/artifact.ts";
export { loadArtifactPipeline } from "./runtime/quant/artifact_pipeline.ts";
export type { ArtifactPipelineOptions } from "./runtime/quant/artifact_pipeline.ts";
export { DEFAULT_KEEP_FP, defaultKeepFp, FLUX_KEEP_FP, parsePlan } from "./runtime/quant/plan.ts";
export type { LayerPlan, QuantPlan, QuantSettings } from "./runtime/quant/plan.ts";

// Quantized linear layers and their kernels.
export { IdentityTransform, QuantLinear } from "./runtime/quant/qlinear.ts";
export type { ActBits, QuantLinearOptions } from "./runtime/quant/qlinear.ts";
export type {
  ActGrouping,
  ActivationTransform,
  QuantizedActivations,
} from "./runtime/quant/transform.ts";
export { actQuant } from "./runtime/ops/act_quant.ts";
export type { ActQuantOptions, ActQuantVersion } from "./runtime/ops/act_quant.ts";
export { actCentres, centerActivations } from "./runtime/ops/act_center.ts";
export type { Centred } from "./runtime/ops/act_center.ts";
export { CENTER_MODES } from "./runtime/reference/act_center.ts";
export type { CenterMode } from "./runtime/reference/act_center.ts";
export { qgemmA16, qgemmInt, uploadQWeight } from "./runtime/ops/qgemm.ts";
export type {
  DotImpl,
  IntTune,
  QGemmA16Options,
  QGemmA16Version,
  QGemmEpilogue,
  QGemmIntOptions,
  QGemmIntVersion,
  QWeightGpu,
  SkinnyTune,
} from "./runtime/ops/qgemm.ts";
export type { UploadQWeightOptions } from "./runtime/ops/qweight.ts";

// Calibration: activation statistics and smoothing.
export {
  calibrate,
  CALIBRATION_PROMPTS,
  layerJ,
  loadCalibration,
  saveCalibration,
  StatsCollector,
  transformerWeightsHash,
} from "./runtime/quant/calibrate.ts";
export type {
  CalibrateOptions,
  CalibrationSettings,
  CalibrationStats,
  LayerStats,
} from "./runtime/quant/calibrate.ts";
export type { CalibrationEmbeds, CalibrationFamily } from "./runtime/quant/calibration_run.ts";
export type { ChannelStats } from "./runtime/reference/act_stats.ts";
export { smoothingFactors } from "./runtime/quant/smooth.ts";
export { actStats, ActStatsAccumulator } from "./runtime/ops/act_stats.ts";

// Rotations before quantization (Hadamard, outlier).
export {
  ARS_SELECT,
  HadamardRotation,
  identityRotation,
  loadLayerRotation,
  OutlierRotation,
} from "./runtime/quant/rotation.ts";
export type {
  ArsSelect,
  LayerRotation,
  LayerRotationReport,
  RotationChoice,
  RotationKind,
  RotationPlanOptions,
  RotationTensor,
  StoredTensor,
} from "./runtime/quant/rotation.ts";
export type { QuantizedRows } from "./runtime/reference/rotq.ts";
export {
  buildRotationReport,
  formatRotationReport,
  planRotations,
  ROTATION_PLUGINS,
  rotationReport,
} from "./runtime/quant/rotation_plan.ts";
export type {
  BuildRotationReportOptions,
  PlanningRotationPlugin,
  RotationReportOptions,
  RotationReportRow,
} from "./runtime/quant/rotation_plan.ts";
export { layerErrors, rotationErrors } from "./runtime/quant/rotation_error.ts";
export type { ActQuantSpec, RotationErrors } from "./runtime/quant/rotation_error.ts";
export { rotateHadamard, rotateOutlier, rotqHadamard, rotqOutlier } from "./runtime/ops/rotq.ts";
export type {
  HadamardKernelOptions,
  HadamardTransformTensors,
  OutlierTransformTensors,
} from "./runtime/ops/rotq.ts";
export type { OutlierKernelOptions } from "./runtime/ops/rotq_outlier_tiled.ts";
