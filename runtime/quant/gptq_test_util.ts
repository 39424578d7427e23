/**
 * Inputs for the GPTQ tests (gptq_test.ts, gptq_gpu_test.ts).
 *
 * @module
 */
import { Prng } from "../io/prng.ts";

/** Correlated inputs [M, K]: a few shared factors plus noise, channel scales 0.2…2. */
export function correlatedRows(M: number, K: number, seed: number): Float32Array {
  const g = new Prng(seed);
  const f = g.normals(M * 4);
  const mix = g.normals(4 * K);
  const n = g.normals(M * K);
  const x = new Float32Array(M * K);
  for (let r = 0; r < M; r++) {
    for (let c = 0; c < K; c++) {
      let v = 0.3 * n[r * K + c];
      for (let k = 0; k < 4; k++) v += f[r * 4 + k] * mix[k * K + c];
      x[r * K + c] = v * (0.2 + (1.8 * c) / K);
    }
  }
  return x;
}
