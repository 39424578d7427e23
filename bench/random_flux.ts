/**
 * Random FLUX weights by name for the FLUX step benchmark (bench/flux_step_bench.ts),
 * served through the TensorSource interface so the model loads through its normal path
 * without a file: per fan-in a pool of Gaussian values with Student-t tails, tiled over
 * each matrix (BENCHMARKS.md: "Gaussian with Student-t tails").
 *
 * @module
 */
import type { TensorInfo, TensorSource } from "../runtime/io/safetensors.ts";
import { f32ToF16Bits } from "../runtime/io/f16.ts";
import { Prng } from "../runtime/io/prng.ts";
import { type FluxConfig, fluxWeightShapes } from "../plugins/models/flux_config.ts";
import { f32TensorInfos } from "./random_model.ts";

// Distinct random values per fan-in: 4M on GPUs (tiled over larger matrices), 64K on CPUs.
let POOL = 1 << 16;
const pools = new Map<number, Float32Array>();

/** Sets the pool size (4M on GPUs, where matrices are large; 64K on CPUs); clears the pools. */
export function setFluxPoolSize(n: number): void {
  POOL = n;
  pools.clear();
}

/**
 * POOL weights of std 1/√fanIn: Gaussian with Student-t tails (1 % of the entries drawn
 * from t with 4 degrees of freedom), as BENCHMARKS.md asks of shape benchmarks.
 */
function pool(fanIn: number): Float32Array {
  let p = pools.get(fanIn);
  if (!p) {
    const g = new Prng(fanIn);
    p = new Float32Array(POOL);
    const s = 1 / Math.sqrt(fanIn);
    for (let i = 0; i < POOL; i++) {
      let v = g.normal();
      if (g.uniform() < 0.01) {
        let chi = 0;
        for (let k = 0; k < 4; k++) chi += g.normal() ** 2;
        v /= Math.sqrt(chi / 4);
      }
      p[i] = v * s;
    }
    pools.set(fanIn, p);
  }
  return p;
}

/** Random FLUX weights by name (tiled from per-fan-in pools), without a file. */
export class RandomFluxSource implements TensorSource {
  readonly path = "random FLUX weights";
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>> = {};
  #shapes: Map<string, number[]>;

  constructor(c: FluxConfig) {
    this.#shapes = fluxWeightShapes(c);
    this.tensors = f32TensorInfos(this.#shapes, this.path);
  }

  readF32(name: string): Promise<Float32Array> {
    const shape = this.#shapes.get(name);
    if (!shape) throw new RangeError(`no tensor ${name}`);
    const n = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    if (name.endsWith(".bias")) {
      out.set(pool(2500).subarray(0, n)); // std 0.02
    } else if (shape.length === 1) {
      out.fill(1); // RMSNorm weights
    } else {
      const p = pool(shape[1]);
      let off = (name.length * 7919) % POOL;
      for (let i = 0; i < n;) {
        const k = Math.min(n - i, POOL - off);
        out.set(p.subarray(off, off + k), i);
        i += k;
        off = 0;
      }
    }
    return Promise.resolve(out);
  }

  async readF16Bits(name: string): Promise<Uint16Array> {
    return f32ToF16Bits(await this.readF32(name));
  }

  readRaw(name: string): Promise<Uint8Array> {
    return this.readF32(name).then((a) => new Uint8Array(a.buffer));
  }

  async readRange(name: string, begin: number, end: number): Promise<Uint8Array> {
    return (await this.readRaw(name)).subarray(begin, end);
  }

  close(): void {}

  [Symbol.dispose](): void {}
}
