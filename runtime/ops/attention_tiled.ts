/**
 * The register-tiled flash attention kernel (wgsl/attention_tiled.wgsl) for GPUs: its
 * launch shape for a head dim and workgroup-memory limit, and its kernel spec. The op
 * ({@linkcode attention} in attention.ts) picks it on GPUs and keeps the
 * one-row-per-thread kernel for CPU adapters and head dims that are not a multiple of 4.
 *
 * @module
 */
import { composeWgsl, expandMarkers, type StorageType } from "../gpu/compose.ts";
import type { KernelSpec } from "../gpu/kernel.ts";
import { ATTENTION_UNIFORM, type AttentionLaunch } from "./attention_launch.ts";
import src from "../../wgsl/attention_tiled.wgsl" with { type: "text" };
import ioSrc from "../../wgsl/attention_io.wgsl" with { type: "text" };

/** Launch shape of the tiled kernel: RG·TC threads, 4·RG query rows, 4·TC keys per block. */
export interface TiledShape {
  /** Row groups of 4 query rows. */
  rg: number;
  /** Threads per row group (= keys per block / 4 = head-dim vec4s / cv). */
  tc: number;
  /** Head-dim vec4s of the output each thread accumulates. */
  cv: number;
}

/** Workgroup memory (bytes) the tiled kernel needs for a head dim and shape. */
export function tiledBytes(headDim: number, s: TiledShape): number {
  const d4 = headDim / 4;
  const bq = 4 * s.rg;
  const bk = 4 * s.tc;
  const vec4s = bq * (d4 + 1) + bk * Math.max(d4 + 1, s.rg) + bk * d4;
  return 16 * vec4s + 4 * bq * s.tc + 4;
}

/**
 * The launch shape for a head dim within `limit` bytes of workgroup memory, or null when
 * the head dim is not a multiple of 4 or nothing fits. Prefers 64 query rows per workgroup,
 * then the fewest head-dim vec4s per thread with at most 10 threads per row group, and
 * never more than 8 of them (the 4·CV output vec4s live in registers: 16 would spill).
 */
export function tiledShape(headDim: number, limit: number): TiledShape | null {
  if (headDim % 4 !== 0 || headDim < 4 || headDim > 128) return null;
  const d4 = headDim / 4;
  const cvs = [];
  for (let cv = 1; cv <= Math.min(d4, 8); cv++) if (d4 % cv === 0 && d4 / cv <= 10) cvs.push(cv);
  for (const rg of [16, 8]) {
    for (const cv of cvs) {
      const s = { rg, tc: d4 / cv, cv };
      if (tiledBytes(headDim, s) <= limit) return s;
    }
  }
  return null;
}

/** Launch parameters of the tiled kernel: the shared sizes and layouts plus its shape. */
export interface TiledParams extends AttentionLaunch {
  shape: TiledShape;
}

const XYZW = ["x", "y", "z", "w"];

/**
 * The kernel source for CV head-dim vec4s per thread: the 4×CV output accumulators are
 * written out as named variables at the file's //@ markers (see the kernel's header).
 */
export function tiledSource(cv: number): string {
  const rc = (f: (r: number, c: number) => string) =>
    [0, 1, 2, 3].flatMap((r) => Array.from({ length: cv }, (_, c) => f(r, c)));
  const blocks: Record<string, string[]> = {
    O_DECL: rc((r, c) => `var o${r}_${c} = vec4<f32>(0.0);`),
    O_SCALE: rc((r, c) => `o${r}_${c} *= al.${XYZW[r]};`),
    O_ACC: [
      ...Array.from({ length: cv }, (_, c) => `let v${c} = vs[vj + ${c}u];`),
      ...rc((r, c) => `o${r}_${c} = fma(vec4<f32>(pj.${XYZW[r]}), v${c}, o${r}_${c});`),
    ],
    O_STORE: [
      ...[0, 1, 2, 3].map((r) => `let qrow${r} = row0 + 4u * ty + ${r}u;`),
      ...rc((r, c) =>
        `store_row(qrow${r}, ob + qrow${r} * p.o_row + ${4 * c}u, o${r}_${c} * inv.${XYZW[r]});`
      ),
    ],
  };
  return `const CV: u32 = ${cv}u;\n` + expandMarkers(src, blocks, "attention_tiled.wgsl");
}

const specs = new Map<string, KernelSpec<TiledParams>>();

/** The tiled kernel's spec for a storage type and CV (a constant: it sizes private arrays). */
export function attentionTiledSpec(storage: StorageType, cv: number): KernelSpec<TiledParams> {
  const key = `${storage}/${cv}`;
  let spec = specs.get(key);
  if (!spec) {
    const c = composeWgsl(tiledSource(cv), { storage, libs: [ioSrc] });
    spec = {
      name: `attention_tiled_${storage}_cv${cv}`,
      source: c.source,
      preludeLines: c.preludeLines + 1,
      bindings: ["uniform", "read", "read", "read", "read", "read_write"],
      constants: (p) => {
        const d4p = p.hd / 4 + 1;
        return {
          HD: p.hd,
          RG: p.shape.rg,
          TC: p.shape.tc,
          KSZ: 4 * p.shape.tc * Math.max(d4p, p.shape.rg),
        };
      },
      uniform: ATTENTION_UNIFORM,
      dispatch: (p) => [Math.ceil(p.tq / (4 * p.shape.rg)), p.h, p.b],
    };
    specs.set(key, spec);
  }
  return spec;
}
