/**
 * A quantizer plugin's plain `calibrate` (its own search: TLQ's η × p± or least-squares fit,
 * uniform's clip search) for a model's layers on a pool of workers, one layer a job. TLQ's
 * search is about a microsecond a weight on one core: minutes for a PixArt-α, hours for a
 * FLUX on one thread. A worker knows the built-in quantizers only (it cannot be handed a
 * plugin object), so another plugin, a layer below `minWeights` (the messages would cost
 * more than the work) or a pool of ≤ 1 worker runs on the calling thread, with the same result.
 *
 * @module
 */
import type {
  HostMatrix,
  QuantizedWeight,
  QuantizerPlugin,
  WeightQuantOptions,
} from "../../plugins/types.ts";
import { BUILTIN_QUANTIZERS } from "../../plugins/quantizers/builtin.ts";
import { defaultQuantWorkers } from "./gptq_pool.ts";
import { WorkerPool, type WorkerReply } from "./worker_pool.ts";

/** One layer's job, as posted to a worker. */
export interface CalibrateJob {
  /** A built-in quantizer's name. */
  quantizer: string;
  data: Float32Array;
  rows: number;
  cols: number;
  opts: WeightQuantOptions;
}

/** A worker's answer: the quantized weight and the milliseconds it took, or an error. */
export type CalibrateReply = WorkerReply<{ q: QuantizedWeight; ms: number }>;

/** Layers of fewer weights than this run on the calling thread (2^14: 128 × 128). */
export const CALIBRATE_MIN_WEIGHTS = 2 ** 14;

/** The buffers of a quantized weight, each once (for postMessage's transfer list). */
export function weightBuffers(q: QuantizedWeight): ArrayBuffer[] {
  const set = new Set<ArrayBuffer>([q.codes.buffer as ArrayBuffer]);
  for (const p of Object.values(q.params)) set.add(p.buffer as ArrayBuffer);
  return [...set];
}

/** A pool of calibrate workers, started on the first job that goes to one. */
export class CalibratePool {
  /** Workers at most (0: every job on the calling thread). */
  readonly size: number;
  /** Layers of fewer weights run on the calling thread. */
  readonly minWeights: number;
  #pool: WorkerPool<CalibrateJob, { q: QuantizedWeight; ms: number }> | undefined;

  /** `workers` ≤ 1: none. */
  constructor(workers: number = defaultQuantWorkers(), minWeights = CALIBRATE_MIN_WEIGHTS) {
    this.size = workers > 1 ? Math.floor(workers) : 0;
    this.minWeights = minWeights;
    if (this.size) {
      const url = new URL("./calibrate_worker.ts", import.meta.url).href;
      this.#pool = new WorkerPool(url, this.size);
    }
  }

  /** Workers running now (they start with the first job that goes to one). */
  get started(): number {
    return this.#pool?.started ?? 0;
  }

  /** Quantizes `w` with `plugin` (`w` is copied to a worker, never detached). */
  run(
    plugin: QuantizerPlugin,
    w: HostMatrix,
    opts: WeightQuantOptions,
  ): Promise<{ q: QuantizedWeight; ms: number }> {
    const builtin = BUILTIN_QUANTIZERS[plugin.name] === plugin;
    if (!this.#pool || !builtin || w.rows * w.cols < this.minWeights) {
      try {
        const t0 = performance.now();
        const q = plugin.calibrate(w, opts);
        return Promise.resolve({ q, ms: performance.now() - t0 });
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const data = w.data.slice();
    const job = { quantizer: plugin.name, data, rows: w.rows, cols: w.cols, opts };
    return this.#pool.run(job, [data.buffer]);
  }

  /** Ends the workers. */
  close(): void {
    this.#pool?.close();
  }
}
