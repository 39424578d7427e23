/**
 * CPU reference of a quantized linear's low-rank branch (runtime/ops/low_rank.ts): the
 * product Z of the quantized residual plus (X·Aᵀ)·Bᵀ, then the GEMM epilogue.
 *
 * @module
 */
import { epilogueRef, type GemmRefOptions } from "./gemm.ts";

/**
 * Y [M, N] = epilogue(Z + U·Bᵀ) for Z [M, N], U = X·Aᵀ [M, R] (X [M, K], A [R, K]) and
 * B [N, R] (f64 sums; U and each output rounded to f32 as the GEMMs' f32 accumulators are).
 */
export function lowRankAddRef(
  z: Float32Array,
  x: Float32Array,
  a: Float32Array,
  b: Float32Array,
  M: number,
  N: number,
  K: number,
  R: number,
  opts: GemmRefOptions = {},
): Float32Array {
  const rpg = opts.rowsPerGate ?? Math.max(1, M);
  const out = new Float32Array(M * N);
  const u = new Float32Array(R);
  for (let m = 0; m < M; m++) {
    for (let j = 0; j < R; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * a[j * K + k];
      u[j] = s;
    }
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let j = 0; j < R; j++) s += u[j] * b[n * R + j];
      out[m * N + n] = epilogueRef(Math.fround(z[m * N + n] + Math.fround(s)), m, n, N, rpg, opts);
    }
  }
  return out;
}
