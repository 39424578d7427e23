/**
 * GPTQ jobs (runtime/quant/gptq.ts) on a pool of workers, one layer a job: the rounding is
 * N·K² of plain JS a layer, minutes for a PixArt-α FFN, so a model's layers round in
 * parallel. Plugin-free: a job carries the quantizer's grid, and the output SQNRs are taken
 * from it. With one worker (or none) the jobs run on the calling thread, with the same result.
 * Given a GPU runtime too, the jobs of at least `gpuMinWork` (N·K²) run there one after another
 * (runtime/quant/gptq_gpu.ts, f32: codes may differ from the CPU's at near-ties); smaller ones,
 * milliseconds on a core but a fixed ~0.1 s on the GPU, stay on the workers.
 *
 * @module
 */
import type { CodeGrid, QuantizedWeight } from "../../plugins/types.ts";
import type { Runtime } from "../gpu/device.ts";
import { type GptqOptions, gptqRound, outputSqnrsDb } from "./gptq.ts";
import { gptqRoundGpu, outputSqnrsDbGpu } from "./gptq_gpu.ts";
import { type LevelNormals, levelNormals } from "./gptq_refit.ts";
import { unpackCodes } from "./pack.ts";
import { WorkerPool } from "./worker_pool.ts";

/** One layer's GPTQ: the (rotated) weight, its plainly rounded codes, the grid and H. */
export interface GptqJob {
  /** Job id (the pool's). */
  id: number;
  /** Layer name, for errors. */
  name: string;
  /** W [rows, cols] row-major, the weight the codes were fitted to. */
  w: Float32Array;
  rows: number;
  cols: number;
  bits: number;
  /** The plainly rounded codes, packed (runtime/quant/pack.ts). */
  codes: Uint32Array;
  grid: CodeGrid;
  /** H [cols, cols] in the weight's basis. */
  h: Float32Array;
  options?: GptqOptions;
  /** Also measure the output SQNRs (N·K² each, more than the rounding); default true. */
  sqnr?: boolean;
  /**
   * Also gather the level normal equations of GPTQ's codes, for the quantizer to refit its
   * levels to them (runtime/quant/gptq_refit.ts; one set of levels a row).
   */
  refit?: boolean;
}

/** A job's outcome. */
export interface GptqResult {
  id: number;
  /** GPTQ's codes, packed. */
  codes: Uint32Array;
  /** The dampening used (GPTQ raises it when H + λI is not positive definite). */
  damp: number;
  actOrder: boolean;
  /** Where it ran: the f64 CPU version or the f32 GPU one. */
  device: "cpu" | "gpu";
  /** Output SQNR (dB) on the calibration inputs: plain rounding, then GPTQ (if asked). */
  outSqnrRtnDb?: number;
  outSqnrDb?: number;
  /** Milliseconds the job took. */
  ms: number;
  /** With `refit`: the level normal equations of GPTQ's codes. */
  normals?: LevelNormals;
}

/** The dequantized weight of packed codes on the job's grid. */
function decode(codes: Uint32Array, j: GptqJob): Float32Array {
  const c = unpackCodes(codes, j.rows, j.cols, j.bits);
  const L = 2 ** j.bits;
  const G = j.grid.groupSize;
  const ng = Math.ceil(j.cols / G);
  const out = new Float32Array(j.rows * j.cols);
  for (let r = 0; r < j.rows; r++) {
    for (let k = 0; k < j.cols; k++) {
      out[r * j.cols + k] = j.grid.values[(r * ng + Math.floor(k / G)) * L + c[r * j.cols + k]];
    }
  }
  return out;
}

/** A job's weight as gptqRound takes it (the grid carries the values). */
function jobWeight(
  j: GptqJob,
): [{ data: Float32Array; rows: number; cols: number }, QuantizedWeight] {
  const q: QuantizedWeight = {
    quantizer: "grid",
    bits: j.bits,
    rows: j.rows,
    cols: j.cols,
    codes: j.codes,
    params: {},
    meta: {},
  };
  return [{ data: j.w, rows: j.rows, cols: j.cols }, q];
}

/** Plain rounding's and GPTQ's dequantized weights, for the output SQNRs. */
function bothDecoded(j: GptqJob, g: QuantizedWeight): Float32Array[] {
  return [decode(j.codes, j), decode(g.codes, j)];
}

/** The level normal equations of GPTQ's codes, if the job asks for them. */
function levelNormalsOf(j: GptqJob, g: QuantizedWeight): LevelNormals | undefined {
  return j.refit ? levelNormals(j.w, j.rows, j.cols, j.bits, g.codes, j.h) : undefined;
}

/** Runs one job on this thread. */
export function runGptqJob(j: GptqJob): GptqResult {
  const t0 = performance.now();
  const g = gptqRound(...jobWeight(j), j.grid, j.h, j.options);
  const normals = levelNormalsOf(j, g);
  const sqnrs = j.sqnr ?? true ? outputSqnrsDb(j.w, bothDecoded(j, g), j.h, j.rows, j.cols) : [];
  return jobResult(j, g, t0, "cpu", sqnrs, normals);
}

/** Runs one job on a GPU (the output SQNRs, if asked, too; the level normals on the host). */
export async function runGptqJobGpu(rt: Runtime, j: GptqJob): Promise<GptqResult> {
  const t0 = performance.now();
  const g = await gptqRoundGpu(rt, ...jobWeight(j), j.grid, j.h, j.options);
  const normals = levelNormalsOf(j, g);
  const sqnrs = j.sqnr ?? true
    ? await outputSqnrsDbGpu(rt, j.w, bothDecoded(j, g), j.h, j.rows, j.cols)
    : [];
  return jobResult(j, g, t0, "gpu", sqnrs, normals);
}

/** A job's result; `sqnrs`: plain rounding's and GPTQ's output SQNRs, or none. */
function jobResult(
  j: GptqJob,
  g: QuantizedWeight,
  t0: number,
  device: "cpu" | "gpu",
  sqnrs: number[],
  normals?: LevelNormals,
): GptqResult {
  const [rtn, gptq] = sqnrs;
  return {
    ...(normals ? { normals } : {}),
    id: j.id,
    codes: g.codes,
    damp: Number(g.meta.gptqDamp),
    actOrder: Boolean(g.meta.gptqActOrder),
    device,
    outSqnrRtnDb: rtn,
    outSqnrDb: gptq,
    ms: performance.now() - t0,
  };
}

/**
 * N·K² from which `auto` runs a GPTQ job on the GPU: 2^28 (a 1024×512×512 layer). Below, a
 * core takes well under a second and the GPU's fixed cost (uploads, ~4·K/32 launches, one
 * read) is no better; PixArt-α's smallest layer (1152³) is 5.6× over it.
 */
export const GPTQ_GPU_MIN_WORK = 2 ** 28;

/** Workers for host-side quantization: WEBDIT_QUANT_WORKERS, else every core. */
export function defaultQuantWorkers(): number {
  const env = Number(Deno.env.get("WEBDIT_QUANT_WORKERS"));
  if (Number.isInteger(env) && env > 0) return env;
  return Math.max(1, navigator.hardwareConcurrency || 1);
}

/** A pool of GPTQ workers; `run` queues a job, `close` ends the workers. */
export class GptqPool {
  /** Workers (0: the CPU's jobs run on the calling thread). */
  readonly size: number;
  /** The GPU the big jobs run on, if any. */
  readonly gpu: Runtime | undefined;
  /** N·K² from which a job runs on the GPU. */
  readonly gpuMinWork: number;
  #gpuChain: Promise<unknown> = Promise.resolve();
  #pool: WorkerPool<GptqJob, GptqResult> | undefined;
  #next = 0;

  /**
   * A pool of `workers` workers (≤ 1: none, the calling thread runs the jobs); with `gpu`,
   * the jobs of N·K² ≥ `gpuMinWork` (default {@linkcode GPTQ_GPU_MIN_WORK}; 0: every job) run
   * on that GPU, one at a time.
   */
  constructor(
    workers: number = defaultQuantWorkers(),
    gpu?: Runtime,
    gpuMinWork: number = GPTQ_GPU_MIN_WORK,
  ) {
    this.gpu = gpu;
    this.gpuMinWork = gpuMinWork;
    this.size = workers > 1 ? Math.floor(workers) : 0;
    if (this.size) {
      this.#pool = new WorkerPool(new URL("./gptq_worker.ts", import.meta.url).href, this.size);
    }
  }

  /** Rounds one layer (its buffers are transferred to a worker: do not reuse them). */
  run(job: Omit<GptqJob, "id">): Promise<GptqResult> {
    const full = { ...job, id: this.#next++ };
    if (this.gpu && job.rows * job.cols ** 2 >= this.gpuMinWork) {
      const rt = this.gpu;
      const r = this.#gpuChain.then(() => runGptqJobGpu(rt, full)).catch((e) => {
        throw new Error(`GPTQ of ${job.name}: ${(e as Error).message}`);
      });
      this.#gpuChain = r.catch(() => {});
      return r;
    }
    if (this.size === 0) {
      try {
        return Promise.resolve(runGptqJob(full));
      } catch (e) {
        return Promise.reject(new Error(`GPTQ of ${job.name}: ${(e as Error).message}`));
      }
    }
    const transfer = [full.w.buffer as ArrayBuffer, full.h.buffer as ArrayBuffer];
    return this.#pool!.run(full, transfer).catch((e) => {
      throw new Error(`GPTQ of ${job.name}: ${(e as Error).message}`);
    });
  }

  /** Ends the workers (queued jobs are dropped). */
  close(): void {
    this.#pool?.close();
  }
}
