/**
 * W4A8 TLQ + ARS quantization of a random-weight model for the step benchmarks
 * (bench/step_bench.ts, bench/flux_step_bench.ts), by the path `deno task quantize` takes
 * (runtime/quant/quantize.ts) minus the file: calibration statistics of every linear input
 * from one FP32 forward ({@linkcode StatsCollector}), per layer the adaptive rotation
 * (plugins/rotations/adaptive.ts: J < τ → hadamard, else outlier-aware) planned from them,
 * the weight rotated (W·diag(m)·R) and quantized by TLQ (plugins/quantizers/tlq.ts), and at
 * load time a {@linkcode QuantLinear} per layer with the rotation's online transform fused
 * into the per-token A8 quantizer (the rotation rebuilt from its stored tensors, as the
 * artifact loader does).
 *
 * The host work (≈ 1.5 µs per weight for TLQ's search, more for outlier-aware layers)
 * runs on a pool of workers (bench/random_quant_worker.ts), one per core
 * (`WEBDIT_QUANT_WORKERS` overrides), largest layers first.
 *
 * @module
 */
import type { QuantizedWeight } from "../plugins/types.ts";
import type { Runtime } from "../runtime/gpu/device.ts";
import type { TensorSource } from "../runtime/io/safetensors.ts";
import { DenseLinear, type Linear, type LinearFactory } from "../runtime/model/linear.ts";
import type { LayerStats } from "../runtime/quant/calibrate.ts";
import { type ActBits, QuantLinear } from "../runtime/quant/qlinear.ts";
import { loadLayerRotation } from "../runtime/quant/rotation.ts";
import type { CenterMode } from "../runtime/reference/act_center.ts";
import { defaultQuantWorkers } from "../runtime/quant/gptq_pool.ts";
import type { QuantJobMessage, QuantResultMessage } from "./random_quant_worker.ts";

/** One quantized layer: the TLQ weight and the ARS rotation it was quantized under. */
export interface PlannedLayer {
  /** Checkpoint name. */
  name: string;
  /** The quantized (rotated) weight. */
  q: QuantizedWeight;
  /** "hadamard" or "outlier" (ARS's branch), or "none". */
  rotation: string;
  /** Why ARS chose the branch ("J 0.8 < τ 1"). */
  reason: string;
  /** The rotation's stored tensors. */
  tensors: Record<string, { dtype: string; shape: number[]; data: Float32Array | Uint32Array }>;
  /** SQNR (dB) of the rotated weight's quantization. */
  sqnrDb: number;
}

/** Options of {@linkcode quantizeLayers}. */
export interface QuantizeLayersOptions {
  /** Weight bits (TLQ: 3 or 4). */
  wbits: number;
  /** ARS τ; default the plugin's (1). */
  tau?: number;
  /** Workers; default WEBDIT_QUANT_WORKERS, else the host's cores. */
  workers?: number;
  /** Progress after each layer. */
  onLayer?: (done: number, total: number, name: string) => void;
}

/**
 * Plans and quantizes the named layers of `source` (weights `<name>.weight` [N, K]) with
 * their calibration statistics, on a worker pool. Every name needs statistics.
 */
export async function quantizeLayers(
  source: TensorSource,
  names: readonly string[],
  stats: ReadonlyMap<string, LayerStats>,
  o: QuantizeLayersOptions,
): Promise<Map<string, PlannedLayer>> {
  const jobs = names.map((name) => {
    const info = source.tensors.get(`${name}.weight`);
    if (!info) throw new RangeError(`${source.path}: no tensor ${name}.weight`);
    const s = stats.get(name);
    if (!s) throw new RangeError(`no calibration statistics for ${name}`);
    const rows = info.shape[0];
    const cols = info.shape.slice(1).reduce((a, b) => a * b, 1);
    return { name, rows, cols, stats: s };
  }).sort((a, b) => b.rows * b.cols - a.rows * a.cols); // largest first: the pool ends together
  const out = new Map<string, PlannedLayer>();
  const n = Math.min(o.workers ?? defaultQuantWorkers(), jobs.length);
  const workers = Array.from(
    { length: n },
    () => new Worker(new URL("./random_quant_worker.ts", import.meta.url).href, { type: "module" }),
  );
  let next = 0;
  let done = 0;
  try {
    await Promise.all(workers.map(async (w) => {
      while (next < jobs.length) {
        const id = next++;
        const j = jobs[id];
        const data = await source.readF32(`${j.name}.weight`);
        const msg: QuantJobMessage = { id, ...j, data, wbits: o.wbits, tau: o.tau };
        const r = await new Promise<QuantResultMessage>((resolve, reject) => {
          w.onmessage = (e: MessageEvent<QuantResultMessage>) => resolve(e.data);
          w.onerror = (e) => {
            e.preventDefault();
            reject(new Error(`quantizing ${j.name}: ${e.message}`));
          };
          w.postMessage(msg, { transfer: [data.buffer as ArrayBuffer] });
        });
        if (r.error) throw new Error(`quantizing ${j.name}: ${r.error}`);
        out.set(j.name, {
          name: j.name,
          q: {
            quantizer: "tlq",
            bits: r.bits!,
            rows: j.rows,
            cols: j.cols,
            codes: r.codes!,
            params: r.params!,
            meta: r.meta!,
          },
          rotation: r.kind!,
          reason: r.reason ?? "",
          tensors: r.tensors!,
          sqnrDb: r.sqnrDb!,
        });
        o.onLayer?.(++done, jobs.length, j.name);
      }
    }));
  } finally {
    for (const w of workers) w.terminate();
  }
  return out;
}

/**
 * The LinearFactory of the plans: a {@linkcode QuantLinear} (W4 codes, A`abits` per-token
 * activations through the layer's rotation, centred when `center` says, in groups of
 * `actGroup` channels when given) for every planned layer, a dense layer in `dtype` for the
 * others (the keep-FP ones).
 */
export function plannedLinears(
  plans: ReadonlyMap<string, PlannedLayer>,
  o: {
    abits: ActBits;
    dtype?: "f32" | "f16";
    center?: CenterMode;
    actGroup?: number;
    actAsym?: boolean;
    cfgDelta?: boolean;
  },
): LinearFactory {
  const dtype = o.dtype ?? "f32";
  return {
    create: async (rt: Runtime, src): Promise<Linear> => {
      const p = plans.get(src.name);
      if (!p) return new DenseLinear(rt, src, dtype);
      if (p.q.rows !== src.outFeatures || p.q.cols !== src.inFeatures) {
        throw new RangeError(`${src.name}: planned [${p.q.rows}, ${p.q.cols}], model differs`);
      }
      const transform = p.rotation === "none"
        ? undefined
        : loadLayerRotation(p.rotation, p.tensors, p.q.cols).gpu(rt);
      const ql = new QuantLinear(rt, src.name, p.q, src.bias, {
        abits: o.abits,
        dtype,
        transform,
        center: o.center,
        actGroup: o.actGroup,
        actAsym: o.actAsym,
        cfgDelta: o.cfgDelta,
      });
      await ql.prepare();
      return ql;
    },
  };
}

/** "hadamard 120, outlier 76; TLQ SQNR 20.1 dB (mean)": a plan's summary for a row's note. */
export function planSummary(plans: ReadonlyMap<string, PlannedLayer>): string {
  const kinds = new Map<string, number>();
  let sq = 0;
  for (const p of plans.values()) {
    kinds.set(p.rotation, (kinds.get(p.rotation) ?? 0) + 1);
    sq += p.sqnrDb;
  }
  const k = [...kinds].sort().map(([name, c]) => `${name} ${c}`).join(", ");
  return `ARS per layer: ${k}; TLQ W4 SQNR ${(sq / Math.max(1, plans.size)).toFixed(1)} dB (mean)`;
}

/** Cosine similarity and relative L2 error ‖a − b‖/‖b‖ of two outputs (f64 sums). */
export function compareOutputs(
  a: Float32Array,
  b: Float32Array,
): { cosine: number; relL2: number } {
  if (a.length !== b.length) throw new RangeError(`lengths ${a.length} and ${b.length} differ`);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  let dd = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
    dd += (a[i] - b[i]) ** 2;
  }
  return { cosine: ab / Math.sqrt(aa * bb), relL2: Math.sqrt(dd / bb) };
}
