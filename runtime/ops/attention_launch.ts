/**
 * What the dense attention kernels (wgsl/attention.wgsl, attention_tiled.wgsl,
 * attention_chunked.wgsl) take: the operands' layouts and sizes, and the uniform they read
 * them from (wgsl/attention_io.wgsl declares it and the bindings once for all).
 *
 * @module
 */
import type { UniformSpec } from "../gpu/kernel.ts";

/** Where the heads of one operand sit: column offset, row stride, batch stride. */
export interface Layout {
  off: number;
  row: number;
  batch: number;
}

/** Sizes and layouts of one attention launch. */
export interface AttentionLaunch {
  /** Batch, heads, head dim, query and key tokens. */
  b: number;
  h: number;
  hd: number;
  tq: number;
  tk: number;
  /** 0 none, 1 diffusers' additive bias, 2 dropped keys; the mask's batch stride. */
  maskMode: number;
  maskBatch: number;
  q: Layout;
  k: Layout;
  v: Layout;
  /** Output row and batch strides. */
  oRow: number;
  oBatch: number;
  /** Score scale · log2 e. */
  scaleLog2: number;
}

/** The uniform of every dense kernel, in the order of wgsl/attention_io.wgsl's Params. */
export const ATTENTION_UNIFORM: UniformSpec<AttentionLaunch> = {
  fields: [
    ...["u32", "u32", "u32", "u32"],
    ...["u32", "u32", "u32", "u32"],
    ...["u32", "u32", "u32", "u32"],
    ...["u32", "u32", "u32", "f32"],
    "u32",
  ] as const,
  values: (p) => [
    ...[p.tq, p.tk, p.maskMode, p.maskBatch],
    ...[p.q.off, p.q.row, p.q.batch, p.oRow],
    ...[p.k.off, p.k.row, p.k.batch, p.oBatch],
    ...[p.v.off, p.v.row, p.v.batch, p.scaleLog2],
    p.hd,
  ],
};
