/**
 * The low-rank branch of a quantized linear (SVDQuant's): the weight the quantizer sees splits
 * as W' = B·Bᵀ·W' + E (runtime/quant/low_rank.ts); E is quantized, the rank-R part runs in float
 * as (X·Aᵀ)·Bᵀ with A = Bᵀ·W on the unquantized input. U = X·Aᵀ is {@linkcode lowRankDown}
 * (gemm's thin version 4 on GPUs, version 3 on CPU adapters). Then either
 * {@linkcode qgemmIntLowRank}: the integer GEMM's tiled (GPU) kernel adds U·Bᵀ before its
 * epilogue; or {@linkcode lowRankAdd}: the layer's GEMM stops at the bias and
 * Z ← epilogue(Z + U·Bᵀ) is a dense {@linkcode gemm} accumulating in place (weight-only
 * layers, CPU adapters — fused into their integer kernel it measured no faster —, a rank not a
 * multiple of 4, adapters binding fewer than 10 storage buffers).
 * Measured on an H200 (`bench/results/nvidia-h200/2026-11-28_low_rank_{v4,fused}.md`), PixArt's
 * FFN up (4096×1152×4608, R 32), beside a W4A8 GEMM of 0.87 ms: fused, +0.100 ms (X·Aᵀ 0.057 of
 * it, on version 4; 0.127 on version 1); unfused, U·Bᵀ accumulated alone takes 0.207 ms.
 * CPU reference: runtime/reference/low_rank.ts.
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { QuantizedActivations } from "../quant/transform.ts";
import { gemm, type GemmOptions } from "./gemm.ts";
import { defaultIntVersion, qgemmInt, type QGemmIntOptions } from "./qgemm.ts";
import { LOW_RANK_MAX, type QGemmEpilogue } from "./qgemm_spec.ts";
import type { QWeightGpu } from "./qweight.ts";

export { LOW_RANK_MAX }; // defined beside the fused kernel's operand check (qgemm_spec.ts)

/** Options of {@linkcode lowRankAdd}: gemm's epilogue, and the GEMMs' versions. */
export interface LowRankAddOptions extends Omit<QGemmEpilogue, "out"> {
  /** The X·Aᵀ GEMM's version and tile knobs (benchmarks); default 4 on GPUs, 3 on CPU adapters. */
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
  const u = lowRankDown(rec, x, a, down); // [..., R]; gemm checks x against a
  try {
    // gemm checks z against b's N and x's rows, the dtypes, and that nothing aliases z.
    gemm(rec, u, b, { ...up, ...epi, accumulate: true, out: z });
  } finally {
    u.release(); // recorded work keeps it valid until it has run
  }
  return z;
}

/**
 * Records U = X·Aᵀ [..., R], the branch's thin product, and returns it: gemm's version 4 on
 * GPUs (16-row tiles as wide as R), 3 on CPU adapters (over 2× faster than 2 on lavapipe at
 * the bundled model's 2048×128, R 32: `bench/results/cpu-lavapipe/2026-11-28_low_rank.md`).
 */
export function lowRankDown(
  rec: Recorder,
  x: Tensor,
  a: Tensor,
  down?: Pick<GemmOptions, "version" | "tune">,
): Tensor {
  return gemm(rec, x, a, { version: rec.runtime.info.fallback ? 3 : 4, ...down });
}

/**
 * Records epilogue(Q(X)·Q(E)ᵀ + (X·Aᵀ)·Bᵀ), the integer GEMM with a low-rank branch, and
 * returns it: fused into the tiled kernel where it runs (GPUs, R a multiple of 4, 10 storage
 * buffers a stage), else the GEMM with the bias, then {@linkcode lowRankAdd}.
 *
 * @param x the layer's input as it comes (unquantized, untransformed): the branch's input
 * @param a the down factor A [R, K]; b the up factor B [N, R], x's dtype
 * @param opts qgemmInt's options and epilogue (no `lowRank`, no `raw`)
 */
export function qgemmIntLowRank(
  rec: Recorder,
  xa: QuantizedActivations,
  w: QWeightGpu,
  x: Tensor,
  a: Tensor,
  b: Tensor,
  opts: Omit<QGemmIntOptions, "lowRank" | "raw"> = {},
): Tensor {
  const rt = rec.runtime;
  const R = a.shape[0];
  const version = opts.version ?? defaultIntVersion(rt);
  const buffers = rt.info.limits.maxStorageBuffersPerShaderStage ?? 8;
  if (version === "tiled" && R % 4 === 0 && R <= LOW_RANK_MAX && buffers >= 10) {
    const u = lowRankDown(rec, x, a);
    try {
      return qgemmInt(rec, xa, w, { ...opts, lowRank: { u, b } });
    } finally {
      u.release(); // recorded work keeps it valid until it has run
    }
  }
  const { activation, residual, gate, rowsPerGate, ...rest } = opts;
  const z = qgemmInt(rec, xa, w, { ...rest, rowsPerGate });
  return lowRankAdd(rec, z, x, a, b, { activation, residual, gate, rowsPerGate });
}
