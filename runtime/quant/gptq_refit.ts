/**
 * The levels refitted to GPTQ's codes: with the codes fixed, each row's 2^b values are chosen
 * to minimise the layer's output error on the calibration inputs, (w − ŵ)ᵀ H (w − ŵ), where
 * ŵ_k = l[c_k]. That is a least-squares problem in the levels alone: with C the row's one-hot
 * code matrix [K, L], (Cᵀ H C) l = Cᵀ H w. GPTQ chose the codes for the quantizer's levels
 * (fitted to the weights); these levels then fit the codes, so the output error can only fall
 * (the old levels are one solution the problem admits). GPTVQ and SqueezeLLM update their
 * codebooks the same way. Only quantizers whose levels are stored as they are (a LUT a row:
 * kmeans) can take new ones; one set a row (no groups).
 *
 * @module
 */
import type { CodeGrid } from "../../plugins/types.ts";
import { unpackCodes } from "./pack.ts";

/**
 * Solves (A + λI) x = b + λ·x0 in place for a small symmetric positive semi-definite A [n, n]
 * (Gaussian elimination, partial pivoting): λ keeps a level no weight uses at its old value.
 */
function solveRidge(a: Float64Array, b: Float64Array, x0: Float64Array, n: number): Float64Array {
  let tr = 0;
  for (let i = 0; i < n; i++) tr += a[i * n + i];
  const lambda = 1e-9 * (tr / n) + 1e-30;
  const m = new Float64Array(n * (n + 1)); // [A + λI | b + λ·x0]
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) m[i * (n + 1) + j] = a[i * n + j] + (i === j ? lambda : 0);
    m[i * (n + 1) + n] = b[i] + lambda * x0[i];
  }
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) {
      if (Math.abs(m[r * (n + 1) + c]) > Math.abs(m[p * (n + 1) + c])) p = r;
    }
    if (p !== c) {
      for (let j = 0; j <= n; j++) {
        const t = m[c * (n + 1) + j];
        m[c * (n + 1) + j] = m[p * (n + 1) + j];
        m[p * (n + 1) + j] = t;
      }
    }
    const d = m[c * (n + 1) + c];
    for (let r = c + 1; r < n; r++) {
      const f = m[r * (n + 1) + c] / d;
      if (f === 0) continue;
      for (let j = c; j <= n; j++) m[r * (n + 1) + j] -= f * m[c * (n + 1) + j];
    }
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = m[i * (n + 1) + n];
    for (let j = i + 1; j < n; j++) s -= m[i * (n + 1) + j] * x[j];
    x[i] = s / m[i * (n + 1) + i];
  }
  return x;
}

/**
 * Each row's levels refitted to its codes in H's norm (see the module doc): the new grid
 * values [rows, 2^bits] (f32). Rows whose solve is not finite keep their levels.
 * @throws {RangeError} for a grid in groups, or shapes that do not match.
 */
export function refitLevels(
  w: Float32Array,
  rows: number,
  cols: number,
  bits: number,
  codes: Uint32Array,
  grid: CodeGrid,
  h: ArrayLike<number>,
): Float32Array {
  const L = 2 ** bits;
  const K = cols;
  if (grid.groupSize < K) throw new RangeError("refitLevels: one set of levels a row, not groups");
  if (grid.values.length !== rows * L || w.length !== rows * K || h.length !== K * K) {
    throw new RangeError(`refitLevels: shapes do not match [${rows}, ${K}] at ${bits} bits`);
  }
  const c = unpackCodes(codes, rows, K, bits);
  const out = Float32Array.from(grid.values);
  const a = new Float64Array(L * L);
  const rhs = new Float64Array(L);
  const binned = new Float64Array(L); // Σ_{j: c_j = b} H_ij for the current i
  for (let n = 0; n < rows; n++) {
    const wr = w.subarray(n * K, (n + 1) * K);
    const cr = c.subarray(n * K, (n + 1) * K);
    a.fill(0);
    rhs.fill(0);
    for (let i = 0; i < K; i++) {
      binned.fill(0);
      let s = 0;
      for (let j = 0; j < K; j++) {
        const hij = h[i * K + j];
        binned[cr[j]] += hij;
        s += hij * wr[j];
      }
      const ci = cr[i];
      for (let b = 0; b < L; b++) a[ci * L + b] += binned[b];
      rhs[ci] += s;
    }
    const old = Float64Array.from(grid.values.subarray(n * L, (n + 1) * L));
    const x = solveRidge(a, rhs, old, L);
    if (x.every(Number.isFinite)) { for (let l = 0; l < L; l++) out[n * L + l] = x[l]; }
  }
  return out;
}
