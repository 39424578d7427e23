/**
 * The calibration cache's file: one safetensors file a run, `<layer>.absmax|min|max|sumsq|
 * sample` (+ `.gram`, `.qsample` when collected) with the model hash, the settings and the
 * per-layer counts in its metadata (format `webdit-calibration-v1`).
 *
 * @module
 */
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../io/safetensors.ts";
import type { CalibrationStats, LayerStats } from "./calibrate.ts";

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
