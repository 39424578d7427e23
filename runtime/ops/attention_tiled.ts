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
import tilesLib from "../../wgsl/attention_tiles.wgsl" with { type: "text" };
import ldScalar from "../../wgsl/attention_ld_scalar.wgsl" with { type: "text" };
import ldVec4 from "../../wgsl/attention_ld_vec4.wgsl" with { type: "text" };

/**
 * A spec of one of the two register-tiled kernels (this file's and attention_chunked.ts's):
 * `kernel`, its source behind one host-written `const` line, composed with what they share
 * (wgsl/attention_tiles.wgsl, appended: naga 29 panics on code that uses an override declared
 * later) and the operand access, whole vec4s (`vec4`, every layout a multiple of 4) or
 * scalars; 4·RG query rows a workgroup, one per (head, batch) along y and z.
 */
export function tilesKernelSpec<P extends AttentionLaunch & { shape: { rg: number } }>(
  name: string,
  kernel: string,
  storage: StorageType,
  vec4: boolean,
  constants: (p: P) => Record<string, number>,
): KernelSpec<P> {
  const c = composeWgsl(kernel + tilesLib, {
    storage,
    libs: [ioSrc, vec4 ? ldVec4 : ldScalar],
  });
  return {
    name: `${name}${vec4 ? "" : "_scalar"}`,
    source: c.source,
    preludeLines: c.preludeLines + 1, // the kernel's const line
    bindings: ["uniform", "read", "read", "read", "read", "read_write"],
    constants,
    uniform: ATTENTION_UNIFORM,
    dispatch: (p) => [Math.ceil(p.tq / (4 * p.shape.rg)), p.h, p.b],
  };
}

/**
 * Launch shape of the tiled kernel: RG/QPT·TC threads, 4·RG query rows, 4·TC keys per block.
 */
export interface TiledShape {
  /** Row groups of 4 query rows. */
  rg: number;
  /** Threads per row group (= keys per block / 4 = head-dim vec4s / cv). */
  tc: number;
  /** Head-dim vec4s of the output each thread accumulates. */
  cv: number;
  /**
   * Row groups a thread owns: 1 (GPUs' default), 2 or 4 (CPU adapters' at head dim 64:
   * attention_kernel.ts's cpuTiledShape), which divides the threads by as much and makes each
   * staged k and v vec4 a thread reads feed 4·qpt query rows.
   */
  qpt?: RowGroupsPerThread;
  /**
   * Stage q, k, v and P in workgroup memory as f16 (f16 operands only): half the bytes a
   * staged read and half the memory a workgroup declares; the arithmetic stays f32, P is
   * rounded to f16 (as tensor-core flash attention rounds it).
   */
  half?: boolean;
  /**
   * Keys a thread owns in S: 4 (default) or 8 (qpt 1 only), which doubles the keys of a
   * block (8·tc) and makes each staged q vec4 a thread reads feed 8 keys.
   */
  kpt?: 4 | 8;
}

/** Vec4s of the kernel's `ks` (its KSZ): the block's padded k rows, then P as [key][row group]. */
function keyBufferVec4s(headDim: number, s: TiledShape): number {
  return (s.kpt ?? 4) * s.tc * Math.max(headDim / 4 + 1, s.rg);
}

/** Workgroup memory (bytes) the tiled kernel needs for a head dim and shape. */
export function tiledBytes(headDim: number, s: TiledShape): number {
  const d4 = headDim / 4;
  const bq = 4 * s.rg;
  const bk = (s.kpt ?? 4) * s.tc;
  const vec4s = s.rg * (4 * d4 + 1) + keyBufferVec4s(headDim, s) + bk * d4;
  return (s.half ? 8 : 16) * vec4s + 4 * bq * s.tc + 4;
}

/**
 * Whether a shape fits `limit` bytes of workgroup memory and `threads` invocations (RG/QPT·TC)
 * (as attention_chunked.ts's chunkedFits for the chunked kernel).
 */
export function tiledFits(headDim: number, s: TiledShape, limit: number, threads: number): boolean {
  return tiledBytes(headDim, s) <= limit && (s.rg / (s.qpt ?? 1)) * s.tc <= threads;
}

/** Threads of a GPU's SIMD group (NVIDIA's warp): thread counts that fill them waste no lanes. */
const WARP = 32;

/**
 * The launch shape for a head dim within `limit` bytes of workgroup memory, or null when
 * the head dim is not a multiple of 4 or nothing fits. Prefers 64 query rows per workgroup,
 * then the fewest head-dim vec4s per thread with at most 10 threads per row group, and
 * never more than 8 of them (the 4·CV output vec4s live in registers: 16 would spill) —
 * except that a shape of at most 4 vec4s a thread whose threads fill whole 32-lane warps
 * goes first: PixArt-α's d72 runs 16 × 6 threads × 3 vec4s (96 threads) rather than 16 × 9 × 2
 * (144: 4.5 warps), 6.75 against 7.28 ms on an H200 (docs/decisions/attention_kernels.md).
 * `half`: the shape stages f16 operands as f16 (half the memory of the arrays it stages).
 * Such a warp-filling shape then takes 8 keys a thread in S where that fits `limit` and
 * `threads` and fetches ahead — with `half` at 128 query rows (d72 4.84 against 5.34 ms, d64
 * 3.64 against 3.98 on an H200, 2026-11-29_attention_kpt8), in f32 at 64 (d72 5.56 against
 * 6.51; d64's 16 × 8 × 2 does not fit them, and 16 × 4 × 4 with them lost, 7.75 against 5.55:
 * 2026-11-29_attention_f32_kpt8).
 */
export function tiledShape(
  headDim: number,
  limit: number,
  half = false,
  threads = 256,
): TiledShape | null {
  if (headDim % 4 !== 0 || headDim < 4 || headDim > 128) return null;
  const d4 = headDim / 4;
  const cvs = [];
  for (let cv = 1; cv <= Math.min(d4, 8); cv++) if (d4 % cv === 0 && d4 / cv <= 10) cvs.push(cv);
  const fits = (s: TiledShape) => tiledFits(headDim, s, limit, threads);
  const full = (s: TiledShape) => s.cv <= 4 && (s.rg * s.tc) % WARP === 0;
  for (const rg of [16, 8]) {
    const shapes = cvs.map((cv): TiledShape => ({ rg, tc: d4 / cv, cv, ...(half ? { half } : {}) }))
      .filter(fits);
    const pick = shapes.find(full) ?? shapes[0];
    if (!pick) continue;
    // 8 keys a thread only in the measured kind of shape, and only fetched ahead (they lose else).
    const k8: TiledShape = { ...pick, rg: half ? 32 : pick.rg, kpt: 8 };
    return full(pick) && fits(k8) && tiledFetches(headDim, k8) > 0 ? k8 : pick;
  }
  return null;
}

/** Launch parameters of the tiled kernel: the shared sizes and layouts plus its shape. */
export interface TiledParams extends AttentionLaunch {
  shape: TiledShape;
}

const XYZW = ["x", "y", "z", "w"];

/**
 * Most k (and v) vec4s a thread fetches ahead, by keys a thread (8 keys pay only when fetched
 * ahead, so they may hold more registers for it); shapes needing more stage directly.
 */
const MAX_FETCHES = { 4: 5, 8: 9 } as const;

/** Vec4s of k (and of v) a thread fetches for the next block, or 0 when staging directly. */
export function tiledFetches(headDim: number, s: TiledShape): number {
  // ⌈BK·D4 / WG⌉ = ⌈KPT·TC·D4 / (RG/QPT·TC)⌉
  const n = Math.ceil(headDim * (s.qpt ?? 1) * ((s.kpt ?? 4) / 4) / s.rg);
  return n <= MAX_FETCHES[s.kpt ?? 4] ? n : 0;
}

/** Row groups a thread of the tiled kernel may own. */
export type RowGroupsPerThread = 1 | 2 | 4;

/**
 * QPT > 1: `tile_scores_n` and its result, the scores of the thread's `qpt` row groups (query
 * rows at q0, q1, … in qs) against its 4 keys, each staged k vec4 read once for all of them.
 */
function scoresFn(qpt: RowGroupsPerThread): string[] {
  if (qpt === 1) return [];
  const gs = Array.from({ length: qpt }, (_, g) => g);
  return [
    `struct TileN { ${gs.map((g) => `t${g}: Tile4`).join(", ")} }`,
    `fn tile_scores_n(${gs.map((g) => `q${g}: u32`).join(", ")}, kr0: u32) -> TileN {`,
    ...gs.map((g) => `  var a${g} = Tile4();`),
    "  for (var d = 0u; d < D4; d++) {",
    "    let ka = vec4<f32>(ks[kr0 + d]);",
    "    let kb = vec4<f32>(ks[kr0 + TC * D4P + d]);",
    "    let kc = vec4<f32>(ks[kr0 + 2u * TC * D4P + d]);",
    "    let kd = vec4<f32>(ks[kr0 + 3u * TC * D4P + d]);",
    ...gs.map((g) => `    a${g} = add_rows(a${g}, q_rows(q${g} + d), ka, kb, kc, kd);`),
    "  }",
    `  return TileN(${gs.map((g) => `a${g}`).join(", ")});`,
    "}",
  ];
}

/**
 * The kernel source for CV head-dim vec4s per thread and `qpt` row groups a thread, fetching
 * `npf` vec4s of the next block's k and v ahead (0: staging each block directly): the
 * 4·qpt × CV output accumulators, the softmax state of each row group and the fetched vec4s
 * are written out as named variables at the file's //@ markers (see the kernel's header);
 * `half` stages the operands as f16 (the H4 alias); `kpt` 8 gives a thread 8 keys in S (qpt 1).
 */
export function tiledSource(
  cv: number,
  npf: number,
  qpt: RowGroupsPerThread = 1,
  half = false,
  kpt: 4 | 8 = 4,
): string {
  const gs = Array.from({ length: qpt }, (_, g) => g);
  const rows = Array.from({ length: 4 * qpt }, (_, r) => r);
  const rc = (f: (r: number, c: number) => string) =>
    rows.flatMap((r) => Array.from({ length: cv }, (_, c) => f(r, c)));
  const sfx = (g: number) => (g === 0 ? "" : `${g}`); // row group g's variables: m, m1, m2, …
  const grp = (g: number) => (g === 0 ? "ty" : `ty + ${g === 1 ? "" : `${g}u * `}TG`);
  const lane = (r: number) => XYZW[r % 4];
  const is = Array.from({ length: npf }, (_, i) => i);
  const fetch = (k0: string) =>
    is.flatMap((i) => [
      `pk${i} = fetch_kv(lid, ${i}u, ${k0}, kbase, p.k_row, 1u);`,
      `pv${i} = fetch_kv(lid, ${i}u, ${k0}, vbase, p.v_row, 2u);`,
    ]);
  const direct = [
    "for (var j = lid; j < BK * D4; j += WG) {",
    "  let at = min(k0 + j / D4, p.tk - 1u); // keys past Tk get p = 0 below",
    "  ks[(j / D4) * D4P + j % D4] = H4(ld4(kbase + at * p.k_row + (j % D4) * 4u, 1u));",
    "  vs[j] = H4(ld4(vbase + at * p.v_row + (j % D4) * 4u, 2u));",
    "}",
  ];
  const blocks: Record<string, string[]> = {
    SCORES_FN: scoresFn(qpt),
    PF_DECL: fetch("0u").map((l) => `var ${l.replace(" = ", ": vec4<f32> = ")}`),
    STAGE: npf ? is.map((i) => `put_kv(lid, ${i}u, pk${i}, pv${i});`) : direct,
    PF_NEXT: fetch("k0 + BK"),
    // Running maxima of each row group's rows, and their sums over this thread's keys only.
    STATE: gs.flatMap((g) => [
      `var m${sfx(g)} = vec4<f32>(-3.0e38);`,
      `var l${sfx(g)} = vec4<f32>(0.0);`,
      `let q${g} = (${grp(g)}) * QG;`,
    ]),
    SCORES: kpt === 8
      ? [
        "let sc = tile_scores8(q0, kr0);",
        "var al: vec4<f32>;",
        "let pr = online_softmax8(sc, b, k0, mode, ty, tx, &m, &l, &al);",
        "store_p(pr.a, ty, tx);",
        "store_p(pr.b, ty, tx + 4u * TC);",
      ]
      : qpt === 1
      ? [
        "let sc = tile_scores(Tile4(), q0, kr0, D4P, D4);",
        "var al: vec4<f32>;",
        "let pr = online_softmax(sc, b, k0, mode, ty, tx, &m, &l, &al);",
        "store_p(pr, ty, tx);",
      ]
      : [
        `let sc = tile_scores_n(${gs.map((g) => `q${g}`).join(", ")}, kr0);`,
        ...gs.map((g) => `var al${sfx(g)}: vec4<f32>;`),
        ...gs.map((g) =>
          `let pr${g} = online_softmax(sc.t${g}, b, k0, mode, ${grp(g)}, tx, ` +
          `&m${sfx(g)}, &l${sfx(g)}, &al${sfx(g)});`
        ),
        ...gs.map((g) => `store_p(pr${g}, ${grp(g)}, tx);`),
      ],
    O_DECL: rc((r, c) => `var o${r}_${c} = vec4<f32>(0.0);`),
    O_SCALE: rc((r, c) => `o${r}_${c} *= al${sfx(r >> 2)}.${lane(r)};`),
    O_ACC: [
      ...gs.map((g) => `let pj${sfx(g)} = vec4<f32>(ks[j * RG + ${grp(g)}]);`),
      ...Array.from({ length: cv }, (_, c) => `let v${c} = vec4<f32>(vs[vj + ${c}u]);`),
      ...rc((r, c) =>
        `o${r}_${c} = fma(vec4<f32>(pj${sfx(r >> 2)}.${lane(r)}), v${c}, o${r}_${c});`
      ),
    ],
    O_STORE: [
      ...gs.map((g) => `let inv${sfx(g)} = row_inv(l${sfx(g)}, ${grp(g)}, tx);`),
      ...rows.map((r) => `let qrow${r} = row0 + 4u * (${grp(r >> 2)}) + ${r % 4}u;`),
      ...rc((r, c) =>
        `store_row(qrow${r}, ob + qrow${r} * p.o_row + ${4 * c}u, ` +
        `o${r}_${c} * inv${sfx(r >> 2)}.${lane(r)});`
      ),
    ],
  };
  const h4 = `alias H4 = vec4<${half ? "f16" : "f32"}>;`;
  return `const CV: u32 = ${cv}u; ${h4}\n` + expandMarkers(src, blocks, "attention_tiled.wgsl");
}

const specs = new Map<string, KernelSpec<TiledParams>>();

/**
 * The tiled kernel's spec for a storage type, head dim and shape (its vec4s a thread and
 * fetches unroll code), reading and writing whole vec4s (`vec4`, every layout a multiple of
 * 4) or scalars; `prefetch` false stages every block directly (benchmarks' before). The shape
 * is one attention_kernel.ts's chooseKernel gave (it refuses `half` for f32 operands).
 */
export function attentionTiledSpec(
  storage: StorageType,
  headDim: number,
  shape: TiledShape,
  vec4: boolean,
  prefetch = true,
): KernelSpec<TiledParams> {
  const { cv } = shape;
  const qpt = shape.qpt ?? 1;
  const npf = prefetch ? tiledFetches(headDim, shape) : 0;
  const half = shape.half ?? false;
  const kpt = shape.kpt ?? 4;
  const key = `${storage}/${cv}/${npf}/${vec4}/${qpt}/${half}/${kpt}`;
  let spec = specs.get(key);
  if (!spec) {
    spec = tilesKernelSpec(
      `attention_tiled_${storage}_cv${cv}_pf${npf}${qpt > 1 ? `_q${qpt}` : ""}${half ? "_h" : ""}${
        kpt === 8 ? "_k8" : ""
      }`,
      tiledSource(cv, npf, qpt, half, kpt),
      storage,
      vec4,
      (p) => ({
        HD: p.hd,
        RG: p.shape.rg,
        TC: p.shape.tc,
        QPT: p.shape.qpt ?? 1,
        KH: (p.shape.kpt ?? 4) / 4,
        KSZ: keyBufferVec4s(p.hd, p.shape),
      }),
    );
    specs.set(key, spec);
  }
  return spec;
}
