/**
 * The outlier-aware rotate(+quantize)'s register-tiled GPU path (wgsl/rotq_outlier_tiled.wgsl,
 * wgsl/rotq_outlier_quant.wgsl): its tile choice, specs and recording, used by
 * {@linkcode rotqOutlier} and {@linkcode rotateOutlier} in rotq.ts (which keeps the row kernel
 * for CPU adapters), plus the small helpers every rotq path shares (specs, argument checks,
 * unused binding slots).
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import type { Runtime } from "../gpu/device.ts";
import { type BindingKind, grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { isPowerOfTwo } from "../reference/hadamard.ts";
import { qmaxOf } from "../reference/rotq.ts";
import { actScaleShape } from "./act_quant.ts";
import type { OutlierTransformTensors } from "./rotq.ts";
import tiledSrc from "../../wgsl/rotq_outlier_tiled.wgsl" with { type: "text" };
import quantSrc from "../../wgsl/rotq_outlier_quant.wgsl" with { type: "text" };
import gridSrc from "../../wgsl/quant_grid.wgsl" with { type: "text" };

// Bound to the slots a mode does not write (codes/scales when rotating, y when quantizing).
const dummies = new WeakMap<Runtime, GPUBuffer[]>();
/** A 16-byte storage buffer for binding slot i of a kernel mode that does not use it. */
export function dummy(rt: Runtime, i: number): GPUBuffer {
  let list = dummies.get(rt);
  if (!list) dummies.set(rt, list = []);
  list[i] ??= rt.device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.STORAGE,
    label: `rotq unused ${i}`,
  });
  return list[i];
}

/** The adapter's workgroup memory per workgroup, in bytes. */
export function workgroupBytes(rt: Runtime): number {
  return rt.info.limits.maxComputeWorkgroupStorageSize ?? 16384;
}

/** Checks x and a rotation's pre-multiplier s and block; returns M and K. */
export function shapeOf(
  x: Tensor,
  s: Tensor,
  block: number,
  what: string,
): { M: number; K: number } {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`${what}: x must be f32 or f16, got ${x.dtype}`);
  }
  if (x.shape.length < 1) throw new RangeError(`${what}: x must have at least one dimension`);
  const K = x.shape[x.shape.length - 1];
  if (s.dtype !== "f32" || s.size !== K) {
    throw new RangeError(`${what}: s must be f32 [${K}], got ${s.dtype} [${s.shape}]`);
  }
  if (!isPowerOfTwo(block) || K % block !== 0) {
    throw new RangeError(`${what}: block must be a power of two dividing K = ${K}, got ${block}`);
  }
  return { M: K === 0 ? 0 : x.size / K, K };
}

/** Throws a RangeError naming `bits` unless an activation quantizer takes them. */
export function checkBits(bits: number): void {
  qmaxOf(bits); // throws a RangeError naming the bits
}

/**
 * A rotation kernel's outputs for x [M, K]: with `quant` the codes (four int8 a u32) and the
 * scales (one a token, or a group's, with the zero points when asymmetric); else y, x's shape
 * and dtype.
 */
export function rotqOutputs(
  rt: Runtime,
  x: Tensor,
  M: number,
  K: number,
  quant: boolean,
  group: number,
  asym: boolean,
): { codes?: Tensor; scales?: Tensor; y?: Tensor } {
  if (!quant) return { y: createTensor(rt, x.shape, x.dtype) };
  return {
    codes: createTensor(rt, [M, Math.ceil(K / 4)], "u32"),
    scales: createTensor(rt, actScaleShape(M, K, group, asym), "f32"),
  };
}

/** The launch side of a rotq kernel spec (see {@linkcode rotqSpec}). */
export interface RotqLaunch<P> {
  /** Override constants. */
  constants(p: P): Record<string, number>;
  /** The four u32 of the params uniform. */
  uniform(p: P): readonly number[];
  /** Workgroup counts. */
  dispatch(p: P): readonly [number, number?, number?];
  /** Shared WGSL fragments besides the quantizer's (quant_grid.wgsl), e.g. rotq_mac4.wgsl. */
  libs?: readonly string[];
  /** Indices among the read-only buffers bound as uniforms ("read_uniform"). */
  uniformReads?: readonly number[];
}

/**
 * A rotq kernel spec: `src` composed for `storage`, bound as the params uniform (four u32),
 * `reads` read-only buffers, then `writes` writable ones.
 */
export function rotqSpec<P>(
  name: string,
  src: string,
  storage: StorageType,
  [reads, writes]: [number, number],
  launch: RotqLaunch<P>,
): KernelSpec<P> {
  // The quantizer arithmetic, then the kernel's own fragments.
  const c = composeWgsl(src, { storage, libs: [gridSrc, ...launch.libs ?? []] });
  const bindings: BindingKind[] = ["uniform"];
  for (let i = 0; i < reads + writes; i++) {
    bindings.push(
      i >= reads ? "read_write" : launch.uniformReads?.includes(i) ? "read_uniform" : "read",
    );
  }
  return {
    name,
    source: c.source,
    preludeLines: c.preludeLines,
    bindings,
    constants: launch.constants,
    uniform: { fields: ["u32", "u32", "u32", "u32"], values: launch.uniform },
    dispatch: launch.dispatch,
  };
}

/** Kernel choice of {@linkcode rotqOutlier} / {@linkcode rotateOutlier} (tuning, tests). */
export interface OutlierKernelOptions {
  /**
   * "fused": one launch, T token rows in workgroup memory (the default of rotqOutlier
   * where they fit); "tiled": the block-GEMM kernels (the GPU default otherwise, and of
   * rotateOutlier); "rows": the row kernel (where no tile fits on a GPU); "cpu": two
   * barrier-free block products, then actQuant (the CPU adapters' default).
   */
  kernel?: "fused" | "tiled" | "rows" | "cpu";
  /** Fused kernel: tokens per workgroup (1, 2, 4, 8 or 16); default as memory allows. */
  tokens?: number;
  /** Rows kernel: token rows per workgroup (1, 2 or 4); default as memory allows. */
  rows?: number;
  /** Tiled kernel: invocations along tokens (a tile is 8·ty tokens); default searched. */
  ty?: number;
  /** Tiled kernel: k slice (a multiple of 4 dividing the block); default searched. */
  bk?: number;
  /**
   * rotqOutlier: quantize each run of `group` rotated values on its own scale (actQuant's
   * `group`): in the fused kernel; after the tiled or row kernel's rotation otherwise.
   */
  group?: number;
  /** With a group: asymmetric levels (actQuant's `asym`). */
  asym?: boolean;
}

/** A tiled-kernel shape: ty invocations along tokens, k slices of bk. */
export interface OutlierTile {
  /** Invocations along tokens (BM = 8·ty tokens per tile). */
  ty: number;
  /** K slice. */
  bk: number;
}

/** Why (ty, bk) does not suit block B on this adapter, or "" when it does. */
export function tileProblem(rt: Runtime, B: number, ty: number, bk: number): string {
  const tx = B / 8;
  const lx = 2 * bk / tx; // vec4 loads per invocation and slice: whole numbers in 1..4
  const lw = 2 * bk / ty;
  if (B % 16 !== 0) return `block ${B} is not a multiple of 16`;
  if (!Number.isInteger(ty) || ty < 1) return `ty ${ty} is not a positive integer`;
  if (bk % 4 !== 0 || B % bk !== 0) return `bk ${bk} is not a multiple of 4 dividing ${B}`;
  if (![1, 2, 3, 4].includes(lx) || ![1, 2, 3, 4].includes(lw)) {
    return `2·bk/${tx} and 2·bk/ty must be whole numbers in 1..4 (bk ${bk}, ty ${ty})`;
  }
  const lim = rt.info.limits;
  if (tx * ty > (lim.maxComputeInvocationsPerWorkgroup ?? 256)) return "too many invocations";
  if (B / 8 > (lim.maxComputeWorkgroupSizeX ?? 256) || ty > (lim.maxComputeWorkgroupSizeY ?? 256)) {
    return "workgroup size over the adapter's limits";
  }
  if ((4 * bk * ty + bk * B / 2) * 16 > workgroupBytes(rt)) return "workgroup memory";
  return "";
}

/**
 * The tiled kernel's tile for block B: 256-invocation tiles of 128 tokens first, then
 * smaller ones; undefined when none fits (the row kernel runs instead).
 */
export function outlierTile(rt: Runtime, B: number): OutlierTile | undefined {
  for (const ty of [16, 8, 4, 2]) {
    for (const bk of [16, 8, 4]) if (!tileProblem(rt, B, ty, bk)) return { ty, bk };
  }
  return undefined;
}

interface TiledParams {
  M: number;
  K: number;
  Mp: number;
  nb: number;
  block: number;
  ty: number;
  bk: number;
  stage: number;
  quant: boolean;
}

const tiledSpecs = new Map<StorageType, KernelSpec<TiledParams>>();
function tiledSpec(storage: StorageType): KernelSpec<TiledParams> {
  let spec = tiledSpecs.get(storage);
  if (!spec) {
    spec = rotqSpec(`rotq_outlier_tiled_${storage}`, tiledSrc, storage, [4, 4], {
      constants: (p) => ({
        B: p.block,
        TY: p.ty,
        BK: p.bk,
        STAGE: p.stage,
        QUANT: p.quant || p.stage === 1 ? 1 : 0, // stage 1 ignores it: one pipeline for both
      }),
      uniform: (p) => [p.M, p.K, p.Mp, p.nb],
      dispatch: (p) => [p.nb, p.Mp / (8 * p.ty)],
    });
    tiledSpecs.set(storage, spec);
  }
  return spec;
}

interface QuantParams {
  M: number;
  words: number;
  nb: number;
  bits: number;
}

let quantSpecCache: KernelSpec<QuantParams> | undefined;
function quantSpec(): KernelSpec<QuantParams> {
  quantSpecCache ??= rotqSpec("rotq_outlier_quant", quantSrc, "f32", [2, 2], {
    constants: (p) => ({ WG: 256, BITS: p.bits }),
    uniform: (p) => [p.M, p.words, p.nb, 0],
    dispatch: (p) => grid1d(Math.ceil(p.M * p.words / 256)),
  });
  return quantSpecCache;
}

/**
 * Records the tiled path: stage 1 into t [K, Mp] (permuted, column-major), stage 2 into
 * y (rotate) or z [M, K] f32 + block maxima (quantize), then the quantize pass.
 */
export function recordTiled(
  rec: Recorder,
  x: Tensor,
  t: OutlierTransformTensors,
  tile: OutlierTile,
  M: number,
  K: number,
  out: { codes?: Tensor; scales?: Tensor; y?: Tensor },
  bits: number,
): void {
  const rt = rec.runtime;
  const B = t.block;
  const bm = 8 * tile.ty;
  const Mp = Math.ceil(M / bm) * bm;
  const nb = K / B;
  const quant = !out.y;
  const p = { M, K, Mp, nb, block: B, ty: tile.ty, bk: tile.bk, quant };
  const spec = tiledSpec(x.dtype as StorageType);
  const tt = createTensor(rt, [K, Mp], "f32");
  rec.dispatch(spec, { ...p, stage: 1 }, [
    x,
    t.s,
    t.q1,
    t.dest,
    tt,
    dummy(rt, 2),
    dummy(rt, 3),
    dummy(rt, 4),
  ]);
  const z = quant ? createTensor(rt, [M, K], "f32") : undefined;
  const part = quant ? createTensor(rt, [M, nb], "f32") : undefined;
  rec.dispatch(spec, { ...p, stage: 2 }, [
    x,
    t.s,
    t.q2,
    t.dest,
    tt,
    out.y ?? dummy(rt, 2),
    z ?? dummy(rt, 3),
    part ?? dummy(rt, 4),
  ]);
  if (z && part) {
    rec.dispatch(quantSpec(), { M, words: K / 4, nb, bits }, [z, part, out.codes!, out.scales!]);
  }
  // Recorded work keeps the scratch valid until it has run (the pool reuses it after).
  for (const s of [tt, z, part]) s?.release();
}
