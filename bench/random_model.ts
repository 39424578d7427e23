/**
 * Random-weight checkpoints for shape benchmarks (BENCHMARKS.md: "Gaussian with
 * Student-t tails"), served through the same TensorSource interface a safetensors file
 * has, so the models load through their normal path without writing GBs to disk.
 *
 * Values: σ · t₆ where t₆ is Student-t with 6 degrees of freedom scaled to unit
 * variance; σ = 1/√fan_in for weights, 0.02 for biases, 0.1 for scale-shift tables.
 * A pool of 2^20 t-samples is drawn once from the seeded PRNG; tensors index it with a
 * per-tensor xorshift stream (fast enough for billions of values).
 *
 * @module
 */
import { Prng } from "../runtime/io/prng.ts";
import type { TensorInfo, TensorSource } from "../runtime/io/safetensors.ts";

const POOL = 1 << 20;

function tPool(seed: number): Float32Array {
  const g = new Prng(seed);
  const nu = 6;
  const unit = Math.sqrt((nu - 2) / nu); // t_ν has variance ν/(ν−2)
  const out = new Float32Array(POOL);
  for (let i = 0; i < POOL; i++) {
    let chi = 0;
    for (let k = 0; k < nu; k++) chi += g.normal() ** 2;
    out[i] = (g.normal() / Math.sqrt(chi / nu)) * unit;
  }
  return out;
}

function stdOf(name: string, shape: readonly number[]): number {
  if (name.endsWith(".bias")) return 0.02;
  if (name.includes("scale_shift_table")) return 0.1;
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  return 1 / Math.sqrt(Math.max(1, fanIn));
}

/** TensorInfo of F32 tensors of the given shapes, as a file at `path` would list them. */
export function f32TensorInfos(
  shapes: ReadonlyMap<string, readonly number[]>,
  path: string,
): Map<string, TensorInfo> {
  const m = new Map<string, TensorInfo>();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    m.set(name, {
      dtype: "F32",
      shape,
      byteLength: 4 * n,
      offset: 0,
      dataOffsets: [0, 4 * n],
      file: path,
    });
  }
  return m;
}

/** A TensorSource of random tensors with the given names and shapes. */
export class RandomSource implements TensorSource {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>> = {};
  #pool: Float32Array;
  #seed: number;

  /** Random tensors for `shapes` (name → shape), all F32. */
  constructor(shapes: ReadonlyMap<string, readonly number[]>, seed = 1, label = "random") {
    this.path = `<${label}>`;
    this.#seed = seed;
    this.#pool = tPool(seed);
    this.tensors = f32TensorInfos(shapes, this.path);
  }

  readF32(name: string): Promise<Float32Array> {
    const info = this.tensors.get(name);
    if (!info) return Promise.reject(new RangeError(`No tensor ${name}`));
    const n = info.byteLength / 4;
    const out = new Float32Array(n);
    const s = stdOf(name, info.shape);
    let x = (this.#seed * 2654435761 + hash(name)) >>> 0 || 1;
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = s * this.#pool[(x >>> 0) & (POOL - 1)];
    }
    return Promise.resolve(out);
  }

  async readF16Bits(name: string): Promise<Uint16Array> {
    const f = await this.readF32(name);
    const h = new Float16Array(f.length);
    h.set(f);
    return new Uint16Array(h.buffer);
  }

  async readRaw(name: string): Promise<Uint8Array> {
    return new Uint8Array((await this.readF32(name)).buffer);
  }

  async readRange(name: string, begin: number, end: number): Promise<Uint8Array> {
    return (await this.readRaw(name)).slice(begin, end);
  }

  close(): void {}

  [Symbol.dispose](): void {}
}

function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
