/**
 * Streaming Gram matrix of activations on the GPU (calibration for GPTQ): every call adds
 * xᵀx of x [..., K] (of every S-th row) into a running [K, K] f32 buffer; only the tiles on
 * or above the diagonal are computed, and {@linkcode ActGramAccumulator.read} mirrors them.
 * Nothing is read back until then. CPU reference: runtime/reference/act_gram.ts.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import type { Runtime } from "../gpu/device.ts";
import { type KernelSpec, Recorder } from "../gpu/kernel.ts";
import { readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { gramRef } from "../reference/act_gram.ts";
import type { SelfCheckResult } from "./selfcheck.ts";
import src from "../../wgsl/act_gram.wgsl" with { type: "text" };

const TILE = 32; // a workgroup's tile of G (wgsl/act_gram.wgsl)

interface Params {
  M: number;
  K: number;
  S: number;
}

const specs = new Map<StorageType, KernelSpec<Params>>();

function gramSpec(storage: StorageType): KernelSpec<Params> {
  let spec = specs.get(storage);
  if (!spec) {
    const c = composeWgsl(src, { storage });
    spec = {
      name: `act_gram_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read_write"],
      uniform: { fields: ["u32", "u32", "u32"], values: (p) => [p.M, p.K, p.S] },
      dispatch: (p) => [Math.ceil(p.K / TILE), Math.ceil(p.K / TILE)],
    };
    specs.set(storage, spec);
  }
  return spec;
}

/**
 * Records G += Σ xᵀx over rows 0, stride, 2·stride, … of x [..., K] (f32/f16) into `gram`
 * [K, K] f32 (upper tiles only).
 */
export function actGram(rec: Recorder, x: Tensor, gram: Tensor, stride = 1): void {
  if (!Number.isInteger(stride) || stride < 1) {
    throw new RangeError(`actGram: stride must be a positive integer, got ${stride}`);
  }
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`actGram: x must be f32 or f16, got ${x.dtype}`);
  }
  const K = x.shape[x.shape.length - 1] ?? 0;
  if (gram.dtype !== "f32" || gram.size !== K * K) {
    throw new RangeError(
      `actGram: gram must be f32 [${K}, ${K}], got ${gram.dtype} [${gram.shape}]`,
    );
  }
  const M = K === 0 ? 0 : x.size / K;
  if (M === 0) return;
  rec.dispatch(gramSpec(x.dtype), { M, K, S: stride }, [x, gram]);
}

/** The row stride that samples at most about `maxRows` of M rows (odd, so it does not alias a grid). */
export function gramStride(M: number, maxRows: number): number {
  if (maxRows <= 0 || M <= maxRows) return 1;
  return Math.ceil(M / maxRows) | 1;
}

/**
 * A running Gram matrix Σ xᵀx of one layer input of width K: of every row, or with
 * `maxRowsPerCall` of an evenly strided sample of about that many rows of each call.
 */
export class ActGramAccumulator {
  /** K. */
  readonly cols: number;
  /** The [K, K] buffer (upper tiles valid). */
  readonly buffer: Tensor;
  /** Rows sampled per call at most (about; 0: every row). */
  readonly maxRowsPerCall: number;
  #rows = 0;

  /** Allocates a zero [K, K] buffer. */
  constructor(rt: Runtime, cols: number, maxRowsPerCall = 0) {
    if (!Number.isInteger(cols) || cols < 1) {
      throw new RangeError(`cols must be a positive integer, got ${cols}`);
    }
    if (!Number.isInteger(maxRowsPerCall) || maxRowsPerCall < 0) {
      throw new RangeError(`maxRowsPerCall must be an integer ≥ 0, got ${maxRowsPerCall}`);
    }
    this.maxRowsPerCall = maxRowsPerCall;
    this.cols = cols;
    this.buffer = uploadTensor(rt, new Float32Array(cols * cols), [cols, cols]); // pooled buffers are not zeroed
  }

  /** Rows added so far (the sampled ones). */
  get rows(): number {
    return this.#rows;
  }

  /** Records the addition of x [..., K] (its sampled rows). */
  record(rec: Recorder, x: Tensor): void {
    const M = x.size / this.cols;
    const s = gramStride(M, this.maxRowsPerCall);
    actGram(rec, x, this.buffer, s);
    this.#rows += Math.ceil(M / s);
  }

  /** Reads G [K, K] back, mirrored to a full symmetric matrix (after the recorded work). */
  async read(rt: Runtime): Promise<Float32Array> {
    return mirrorUpper(await readTensor(rt, this.buffer), this.cols);
  }

  /** Frees the buffer. */
  release(): void {
    this.buffer.release();
  }
}

/** Copies the upper triangle of g [K, K] onto the lower one (in place) and returns g. */
export function mirrorUpper(g: Float32Array, K: number): Float32Array {
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < i; j++) g[i * K + j] = g[j * K + i];
  }
  return g;
}

/**
 * Largest |got − ref| at (i, j) relative to √(ref_ii·ref_jj), the scale that bounds an
 * entry's f32 rounding (Cauchy–Schwarz); NaN counts as infinite.
 */
export function gramError(got: ArrayLike<number>, ref: ArrayLike<number>, K: number): number {
  let m = 0;
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < K; j++) {
      const scale = Math.sqrt(ref[i * K + i] * ref[j * K + j]) || 1;
      const e = Math.abs(got[i * K + j] - ref[i * K + j]) / scale;
      if (!(e <= m)) m = e;
    }
  }
  return Number.isNaN(m) ? Infinity : m;
}

/** Self-check for `deno task doctor`: two additions of odd shapes against the reference. */
export async function actGramSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const [M, K] = [37, 21];
  const g = new Prng(41);
  const a = g.normals(M * K);
  const b = g.normals(3 * K).map((v) => 2 * v - 1);
  const acc = new ActGramAccumulator(rt, K);
  const rec = new Recorder(rt);
  acc.record(rec, uploadTensor(rt, a, [M, K]));
  acc.record(rec, uploadTensor(rt, b, [3, K]));
  await rec.submit();
  const got = await acc.read(rt);
  acc.release();
  const rel = gramError(got, gramRef(b, 3, K, gramRef(a, M, K)), K);
  return [{ name: "act_gram_f32", ok: rel <= 1e-5, maxError: rel, tolerance: 1e-5 }];
}
