/**
 * GPTQ rounding (Frantar et al., 2023) onto a quantizer's own grid: the quantizer fits its
 * per-row (per-group) values as usual, then the codes are chosen column by column, each
 * column's rounding error pushed onto the columns not yet rounded through the inverse of
 * the layer's Hessian H = Σ xᵀx (the calibration inputs' Gram matrix, runtime/ops/act_gram.ts),
 * so that the layer's output error ‖X(Ŵ − W)ᵀ‖ rather than the weight error is minimised.
 * The grid, and so the artifact format and every kernel, stay as they are: only codes change.
 *
 * With a rotation, H is taken in the rotated basis: H' = Tᵀ H T for the online transform
 * x → x·T (smoothing and rotation), the basis the quantized weight lives in.
 *
 * @module
 */
import type { CodeGrid, HostMatrix, QuantizedWeight } from "../../plugins/types.ts";
import { packCodes } from "./pack.ts";
import type { LayerRotation } from "./rotation.ts";

/** Options of {@linkcode gptqRound}. */
export interface GptqOptions {
  /** Dampening added to H's diagonal, as a fraction of its mean; default 0.01. */
  damp?: number;
  /** Round the columns in order of decreasing H_jj (GPTQ's "act order"); default true. */
  actOrder?: boolean;
}

/** The default dampening (GPTQ's). */
export const GPTQ_DAMP = 0.01;

/**
 * Rows of each calibration forward call that go into a layer's Gram matrix (an evenly
 * strided sample; 10 prompts × 20 steps give ~45k rows a layer, plenty for K ≤ 4608).
 */
export const GPTQ_GRAM_ROWS = 256;

/** Checks a grid against a quantized weight and returns its group count. */
function checkGrid(q: QuantizedWeight, grid: CodeGrid): number {
  const G = grid.groupSize;
  if (!Number.isInteger(G) || G < 1) throw new RangeError(`grid groupSize must be ≥ 1, got ${G}`);
  const ng = Math.ceil(q.cols / G);
  const L = 2 ** q.bits;
  if (grid.values.length !== q.rows * ng * L) {
    throw new RangeError(
      `grid has ${grid.values.length} values, not ${q.rows}×${ng}×${L} (rows × groups × 2^bits)`,
    );
  }
  return ng;
}

/**
 * A grid's values sorted within each (row, group) set of L, with the code of each (ties in
 * code order): what the nearest-value search of the CPU and GPU versions walks.
 */
export function sortedGrid(
  values: Float32Array,
  L: number,
): { vals: Float32Array; codes: Uint32Array } {
  const vals = new Float32Array(values.length);
  const codes = new Uint32Array(values.length);
  const idx = Array.from({ length: L }, (_, i) => i);
  for (let s = 0; s < values.length; s += L) {
    idx.sort((a, b) => values[s + a] - values[s + b] || a - b);
    for (let i = 0; i < L; i++) {
      vals[s + i] = values[s + idx[i]];
      codes[s + i] = idx[i];
    }
    for (let i = 0; i < L; i++) idx[i] = i;
  }
  return { vals, codes };
}

/** Per (row, group): the grid's values sorted, with the code of each. */
class NearestCode {
  readonly #vals: Float32Array;
  readonly #codes: Uint32Array;
  readonly #L: number;

  constructor(values: Float32Array, L: number) {
    this.#L = L;
    ({ vals: this.#vals, codes: this.#codes } = sortedGrid(values, L));
  }

  /** The code of set `set` whose value is nearest v (the lower value on a tie). */
  find(set: number, v: number): number {
    const s = set * this.#L;
    let lo = 0;
    let hi = this.#L - 1;
    while (lo < hi) { // first index with value ≥ v
      const mid = (lo + hi) >> 1;
      if (this.#vals[s + mid] < v) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && v - this.#vals[s + lo - 1] <= this.#vals[s + lo] - v) lo--;
    return this.#codes[s + lo];
  }
}

/**
 * Lower Cholesky factor of the symmetric matrix a [n, n] (f64), or undefined if not PD.
 * Row by row (l[i, j] = (a[i, j] − Σ_k l[i, k]·l[j, k]) / l[j, j]), four rows at a time: each
 * earlier row j is read once for the four, which sum in the same order as one row alone.
 */
export function cholesky(a: Float64Array, n: number): Float64Array | undefined {
  const l = new Float64Array(n * n);
  for (let i0 = 0; i0 < n; i0 += 4) {
    const m = Math.min(4, n - i0);
    const o0 = i0 * n, o1 = o0 + n, o2 = o1 + n, o3 = o2 + n;
    for (let j = 0; j < i0; j++) { // the columns left of the block
      const oj = j * n;
      const ljj = l[oj + j];
      if (m === 4) {
        let s0 = a[o0 + j], s1 = a[o1 + j], s2 = a[o2 + j], s3 = a[o3 + j];
        for (let k = 0; k < j; k++) {
          const v = l[oj + k];
          s0 -= l[o0 + k] * v;
          s1 -= l[o1 + k] * v;
          s2 -= l[o2 + k] * v;
          s3 -= l[o3 + k] * v;
        }
        l[o0 + j] = s0 / ljj;
        l[o1 + j] = s1 / ljj;
        l[o2 + j] = s2 / ljj;
        l[o3 + j] = s3 / ljj;
      } else {
        for (let oi = o0; oi < o0 + m * n; oi += n) {
          let s = a[oi + j];
          for (let k = 0; k < j; k++) s -= l[oi + k] * l[oj + k];
          l[oi + j] = s / ljj;
        }
      }
    }
    for (let i = i0; i < i0 + m; i++) { // the block's own triangle
      const oi = i * n;
      for (let j = i0; j <= i; j++) {
        const oj = j * n;
        let s = a[oi + j];
        for (let k = 0; k < j; k++) s -= l[oi + k] * l[oj + k];
        if (j < i) l[oi + j] = s / l[oj + j];
        else if (s > 0) l[oi + i] = Math.sqrt(s);
        else return undefined;
      }
    }
  }
  return l;
}

/**
 * Inverse of a lower-triangular l [n, n] (f64), lower-triangular. Row by row,
 * X[i, :] = (e_i − Σ_{k<i} L[i, k]·X[k, :]) / L[i, i], along rows (memory order), four rows at
 * a time: each earlier row k is read once for the four, in the same order as for one row.
 */
export function invertLower(l: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  for (let i0 = 0; i0 < n; i0 += 4) {
    const m = Math.min(4, n - i0);
    const o0 = i0 * n, o1 = o0 + n, o2 = o1 + n, o3 = o2 + n;
    for (let k = 0; k < i0; k++) { // the finished rows above the block
      const ok = k * n;
      if (m === 4) {
        const a0 = l[o0 + k], a1 = l[o1 + k], a2 = l[o2 + k], a3 = l[o3 + k];
        for (let j = 0; j <= k; j++) {
          const x = inv[ok + j];
          inv[o0 + j] -= a0 * x;
          inv[o1 + j] -= a1 * x;
          inv[o2 + j] -= a2 * x;
          inv[o3 + j] -= a3 * x;
        }
      } else {
        for (let oi = o0; oi < o0 + m * n; oi += n) {
          const a = l[oi + k];
          for (let j = 0; j <= k; j++) inv[oi + j] -= a * inv[ok + j];
        }
      }
    }
    for (let i = i0; i < i0 + m; i++) { // then the block's rows in turn
      const oi = i * n;
      for (let k = i0; k < i; k++) {
        const a = l[oi + k];
        const ok = k * n;
        for (let j = 0; j <= k; j++) inv[oi + j] -= a * inv[ok + j];
      }
      inv[oi + i] = 1;
      const d = 1 / l[oi + i];
      for (let j = 0; j <= i; j++) inv[oi + j] *= d;
    }
  }
  return inv;
}

/**
 * U upper-triangular with Uᵀ U = H⁻¹ (GPTQ's factor), from one Cholesky: with P the
 * index reversal, P H P = L Lᵀ gives H⁻¹ = (P L⁻¹ P)ᵀ (P L⁻¹ P), and P L⁻¹ P is upper.
 * Undefined when H is not positive definite.
 */
export function inverseCholeskyUpper(h: Float64Array, n: number): Float64Array | undefined {
  const r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) r[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
  }
  const l = cholesky(r, n);
  if (!l) return undefined;
  const li = invertLower(l, n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) u[i * n + j] = li[(n - 1 - i) * n + (n - 1 - j)];
  }
  return u;
}

/** GPTQ's set-up, common to {@linkcode gptqRound} and the GPU version (runtime/quant/gptq_gpu.ts). */
export interface GptqSetup {
  N: number;
  K: number;
  /** Groups a row. */
  ng: number;
  /** The dampening asked for (a fraction of H's mean diagonal). */
  damp: number;
  actOrder: boolean;
  /** order[a]: the checkpoint column rounded a-th. */
  order: number[];
  /** H's mean diagonal (1 if 0). */
  mean: number;
  /** dead[a]: the input rounded a-th is always 0 (its H row and column 0; its diagonal taken as 1). */
  dead: Uint8Array;
}

/**
 * The dampenings GPTQ tries in turn while H + λI is not positive definite (λ = the dampening
 * × H's mean diagonal): `damp`, then ×10 (at least 1e-6), six in all.
 */
export function* gptqDampings(damp: number): Generator<number> {
  for (let i = 0, d = damp; i < 6; i++, d = Math.max(d * 10, 1e-6)) yield d;
}

/** The error when even the last of {@linkcode gptqDampings} left H + λI not positive definite. */
export function notPositiveDefinite(damp: number): RangeError {
  return new RangeError(`gptq: the Hessian is not positive definite even damped by ${damp}`);
}

/** Checks GPTQ's arguments and orders H (see {@linkcode GptqSetup}). */
export function gptqSetup(
  w: HostMatrix,
  q: QuantizedWeight,
  grid: CodeGrid,
  h: ArrayLike<number>,
  o: GptqOptions = {},
): GptqSetup {
  const { rows: N, cols: K } = w;
  if (q.rows !== N || q.cols !== K) {
    throw new RangeError(`gptq: weight ${N}×${K} but quantized ${q.rows}×${q.cols}`);
  }
  if (h.length !== K * K) throw new RangeError(`gptq: H has ${h.length} values, not ${K}×${K}`);
  const ng = checkGrid(q, grid);
  const damp = o.damp ?? GPTQ_DAMP;
  if (!(damp >= 0) || !Number.isFinite(damp)) {
    throw new RangeError(`gptq: damp must be a finite number ≥ 0, got ${damp}`);
  }
  // Column order (act order: the columns with the largest inputs first) and dead columns.
  const diag = Array.from({ length: K }, (_, j) => h[j * K + j]);
  const order = Array.from({ length: K }, (_, j) => j);
  const actOrder = o.actOrder ?? true;
  if (actOrder) order.sort((a, b) => diag[b] - diag[a] || a - b);
  let mean = 0;
  for (const d of diag) mean += d;
  mean = mean / K || 1;
  const dead = Uint8Array.from(order, (j) => diag[j] > 0 ? 0 : 1);
  return { N, K, ng, damp, actOrder, order, mean, dead };
}

/** W [N, K] in the rounding order, a dead column 0: f64 (the CPU's) or f32 (the GPU's). */
export function permutedWeight(w: HostMatrix, s: GptqSetup): Float64Array;
/** W [N, K] in the rounding order, a dead column 0, in f32. */
export function permutedWeight(w: HostMatrix, s: GptqSetup, f32: true): Float32Array;
export function permutedWeight(
  w: HostMatrix,
  s: GptqSetup,
  f32 = false,
): Float64Array | Float32Array {
  const { N, K, order, dead } = s;
  const wp = f32 ? new Float32Array(N * K) : new Float64Array(N * K);
  for (let r = 0; r < N; r++) {
    const row = r * K;
    for (let a = 0; a < K; a++) wp[row + a] = dead[a] ? 0 : w.data[row + order[a]];
  }
  return wp;
}

/** H in the rounding order (f64, undamped), a dead column's diagonal set to 1. */
export function permutedGram(h: ArrayLike<number>, s: GptqSetup): Float64Array {
  const { K, order, dead } = s;
  const hp = new Float64Array(K * K);
  for (let a = 0; a < K; a++) {
    const row = order[a] * K;
    for (let b = 0; b < K; b++) hp[a * K + b] = h[row + order[b]];
    if (dead[a]) hp[a * K + a] = 1; // an input that is always 0
  }
  return hp;
}

/**
 * Re-chooses the codes of `q` (fitted to `w` by its quantizer) by GPTQ on the quantizer's
 * grid, for inputs whose Gram matrix is `h` [K, K]. Returns a copy of `q` with new codes
 * and `meta.gptqDamp` (the dampening used: raised ×10 while H + λI is not positive definite).
 */
export function gptqRound(
  w: HostMatrix,
  q: QuantizedWeight,
  grid: CodeGrid,
  h: ArrayLike<number>,
  o: GptqOptions = {},
): QuantizedWeight {
  const setup = gptqSetup(w, q, grid, h, o);
  const { N, K, ng, damp, actOrder, order, mean } = setup;
  const hp = permutedGram(h, setup);
  const wp = permutedWeight(w, setup);
  let u: Float64Array | undefined;
  let used = damp;
  for (used of gptqDampings(damp)) {
    const d = hp.slice();
    for (let a = 0; a < K; a++) d[a * K + a] += used * mean;
    u = inverseCholeskyUpper(d, K);
    if (u) break;
  }
  if (!u) throw notPositiveDefinite(used);
  const L = 2 ** q.bits;
  const near = new NearestCode(grid.values, L);
  const codes = new Uint8Array(N * K);
  // GPTQ's lazy batches: a block of B columns is rounded with its updates kept inside the
  // block, then its errors go onto the later columns in chunks of C (u's B×C tile stays in
  // cache over every row). Each weight still takes its updates in column order, one at a
  // time, so the result is the column-at-a-time loop's to the bit.
  const B = 64, C = 512;
  const err = new Float64Array(N * B);
  for (let c0 = 0; c0 < K; c0 += B) {
    const c1 = Math.min(K, c0 + B);
    for (let r = 0; r < N; r++) {
      const ro = r * K;
      for (let a = c0; a < c1; a++) {
        const col = order[a];
        const set = r * ng + Math.floor(col / grid.groupSize);
        const v = wp[ro + a];
        const c = near.find(set, v);
        codes[ro + col] = c;
        const e = (v - grid.values[set * L + c]) / u[a * K + a];
        err[r * B + a - c0] = e;
        if (e === 0) continue;
        const uo = a * K;
        for (let b = a + 1; b < c1; b++) wp[ro + b] -= e * u[uo + b];
      }
    }
    for (let j0 = c1; j0 < K; j0 += C) {
      const j1 = Math.min(K, j0 + C);
      for (let r = 0; r < N; r++) {
        const ro = r * K;
        for (let a = c0; a < c1; a++) {
          const e = err[r * B + a - c0];
          if (e === 0) continue;
          const uo = a * K;
          for (let b = j0; b < j1; b++) wp[ro + b] -= e * u[uo + b];
        }
      }
    }
  }
  return {
    ...q,
    codes: packCodes(codes, N, K, q.bits),
    meta: { ...q.meta, gptqDamp: used, gptqActOrder: actOrder },
  };
}

/**
 * The output SQNR (dB) of a quantized weight on inputs with Gram matrix h: 10·log10 of
 * Σ_r w_r H w_rᵀ over Σ_r e_r H e_rᵀ, e = ŵ − w (the error ‖X(Ŵ − W)ᵀ‖² GPTQ minimises).
 */
export function outputSqnrDb(
  w: Float32Array,
  deq: Float32Array,
  h: ArrayLike<number>,
  N: number,
  K: number,
): number {
  return outputSqnrsDb(w, [deq], h, N, K)[0];
}

/**
 * {@linkcode outputSqnrDb} of several dequantized versions of one weight in one pass over H:
 * the signal Σ_r w_r H w_rᵀ, common to all, is computed once (each pass is N·K²).
 */
export function outputSqnrsDb(
  w: Float32Array,
  deqs: readonly Float32Array[],
  h: ArrayLike<number>,
  N: number,
  K: number,
): number[] {
  const n = deqs.length;
  let sig = 0;
  const err = new Float64Array(n);
  const e = deqs.map(() => new Float64Array(K));
  const hv = new Float64Array(K);
  const ev = deqs.map(() => new Float64Array(K));
  for (let r = 0; r < N; r++) {
    for (let d = 0; d < n; d++) {
      for (let j = 0; j < K; j++) e[d][j] = deqs[d][r * K + j] - w[r * K + j];
      ev[d].fill(0);
    }
    hv.fill(0);
    for (let i = 0; i < K; i++) {
      const wi = w[r * K + i];
      const o = i * K;
      if (wi !== 0) { for (let j = 0; j < K; j++) hv[j] += wi * h[o + j]; }
      for (let d = 0; d < n; d++) {
        const ei = e[d][i];
        if (ei === 0) continue;
        const v = ev[d];
        for (let j = 0; j < K; j++) v[j] += ei * h[o + j];
      }
    }
    for (let j = 0; j < K; j++) {
      sig += hv[j] * w[r * K + j];
      for (let d = 0; d < n; d++) err[d] += ev[d][j] * e[d][j];
    }
  }
  return Array.from(err, (x) => x > 0 ? 10 * Math.log10(sig / x) : Infinity);
}

/**
 * The Gram matrix of transformed inputs, Tᵀ H T, from H [K, K] and the transform's CPU
 * reference x [rows, K] → x·T (a rotation's `transformActivations`): (H T)ᵀ T, H symmetric.
 */
export function transformGram(
  h: Float32Array,
  K: number,
  transform: (x: Float32Array, rows: number) => Float32Array,
): Float32Array {
  const ht = transform(h, K);
  const t = new Float32Array(K * K);
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < K; j++) t[j * K + i] = ht[i * K + j];
  }
  return transform(t, K);
}

/**
 * A layer's H for GPTQ in the basis its quantized weight lives in: the calibration Gram
 * matrix `gram` (checkpoint basis) through the layer's online transform, if any (Tᵀ H T).
 */
export function gptqHessian(
  name: string,
  K: number,
  gram: Float32Array | undefined,
  rotation?: Pick<LayerRotation, "transformActivations">,
): Float32Array {
  if (!gram || gram.length !== K * K) {
    throw new RangeError(`${name}: GPTQ needs the layer's calibration Gram matrix [${K}, ${K}]`);
  }
  return rotation ? transformGram(gram, K, (x, n) => rotation.transformActivations(x, n)) : gram;
}
