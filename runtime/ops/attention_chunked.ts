/**
 * The head-dim-chunked flash attention kernel (wgsl/attention_chunked.wgsl) for GPUs: the
 * register-tiled kernel's scheme with k and v staged in chunks of the head dim through one
 * buffer, so head dim 128 (FLUX, SD3) fits 48 KiB of workgroup memory with 128 threads.
 * Its launch shape for a head dim and workgroup-memory limit, and its kernel spec.
 *
 * @module
 */
import { composeWgsl, expandMarkers, type StorageType } from "../gpu/compose.ts";
import type { KernelSpec } from "../gpu/kernel.ts";
import { ATTENTION_UNIFORM, type AttentionLaunch } from "./attention_launch.ts";
import src from "../../wgsl/attention_chunked.wgsl" with { type: "text" };
import ioSrc from "../../wgsl/attention_io.wgsl" with { type: "text" };

/** Launch shape of the chunked kernel: RG·TC threads, 4·RG query rows, 4·TC keys a block. */
export interface ChunkedShape {
  /** Row groups of 4 query rows. */
  rg: number;
  /** Threads per row group (keys per block / 4). */
  tc: number;
  /** Head-dim chunks k and v are staged in; each has a multiple of `tc` vec4s. */
  nch: number;
}

/** Head-dim vec4s per thread and chunk of a shape, or 0 when the shape does not split D. */
export function chunkedCvc(headDim: number, s: ChunkedShape): number {
  if (headDim % 4 !== 0 || s.nch < 1 || s.tc < 1 || s.rg < 1) return 0;
  const d4 = headDim / 4;
  if (d4 % s.nch !== 0 || (d4 / s.nch) % s.tc !== 0) return 0;
  return d4 / s.nch / s.tc;
}

/** Workgroup memory (bytes) the chunked kernel needs for a head dim and shape. */
export function chunkedBytes(headDim: number, s: ChunkedShape): number {
  const d4 = headDim / 4;
  const bq = 4 * s.rg;
  const bk = 4 * s.tc;
  const vec4s = bq * (d4 + 1) + bk * (d4 / s.nch + 1) + bk * s.rg + s.rg * s.tc;
  return 16 * vec4s + 4;
}

/**
 * Whether a shape can run: it splits the head dim (≤ 256), fits `limit` bytes of workgroup
 * memory and `threads` invocations, and keeps at most 8 output vec4s a thread in registers.
 */
export function chunkedFits(
  headDim: number,
  s: ChunkedShape,
  limit: number,
  threads: number,
): boolean {
  const cvc = chunkedCvc(headDim, s);
  return cvc > 0 && headDim <= 256 && cvc * s.nch <= 8 && s.rg * s.tc <= threads &&
    chunkedBytes(headDim, s) <= limit;
}

/**
 * The launch shape for a head dim within `limit` bytes of workgroup memory and `threads`
 * invocations, or null when none fits: 64 query rows (16 row groups) before 32, 8 threads
 * a row group before 16 (then 9, 12, 6, 4: head dims like 72), then the fewest chunks (each
 * costs two barriers a block). On
 * an H200 at head dim 128 (48 KiB): 16 × 8 in 4 chunks, 7.7 TFLOP/s against 6.8 for 8 × 16
 * in 2 and 3.0 for the unchunked kernel's 32 threads (2026-11-29_attention_chunked).
 */
export function chunkedShape(headDim: number, limit: number, threads: number): ChunkedShape | null {
  for (const rg of [16, 8]) {
    for (const tc of [8, 16, 9, 12, 6, 4]) {
      for (let nch = 1; nch <= headDim / 4; nch++) {
        const s = { rg, tc, nch };
        if (chunkedFits(headDim, s, limit, threads)) return s;
      }
    }
  }
  return null;
}

/** Launch parameters of the chunked kernel: the shared sizes and layouts plus its shape. */
export interface ChunkedParams extends AttentionLaunch {
  shape: ChunkedShape;
}

const XYZW = ["x", "y", "z", "w"];

/**
 * The kernel source for `nch` chunks of `cvc` head-dim vec4s per thread: the output
 * accumulators o<row>_<chunk>_<i> are named variables, and each chunk's P·v pass is
 * written out at the //@PV marker (a loop over chunks could not name them).
 */
export function chunkedSource(cvc: number, nch: number): string {
  const acc = (f: (r: number, c: number, i: number) => string) =>
    [0, 1, 2, 3].flatMap((r) =>
      Array.from({ length: nch }, (_, c) => Array.from({ length: cvc }, (_, i) => f(r, c, i)))
        .flat()
    );
  const pv = Array.from({ length: nch }, (_, c) => [
    "workgroupBarrier(); // P written, or the previous v chunk read",
    `stage(lid, k0, ${c}u, 2u, vbase, p.v_row);`,
    "workgroupBarrier();",
    "for (var j = 0u; j < BK; j++) {",
    "  let pj = ps[j * RG + ty];",
    "  let vj = j * CHP + vc;",
    ...Array.from({ length: cvc }, (_, i) => `  let v${i} = kv[vj + ${i}u];`),
    ...[0, 1, 2, 3].flatMap((r) =>
      Array.from(
        { length: cvc },
        (_, i) => `  o${r}_${c}_${i} = fma(vec4<f32>(pj.${XYZW[r]}), v${i}, o${r}_${c}_${i});`,
      )
    ),
    "}",
  ]).flat();
  const blocks: Record<string, string[]> = {
    O_DECL: acc((r, c, i) => `var o${r}_${c}_${i} = vec4<f32>(0.0);`),
    O_SCALE: acc((r, c, i) => `o${r}_${c}_${i} *= al.${XYZW[r]};`),
    PV: pv,
    O_STORE: [
      ...[0, 1, 2, 3].map((r) => `let qrow${r} = row0 + 4u * ty + ${r}u;`),
      ...acc((r, c, i) =>
        `store_row(qrow${r}, ob + qrow${r} * p.o_row + 4u * (${c}u * CH + tx * CVC + ${i}u), ` +
        `o${r}_${c}_${i} * inv.${XYZW[r]});`
      ),
    ],
  };
  return `const CVC: u32 = ${cvc}u;\n` + expandMarkers(src, blocks, "attention_chunked.wgsl");
}

const specs = new Map<string, KernelSpec<ChunkedParams>>();

/** The chunked kernel's spec for a storage type, CVC and chunk count (both unroll code). */
export function attentionChunkedSpec(
  storage: StorageType,
  cvc: number,
  nch: number,
): KernelSpec<ChunkedParams> {
  const key = `${storage}/${cvc}/${nch}`;
  let spec = specs.get(key);
  if (!spec) {
    const c = composeWgsl(chunkedSource(cvc, nch), { storage, libs: [ioSrc] });
    spec = {
      name: `attention_chunked_${storage}_cvc${cvc}_nch${nch}`,
      source: c.source,
      preludeLines: c.preludeLines + 1,
      bindings: ["uniform", "read", "read", "read", "read", "read_write"],
      constants: (p) => ({ HD: p.hd, RG: p.shape.rg, TC: p.shape.tc, NCH: p.shape.nch }),
      uniform: ATTENTION_UNIFORM,
      dispatch: (p) => [Math.ceil(p.tq / (4 * p.shape.rg)), p.h, p.b],
    };
    specs.set(key, spec);
  }
  return spec;
}
