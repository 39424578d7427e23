/**
 * Kernel specs of the PARO attention ops (runtime/ops/attn_sparse.ts): K mean,
 * quantize-to-blocks, the integer block-sparse kernel (native or emulated dot4I8Packed)
 * and the float block-sparse kernel.
 *
 * @module
 */
import { composeWgsl, expandMarkers, type StorageType } from "../gpu/compose.ts";
import type { KernelSpec } from "../gpu/kernel.ts";
import { BLOCK } from "../quant/paro_plan.ts";
import { paddedHeadDim } from "../reference/attn_sparse.ts";
import kmeanSrc from "../../wgsl/attn_sparse_kmean.wgsl" with { type: "text" };
import quantSrc from "../../wgsl/attn_sparse_quant.wgsl" with { type: "text" };
import sparseSrc from "../../wgsl/attn_sparse.wgsl" with { type: "text" };
import sparseIoSrc from "../../wgsl/attn_sparse_io.wgsl" with { type: "text" };
import sparseFSrc from "../../wgsl/attn_sparse_f.wgsl" with { type: "text" };
import stepSrc from "../../wgsl/attention_rows_step.wgsl" with { type: "text" };

/** Where heads sit in a [B, T, W] operand: column offset, row stride, batch stride. */
export interface Layout {
  off: number;
  row: number;
  batch: number;
}

/** Tokens per chunk of the K-mean's first pass (its partial sums, added in chunk order). */
export const KMEAN_CHUNK = 64;

/** Launch params of the K-mean kernels. */
export interface KmeanParams {
  t: number;
  hd: number;
  h: number;
  b: number;
  l: Layout;
}

/** Chunks of the K-mean's first pass: ⌈T / KMEAN_CHUNK⌉. */
export function kmeanChunks(t: number): number {
  return Math.ceil(t / KMEAN_CHUNK);
}

const kmeanSpecs = new Map<string, KernelSpec<KmeanParams>>();

/**
 * The K-mean kernels: "partial" sums chunks of KMEAN_CHUNK tokens (one workgroup per
 * chunk, head and batch item) into part [B, H, nch, hd]; "total" adds the chunks in order
 * and divides by T (one workgroup per head and batch item). Bindings: params, k, part, mean.
 */
export function kmeanSpec(
  storage: StorageType,
  pass: "partial" | "total",
): KernelSpec<KmeanParams> {
  const key = `${storage}:${pass}`;
  let spec = kmeanSpecs.get(key);
  if (!spec) {
    const c = composeWgsl(kmeanSrc, { storage });
    spec = {
      name: `attn_sparse_kmean_${pass}_${storage}`,
      source: c.source,
      entryPoint: pass,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read_write", "read_write"],
      constants: () => ({ WG: 256 }),
      uniform: {
        fields: ["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32"],
        values: (p) => [
          ...[p.t, p.hd, p.h, p.l.off],
          ...[p.l.row, p.l.batch, KMEAN_CHUNK, kmeanChunks(p.t)],
        ],
      },
      dispatch: (p) => pass === "partial" ? [kmeanChunks(p.t), p.h, p.b] : [p.h, p.b],
    };
    kmeanSpecs.set(key, spec);
  }
  return spec;
}

/** Launch params of the quantize-to-blocks kernel (one of q, k, v). */
export interface QuantParams {
  t: number;
  nb: number;
  h: number;
  b: number;
  hd: number;
  l: Layout;
  useMean: boolean;
  sOff: number;
  transpose: boolean;
  qmax: number;
}

const quantSpecs = new Map<StorageType, KernelSpec<QuantParams>>();

/**
 * The quantize-to-blocks kernel: one workgroup of 256 threads per block, head and batch
 * item, DP/16 code words per thread (NJ, compiled in).
 */
export function quantSpec(storage: StorageType): KernelSpec<QuantParams> {
  let spec = quantSpecs.get(storage);
  if (!spec) {
    const c = composeWgsl(quantSrc, { storage });
    spec = {
      name: `attn_sparse_quant_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read", "read_write", "read_write"],
      constants: (p) => ({ NJ: paddedHeadDim(p.hd) / 16 }),
      uniform: {
        fields: [
          ...["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32"],
          ...["u32", "u32", "u32", "f32"],
        ] as const,
        values: (p) => [
          ...[p.t, p.nb, p.h, p.hd],
          ...[p.l.off, p.l.row, p.l.batch, p.useMean ? 1 : 0],
          ...[p.sOff, paddedHeadDim(p.hd) / 4, p.transpose ? 1 : 0, p.qmax],
        ],
      },
      dispatch: (p) => [p.nb, p.h, p.b],
    };
    quantSpecs.set(storage, spec);
  }
  return spec;
}

const DOT4_NATIVE = "fn dot4(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }";
const DOT4_EMULATED = `fn dot4(a: u32, b: u32) -> i32 {
  let x = bitcast<i32>(a);
  let y = bitcast<i32>(b);
  return extractBits(x, 0u, 8u) * extractBits(y, 0u, 8u) +
    extractBits(x, 8u, 8u) * extractBits(y, 8u, 8u) +
    extractBits(x, 16u, 8u) * extractBits(y, 16u, 8u) +
    extractBits(x, 24u, 8u) * extractBits(y, 24u, 8u);
}`;

/** WGSL `fn dot4(a: u32, b: u32) -> i32`: dot4I8Packed, or its emulation with shifts and multiplies. */
export function dot4Lib(emulate: boolean): string {
  return emulate ? DOT4_EMULATED : DOT4_NATIVE;
}

/** What both integer kernels compose in: dot4 and their bindings with dot16. */
export function sparseLibs(emulate: boolean): string[] {
  return [dot4Lib(emulate), sparseIoSrc];
}

/** Launch params both block-sparse kernels (integer and float) take. */
export interface BlockLaunch {
  t: number;
  nb: number;
  mw: number;
  h: number;
  b: number;
  hd: number;
  mOff: number;
  mHead: number;
  scaleLog2: number;
}

/** Launch params of the integer block-sparse kernel. */
export interface SparseParams extends BlockLaunch {
  sStride: number;
  wg: number;
  rpt: number;
  pblock: boolean;
  qp: number;
  dyn: boolean;
}

const sparseSpecs = new Map<string, KernelSpec<SparseParams>>();

/** The integer block-sparse kernel, on dot4I8Packed or its emulation. */
export function sparseSpec(storage: StorageType, emulate: boolean): KernelSpec<SparseParams> {
  const key = `${storage}:${emulate}`;
  let spec = sparseSpecs.get(key);
  if (!spec) {
    const c = composeWgsl(sparseSrc, { storage, libs: sparseLibs(emulate) });
    spec = {
      name: `attn_sparse_${storage}${emulate ? "_emu" : ""}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read", "read", "read", "read", "read_write"],
      constants: (p) => ({
        HD: p.dyn ? 0 : p.hd,
        DP4: p.dyn ? 32 : paddedHeadDim(p.hd) / 4,
        WG: p.wg,
        RPT: p.rpt,
      }),
      uniform: {
        fields: [
          ...["u32", "u32", "u32", "u32"],
          ...["u32", "u32", "u32", "u32"],
          ...["u32", "u32", "f32", "u32"],
          ...["u32", "u32", "u32", "f32"],
        ] as const,
        values: (p) => [
          ...[p.t, p.nb, p.mw, p.h],
          ...[p.mOff, p.mHead, 0, p.h * p.hd],
          ...[p.t * p.h * p.hd, p.sStride, p.scaleLog2, BLOCK / (p.wg * p.rpt)],
          ...[p.hd, BLOCK, p.pblock ? 1 : 0, p.qp],
        ],
      },
      dispatch: (p) => [p.nb * (BLOCK / (p.wg * p.rpt)), p.h, p.b],
    };
    sparseSpecs.set(key, spec);
  }
  return spec;
}

/** Launch params of the float block-sparse kernel. */
export interface SparseFParams extends BlockLaunch {
  wg: number;
  rpt: number;
  bk: number;
  dyn: boolean;
  l: Layout[];
}

const sparseFSpecs = new Map<StorageType, KernelSpec<SparseFParams>>();

/** The float block-sparse kernel. */
export function sparseFSpec(storage: StorageType): KernelSpec<SparseFParams> {
  let spec = sparseFSpecs.get(storage);
  if (!spec) {
    const kernel = expandMarkers(
      sparseFSrc,
      { rows_step8: stepSrc.trimEnd().split("\n") },
      "attn_sparse_f.wgsl",
    );
    const c = composeWgsl(kernel, { storage });
    spec = {
      name: `attn_sparse_f_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read", "read", "read", "read_write"],
      constants: (p) => ({ HD: p.dyn ? 0 : p.hd, BK: p.bk, WG: p.wg, RPT: p.rpt }),
      uniform: {
        fields: [
          ...["u32", "u32", "u32", "u32", "u32", "u32", "u32", "f32"],
          ...Array(16).fill("u32"),
        ] as const,
        values: (p) => {
          const [q, k, v] = p.l;
          return [
            ...[p.t, p.nb, p.mw, p.h, p.mOff, p.mHead, BLOCK / (p.wg * p.rpt), p.scaleLog2],
            ...[q.off, q.row, q.batch, 0],
            ...[k.off, k.row, k.batch, p.h * p.hd],
            ...[v.off, v.row, v.batch, p.t * p.h * p.hd],
            ...[p.hd, 0, 0, 0],
          ];
        },
      },
      dispatch: (p) => [p.nb * (BLOCK / (p.wg * p.rpt)), p.h, p.b],
    };
    sparseFSpecs.set(storage, spec);
  }
  return spec;
}
