/**
 * Fused rotate + per-token quantize kernels, the online side of the rotation plugins:
 *
 * - {@linkcode rotqHadamard}: x ⊙ s, then a fast Walsh–Hadamard transform of every
 *   `block`-wide block (s = random signs / (smoothing · √block)), then int8 codes + scales
 *   (runtime/ops/rotq_hadamard.ts, re-exported here);
 * - {@linkcode rotqOutlier}: x ⊙ s, block · Q1, permutation, block · Q2, then codes + scales.
 *   On GPUs one launch that keeps T token rows in workgroup memory through both stages
 *   (wgsl/rotq_outlier_fused.wgsl) where they fit (K ≤ 12 blocks); else two register-tiled
 *   block GEMMs (wgsl/rotq_outlier_tiled.wgsl, through a scratch of the permuted stage-1
 *   rows) and a quantize pass (rotq_outlier_quant.wgsl), or one row-per-workgroup kernel
 *   (wgsl/rotq_outlier.wgsl) where no tile fits. Same values.
 *
 * On GPUs each reads the activations once and writes {@linkcode QuantizedActivations} (codes
 * four per u32, one f32 scale per row). CPU adapters run barrier-free kernels instead
 * (runtime/ops/rotq_cpu.ts): the rotation into f32 rows, then actQuant.
 * {@linkcode rotateHadamard} / {@linkcode rotateOutlier} write the transformed rows instead
 * (A16 paths). CPU references: runtime/reference/rotq.ts.
 *
 * @module
 */
import { expandMarkers, type StorageType } from "../gpu/compose.ts";
import type { Runtime } from "../gpu/device.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import type { QuantizedActivations } from "../quant/transform.ts";
import type { OutlierTransformParams } from "../reference/rotq.ts";
import { invertPermutation } from "../quant/paro_orders.ts";
import { actQuant, checkActGroup, quantizedActivations } from "./act_quant.ts";
import {
  checkBits,
  dummy,
  type OutlierKernelOptions,
  type OutlierTile,
  outlierTile,
  recordTiled,
  rotqOutputs,
  rotqSpec,
  shapeOf,
  tileProblem,
  workgroupBytes,
} from "./rotq_outlier_tiled.ts";
import { fusedProblem, fusedTokens, recordFused } from "./rotq_outlier_fused.ts";
import { outlierCpuProblem, quantizeRotated, rotateOutlierCpu } from "./rotq_cpu.ts";

export { type OutlierKernelOptions, type OutlierTile, outlierTile };
export {
  hadamardChunk,
  hadamardKernel,
  type HadamardKernelOptions,
  type HadamardTransformTensors,
  rotateHadamard,
  rotqHadamard,
} from "./rotq_hadamard.ts";
export { detectFmaContraction } from "./fma_probe.ts";
import outSrc from "../../wgsl/rotq_outlier.wgsl" with { type: "text" };
import productSrc from "../../wgsl/rotq_outlier_product.wgsl" with { type: "text" };

/** GPU tensors of an outlier-aware transform. */
export interface OutlierTransformTensors {
  /** Pre-multiplier s [K] f32 (1/m). */
  s: Tensor;
  /** Q1 [block, block] f32. */
  q1: Tensor;
  /** Q2 [block, block] f32. */
  q2: Tensor;
  /** Destination of each stage-1 output [K] u32 (the inverse of the gather permutation). */
  dest: Tensor;
  /** Block size (a power of two dividing K). */
  block: number;
  /**
   * Q1·P·Q2 [K, K] f32 where K is one block (runtime/reference/rotq.ts composeOutlierQ):
   * the CPU kernel then multiplies once instead of twice (the same map, its own rounding);
   * the other kernels ignore it.
   */
  composed?: Tensor;
}

/**
 * Uploads an outlier-aware transform's parameters as the kernels take them: s, Q1, Q2, and its
 * gather permutation as their scatter `dest` (the inverse).
 */
export function uploadOutlierTransform(
  rt: Runtime,
  p: OutlierTransformParams,
): OutlierTransformTensors {
  const K = p.perm.length;
  const B = p.block;
  return {
    s: uploadTensor(rt, p.s, [K]),
    q1: uploadTensor(rt, p.q1, [B, B]),
    q2: uploadTensor(rt, p.q2, [B, B]),
    dest: uploadTensor(rt, invertPermutation(p.perm), [K], "u32"),
    block: B,
  };
}

interface Params {
  M: number;
  K: number;
  /** Hadamard: columns in workgroup memory at once (default K). */
  chunk?: number;
  words: number;
  block: number;
  quant: boolean;
  bits: number;
  wg: number;
  rows: number;
  /** Hadamard: values a scale (0: the row), and asymmetric groups. */
  group?: number;
  asym?: boolean;
}

const outSpecs = new Map<StorageType, KernelSpec<Params>>();

/** The row kernel with its block product pasted into both stages (stage 1: q1 on va, 2: q2 on vb). */
function outlierSource(): string {
  const product = (q: string, v: string) =>
    productSrc.trimEnd().replaceAll("Q_IN", q).replaceAll("V_IN", v).split("\n");
  const blocks = { product_q1_va: product("q1", "va"), product_q2_vb: product("q2", "vb") };
  return expandMarkers(outSrc, blocks, "rotq_outlier.wgsl");
}

function outlierSpec(storage: StorageType): KernelSpec<Params> {
  let spec = outSpecs.get(storage);
  if (!spec) {
    spec = rotqSpec(`rotq_outlier_${storage}`, outlierSource(), storage, [5, 3], {
      constants: (p) => ({
        B: p.block,
        ROWS: p.rows,
        NBC: 4,
        KMAX: p.K,
        QUANT: p.quant ? 1 : 0,
        BITS: p.bits,
      }),
      uniform: (p) => [p.M, p.K, p.words, 0],
      dispatch: (p) => grid1d(Math.ceil(p.M / p.rows)),
    });
    outSpecs.set(storage, spec);
  }
  return spec;
}

/** Rows per workgroup of the outlier kernel: 4, 2 or 1, as workgroup memory allows. */
export function outlierRowsPerGroup(rt: Runtime, K: number, block: number): number {
  const limit = workgroupBytes(rt);
  for (const r of [4, 2, 1]) if ((2 * r * K + r * block) * 4 <= limit) return r;
  return 0;
}

/** The kernel an outlier-aware transform runs, with its shape ({@linkcode outlierKernel}). */
export type OutlierKernel =
  | { kernel: "fused"; tokens: number }
  | { kernel: "tiled"; tile: OutlierTile }
  | { kernel: "rows"; rows: number }
  | { kernel: "cpu" };

/**
 * The kernel {@linkcode rotqOutlier} (`quant`) or {@linkcode rotateOutlier} runs for M rows
 * of K with block B on `rt`, given `opts`: on CPU adapters the CPU kernels where they can run;
 * the fused one where asked or, when quantizing, where the rows fit; else the tiled one where
 * asked, or on a GPU when a tile fits and the scratch binds; else the row kernel. Throws
 * when the asked kernel cannot run.
 */
export function outlierKernel(
  rt: Runtime,
  M: number,
  K: number,
  B: number,
  quant: boolean,
  opts: OutlierKernelOptions = {},
  what = quant ? "rotqOutlier" : "rotateOutlier",
): OutlierKernel {
  if (opts.kernel !== undefined && !["fused", "tiled", "rows", "cpu"].includes(opts.kernel)) {
    throw new RangeError(
      `${what}: opts.kernel must be "fused", "tiled", "rows" or "cpu", got ${opts.kernel}`,
    );
  }
  const chosen = opts.kernel ?? opts.tokens ?? opts.ty ?? opts.bk ?? opts.rows;
  // CPU adapters: the barrier-free kernels (512×128 on lavapipe: 3.2× the fused kernel's
  // speed), where their f32 [M, K] scratch binds.
  const cpuWhy = outlierCpuProblem(rt, M, K, B);
  if (opts.kernel === "cpu" && cpuWhy) {
    throw new RangeError(`${what}: the CPU kernels cannot run here: ${cpuWhy}`);
  }
  if (opts.kernel === "cpu" || (chosen === undefined && rt.info.fallback && !cpuWhy)) {
    return { kernel: "cpu" };
  }
  // Fused where the rows fit (GPUs).
  if (opts.kernel === "fused" || opts.tokens !== undefined) {
    if (!quant) throw new RangeError(`${what}: the fused kernel only quantizes; use "tiled"`);
    const tokens = opts.tokens ?? fusedTokens(rt, K, B);
    const why = fusedProblem(rt, K, B, tokens || 1);
    if (why) throw new RangeError(`${what}: the fused kernel cannot run here: ${why}`);
    return { kernel: "fused", tokens };
  }
  if (!opts.kernel && quant && !opts.ty && !opts.bk) {
    const tokens = fusedTokens(rt, K, B);
    if (tokens) return { kernel: "fused", tokens };
  }
  if (opts.kernel === "tiled" || opts.ty !== undefined || opts.bk !== undefined) {
    const def = outlierTile(rt, B);
    const tile = { ty: opts.ty ?? def?.ty ?? 16, bk: opts.bk ?? def?.bk ?? 16 };
    const why = tileProblem(rt, B, tile.ty, tile.bk);
    if (why) throw new RangeError(`${what}: the tiled kernel cannot run here: ${why}`);
    return { kernel: "tiled", tile };
  }
  if (opts.kernel !== "rows" && !rt.info.fallback) {
    const tile = outlierTile(rt, B);
    const maxBind = rt.bindingLimit;
    if (tile && K * Math.ceil(M / (8 * tile.ty)) * 8 * tile.ty * 4 <= maxBind) {
      return { kernel: "tiled", tile };
    }
  }
  const rows = opts.rows ?? outlierRowsPerGroup(rt, K, B);
  if (rows < 1 || rows > 4 || (2 * rows * K + rows * B) * 4 > workgroupBytes(rt)) {
    throw new RangeError(`${what}: K = ${K} does not fit this adapter's workgroup memory`);
  }
  return { kernel: "rows", rows };
}

function recordOutlier(
  rec: Recorder,
  x: Tensor,
  t: OutlierTransformTensors,
  quant: boolean,
  bits: number,
  opts: OutlierKernelOptions = {},
): { codes?: Tensor; scales?: Tensor; y?: Tensor; M: number; K: number } {
  const what = quant ? "rotqOutlier" : "rotateOutlier";
  const { M, K } = shapeOf(x, t.s, t.block, what);
  checkBits(bits);
  const B = t.block;
  if (B < 4) throw new RangeError(`${what}: block must be at least 4 (vec4 rows), got ${B}`);
  if (t.q1.size !== B * B || t.q2.size !== B * B || t.q1.dtype !== "f32" || t.q2.dtype !== "f32") {
    throw new RangeError(`${what}: q1 and q2 must be f32 [${B}, ${B}]`);
  }
  if (t.dest.size !== K || t.dest.dtype !== "u32") {
    throw new RangeError(`${what}: dest must be u32 [${K}], got ${t.dest.dtype} [${t.dest.shape}]`);
  }
  if (t.composed && (K !== B || t.composed.size !== K * K || t.composed.dtype !== "f32")) {
    throw new RangeError(`${what}: composed must be f32 [${K}, ${K}] with K one block (${B})`);
  }
  const group = quant ? opts.group ?? 0 : 0;
  const asym = quant && (opts.asym ?? false);
  checkActGroup(group, K, what, asym);
  const rt = rec.runtime;
  const words = Math.ceil(K / 4);
  const path = outlierKernel(rt, M, K, B, quant, opts, what);
  if (path.kernel === "cpu" && M > 0) {
    if (!quant) return { y: rotateOutlierCpu(rec, x, t, M, K), M, K };
    const a = quantizeRotated(rec, rotateOutlierCpu(rec, x, t, M, K, true), bits, group, asym);
    return { codes: a.q, scales: a.scales, M, K };
  }
  if (group && path.kernel !== "fused") {
    // Only the fused kernel quantizes groups: the others rotate, then actQuant.
    const y = recordOutlier(rec, x, t, false, bits, opts).y!;
    const a = actQuant(rec, y, bits, { group, asym });
    y.release(); // recorded work keeps it valid until it has run
    return { codes: a.q, scales: a.scales, M, K };
  }
  const { codes, scales, y } = rotqOutputs(rt, x, M, K, quant, group, asym);
  if (M > 0 && path.kernel === "fused") {
    const out = { codes: codes!, scales: scales! };
    recordFused(rec, x, t, path.tokens, M, K, out, bits, group, asym);
  } else if (M > 0 && path.kernel === "tiled") {
    recordTiled(rec, x, t, path.tile, M, K, { codes, scales, y }, bits);
  } else if (M > 0 && path.kernel === "rows") {
    rec.dispatch(
      outlierSpec(x.dtype as StorageType),
      { M, K, words, block: B, quant, bits, wg: B, rows: path.rows },
      [
        x,
        t.s,
        t.q1,
        t.q2,
        t.dest,
        codes ?? dummy(rt, 0),
        scales ?? dummy(rt, 1),
        y ?? dummy(rt, 2),
      ],
    );
  }
  return { codes, scales, y, M, K };
}

/**
 * Records the fused outlier-aware rotation + per-token quantization of x [..., K]
 * (f32/f16), or with `opts.group` a scale per run of that many rotated values (asymmetric
 * with `opts.asym`). `opts` picks the kernel (tests, benchmarks); a number forces the row
 * kernel with that many token rows per workgroup (1, 2 or 4). Groups are quantized in the
 * fused kernel; where the tiled or row kernel runs, its rotation goes through actQuant.
 */
export function rotqOutlier(
  rec: Recorder,
  x: Tensor,
  t: OutlierTransformTensors,
  bits = 8,
  opts?: number | OutlierKernelOptions,
): QuantizedActivations {
  const o = typeof opts === "number" ? { kernel: "rows" as const, rows: opts } : opts ?? {};
  const r = recordOutlier(rec, x, t, true, bits, o);
  return quantizedActivations(r.codes!, r.scales!, bits, r.K, o);
}

/** Records x [..., K] → ((x ⊙ s)·R1)·P·R2 (same shape and dtype), no quantization. */
export function rotateOutlier(
  rec: Recorder,
  x: Tensor,
  t: OutlierTransformTensors,
  opts?: OutlierKernelOptions,
): Tensor {
  return recordOutlier(rec, x, t, false, 8, opts).y!;
}
