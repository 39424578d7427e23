/**
 * CPU reference of the CFG delta (runtime/ops/cfg_delta.ts): a CFG pair [uncond; cond] as
 * [uncond; cond − uncond], and the product's halves added back with the GEMM epilogue.
 *
 * @module
 */
import { epilogueRef, type GemmRefOptions } from "./gemm.ts";

/** [u; c − u] of x = [u; c] (two halves of x.length / 2 values), rounded to f32. */
export function cfgDeltaRef(x: Float32Array): Float32Array {
  const h = x.length / 2;
  const out = Float32Array.from(x);
  for (let i = h; i < x.length; i++) out[i] = x[i] - x[i - h];
  return out;
}

/**
 * Y [M, N] = epilogue(Z'), Z' = [Z_u; Z_d + Z_u] for the product Z = [Z_u; Z_d] of
 * [u; c − u]: each second-half row gets its first-half partner's values added before the
 * epilogue (bias, activation, gate, residual; gemmRef's).
 */
export function cfgCombineRef(
  z: Float32Array,
  M: number,
  N: number,
  opts: GemmRefOptions = {},
): Float32Array {
  const h = (M / 2) * N;
  const rpg = opts.rowsPerGate ?? Math.max(1, M);
  const out = new Float32Array(M * N);
  for (let i = 0; i < M * N; i++) {
    const acc = i >= h ? Math.fround(z[i] + z[i - h]) : z[i];
    out[i] = epilogueRef(acc, Math.floor(i / N), i % N, N, rpg, opts);
  }
  return out;
}
