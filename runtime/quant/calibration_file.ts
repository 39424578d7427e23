/**
 * The calibration cache's file: one safetensors file a run, `<layer>.absmax|min|max|sumsq|
 * sample` (+ `.gram`, `.qsample` when collected) with the model hash, the settings and the
 * per-layer counts in its metadata (format `webdit-calibration-v1`); the statistics' types,
 * the settings that key the cache and the cache's file names.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../io/safetensors.ts";
import type { SamplerName } from "../pipeline.ts";
import type { ChannelStats } from "../reference/act_stats.ts";
import type { QuantizerInputSpec } from "./quantizer_input.ts";
import type { TextWeights } from "../../plugins/models/text_weights.ts";

/** Statistics of one linear layer's input over the calibration run. */
export interface LayerStats extends ChannelStats {
  /** Checkpoint name of the layer, e.g. "transformer_blocks.0.attn1.to_q". */
  name: string;
  /** K (input features). */
  cols: number;
  /** Forward calls observed. */
  calls: number;
  /** A sample of input rows [sampleRows, K] (consecutive tokens of calls drawn over the run). */
  sample: Float32Array;
  /** Rows in `sample`. */
  sampleRows: number;
  /** Σ xᵀx [K, K] over the sampled input rows (GPTQ's Hessian), when the run collected it. */
  gram?: Float32Array;
  /**
   * The same rows as `sample`, as the plan's activation quantizer sees them (centred per
   * sample, a CFG pair's delta: the settings' `quantInput`), when the run formed them.
   */
  quantSample?: Float32Array;
  /**
   * A per-channel offset already subtracted from `sample` (runtime/quant/centred_stats.ts):
   * the layer's own input rows are sample + shift. Absent: none.
   */
  shift?: Float32Array;
}

/** The calibration statistics of a model. */
export interface CalibrationStats {
  /** sha-256 (hex) of the transformer weights. */
  modelHash: string;
  /** The settings the run used. */
  settings: CalibrationSettings;
  /** Per linear layer, by checkpoint name. */
  layers: Map<string, LayerStats>;
}

/** What a calibration run depends on (besides the weights). */
export interface CalibrationSettings {
  /** Prompts (empty with precomputed embeddings). */
  prompts: string[];
  /** sha-256 of the precomputed embeddings (`--calib-embeds`), when calibrated on them. */
  embeds?: string;
  /**
   * A real checkpoint's prompt encoders that encoded the prompts (sha-256 of their files,
   * T5's tokens per prompt); absent for the bundled caption encoder and for embeddings.
   */
  textEncoder?: { sha256: string; length: number; weights?: TextWeights };
  /** The image size calibrated [height, width] in pixels (0: the model's own), when given. */
  size?: [number, number];
  /** Sampler steps. */
  steps: number;
  /** Guidance scale. */
  guidance: number;
  /** Sampler. */
  sampler: SamplerName;
  /** First seed (prompt i uses seed + i). */
  seed: number;
  /** Sample rows kept per layer. */
  sampleRows: number;
  /**
   * How the sample's calls are drawn: "reservoir", uniformly over the whole run. (Files from
   * before it lack the field: their rows are the run's last calls'.)
   */
  sampling: "reservoir";
  /** Gram matrices collected, from about this many rows of each call (absent: none). */
  gramRows?: number;
  /** The sample rows were also kept as this plan's activation quantizer sees them (absent: no). */
  quantInput?: QuantizerInputSpec;
}

/** The default cache folder: `.cache/calib` at the repository root. */
export const DEFAULT_CALIB_CACHE: string = new URL("../../.cache/calib", import.meta.url).pathname;

/** The cache file name of a model hash and settings. */
export function calibrationCacheName(modelHash: string, s: CalibrationSettings): string {
  const key = createHash("sha256").update(JSON.stringify(s)).digest("hex").slice(0, 12);
  return `${modelHash.slice(0, 16)}-${key}.safetensors`;
}

/** Per-layer counts kept in the metadata. */
interface LayerCounts {
  rows: number;
  calls: number;
  sampleRows: number;
}

/** Writes statistics to a safetensors file. */
export async function saveCalibration(file: string, stats: CalibrationStats): Promise<void> {
  const tensors: Record<string, TensorToWrite> = {};
  const layers: Record<string, LayerCounts> = {};
  for (const [name, s] of stats.layers) {
    const K = s.cols;
    tensors[`${name}.absmax`] = { dtype: "F32", shape: [K], data: s.absmax };
    tensors[`${name}.min`] = { dtype: "F32", shape: [K], data: s.min };
    tensors[`${name}.max`] = { dtype: "F32", shape: [K], data: s.max };
    tensors[`${name}.sumsq`] = { dtype: "F64", shape: [K], data: s.sumsq };
    tensors[`${name}.sample`] = { dtype: "F32", shape: [s.sampleRows, K], data: s.sample };
    if (s.gram) tensors[`${name}.gram`] = { dtype: "F32", shape: [K, K], data: s.gram };
    if (s.quantSample) {
      tensors[`${name}.qsample`] = { dtype: "F32", shape: [s.sampleRows, K], data: s.quantSample };
    }
    layers[name] = { rows: s.rows, calls: s.calls, sampleRows: s.sampleRows };
  }
  await writeSafetensors(file, tensors, {
    format: "webdit-calibration-v1",
    model_hash: stats.modelHash,
    settings: JSON.stringify(stats.settings),
    layers: JSON.stringify(layers),
  });
}

/** Reads statistics written by {@linkcode saveCalibration}. */
export async function loadCalibration(file: string): Promise<CalibrationStats> {
  using f = await openSafetensors(file);
  const m = f.metadata;
  if (m.format !== "webdit-calibration-v1") {
    throw new RangeError(`${file} is not a webdit calibration file`);
  }
  const layers = new Map<string, LayerStats>();
  const meta = JSON.parse(m.layers) as Record<string, LayerCounts>;
  for (const [name, l] of Object.entries(meta)) {
    const absmax = await f.readF32(`${name}.absmax`);
    const raw = await f.readRaw(`${name}.sumsq`);
    layers.set(name, {
      name,
      cols: absmax.length,
      absmax,
      min: await f.readF32(`${name}.min`),
      max: await f.readF32(`${name}.max`),
      sumsq: new Float64Array(raw.slice().buffer),
      rows: l.rows,
      calls: l.calls,
      sample: await f.readF32(`${name}.sample`),
      sampleRows: l.sampleRows,
      ...(f.tensors.has(`${name}.gram`) ? { gram: await f.readF32(`${name}.gram`) } : {}),
      ...(f.tensors.has(`${name}.qsample`)
        ? { quantSample: await f.readF32(`${name}.qsample`) }
        : {}),
    });
  }
  return { modelHash: m.model_hash, settings: JSON.parse(m.settings), layers };
}
