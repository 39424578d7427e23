/**
 * The hessian low-rank fit's two heavy steps (runtime/quant/low_rank.ts) on a pool of
 * workers: H's Cholesky factor (K³/3 flops, once a layer) and the branch B, the top R left
 * singular vectors of D·C (several N·K² products, once a round). On the quantizing thread they
 * held up every other layer (~40 s for a 1152×4608 layer); here a model's layers fit on every
 * core. Jobs below `minWork` (the messages would cost more than the work) or a pool of ≤ 1
 * worker run on the calling thread, with the same result.
 *
 * @module
 */
import type { HostMatrix } from "../../plugins/types.ts";
import { defaultQuantWorkers } from "./gptq_pool.ts";
import { hessianBranch, hessianFactor } from "./low_rank.ts";
import { WorkerPool, type WorkerReply } from "./worker_pool.ts";

/** One step of the fit, as posted to a worker. */
export type LowRankJob =
  | { kind: "factor"; h: Float64Array; K: number; damp?: number }
  | { kind: "branch"; d: Float32Array; N: number; K: number; c: Float64Array; rank: number };

/** A worker's answer: C or B, or an error. */
export type LowRankReply = WorkerReply<{ c: Float64Array } | { b: Float32Array }>;

/** Runs one job on the calling thread (the worker runs this too). */
export function runLowRankJob(j: LowRankJob): { c: Float64Array } | { b: Float32Array } {
  if (j.kind === "factor") return { c: hessianFactor(j.h, j.K, j.damp) };
  return { b: hessianBranch({ data: j.d, rows: j.N, cols: j.K }, j.c, j.rank) };
}

/** The fit's steps as quantizeWithBranch takes them (runtime/quant/low_rank_fit.ts). */
export interface HessianFitter {
  /** {@linkcode hessianFactor}. */
  factor(h: ArrayLike<number>, K: number, damp?: number): Promise<Float64Array>;
  /** {@linkcode hessianBranch}. */
  branch(d: HostMatrix, c: Float64Array, rank: number): Promise<Float32Array>;
}

/** The fit's steps on the calling thread (a rejected promise for an error, as a worker's). */
export const LOCAL_FITTER: HessianFitter = {
  factor: (h, K, damp) => Promise.resolve().then(() => hessianFactor(h, K, damp)),
  branch: (d, c, rank) => Promise.resolve().then(() => hessianBranch(d, c, rank)),
};

/** Jobs of less work than this (K³ for a factor, N·K² for a branch) run on the calling thread. */
export const LOW_RANK_MIN_WORK = 2 ** 24;

/** A pool of low-rank fit workers, started with the first job that goes to one. */
export class LowRankPool implements HessianFitter {
  /** Workers at most (0: every job on the calling thread). */
  readonly size: number;
  /** Jobs of less work run on the calling thread. */
  readonly minWork: number;
  #pool: WorkerPool<LowRankJob, { c: Float64Array } | { b: Float32Array }> | undefined;

  /** `workers` ≤ 1: none. */
  constructor(workers: number = defaultQuantWorkers(), minWork = LOW_RANK_MIN_WORK) {
    this.size = workers > 1 ? Math.floor(workers) : 0;
    this.minWork = minWork;
    if (this.size) {
      const url = new URL("./low_rank_worker.ts", import.meta.url).href;
      this.#pool = new WorkerPool(url, this.size);
    }
  }

  /** Workers running now (they start with the first job that goes to one). */
  get started(): number {
    return this.#pool?.started ?? 0;
  }

  factor(h: ArrayLike<number>, K: number, damp?: number): Promise<Float64Array> {
    if (!this.#pool || K ** 3 < this.minWork) return LOCAL_FITTER.factor(h, K, damp);
    const h64 = Float64Array.from(h); // a copy: its buffer goes to the worker
    return this.#pool.run({ kind: "factor", h: h64, K, damp }, [h64.buffer])
      .then((r) => (r as { c: Float64Array }).c);
  }

  branch(d: HostMatrix, c: Float64Array, rank: number): Promise<Float32Array> {
    const { rows: N, cols: K } = d;
    if (!this.#pool || N * K * K < this.minWork) return LOCAL_FITTER.branch(d, c, rank);
    const [dc, cc] = [d.data.slice(), c.slice()]; // copies: their buffers go to the worker
    return this.#pool.run({ kind: "branch", d: dc, N, K, c: cc, rank }, [dc.buffer, cc.buffer])
      .then((r) => (r as { b: Float32Array }).b);
  }

  /** Ends the workers. */
  close(): void {
    this.#pool?.close();
  }
}
