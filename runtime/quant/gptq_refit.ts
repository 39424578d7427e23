/**
 * A quantizer's levels refitted to GPTQ's codes (`quantize --gptq-refit`). With the codes fixed,
 * a row's output error on the calibration inputs, (w − ŵ)ᵀ H (w − ŵ) with ŵ_k = l[c_k], is a
 * quadratic in its 2^b levels l alone:
 *
 *     E(l) = wᵀHw − 2·lᵀb + lᵀA·l,   A = Cᵀ H C [L, L],   b = Cᵀ H w [L]
 *
 * (C the row's one-hot code matrix [K, L]). {@linkcode levelNormals} gathers A, b and wᵀHw of
 * every row once (2·K² a row, GPTQ's order of cost); after that any candidate set of levels costs
 * L² to score, so each quantizer can pick its own parameters for the codes (QuantizerPlugin.refit):
 * kmeans solves A·l = b (its levels are free), TLQ searches its (Δ, z), uniform its scale. GPTQ
 * chose the codes for the quantizer's first levels; these levels then fit the codes, so the output
 * error never rises (the old levels are among the candidates). GPTVQ and SqueezeLLM update their
 * codebooks the same way. One set of levels a row (no groups).
 *
 * @module
 */
import type { CodeGrid } from "../../plugins/types.ts";
import { unpackCodes } from "./pack.ts";

/** Every row's level normal equations (see the module doc). */
export interface LevelNormals {
  /** Rows. */
  rows: number;
  /** Levels a row, 2^bits. */
  levels: number;
  /** A [rows, L, L] = Cᵀ H C per row. */
  a: Float64Array;
  /** b [rows, L] = Cᵀ H w per row. */
  b: Float64Array;
  /** wᵀ H w per row (the row's output energy). */
  c: Float64Array;
}

/**
 * The level normal equations of packed `codes` [rows, cols] at `bits`, for the weight `w` and
 * the inputs' Gram matrix `h` [cols, cols].
 */
export function levelNormals(
  w: Float32Array,
  rows: number,
  cols: number,
  bits: number,
  codes: Uint32Array,
  h: ArrayLike<number>,
): LevelNormals {
  const L = 2 ** bits;
  const K = cols;
  if (w.length !== rows * K || h.length !== K * K) {
    throw new RangeError(`levelNormals: shapes do not match [${rows}, ${K}]`);
  }
  const c = unpackCodes(codes, rows, K, bits);
  const out: LevelNormals = {
    rows,
    levels: L,
    a: new Float64Array(rows * L * L),
    b: new Float64Array(rows * L),
    c: new Float64Array(rows),
  };
  const binned = new Float64Array(L); // Σ_{j: c_j = l} H_ij for the current i
  for (let n = 0; n < rows; n++) {
    const wr = w.subarray(n * K, (n + 1) * K);
    const cr = c.subarray(n * K, (n + 1) * K);
    const a = out.a.subarray(n * L * L, (n + 1) * L * L);
    let energy = 0;
    for (let i = 0; i < K; i++) {
      binned.fill(0);
      let s = 0;
      for (let j = 0; j < K; j++) {
        const hij = h[i * K + j];
        binned[cr[j]] += hij;
        s += hij * wr[j];
      }
      const ci = cr[i];
      for (let l = 0; l < L; l++) a[ci * L + l] += binned[l];
      out.b[n * L + ci] += s;
      energy += wr[i] * s;
    }
    out.c[n] = energy;
  }
  return out;
}

/** E(l) of row `n` for the levels `lut[off, off + L)` (see the module doc). */
export function levelError(
  m: LevelNormals,
  n: number,
  lut: ArrayLike<number>,
  off = 0,
): number {
  const L = m.levels;
  let quad = 0;
  let lin = 0;
  for (let i = 0; i < L; i++) {
    const li = lut[off + i];
    if (li === 0) continue;
    lin += li * m.b[n * L + i];
    let r = 0;
    for (let j = 0; j < L; j++) r += m.a[(n * L + i) * L + j] * lut[off + j];
    quad += li * r;
  }
  return m.c[n] - 2 * lin + quad;
}

/**
 * The output SQNR (dB) of the levels `lut` [rows, L]: 10·log10(Σ wᵀHw / Σ E(l)), as
 * runtime/quant/gptq.ts outputSqnrDb measures it.
 */
export function levelSqnrDb(m: LevelNormals, lut: ArrayLike<number>): number {
  let s = 0;
  let e = 0;
  for (let n = 0; n < m.rows; n++) {
    s += m.c[n];
    e += Math.max(levelError(m, n, lut, n * m.levels), 0);
  }
  return e > 0 ? 10 * Math.log10(s / e) : Infinity;
}

/**
 * Row `n`'s least-squares levels: (A + λI)·l = b + λ·old, λ a 1e-9 of A's mean diagonal, which
 * keeps a level no weight uses at its old value (Gaussian elimination, partial pivoting). Not
 * finite (A singular beyond λ): the old levels.
 */
export function solveLevels(m: LevelNormals, n: number, old: ArrayLike<number>): Float64Array {
  const L = m.levels;
  const w = L + 1;
  let tr = 0;
  for (let i = 0; i < L; i++) tr += m.a[(n * L + i) * L + i];
  const lambda = 1e-9 * (tr / L) + 1e-30;
  const g = new Float64Array(L * w); // [A + λI | b + λ·old]
  for (let i = 0; i < L; i++) {
    for (let j = 0; j < L; j++) g[i * w + j] = m.a[(n * L + i) * L + j] + (i === j ? lambda : 0);
    g[i * w + L] = m.b[n * L + i] + lambda * old[i];
  }
  for (let col = 0; col < L; col++) {
    let p = col;
    for (let r = col + 1; r < L; r++) {
      if (Math.abs(g[r * w + col]) > Math.abs(g[p * w + col])) p = r;
    }
    if (p !== col) {
      for (let j = 0; j <= L; j++) [g[col * w + j], g[p * w + j]] = [g[p * w + j], g[col * w + j]];
    }
    for (let r = col + 1; r < L; r++) {
      const f = g[r * w + col] / g[col * w + col];
      if (f !== 0) { for (let j = col; j <= L; j++) g[r * w + j] -= f * g[col * w + j]; }
    }
  }
  const x = new Float64Array(L);
  for (let i = L - 1; i >= 0; i--) {
    let s = g[i * w + L];
    for (let j = i + 1; j < L; j++) s -= g[i * w + j] * x[j];
    x[i] = s / g[i * w + i];
  }
  return x.every(Number.isFinite) ? x : Float64Array.from(old);
}

/**
 * Free levels refitted: each row's least-squares levels (f32), the grid's values otherwise.
 * @throws {RangeError} for a grid in groups.
 */
export function refitFreeLevels(m: LevelNormals, grid: CodeGrid, cols: number): Float32Array {
  if (grid.groupSize < cols) {
    throw new RangeError("gptq refit: one set of levels a row, not groups");
  }
  const L = m.levels;
  if (grid.values.length !== m.rows * L) {
    throw new RangeError(
      `gptq refit: the grid has ${grid.values.length} values, not ${m.rows}×${L}`,
    );
  }
  const out = Float32Array.from(grid.values);
  for (let n = 0; n < m.rows; n++) {
    const old = grid.values.subarray(n * L, (n + 1) * L);
    const x = solveLevels(m, n, old);
    const lut = Float32Array.from(x);
    // f32 rounding could in principle undo a vanishing gain: keep whichever errs less.
    if (levelError(m, n, lut) <= levelError(m, n, old)) out.set(lut, n * L);
  }
  return out;
}
