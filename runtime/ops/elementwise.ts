/**
 * Elementwise kernels: axpby, mul, affine, SiLU, GELU (tanh), row-broadcast add, copy.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import src from "../../wgsl/elementwise.wgsl" with { type: "text" };

/** The elementwise ops and their OP codes in wgsl/elementwise.wgsl. */
export const ELEMENTWISE_OPS = {
  axpby: 0,
  mul: 1,
  affine: 2,
  silu: 3,
  gelu: 4,
  addRow: 5,
  copy: 6,
} as const;

/** An elementwise op name. */
export type ElementwiseOp = keyof typeof ELEMENTWISE_OPS;

interface Params {
  op: ElementwiseOp;
  n: number;
  alpha: number;
  beta: number;
  width: number;
}

const WG = 256;
const specs = new Map<StorageType, KernelSpec<Params>>();

/** The elementwise kernel spec for a storage type. */
export function elementwiseSpec(storage: StorageType): KernelSpec<Params> {
  let spec = specs.get(storage);
  if (!spec) {
    const c = composeWgsl(src, { storage });
    spec = {
      name: `elementwise_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read_write"],
      constants: (p) => ({ OP: ELEMENTWISE_OPS[p.op], WG }),
      uniform: {
        fields: ["u32", "f32", "f32", "u32"],
        values: (p) => [p.n, p.alpha, p.beta, p.width],
      },
      dispatch: (p) => grid1d(Math.ceil(p.n / WG)),
    };
    specs.set(storage, spec);
  }
  return spec;
}

/** Options of {@linkcode elementwise}. */
export interface ElementwiseOptions {
  /** The second operand (axpby, mul, addRow). */
  y?: Tensor;
  /** alpha (axpby: α·x + β·y; affine: α·x + β). Default 1. */
  alpha?: number;
  /** beta. Default 1 for axpby, 0 for affine. */
  beta?: number;
  /** Where to write; default a new tensor shaped like x. Must not share x's or y's buffer. */
  out?: Tensor;
}

/** Records one elementwise op over `x` and returns the output tensor. */
export function elementwise(
  rec: Recorder,
  op: ElementwiseOp,
  x: Tensor,
  o: ElementwiseOptions = {},
): Tensor {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`elementwise needs f32/f16, got ${x.dtype}`);
  }
  const needsY = op === "axpby" || op === "mul" || op === "addRow";
  if (needsY && !o.y) throw new TypeError(`elementwise "${op}" needs y`);
  const y = o.y ?? x;
  if (y.dtype !== x.dtype) throw new TypeError(`x is ${x.dtype} but y is ${y.dtype}`);
  if (op === "addRow") {
    if (x.size % y.size !== 0) {
      throw new RangeError(`addRow: row of ${y.size} does not divide ${x.size}`);
    }
  } else if (needsY && y.size !== x.size) {
    throw new RangeError(`elementwise "${op}": x has ${x.size} elements, y has ${y.size}`);
  }
  const out = o.out ?? createTensor(rec.runtime, x.shape, x.dtype);
  if (out.size !== x.size || out.dtype !== x.dtype) {
    throw new RangeError("elementwise: out must match x");
  }
  // WebGPU forbids one buffer bound read-only and writable in the same dispatch.
  if (out.buffer === x.buffer || out.buffer === y.buffer) {
    throw new RangeError("elementwise: out must not share a buffer with x or y");
  }
  const beta = o.beta ?? (op === "affine" ? 0 : 1);
  rec.dispatch(
    elementwiseSpec(x.dtype),
    { op, n: x.size, alpha: o.alpha ?? 1, beta, width: y.size },
    [x, y, out],
  );
  return out;
}
