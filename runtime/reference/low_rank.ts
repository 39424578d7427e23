/**
 * CPU reference of a quantized linear's low-rank branch (runtime/ops/low_rank.ts): the
 * product Z of the quantized residual plus U·Bᵀ (U = X·Aᵀ), then the GEMM epilogue.
 *
 * @module
 */
import { epilogueRef, type GemmRefOptions } from "./gemm.ts";

/**
 * Y [M, N] = epilogue(Z + U·Bᵀ) for Z [M, N], U [M, R] and B [N, R] (f64 sums, each output
 * rounded to f32 before the epilogue as the kernel's f32 accumulator is).
 */
export function lowRankAddRef(
  z: Float32Array,
  u: Float32Array,
  b: Float32Array,
  M: number,
  N: number,
  R: number,
  opts: GemmRefOptions = {},
): Float32Array {
  const rpg = opts.rowsPerGate ?? Math.max(1, M);
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = z[m * N + n];
      for (let j = 0; j < R; j++) s += u[m * R + j] * b[n * R + j];
      out[m * N + n] = epilogueRef(Math.fround(s), m, n, N, rpg, opts);
    }
  }
  return out;
}
