/**
 * The head-dim-chunked flash attention kernel (wgsl/attention_chunked.wgsl) for GPUs: the
 * register-tiled kernel's scheme with k and v staged in chunks of the head dim through one
 * buffer, so head dim 128 (FLUX, SD3) fits 48 KiB of workgroup memory with 128 threads.
 * Its launch shape for a head dim and workgroup-memory limit, and its kernel spec.
 *
 * @module
 */
import { expandMarkers, type StorageType } from "../gpu/compose.ts";
import type { KernelSpec } from "../gpu/kernel.ts";
import type { AttentionLaunch } from "./attention_launch.ts";
import src from "../../wgsl/attention_chunked.wgsl" with { type: "text" };
import { tilesKernelSpec } from "./attention_tiled.ts";

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
 * invocations, or null when none fits: the most threads up to 128, then the fewest chunks
 * (each costs two barriers a block), then the most query rows. On an H200 at head dim 128
 * (48 KiB, f16): 8 row groups × 16 threads in 2 chunks, 13.7 ms at 4096 tokens × 16 heads
 * (10.0 TFLOP/s), against 14.7 for 16 × 8 in 4 and 45.5 for the tiled kernel's 32 threads
 * (`2026-11-29_attention_prefetch_sweep`).
 */
export function chunkedShape(headDim: number, limit: number, threads: number): ChunkedShape | null {
  let best: ChunkedShape | null = null;
  const score = (s: ChunkedShape) => [-Math.min(s.rg * s.tc, 128), s.nch, -s.rg];
  const better = (a: number[], b: number[]) => {
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
    return false;
  };
  for (const rg of [16, 8, 4]) {
    for (const tc of [16, 12, 9, 8, 6, 4]) {
      for (let nch = 1; nch <= headDim / 4; nch++) {
        const s = { rg, tc, nch };
        if (!chunkedFits(headDim, s, limit, threads)) continue;
        if (!best || better(score(s), score(best))) best = s;
      }
    }
  }
  return best;
}

/** Launch parameters of the chunked kernel: the shared sizes and layouts plus its shape. */
export interface ChunkedParams extends AttentionLaunch {
  shape: ChunkedShape;
}

const XYZW = ["x", "y", "z", "w"];

/**
 * The kernel source for `nch` chunks of `cvc` head-dim vec4s per thread, each thread
 * fetching `npf` vec4s of every chunk: the output accumulators o<row>_<chunk>_<i> and the
 * fetched vec4s pf<i> are named variables (registers), and each chunk's P·v pass is written
 * out at the //@PV marker (a loop over chunks could not name them).
 */
export function chunkedSource(cvc: number, nch: number, npf: number): string {
  const acc = (f: (r: number, c: number, i: number) => string) =>
    [0, 1, 2, 3].flatMap((r) =>
      Array.from({ length: nch }, (_, c) => Array.from({ length: cvc }, (_, i) => f(r, c, i)))
        .flat()
    );
  const pfs = Array.from({ length: npf }, (_, i) => i);
  const pfPut = pfs.map((i) => `put(lid, ${i}u, pf${i});`);
  const pfNext = (args: string) => pfs.map((i) => `pf${i} = fetch(lid, ${i}u, ${args});`);
  const pv = Array.from({ length: nch }, (_, c) => [
    "workgroupBarrier(); // P written, or the previous v chunk read",
    ...pfPut,
    "workgroupBarrier();",
    ...pfNext(
      c + 1 < nch ? `k0, ${c + 1}u, 2u, vbase, p.v_row` : "k0 + BK, 0u, 1u, kbase, p.k_row",
    ),
    "for (var j = 0u; j < BK; j++) {",
    "  let pj = ps[j * RG + ty];",
    "  let vj = j * CHP + vc;",
    ...Array.from({ length: cvc }, (_, i) => `  let v${i} = ks[vj + ${i}u];`),
    ...[0, 1, 2, 3].flatMap((r) =>
      Array.from(
        { length: cvc },
        (_, i) => `  o${r}_${c}_${i} = fma(vec4<f32>(pj.${XYZW[r]}), v${i}, o${r}_${c}_${i});`,
      )
    ),
    "}",
  ]).flat();
  const blocks: Record<string, string[]> = {
    PF_DECL: pfs.map((i) => `var pf${i} = fetch(lid, ${i}u, 0u, 0u, 1u, kbase, p.k_row);`),
    PF_PUT: pfPut,
    PF_NEXT: pfNext("k0, nc, nw, nbase, nrow"),
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
  return `const CVC: u32 = ${cvc}u; alias H4 = vec4<f32>;\n` +
    expandMarkers(src, blocks, "attention_chunked.wgsl");
}

const specs = new Map<string, KernelSpec<ChunkedParams>>();

/** Vec4s of each staged chunk one thread fetches: ⌈4·TC·CH / (RG·TC)⌉. */
export function chunkedFetches(headDim: number, s: ChunkedShape): number {
  return Math.ceil((4 * (headDim / 4 / s.nch)) / s.rg);
}

/**
 * The chunked kernel's spec for a storage type, head dim and shape (vec4s a thread, chunks
 * and fetches unroll code), reading and writing whole vec4s (`vec4`, every layout a
 * multiple of 4) or scalars.
 */
export function attentionChunkedSpec(
  storage: StorageType,
  headDim: number,
  shape: ChunkedShape,
  vec4: boolean,
): KernelSpec<ChunkedParams> {
  const cvc = chunkedCvc(headDim, shape);
  const { nch } = shape;
  const npf = chunkedFetches(headDim, shape);
  const key = `${storage}/${cvc}/${nch}/${npf}/${vec4}`;
  let spec = specs.get(key);
  if (!spec) {
    spec = tilesKernelSpec(
      `attention_chunked_${storage}_cvc${cvc}_nch${nch}_pf${npf}`,
      chunkedSource(cvc, nch, npf),
      storage,
      vec4,
      (p) => ({ HD: p.hd, RG: p.shape.rg, TC: p.shape.tc, NCH: p.shape.nch }),
    );
    specs.set(key, spec);
  }
  return spec;
}
