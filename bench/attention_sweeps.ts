/**
 * The dense attention bench's launch-shape sweeps (bench/attention_bench.ts):
 * `WEBDIT_ATTN_TILED_SWEEP=1` the tiled kernel's shapes (row groups × threads per row group ×
 * head-dim vec4s per thread, and 1 or 2 row groups a thread) at PixArt-α's 72, 64 and FLUX's
 * 128; `WEBDIT_ATTN_CHUNKED_SWEEP=1`
 * the chunked kernel's (row groups × threads per row group × head-dim chunks). Only the shapes
 * that fit the adapter are listed.
 *
 * @module
 */
import type { AttentionTuning } from "../runtime/ops/attention.ts";
import { chunkedFits } from "../runtime/ops/attention_chunked.ts";
import { tiledFits, type TiledShape } from "../runtime/ops/attention_tiled.ts";

/** One swept case: a head dim and the forced kernel and shape. */
export interface SweepCase {
  headDim: number;
  tuning: AttentionTuning;
}

/** Head dims and their [rg, tc, cv] or [rg, tc, cv, qpt] shapes. */
type ShapeList = [number, ([number, number, number] | [number, number, number, 2 | 4])[]][];

// [rg, tc, cv] or [rg, tc, cv, qpt]: 2 or 4 row groups a thread (the defaults' shapes at 72 and
// 64 with fewer threads, and shapes that fit a CPU adapter's 32 KiB: docs/decisions/
// attention_kernels.md, "The next lever").
const TILED: ShapeList = [
  [72, [
    [16, 9, 2], // the default before session 34 (144 threads: 4.5 warps)
    [8, 9, 2],
    [16, 6, 3],
    [8, 6, 3],
    [16, 3, 6],
    [16, 9, 2, 2],
    [16, 6, 3, 2],
    [16, 3, 6, 2],
    [16, 3, 6, 4],
  ]],
  [64, [
    [16, 8, 2], // the f32 default before 8 keys a thread
    [8, 16, 1],
    [16, 4, 4],
    [8, 8, 2],
    [16, 8, 2, 2],
    [16, 4, 4, 2],
    [8, 4, 4, 2],
    [16, 2, 8, 2],
    [16, 4, 4, 4],
    [16, 2, 8, 4],
  ]],
  [128, [[4, 8, 4], [4, 4, 8], [8, 4, 8]]],
];

// Shapes also swept staging f16 operands as they are (`half`; f16 models only), with 32 row
// groups (128 query rows a workgroup) where the halved memory allows.
const HALF: ShapeList = [
  [72, [[16, 6, 3], [16, 9, 2], [16, 9, 2, 2], [32, 6, 3]]],
  [64, [[16, 8, 2], [16, 4, 4], [16, 8, 2, 2], [32, 8, 2], [32, 4, 4]]],
  [128, [[16, 8, 4], [16, 4, 8], [8, 8, 4]]],
];

// 8 keys a thread in S (kpt 8), staged as f16 on f16 models: 16 row groups fetch 9 (d72) or 8
// (d64) vec4s of k and v a thread ahead, 32 fetch 5 or 4; f32 fits only 16 row groups × ≤ 6
// threads.
const KPT8: [number, TiledShape[]][] = [
  [72, [{ rg: 16, tc: 6, cv: 3 }, { rg: 32, tc: 6, cv: 3 }]],
  [64, [{ rg: 16, tc: 8, cv: 2 }, { rg: 16, tc: 4, cv: 4 }, { rg: 32, tc: 8, cv: 2 }]],
];

const CHUNKED: [number, [number, number, number][]][] = [
  [128, [[8, 16, 2], [8, 8, 2], [16, 8, 4], [16, 4, 4], [8, 8, 1], [4, 16, 2]]],
  [72, [[16, 9, 2], [8, 9, 2]]],
  [64, [[16, 8, 2], [8, 8, 2], [16, 4, 2]]],
];

/**
 * The swept cases the environment asks for that fit `memory` bytes of workgroup memory and
 * `threads` invocations, tiled ones first; `half` (the operands are f16) adds the tiled
 * shapes staging them as f16.
 */
export function denseSweeps(
  env: { tiled: boolean; chunked: boolean; half?: boolean },
  memory: number,
  threads: number,
): SweepCase[] {
  const out: SweepCase[] = [];
  const addTiled = (headDim: number, tiled: TiledShape) => {
    if (tiledFits(headDim, tiled, memory, threads)) {
      out.push({ headDim, tuning: { kernel: "tiled", tiled } });
    }
  };
  const lists: [ShapeList, boolean][] = env.tiled
    ? [[TILED, false], ...(env.half ? [[HALF, true] as [ShapeList, boolean]] : [])]
    : [];
  for (const [list, half] of lists) {
    for (const [headDim, shapes] of list) {
      for (const [rg, tc, cv, qpt] of shapes) {
        addTiled(headDim, { rg, tc, cv, ...(qpt ? { qpt } : {}), ...(half ? { half } : {}) });
      }
    }
  }
  for (const [headDim, shapes] of env.tiled ? KPT8 : []) {
    for (const s of shapes) {
      addTiled(headDim, { ...s, ...(env.half ? { half: true } : {}), kpt: 8 });
    }
  }
  if (env.chunked) {
    for (const [headDim, shapes] of CHUNKED) {
      for (const [rg, tc, nch] of shapes) {
        const chunked = { rg, tc, nch };
        if (chunkedFits(headDim, chunked, memory, threads)) {
          out.push({ headDim, tuning: { kernel: "chunked", chunked } });
        }
      }
    }
  }
  return out;
}
