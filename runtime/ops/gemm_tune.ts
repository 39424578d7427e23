/**
 * The GEMM's tile knobs (override constants of gemm.ts's kernel versions): their defaults on
 * GPUs and CPU adapters, version 2's tiles by grid size on GPUs, their workgroup memory, and
 * their checks. The choices and the figures behind them: docs/decisions/gemm_tiles.md.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import type { GemmOperandLoad, GemmVersion } from "./gemm.ts";

/** Tile knobs (override constants) of versions 2, 3 and 4; unset ones take the defaults. */
export interface GemmTune {
  /** v2: invocations along N (tile width BN = 8·tx). */
  tx?: number;
  /** v2: invocations along M (tile height BM = 8·ty). */
  ty?: number;
  /** v2: K tile, 4, 8 or 16. */
  bk?: number;
  /** v2: tile loads, 0 = neighbouring invocations take neighbouring rows, 1 = neighbouring k. */
  lmap?: number;
  /** v2: epilogue, 0 = one store site in a loop, 1 = 16 inlined store sites. */
  epi?: number;
  /** v2: block map, 0 = invocation (x, y) computes block (x, y); 1 = each 32 invocations
   * take an 8 × 4 patch of blocks (tx % 8 == 0, ty % 4 == 0). */
  wmap?: number;
  /** v2: workgroup buffers, 0 = two per operand (one barrier a K tile), 1 = one (two barriers). */
  sbuf?: number;
  /** v2: stage the tiles as f16, 0 (default) or 1 (f16 storage only; exact, since the operands
   * are f16): half the bytes a workgroup-memory read, but slower on an H200 at every shape
   * swept (bench/results/nvidia-h200/2026-11-29_gemm_half.md). */
  hs?: number;
  /** v3: invocations per workgroup. */
  wg?: number;
  /** v3: rows per invocation, 1 … 4. */
  rt?: number;
  /** v3: columns per invocation, 1 … 8; v4: columns per invocation (tile width 16·ct), 1 … 8,
   * default the fewest that cover N (at most 8). */
  ct?: number;
}

/**
 * The default knobs. Version 2: 128×128 tiles, BK 16; on GPUs neighbouring invocations load
 * neighbouring k (bench/results/nvidia-h200/2026-11-26_gemm_sweep.md), one workgroup buffer
 * per operand and 8 × 4 patches of blocks per 32 invocations (26 TFLOP/s at 4096³ f32 on an
 * H200 against 21 with two buffers: 2026-11-29_gemm_sweep_tiles.md); on CPU adapters
 * neighbouring rows, two buffers (a little faster there). Version 3: 4×4 blocks per
 * invocation in workgroups of 64, 4×8 with packed f16 loads.
 */
export function gemmDefaultTune(
  load: GemmOperandLoad = "vec4",
  cpu = false,
): Required<GemmTune> {
  const ct = load === "f16x8" ? 8 : 4;
  const gpu = cpu ? 0 : 1;
  return {
    tx: 16,
    ty: 16,
    bk: 16,
    lmap: gpu,
    epi: 0,
    wmap: gpu,
    sbuf: gpu,
    hs: 0,
    wg: 64,
    rt: 4,
    ct,
  };
}

/**
 * Version 2's tiles on a GPU for an M×N output: 64×64 (one buffer, BK 16) when 128×128 tiles
 * would make fewer than 512 workgroups (about four per SM of an H200: T5's 240- and 512-row
 * projections, PixArt-α's 1152-wide outputs at 4096 tokens: 1.03–1.65× faster there), else
 * the defaults. Measured in bench/results/nvidia-h200/2026-11-29_gemm_sweep_tiles.md and
 * …_gemm_small_m_tiles.md.
 */
export function gemmGpuTiles(M: number, N: number): GemmTune {
  return Math.ceil(M / 128) * Math.ceil(N / 128) < 512 ? { tx: 8, ty: 8, wmap: 0 } : {};
}

/** The override constants of a version's tile knobs (qgemm.ts's fused a16 GEMM is version 2's). */
export function versionConstants(
  version: GemmVersion,
  t: Required<GemmTune>,
): Record<string, number> {
  if (version === 2) {
    const { tx: TX, ty: TY, bk: BK, lmap: LMAP, epi: EPI, wmap: WMAP, sbuf: SBUF } = t;
    return { TX, TY, BK, LMAP, EPI, WMAP, SBUF };
  }
  if (version === 3) return { WG: t.wg, RT: t.rt, CT: t.ct };
  if (version === 4) return { CT: t.ct };
  return {};
}

/** Workgroup memory of version 2 with knobs `t`: (2 − sbuf) buffers × BK × (BM + BN) × 4 B (hs: 2). */
export function gemmTileBytes(t: Required<GemmTune>): number {
  return (2 - t.sbuf) * t.bk * 8 * (t.tx + t.ty) * (t.hs ? 2 : 4);
}

/**
 * Checks version `version`'s knobs `t` on `rt`: ranges, the tile's loads per invocation, and
 * (version 2) its workgroup memory against the adapter's limit.
 * @throws {RangeError} naming the knob.
 */
export function checkGemmTune(
  version: GemmVersion,
  t: Required<GemmTune>,
  rt: Runtime,
): void {
  const int = (v: number, name: string, lo: number, hi: number) => {
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new RangeError(`tune.${name} must be an integer in [${lo}, ${hi}], got ${v}`);
    }
  };
  if (version === 2) {
    int(t.tx, "tx", 1, 16);
    int(t.ty, "ty", 1, 16);
    if (![4, 8, 16].includes(t.bk)) throw new RangeError(`tune.bk must be 4, 8 or 16, got ${t.bk}`);
    int(t.lmap, "lmap", 0, 1);
    int(t.epi, "epi", 0, 1);
    int(t.wmap, "wmap", 0, 1);
    int(t.sbuf, "sbuf", 0, 1);
    int(t.hs, "hs", 0, 1);
    if (t.wmap === 1 && (t.tx % 8 !== 0 || t.ty % 4 !== 0)) {
      throw new RangeError(
        `tune.wmap 1 needs tx % 8 == 0 and ty % 4 == 0, got tx ${t.tx}, ty ${t.ty}`,
      );
    }
    const nt = t.tx * t.ty;
    // wgpu does not check a pipeline's workgroup memory against the adapter's limit (a probe
    // over it hung an H200), so the knobs are checked here.
    const limit = rt.info.limits.maxComputeWorkgroupStorageSize ?? 16384;
    if (gemmTileBytes(t) > limit) {
      throw new RangeError(
        `tune: a ${8 * t.ty}×${8 * t.tx} tile with bk ${t.bk} and ${2 - t.sbuf} buffers needs ` +
          `${gemmTileBytes(t)} bytes of workgroup memory; this adapter allows ${limit}`,
      );
    }
    for (const [name, edge] of [["ty", 8 * t.ty], ["tx", 8 * t.tx]] as const) {
      const loads = (edge * t.bk) / (4 * nt);
      if (![1, 2, 4].includes(loads)) {
        throw new RangeError(
          `tune: a ${8 * t.ty}×${8 * t.tx} tile with bk ${t.bk} gives ${loads} vec4 loads ` +
            `per invocation along ${name === "ty" ? "M" : "N"}; it must be 1, 2 or 4`,
        );
      }
    }
  } else if (version === 3) {
    int(t.wg, "wg", 1, rt.info.limits.maxComputeInvocationsPerWorkgroup ?? 256);
    int(t.rt, "rt", 1, 4);
    int(t.ct, "ct", 1, 8);
  } else if (version === 4) {
    int(t.ct, "ct", 1, 8);
  }
}
