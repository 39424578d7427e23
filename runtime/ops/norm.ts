/**
 * Normalisations: LayerNorm (optional affine) fused with PixArt's adaLN modulation, and
 * RMSNorm over groups of columns (FLUX's per-head q/k norm), in f32 math over f32 or f16
 * storage.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { layerNormRef, rmsNormRef } from "../reference/norm.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";
import lnSrc from "../../wgsl/norm.wgsl" with { type: "text" };
import rmsSrc from "../../wgsl/rms_norm.wgsl" with { type: "text" };

/**
 * PixArt's adaLN-single modulation `y·(1 + scale[b]) + shift[b]`, read from chunks of a
 * per-batch tensor without copies. Chunk i is columns [i·C, (i+1)·C) of `emb` (or all of
 * it when `emb` is [B, C], as PixArt's final layer broadcasts `embedded_timestep`),
 * plus row i of `table` when given. The block's norm1 is `{ emb: t, table:
 * scale_shift_table, shift: 0, scale: 1 }`, norm2 `{ …, shift: 3, scale: 4 }`, where t is
 * the [B, 6·C] timestep projection.
 */
export interface AdaModulation {
  /** Per-batch rows [B, S] with S = C or S ≥ (chunk + 1)·C; rows of x are B groups of M/B. */
  emb: Tensor;
  /** Chunk index of shift. */
  shift: number;
  /** Chunk index of scale. */
  scale: number;
  /** Learned rows [R, C] added to the chunks (PixArt's scale_shift_table). */
  table?: Tensor;
}

/** Options of {@linkcode layerNorm}. */
export interface LayerNormOptions {
  /** Added to the variance; default 1e-6 (PixArt's norm1/norm2/norm_out). */
  eps?: number;
  /** Affine weight [C]. */
  weight?: Tensor;
  /** Affine bias [C]. */
  bias?: Tensor;
  /** adaLN modulation, applied after the affine. */
  modulation?: AdaModulation;
  /** Where to write (x's shape and dtype); must not be x. */
  out?: Tensor;
}

interface LnParams {
  wg: number;
  rows: number;
  c: number;
  rowsPerBatch: number;
  flags: number;
  eps: number;
  embRow: number;
  shiftCol: number;
  scaleCol: number;
  shiftT: number;
  scaleT: number;
}

interface RmsParams {
  wg: number;
  groups: number;
  g: number;
  groupsPerRow: number;
  flags: number;
  xRow: number;
  col: number;
  outRow: number;
  outCol: number;
  eps: number;
}

const lnSpecs = new Map<StorageType, KernelSpec<LnParams>>();
const rmsSpecs = new Map<StorageType, KernelSpec<RmsParams>>();

/** The LayerNorm kernel spec for a storage type. */
export function layerNormSpec(storage: StorageType): KernelSpec<LnParams> {
  let spec = lnSpecs.get(storage);
  if (!spec) {
    const c = composeWgsl(lnSrc, { storage });
    spec = {
      name: `layer_norm_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read", "read", "read", "read_write"],
      constants: (p) => ({ WG: p.wg }),
      uniform: {
        fields: ["u32", "u32", "u32", "u32", "f32", "u32", "u32", "u32", "u32", "u32"],
        values: (p) => [
          ...[p.rows, p.c, p.rowsPerBatch, p.flags],
          ...[p.eps, p.embRow, p.shiftCol, p.scaleCol],
          ...[p.shiftT, p.scaleT],
        ],
      },
      dispatch: (p) => grid1d(p.rows),
    };
    lnSpecs.set(storage, spec);
  }
  return spec;
}

/** The RMSNorm kernel spec for a storage type. */
export function rmsNormSpec(storage: StorageType): KernelSpec<RmsParams> {
  let spec = rmsSpecs.get(storage);
  if (!spec) {
    const c = composeWgsl(rmsSrc, { storage });
    spec = {
      name: `rms_norm_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read_write", "read", "read_write"],
      constants: (p) => ({ WG: p.wg }),
      uniform: {
        fields: ["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32", "f32"],
        values: (p) => [
          ...[p.groups, p.g, p.groupsPerRow, p.flags],
          ...[p.xRow, p.col, p.outRow, p.outCol],
          p.eps,
        ],
      },
      dispatch: (p) => grid1d(p.groups),
    };
    rmsSpecs.set(storage, spec);
  }
  return spec;
}

/** Threads for rows of n elements: ~4 elements per thread, a power of two in 32..256. */
export function rowThreads(rt: Runtime, n: number): number {
  // CPU adapters run a workgroup as a loop over 8-lane batches; barriers switch between
  // them, so fewer threads with longer loops are cheaper there.
  const max = rt.info.fallback ? 64 : 256;
  return Math.min(max, Math.max(32, 2 ** Math.ceil(Math.log2(Math.max(1, n / 4)))));
}

function floatDtype(op: string, x: Tensor): StorageType {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`${op}: x must be f32 or f16, got ${x.dtype}`);
  }
  return x.dtype;
}

function checkVector(op: string, name: string, t: Tensor | undefined, n: number, dtype: string) {
  if (!t) return;
  if (t.size !== n) {
    throw new RangeError(`${op}: ${name} must have ${n} elements, got [${t.shape}]`);
  }
  if (t.dtype !== dtype) throw new TypeError(`${op}: x is ${dtype} but ${name} is ${t.dtype}`);
}

function checkEps(op: string, eps: number): void {
  if (!(eps >= 0) || !Number.isFinite(eps)) {
    throw new RangeError(`${op}: eps must be a finite number ≥ 0, got ${eps}`);
  }
}

/**
 * Records LayerNorm over the last dim C of x [..., C]:
 * `(x − mean)/√(var + eps) [·weight + bias] [·(1 + scale[b]) + shift[b]]`.
 */
export function layerNorm(rec: Recorder, x: Tensor, opts: LayerNormOptions = {}): Tensor {
  const op = "layerNorm";
  const dtype = floatDtype(op, x);
  const C = x.shape[x.shape.length - 1] ?? 0;
  if (x.shape.length < 1 || C < 1) {
    throw new RangeError(`${op}: x must be [..., C], got [${x.shape}]`);
  }
  const rows = x.size / C;
  const eps = opts.eps ?? 1e-6;
  checkEps(op, eps);
  checkVector(op, "weight", opts.weight, C, dtype);
  checkVector(op, "bias", opts.bias, C, dtype);
  let flags = (opts.weight ? 1 : 0) | (opts.bias ? 2 : 0);
  let rowsPerBatch = rows;
  let embRow = 0;
  let shiftCol = 0;
  let scaleCol = 0;
  const md = opts.modulation;
  if (md) {
    flags |= 4;
    const es = md.emb.shape;
    if (es.length !== 2 || es[0] < 1) {
      throw new RangeError(`${op}: modulation.emb must be [B, S], got [${es}]`);
    }
    if (md.emb.dtype !== dtype) {
      throw new TypeError(`${op}: x is ${dtype} but modulation.emb is ${md.emb.dtype}`);
    }
    const [B, S] = es;
    if (rows % B !== 0 || (x.shape.length === 3 && x.shape[0] !== B)) {
      throw new RangeError(
        `${op}: x [${x.shape}] does not split into the ${B} batches of modulation.emb`,
      );
    }
    rowsPerBatch = rows / B;
    embRow = S;
    for (const [name, idx] of [["shift", md.shift], ["scale", md.scale]] as const) {
      if (!Number.isInteger(idx) || idx < 0 || (S !== C && (idx + 1) * C > S)) {
        throw new RangeError(
          `${op}: modulation.${name} chunk ${idx} is outside emb [${es}] (C = ${C})`,
        );
      }
      if (md.table && (md.table.size % C !== 0 || (idx + 1) * C > md.table.size)) {
        throw new RangeError(
          `${op}: modulation.${name} row ${idx} is outside table [${md.table.shape}]`,
        );
      }
    }
    shiftCol = S === C ? 0 : md.shift * C;
    scaleCol = S === C ? 0 : md.scale * C;
    if (md.table) {
      if (md.table.dtype !== dtype) {
        throw new TypeError(`${op}: x is ${dtype} but modulation.table is ${md.table.dtype}`);
      }
      flags |= 8;
    }
  }
  const out = opts.out ?? createTensor(rec.runtime, x.shape, dtype);
  if (out.size !== x.size || out.dtype !== dtype) {
    throw new RangeError(`${op}: out must be [${x.shape}] ${dtype}`);
  }
  const inputs = [x, opts.weight, opts.bias, md?.emb, md?.table];
  if (inputs.some((t) => t?.buffer === out.buffer)) {
    throw new RangeError(`${op}: out must not share a buffer with an input`);
  }
  rec.dispatch(
    layerNormSpec(dtype),
    {
      wg: rowThreads(rec.runtime, C),
      rows,
      c: C,
      rowsPerBatch,
      flags,
      eps,
      embRow,
      shiftCol,
      scaleCol,
      shiftT: (md?.shift ?? 0) * C,
      scaleT: (md?.scale ?? 0) * C,
    },
    [x, opts.weight ?? x, opts.bias ?? x, md?.emb ?? x, md?.table ?? x, out],
  );
  return out;
}

/** Options of {@linkcode rmsNorm}. */
export interface RmsNormOptions {
  /** Added to the mean square; default 1e-6 (FLUX's q/k norms). */
  eps?: number;
  /** Weight [groupSize]. */
  weight?: Tensor;
  /** Columns normalised together (FLUX: the head dim); default `width`. */
  groupSize?: number;
  /** First column normalised (e.g. H·D for k inside a fused qkv row); default 0. */
  column?: number;
  /** Columns normalised, a multiple of groupSize; default W − column. */
  width?: number;
  /**
   * Where to write: x itself (in place: only the normalised columns change), or a tensor
   * of [rows, width] elements. Default a new tensor [..., width].
   */
  out?: Tensor;
}

/**
 * Records RMSNorm `x·rsqrt(mean(x²) + eps) [·weight]` over groups of `groupSize` columns
 * within columns [column, column + width) of the rows of x [..., W].
 */
export function rmsNorm(rec: Recorder, x: Tensor, opts: RmsNormOptions = {}): Tensor {
  const op = "rmsNorm";
  const dtype = floatDtype(op, x);
  const W = x.shape[x.shape.length - 1] ?? 0;
  if (x.shape.length < 1 || W < 1) {
    throw new RangeError(`${op}: x must be [..., W], got [${x.shape}]`);
  }
  const rows = x.size / W;
  const col = opts.column ?? 0;
  const width = opts.width ?? W - col;
  const g = opts.groupSize ?? width;
  if (
    !Number.isInteger(col) || !Number.isInteger(width) || col < 0 || width < 1 || col + width > W
  ) {
    throw new RangeError(`${op}: columns ${col}..${col + width} do not fit rows of ${W}`);
  }
  if (!Number.isInteger(g) || g < 1 || width % g !== 0) {
    throw new RangeError(`${op}: groupSize ${g} does not divide width ${width}`);
  }
  const eps = opts.eps ?? 1e-6;
  checkEps(op, eps);
  checkVector(op, "weight", opts.weight, g, dtype);
  const inPlace = opts.out === x;
  const out = opts.out ?? createTensor(rec.runtime, [...x.shape.slice(0, -1), width], dtype);
  if (!inPlace && (out.size !== rows * width || out.dtype !== dtype)) {
    throw new RangeError(`${op}: out must be x or have ${rows}×${width} ${dtype} elements`);
  }
  if (!inPlace && out.buffer === x.buffer) {
    throw new RangeError(`${op}: out shares x's buffer but is not x`);
  }
  if (opts.weight && (opts.weight.buffer === x.buffer || opts.weight.buffer === out.buffer)) {
    throw new RangeError(`${op}: weight must not share a buffer with x or out`);
  }
  const groupsPerRow = width / g;
  // Without a weight, its read-only slot needs a buffer other than the writable x/out.
  const dummy = opts.weight ? undefined : createTensor(rec.runtime, [1], dtype);
  rec.dispatch(
    rmsNormSpec(dtype),
    {
      wg: rowThreads(rec.runtime, g),
      groups: rows * groupsPerRow,
      g,
      groupsPerRow,
      flags: opts.weight ? 1 : 0,
      xRow: W,
      col,
      outRow: inPlace ? W : width,
      outCol: inPlace ? col : 0,
      eps,
    },
    [x, opts.weight ?? dummy!, out],
  );
  dummy?.release(); // recorded work keeps it valid until it has run
  return out;
}

/** Self-check for doctor: LayerNorm with modulation and grouped RMSNorm, small shapes. */
export async function normSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const g = new Prng(21);
  const [B, T, C] = [2, 3, 40];
  const xs = g.normals(B * T * C).map((v) => v * 2 + 3);
  const es = g.normals(B * 6 * C);
  const x = uploadTensor(rt, xs, [B, T, C]);
  const emb = uploadTensor(rt, es, [B, 6 * C]);
  const rec = new Recorder(rt);
  const ln = layerNorm(rec, x, { modulation: { emb, shift: 3, scale: 4 } });
  const rms = rmsNorm(rec, x, { groupSize: 8 });
  await rec.submit();
  const lnErr = maxError(
    await readTensor(rt, ln),
    layerNormRef(xs, C, { modulation: { emb: es, embWidth: 6 * C, shift: 3, scale: 4 } }),
  );
  const rmsErr = maxError(await readTensor(rt, rms), rmsNormRef(xs, C, { groupSize: 8 }));
  const tol = 1e-4;
  return [
    { name: "layer_norm_f32", ok: lnErr <= tol, maxError: lnErr, tolerance: tol },
    { name: "rms_norm_f32", ok: rmsErr <= tol, maxError: rmsErr, tolerance: tol },
  ];
}
