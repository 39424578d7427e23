/**
 * Row softmax over the last dim, numerically stable (max-subtracted), f32 math over f32
 * or f16 storage.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { softmaxRef } from "../reference/softmax.ts";
import { rowThreads } from "./norm.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";
import src from "../../wgsl/softmax.wgsl" with { type: "text" };

interface Params {
  wg: number;
  rows: number;
  n: number;
}

const specs = new Map<StorageType, KernelSpec<Params>>();

/** The softmax kernel spec for a storage type. */
export function softmaxSpec(storage: StorageType): KernelSpec<Params> {
  let spec = specs.get(storage);
  if (!spec) {
    const c = composeWgsl(src, { storage });
    spec = {
      name: `softmax_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read_write"],
      constants: (p) => ({ WG: p.wg }),
      uniform: { fields: ["u32", "u32"], values: (p) => [p.rows, p.n] },
      dispatch: (p) => grid1d(p.rows),
    };
    specs.set(storage, spec);
  }
  return spec;
}

/** Options of {@linkcode softmax}. */
export interface SoftmaxOptions {
  /** Where to write (x's shape and dtype); must not be x. */
  out?: Tensor;
}

/**
 * Records softmax over the last dim of x [..., N]. A row of all −∞ gives NaN, as
 * torch.softmax does.
 */
export function softmax(rec: Recorder, x: Tensor, opts: SoftmaxOptions = {}): Tensor {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`softmax: x must be f32 or f16, got ${x.dtype}`);
  }
  const n = x.shape[x.shape.length - 1] ?? 0;
  if (x.shape.length < 1 || n < 1) {
    throw new RangeError(`softmax: x must be [..., N], got [${x.shape}]`);
  }
  const out = opts.out ?? createTensor(rec.runtime, x.shape, x.dtype);
  if (out.size !== x.size || out.dtype !== x.dtype) {
    throw new RangeError(`softmax: out must be [${x.shape}] ${x.dtype}`);
  }
  if (out.buffer === x.buffer) throw new RangeError("softmax: out must not share x's buffer");
  rec.dispatch(softmaxSpec(x.dtype), { wg: rowThreads(rec.runtime, n), rows: x.size / n, n }, [
    x,
    out,
  ]);
  return out;
}

/** Self-check for doctor: softmax of a few rows against the reference. */
export async function softmaxSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const xs = new Prng(22).normals(5 * 77).map((v) => v * 4);
  const x = uploadTensor(rt, xs, [5, 77]);
  const rec = new Recorder(rt);
  const y = softmax(rec, x);
  await rec.submit();
  const err = maxError(await readTensor(rt, y), softmaxRef(xs, 77));
  return [{ name: "softmax_f32", ok: err <= 1e-6, maxError: err, tolerance: 1e-6 }];
}
