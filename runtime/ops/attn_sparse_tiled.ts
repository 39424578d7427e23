/**
 * The register-tiled PARO integer kernel (wgsl/attn_sparse_tiled.wgsl) for GPUs: whether a
 * head dim fits an adapter, its source with the output tile written out as named variables,
 * and its kernel spec. The ops ({@linkcode attnSparseQuantized} in attn_sparse.ts) pick it
 * on GPUs and keep the one-row-per-thread kernel (attn_sparse.wgsl) for CPU adapters.
 *
 * @module
 */
import { composeWgsl, expandMarkers, type StorageType } from "../gpu/compose.ts";
import type { KernelSpec } from "../gpu/kernel.ts";
import { paddedHeadDim } from "../reference/attn_sparse.ts";
import { sparseLibs, type SparseParams } from "./attn_sparse_kernels.ts";
import src from "../../wgsl/attn_sparse_tiled.wgsl" with { type: "text" };

/** Threads per workgroup of the tiled kernel (a 16 × 16 grid over 64 rows × 64 keys). */
export const SPARSE_TILED_THREADS = 256;

/** Vec4s per Q/K code row and the staged K row stride (odd, so the 16 readers of a row group miss no bank). */
function strides(headDim: number): { d16: number; d16p: number; ksz: number } {
  const d16 = paddedHeadDim(headDim) / 16;
  const d16p = d16 % 2 === 0 ? d16 + 1 : d16;
  return { d16, d16p, ksz: Math.max(64 * d16p, 256) };
}

/** Workgroup memory (bytes) of the tiled kernel for a head dim: Q, K (then P), V, partials. */
export function sparseTiledBytes(headDim: number): number {
  const { d16, ksz } = strides(headDim);
  return 16 * (64 * d16 + ksz + headDim * 5 + 256);
}

/**
 * Whether the tiled kernel runs a head dim on an adapter with these limits: a multiple of 4
 * in 4..128, its workgroup memory within `storage` bytes and 256 threads per workgroup.
 */
export function sparseTiledFits(headDim: number, storage: number, threads: number): boolean {
  return headDim % 4 === 0 && headDim >= 4 && headDim <= 128 &&
    sparseTiledBytes(headDim) <= storage && threads >= SPARSE_TILED_THREADS;
}

const XYZW = ["x", "y", "z", "w"];

/**
 * The kernel source for a head dim: the 4 × ⌈D/16⌉ output accumulators (f32), their
 * per-block integer dots (i32), the channel offsets and the K and V code vec4s fetched
 * ahead are written out as named variables at the file's //@ markers.
 */
export function sparseTiledSource(headDim: number): string {
  const nc = Math.ceil(headDim / 16);
  // Vec4s of K and V codes each thread fetches ahead: ⌈64·D16 / 256⌉ and ⌈HD·4 / 256⌉.
  const fetches = [Math.ceil(strides(headDim).d16 / 4), Math.ceil(headDim / 64)];
  const pf = (f: (name: string, i: number, which: number) => string) =>
    fetches.flatMap((n, which) =>
      Array.from({ length: n }, (_, i) => f(`${"kv"[which]}f${i}`, i, which))
    );
  const fetch = (kb: string) => (name: string, i: number, which: number) =>
    `${name} = fetch_kv(${kb}, ${i}u, lid, ${which}u, cbase, vbase);`;
  const rc = (f: (r: number, c: number) => string) =>
    [0, 1, 2, 3].flatMap((r) => Array.from({ length: nc }, (_, c) => f(r, c)));
  const blocks: Record<string, string[]> = {
    PF_DECL: pf((n, i, w) => "var " + fetch("select(kb, 0u, kb == NONE)")(n, i, w)),
    PF_PUT: pf((n, i, which) => `put_kv(${i}u, lid, ${which}u, ${n});`),
    PF_NEXT: pf(fetch("fb")),
    O_DECL: rc((r, c) => `var o${r}_${c} = 0.0;`),
    // Channel tx + 16·c, clamped into the head for the partial last slot (never stored).
    VD_DECL: Array.from(
      { length: nc },
      (_, c) => `let vd${c} = min(tx + ${16 * c}u, HD - 1u) * VST;`,
    ),
    A_DECL: rc((r, c) => `var a${r}_${c} = 0i;`),
    PV_ACC: [
      ...Array.from({ length: nc }, (_, c) => `let v${c} = vs[vd${c} + e];`),
      ...rc((r, c) => `a${r}_${c} += dot16(p${r}, v${c});`),
    ],
    O_UPDATE: rc((r, c) =>
      `o${r}_${c} = o${r}_${c} * al.${XYZW[r]} + fr.${XYZW[r]} * f32(a${r}_${c});`
    ),
    O_STORE: [0, 1, 2, 3].flatMap((r) => [
      `let row${r} = qb * 64u + 4u * ty + ${r}u;`,
      `if (row${r} < p.t) {`,
      `  let at${r} = b * p.o_batch + perm[h * p.t + row${r}] * p.o_row + h * HD;`,
      ...Array.from(
        { length: nc },
        (_, c) => `  store_out(at${r}, tx + ${16 * c}u, o${r}_${c} * linv.${XYZW[r]});`,
      ),
      `}`,
    ]),
  };
  return expandMarkers(src, blocks, "attn_sparse_tiled.wgsl");
}

/** Launch params of the tiled integer kernel: the row kernel's, less its tuning. */
export type SparseTiledParams = Omit<SparseParams, "wg" | "rpt" | "dyn">;

const specs = new Map<string, KernelSpec<SparseTiledParams>>();

/**
 * The tiled kernel's spec for a storage type, head dim (it shapes the generated source) and
 * dot4I8Packed or its emulation.
 */
export function sparseTiledSpec(
  storage: StorageType,
  headDim: number,
  emulate: boolean,
): KernelSpec<SparseTiledParams> {
  const key = `${storage}/${headDim}/${emulate}`;
  let spec = specs.get(key);
  if (!spec) {
    const c = composeWgsl(sparseTiledSource(headDim), { storage, libs: sparseLibs(emulate) });
    spec = {
      name: `attn_sparse_tiled_${storage}_d${headDim}${emulate ? "_emu" : ""}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read", "read", "read", "read", "read_write"],
      constants: (p) => {
        const { d16, d16p, ksz } = strides(p.hd);
        return { HD: p.hd, D16: d16, D16P: d16p, KSZ: ksz };
      },
      uniform: {
        fields: [
          ...["u32", "u32", "u32", "u32"],
          ...["u32", "u32", "u32", "u32"],
          ...["u32", "u32", "f32", "f32"],
        ] as const,
        values: (p) => [
          ...[p.t, p.nb, p.mw, p.h],
          ...[p.mOff, p.mHead, p.h * p.hd, p.t * p.h * p.hd],
          ...[p.sStride, p.pblock ? 1 : 0, p.scaleLog2, p.qp],
        ],
      },
      dispatch: (p) => [p.nb, p.h, p.b],
    };
    specs.set(key, spec);
  }
  return spec;
}
