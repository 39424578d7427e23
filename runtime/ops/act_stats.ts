/**
 * Streaming per-channel activation statistics on the GPU (calibration): every call folds
 * x [..., K] into a running [5, K] f32 buffer (absmax, min, max, Σx² as a Kahan sum and
 * its compensation); nothing is read back until {@linkcode ActStatsAccumulator.read}.
 * CPU reference: runtime/reference/act_stats.ts.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import type { Runtime } from "../gpu/device.ts";
import { type KernelSpec, Recorder } from "../gpu/kernel.ts";
import { readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { actStatsRef, type ChannelStats } from "../reference/act_stats.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";
import src from "../../wgsl/act_stats.wgsl" with { type: "text" };

const CH = 32;
const RL = 8;

interface Params {
  M: number;
  K: number;
}

const specs = new Map<StorageType, KernelSpec<Params>>();

function statsSpec(storage: StorageType): KernelSpec<Params> {
  let spec = specs.get(storage);
  if (!spec) {
    const c = composeWgsl(src, { storage });
    spec = {
      name: `act_stats_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read_write"],
      constants: () => ({ CH, RL }),
      uniform: { fields: ["u32", "u32"], values: (p) => [p.M, p.K] },
      dispatch: (p) => [Math.ceil(p.K / CH)],
    };
    specs.set(storage, spec);
  }
  return spec;
}

/** Records the fold of x [..., K] (f32/f16) into `stats` [5, K] f32. */
export function actStats(rec: Recorder, x: Tensor, stats: Tensor): void {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`actStats: x must be f32 or f16, got ${x.dtype}`);
  }
  const K = x.shape[x.shape.length - 1] ?? 0;
  if (stats.dtype !== "f32" || stats.size !== 5 * K) {
    throw new RangeError(
      `actStats: stats must be f32 [5, ${K}], got ${stats.dtype} [${stats.shape}]`,
    );
  }
  const M = K === 0 ? 0 : x.size / K;
  if (M === 0) return;
  rec.dispatch(statsSpec(x.dtype), { M, K }, [x, stats]);
}

/** A running statistics buffer for one layer input of width K. */
export class ActStatsAccumulator {
  /** K. */
  readonly cols: number;
  /** The [5, K] buffer. */
  readonly buffer: Tensor;
  #rows = 0;

  /** Allocates and initialises the buffer (absmax 0, min +3e38, max −3e38, sums 0). */
  constructor(rt: Runtime, cols: number) {
    if (!Number.isInteger(cols) || cols < 1) {
      throw new RangeError(`cols must be a positive integer, got ${cols}`);
    }
    this.cols = cols;
    const init = new Float32Array(5 * cols);
    init.fill(3e38, cols, 2 * cols);
    init.fill(-3e38, 2 * cols, 3 * cols);
    this.buffer = uploadTensor(rt, init, [5, cols]);
  }

  /** Rows folded so far. */
  get rows(): number {
    return this.#rows;
  }

  /** Records the fold of x [..., K]. */
  record(rec: Recorder, x: Tensor): void {
    actStats(rec, x, this.buffer);
    this.#rows += x.size / this.cols;
  }

  /** Reads the statistics back (after the recorded work). */
  async read(rt: Runtime): Promise<ChannelStats> {
    const K = this.cols;
    const d = await readTensor(rt, this.buffer);
    const sumsq = new Float64Array(K);
    for (let c = 0; c < K; c++) sumsq[c] = d[3 * K + c] - d[4 * K + c];
    const none = this.#rows === 0;
    return {
      absmax: d.slice(0, K),
      min: none ? new Float32Array(K).fill(Infinity) : d.slice(K, 2 * K),
      max: none ? new Float32Array(K).fill(-Infinity) : d.slice(2 * K, 3 * K),
      sumsq,
      rows: this.#rows,
    };
  }

  /** Frees the buffer. */
  release(): void {
    this.buffer.release();
  }
}

/** Self-check for `deno task doctor`: two folds of odd shapes against the reference. */
export async function actStatsSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const [M, K] = [37, 45];
  const g = new Prng(31);
  const a = g.normals(M * K).map((v) => 3 * v + 1);
  const b = g.normals(5 * K);
  const acc = new ActStatsAccumulator(rt, K);
  const rec = new Recorder(rt);
  acc.record(rec, uploadTensor(rt, a, [M, K]));
  acc.record(rec, uploadTensor(rt, b, [5, K]));
  await rec.submit();
  const got = await acc.read(rt);
  acc.release();
  const ref = actStatsRef(b, 5, K, actStatsRef(a, M, K));
  const exact = Math.max(
    maxError(got.absmax, ref.absmax),
    maxError(got.min, ref.min),
    maxError(got.max, ref.max),
  );
  let rel = 0;
  for (let c = 0; c < K; c++) rel = Math.max(rel, Math.abs(got.sumsq[c] / ref.sumsq[c] - 1));
  return [
    { name: "act_stats_minmax_f32", ok: exact === 0, maxError: exact, tolerance: 0 },
    { name: "act_stats_sumsq_f32", ok: rel <= 1e-5, maxError: rel, tolerance: 1e-5 },
  ];
}
