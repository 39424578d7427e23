/**
 * Elementwise kernels: axpby, mul, affine, SiLU, GELU (tanh), row-broadcast add, copy,
 * clamp, a per-group row subtraction (activation centring), and two row-slice gathers
 * (cfg, gatherRows) for classifier-free guidance.
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
  clamp: 7,
  cfg: 8,
  gatherRows: 9,
  subGroupRow: 10,
  subPairGroupRow: 11,
} as const;

/** An elementwise op name. */
export type ElementwiseOp = keyof typeof ELEMENTWISE_OPS;

interface Params {
  op: ElementwiseOp;
  n: number;
  alpha: number;
  beta: number;
  width: number;
  stride: number;
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
        fields: ["u32", "f32", "f32", "u32", "u32"],
        values: (p) => [p.n, p.alpha, p.beta, p.width, p.stride],
      },
      dispatch: (p) => grid1d(Math.ceil(p.n / WG)),
    };
    specs.set(storage, spec);
  }
  return spec;
}

/** Options of {@linkcode elementwise}. */
export interface ElementwiseOptions {
  /** The second operand (axpby, mul, addRow, subGroupRow). */
  y?: Tensor;
  /** alpha (axpby: α·x + β·y; affine: α·x + β; clamp: lower bound; cfg: scale). Default 1. */
  alpha?: number;
  /** beta. Default 1 for axpby, 0 for affine; clamp: the upper bound. */
  beta?: number;
  /**
   * cfg / gatherRows: x is read as rows of `stride` elements of which the first `width`
   * are kept (out[r·width + c] = x[r·stride + c]); cfg reads the first half of x's rows
   * as u, the second half as c, and writes u + alpha·(c − u).
   */
  width?: number;
  /** cfg / gatherRows: elements per source row (≥ width). Default width. */
  stride?: number;
  /**
   * subGroupRow: x is [G·rowsPerGroup, K] and y [G, K]; out = x − y's row of each row's
   * group (row ⌊r / rowsPerGroup⌋). subPairGroupRow: the same of [u; c − u] for x = [u; c]
   * (halves of its elements, a CFG pair).
   */
  rowsPerGroup?: number;
  /** cfg / gatherRows: the output shape when `out` is not given. Default [rows·width]. */
  shape?: readonly number[];
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
  if (op === "cfg" || op === "gatherRows") return gatherRows(rec, op, x, o);
  if (op === "clamp" && (o.alpha === undefined || o.beta === undefined)) {
    throw new TypeError('elementwise "clamp" needs alpha (low) and beta (high)');
  }
  const grouped = op === "subGroupRow" || op === "subPairGroupRow";
  const needsY = op === "axpby" || op === "mul" || op === "addRow" || grouped;
  if (needsY && !o.y) throw new TypeError(`elementwise "${op}" needs y`);
  const y = o.y ?? x;
  if (y.dtype !== x.dtype) throw new TypeError(`x is ${x.dtype} but y is ${y.dtype}`);
  let stride = 0;
  let width = y.size;
  if (op === "addRow") {
    if (x.size % y.size !== 0) {
      throw new RangeError(`addRow: row of ${y.size} does not divide ${x.size}`);
    }
  } else if (grouped) {
    const K = x.shape[x.shape.length - 1] ?? 0;
    const R = o.rowsPerGroup ?? 0;
    if (!Number.isInteger(R) || R < 1 || K < 1 || x.size % (R * K) !== 0) {
      throw new RangeError(
        `${op}: rowsPerGroup ${R} does not split x [${x.shape}] into whole groups`,
      );
    }
    const G = x.size / (R * K);
    if (op === "subPairGroupRow" && G % 2 !== 0) {
      throw new RangeError(`${op}: ${G} groups are not a CFG pair (an even number)`);
    }
    if (y.size !== G * K) throw new RangeError(`${op}: y must be [${G}, ${K}], got [${y.shape}]`);
    stride = R;
    width = K;
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
    {
      op,
      n: x.size,
      alpha: o.alpha ?? 1,
      beta,
      width,
      stride,
    },
    [x, y, out],
  );
  return out;
}

/** The row-slice ops: cfg (two batch halves combined) and gatherRows. */
function gatherRows(
  rec: Recorder,
  op: "cfg" | "gatherRows",
  x: Tensor,
  o: ElementwiseOptions,
): Tensor {
  const dtype = x.dtype;
  if (dtype !== "f32" && dtype !== "f16") {
    throw new TypeError(`elementwise needs f32/f16, got ${dtype}`);
  }
  const width = o.width;
  const stride = o.stride ?? width;
  if (width === undefined || !Number.isInteger(width) || width < 1) {
    throw new TypeError(`elementwise "${op}" needs an integer width ≥ 1, got ${width}`);
  }
  if (stride === undefined || !Number.isInteger(stride) || stride < width) {
    throw new RangeError(`elementwise "${op}": stride must be an integer ≥ width, got ${stride}`);
  }
  const halves = op === "cfg" ? 2 : 1;
  if (x.size % (halves * stride) !== 0) {
    throw new RangeError(
      `elementwise "${op}": x has ${x.size} elements, not a multiple of ${halves}·${stride}`,
    );
  }
  const n = (x.size / (halves * stride)) * width;
  const out = o.out ?? createTensor(rec.runtime, o.shape ?? [n], x.dtype);
  if (out.size !== n || out.dtype !== x.dtype) {
    throw new RangeError(`elementwise "${op}": out must have ${n} ${x.dtype} elements`);
  }
  if (out.buffer === x.buffer) {
    throw new RangeError("elementwise: out must not share a buffer with x or y");
  }
  // x is bound twice (read-only both times), which WebGPU allows.
  rec.dispatch(
    elementwiseSpec(dtype),
    { op, n, alpha: o.alpha ?? 1, beta: 0, width, stride },
    [x, x, out],
  );
  return out;
}
