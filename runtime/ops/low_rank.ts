/**
 * The low-rank branch of a quantized linear (SVDQuant's): the weight the quantizer sees splits
 * as W' = B·Bᵀ·W' + E (runtime/quant/low_rank.ts); E is quantized, the rank-R part runs in float
 * as (X·Aᵀ)·Bᵀ with A = Bᵀ·W on the unquantized input. The layer records its quantized GEMM of E with the bias only, then
 * {@linkcode lowRankAdd}: Z ← epilogue(Z + (X·Aᵀ)·Bᵀ) in place — two dense {@linkcode gemm}s,
 * U = X·Aᵀ, then U·Bᵀ accumulated into Z with the rest of the epilogue (runtime/quant/qlinear.ts).
 * The thin X·Aᵀ runs on gemm's version 1 on GPUs (16×16 tiles; version 2's 128-wide tiles leave
 * most of the GPU idle at N = R) and 3 on CPU adapters (over 2× faster than 2 on lavapipe at the
 * bundled model's 2048×128, R 32: `bench/results/cpu-lavapipe/2026-11-28_low_rank.md`); U·Bᵀ on
 * the default.
 * Measured on an H200 (`2026-11-28_low_rank*.md`): at PixArt's FFN up (4096×1152×4608, R 32)
 * 0.35 ms, 40 % of the W4A8 GEMM beside it; the pass this replaced, summing R products an
 * output, cost 0.72 ms there, and a single launch computing U per row tile in workgroup memory
 * was slower still (`2026-11-28_ablation_low_rank_w4a8_w8a8_fused.md`).
 * CPU reference: runtime/reference/low_rank.ts.
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { gemm, type GemmOptions } from "./gemm.ts";
import type { QGemmEpilogue } from "./qgemm_spec.ts";

/** The largest rank taken: a branch is meant to be thin beside the quantized product. */
export const LOW_RANK_MAX = 128;

/** Options of {@linkcode lowRankAdd}: gemm's epilogue, and the GEMMs' versions. */
export interface LowRankAddOptions extends Omit<QGemmEpilogue, "out"> {
  /** The X·Aᵀ GEMM's version and tile knobs (benchmarks); default 1 on GPUs, 3 on CPU adapters. */
  down?: Pick<GemmOptions, "version" | "tune">;
  /** The U·Bᵀ GEMM's version and tile knobs (benchmarks); default the adapter's. */
  up?: Pick<GemmOptions, "version" | "tune">;
}

/**
 * Records, in place, Z ← epilogue(Z + (X·Aᵀ)·Bᵀ) and returns z.
 *
 * @param z the quantized product [M, N] (f32 or f16), overwritten
 * @param x the layer's input [M, K] (or [..., K]), z's dtype: unquantized, untransformed
 * @param a the branch's down factor A [R, K], z's dtype
 * @param b its up factor B [N, R] (the Linear layout), z's dtype
 * @param opts gemm's epilogue (bias [N] or [B, N], activation, gate, residual; no `out`), and
 *   the GEMMs' versions
 * @throws {TypeError} for dtypes that are not f32/f16 or differ from z's.
 * @throws {RangeError} for shapes that do not match, a rank past {@linkcode LOW_RANK_MAX},
 *   or an operand sharing z's buffer.
 */
export function lowRankAdd(
  rec: Recorder,
  z: Tensor,
  x: Tensor,
  a: Tensor,
  b: Tensor,
  opts: LowRankAddOptions = {},
): Tensor {
  const who = "lowRankAdd";
  if (a.shape.length !== 2 || a.shape[0] < 1) {
    throw new RangeError(`${who}: a must be [R, K] with R ≥ 1, got [${a.shape}]`);
  }
  const R = a.shape[0];
  if (R > LOW_RANK_MAX) throw new RangeError(`${who}: rank ${R} is past ${LOW_RANK_MAX}`);
  if (b.shape.length !== 2 || b.shape[1] !== R) {
    throw new RangeError(`${who}: b must be [N, ${R}], got [${b.shape}]`);
  }
  const { down, up, ...epi } = opts;
  // The thin X·Aᵀ (N = R): version 2's 128-wide tiles would be mostly idle.
  const thin = { version: rec.runtime.info.fallback ? 3 as const : 1 as const };
  const u = gemm(rec, x, a, { ...thin, ...down }); // [..., R]; gemm checks x against a
  try {
    // gemm checks z against b's N and x's rows, the dtypes, and that nothing aliases z.
    gemm(rec, u, b, { ...up, ...epi, accumulate: true, out: z });
  } finally {
    u.release(); // recorded work keeps it valid until it has run
  }
  return z;
}
