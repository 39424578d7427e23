/**
 * Worker of bench/random_quant.ts: plans one layer's ARS rotation from its calibration
 * statistics, rotates the weight (W·diag(m)·R) and quantizes it with TLQ — what
 * runtime/quant/quantize.ts does per layer, off the main thread so that the layers of a
 * PixArt-α- or FLUX-shaped model quantize on every core.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { adaptiveRotationPlugin } from "../plugins/rotations/adaptive.ts";
import { lutDequantize, tlqQuantize } from "../plugins/quantizers/tlq.ts";
import type { LayerStats } from "../runtime/quant/calibrate.ts";

/** A job: one layer. */
export interface QuantJobMessage {
  /** Job id. */
  id: number;
  /** Checkpoint name. */
  name: string;
  /** W [rows, cols] row-major. */
  data: Float32Array;
  rows: number;
  cols: number;
  /** The layer's calibration statistics. */
  stats: LayerStats;
  /** Weight bits. */
  wbits: number;
  /** ARS threshold τ (undefined: the plugin's default). */
  tau?: number;
}

/** A job's result (or its error). */
export interface QuantResultMessage {
  id: number;
  name: string;
  error?: string;
  kind?: string;
  reason?: string;
  /** The rotation's stored tensors (runtime/quant/rotation.ts LayerRotation.tensors()). */
  tensors?: Record<string, { dtype: string; shape: number[]; data: Float32Array | Uint32Array }>;
  /** The quantized weight's fields (QuantizedWeight). */
  codes?: Uint32Array;
  params?: Record<string, Float32Array>;
  meta?: Record<string, number | string | boolean>;
  bits?: number;
  /** SQNR (dB) of the rotated weight's quantization. */
  sqnrDb?: number;
  /** Milliseconds of work. */
  ms?: number;
}

self.onmessage = (e: MessageEvent<QuantJobMessage>) => {
  const j = e.data;
  const t0 = performance.now();
  try {
    const weight = { data: j.data, rows: j.rows, cols: j.cols };
    const r = adaptiveRotationPlugin.planLayer({
      name: j.name,
      weight,
      stats: j.stats,
      options: { rotation: "adaptive", tau: j.tau },
    });
    const w = r.kind === "none" ? weight : r.transformWeight(weight);
    const q = tlqQuantize(w, { bits: j.wbits });
    const deq = lutDequantize(q);
    let s = 0;
    let err = 0;
    for (let i = 0; i < deq.length; i++) {
      s += w.data[i] * w.data[i];
      err += (w.data[i] - deq[i]) ** 2;
    }
    const tensors: QuantResultMessage["tensors"] = {};
    for (const [k, t] of Object.entries(r.tensors())) {
      tensors[k] = { dtype: t.dtype, shape: t.shape, data: t.data };
    }
    const msg: QuantResultMessage = {
      id: j.id,
      name: j.name,
      kind: r.kind,
      reason: r.report.reason,
      tensors,
      codes: q.codes,
      params: q.params,
      meta: q.meta,
      bits: q.bits,
      sqnrDb: 10 * Math.log10(s / err),
      ms: performance.now() - t0,
    };
    const transfer: ArrayBuffer[] = [q.codes.buffer as ArrayBuffer];
    for (const p of Object.values(q.params)) transfer.push(p.buffer as ArrayBuffer);
    self.postMessage(msg, { transfer });
  } catch (err) {
    self.postMessage({ id: j.id, name: j.name, error: (err as Error).message });
  }
};
