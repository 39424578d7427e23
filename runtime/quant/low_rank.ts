/**
 * The low-rank branch of a quantized weight (SVDQuant's): the weight the
 * quantizer sees, W' = W·diag(m)·R after a rotation (W itself without), is split as
 * W' = B·Bᵀ·W' + E with B [N, R] W''s top R left singular vectors. E is quantized; B·Bᵀ·W'
 * stays in float. Since x'·W'ᵀ = x·Wᵀ for the rotated input x', the branch's share is
 * x·Wᵀ·B·Bᵀ = (x·Aᵀ)·Bᵀ with A = Bᵀ·W [R, K] in the layer's own input space: the branch runs on
 * the unquantized input, before any centring, CFG delta or rotation, and the layer adds
 * (x·Aᵀ)·Bᵀ to its quantized product (runtime/ops/low_rank.ts). The identity holds for any B;
 * the top singular vectors make E smallest, so its quantization error smallest.
 *
 * B comes from a randomised subspace iteration (f64, seeded: the same weight gives the same
 * split): Y = W'·Ω, then Y ← orth(W'·orth(W'ᵀ·Y)) a few times, then the R leading
 * eigenvectors of (Yᵀ·W')·(Yᵀ·W')ᵀ rotate Y onto the singular directions. About 1.5 s on one
 * core for a 4608×1152 layer at R 32 (PixArt-α's FFN; ~4 min for its 28 blocks), on the thread
 * that quantizes, before the layer's job goes to a worker.
 *
 * Once E is quantized to Ê the branch can be fitted to what the codes left (runtime/quant/
 * low_rank_fit.ts runs the rounds): {@linkcode refitLowRank} keeps B and sets A' = Bᵀ·(W' − Ê);
 * {@linkcode hessianBranch} chooses B for the least output error on the calibration inputs
 * (the top R left singular vectors of (W' − Ê)·C, C·Cᵀ their damped Gram matrix), and
 * {@linkcode branchResidual} gives the rest the quantizer gets next. On one core
 * (bench/low_rank_fit_bench.ts, bench/results/host/2026-11-28_low_rank_fit.md): 0.21 s for H's
 * factor and 1.6 s a round's branch for a 4608×1152 layer at R 32, 10.8 s and 8.9 s for a
 * 1152×4608 one (PixArt-α's FFN down: a factor and three branches, ~37 s a layer).
 *
 * @module
 */
import type { HostMatrix } from "../../plugins/types.ts";
import { Prng } from "../io/prng.ts";
import { cholesky, GPTQ_DAMP, gptqDampings, notPositiveDefinite } from "./gptq.ts";

/** A weight split into a float low-rank branch and the rest. */
export interface LowRankSplit {
  /** A [R, K] = Bᵀ·W, the branch's down factor on the layer's own (unrotated) input. */
  a: Float32Array;
  /** B [N, R], its up factor: orthonormal columns (W''s top left singular vectors). */
  b: Float32Array;
  /** E = W' − B·Bᵀ·W' [N, K], what the quantizer gets, in W''s space. */
  residual: HostMatrix;
  /** Share of W''s squared norm in the branch, ‖Bᵀ·W'‖² / ‖W'‖² (0 for a zero weight). */
  energy: number;
}

/** Knobs of {@linkcode lowRankSplit}. */
export interface LowRankOptions {
  /** Subspace iterations; default 6. */
  iterations?: number;
  /** Extra columns of the sketch beyond R; default 8. */
  oversample?: number;
  /** Seed of the sketch; default 0. */
  seed?: number;
}

/** Columns stored one array each (n values). */
type Cols = Float64Array[];

/**
 * C's columns four at a time (a zero column pads the last four): each pass over M, the large
 * operand, serves four columns. The sums keep one column's order, so the result is that of
 * one column at a time.
 */
function inFours(c: Cols, len: number, each: (c4: Cols) => Cols): Cols {
  const zero = new Float64Array(len);
  const out: Cols = [];
  for (let j = 0; j < c.length; j += 4) {
    const c4 = [0, 1, 2, 3].map((t) => c[j + t] ?? zero);
    out.push(...each(c4).slice(0, Math.min(4, c.length - j)));
  }
  return out;
}

/** M·C for M [rows, inner] row-major and C `inner`-long columns. */
function mulCols(m: ArrayLike<number>, rows: number, inner: number, c: Cols): Cols {
  return inFours(c, inner, ([c0, c1, c2, c3]) => {
    const out = [0, 1, 2, 3].map(() => new Float64Array(rows));
    for (let i = 0; i < rows; i++) {
      let [s0, s1, s2, s3] = [0, 0, 0, 0];
      const o = i * inner;
      for (let k = 0; k < inner; k++) {
        const v = m[o + k];
        s0 += v * c0[k];
        s1 += v * c1[k];
        s2 += v * c2[k];
        s3 += v * c3[k];
      }
      [out[0][i], out[1][i], out[2][i], out[3][i]] = [s0, s1, s2, s3];
    }
    return out;
  });
}

/** Mᵀ·C for M [rows, inner] row-major and C `rows`-long columns. */
function mulColsT(m: ArrayLike<number>, rows: number, inner: number, c: Cols): Cols {
  return inFours(c, rows, ([c0, c1, c2, c3]) => {
    const [o0, o1, o2, o3] = [0, 1, 2, 3].map(() => new Float64Array(inner));
    for (let i = 0; i < rows; i++) {
      const [v0, v1, v2, v3] = [c0[i], c1[i], c2[i], c3[i]];
      const o = i * inner;
      for (let k = 0; k < inner; k++) {
        const v = m[o + k];
        o0[k] += v * v0;
        o1[k] += v * v1;
        o2[k] += v * v2;
        o3[k] += v * v3;
      }
    }
    return [o0, o1, o2, o3];
  });
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Orthonormalises the columns in place (Gram–Schmidt, twice); dependent columns become 0. */
function orthonormalize(c: Cols): Cols {
  for (let j = 0; j < c.length; j++) {
    const v = c[j];
    const n0 = Math.sqrt(dot(v, v));
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < j; i++) {
        const d = dot(c[i], v);
        for (let k = 0; k < v.length; k++) v[k] -= d * c[i][k];
      }
    }
    const n = Math.sqrt(dot(v, v));
    if (!(n > 1e-10 * n0) || n === 0) v.fill(0);
    else for (let k = 0; k < v.length; k++) v[k] /= n;
  }
  return c;
}

/**
 * Eigen-decomposition of a symmetric p×p matrix (row-major, overwritten) by cyclic Jacobi
 * rotations: eigenvalues and their eigenvectors (columns), largest first.
 */
export function symmetricEigen(s: Float64Array, p: number): { values: number[]; vectors: Cols } {
  const v = Array.from({ length: p }, (_, j) => {
    const c = new Float64Array(p);
    c[j] = 1;
    return c;
  });
  for (let sweep = 0; sweep < 64; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < p; i++) {
      diag += s[i * p + i] ** 2;
      for (let j = i + 1; j < p; j++) off += s[i * p + j] ** 2;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let i = 0; i < p; i++) {
      for (let j = i + 1; j < p; j++) {
        const aij = s[i * p + j];
        if (aij === 0) continue;
        const theta = (s[j * p + j] - s[i * p + i]) / (2 * aij);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const sn = t * c;
        for (let k = 0; k < p; k++) { // columns i, j of S·J
          const ski = s[k * p + i];
          const skj = s[k * p + j];
          s[k * p + i] = c * ski - sn * skj;
          s[k * p + j] = sn * ski + c * skj;
        }
        for (let k = 0; k < p; k++) { // rows i, j of Jᵀ·S
          const sik = s[i * p + k];
          const sjk = s[j * p + k];
          s[i * p + k] = c * sik - sn * sjk;
          s[j * p + k] = sn * sik + c * sjk;
        }
        const vi = v[i];
        const vj = v[j];
        for (let k = 0; k < p; k++) { // V·J (v[i] is V's column i)
          const a = vi[k];
          const b = vj[k];
          vi[k] = c * a - sn * b;
          vj[k] = sn * a + c * b;
        }
      }
    }
  }
  // v[j] is V's column j, the eigenvector of the diagonal's entry j.
  const order = Array.from({ length: p }, (_, i) => i).sort((a, b) => s[b * p + b] - s[a * p + a]);
  return { values: order.map((i) => s[i * p + i]), vectors: order.map((j) => v[j]) };
}

/**
 * The top `rank` left singular vectors of an N×K matrix M given as its products M·C and
 * Mᵀ·C with columns: a randomised subspace iteration (f64, seeded), Y = M·Ω, then
 * Y ← orth(M·orth(Mᵀ·Y)) a few times, then the leading eigenvectors of (Yᵀ·M)·(Yᵀ·M)ᵀ rotate
 * Y onto the singular directions. Returns B [N, rank] row-major, rounded to f32.
 */
function topLeftVectors(
  mul: (c: Cols) => Cols,
  mulT: (c: Cols) => Cols,
  N: number,
  K: number,
  rank: number,
  opts: LowRankOptions,
): Float32Array {
  const p = Math.min(rank + (opts.oversample ?? 8), N, K);
  const g = new Prng(opts.seed ?? 0);
  const omega: Cols = Array.from({ length: p }, () => Float64Array.from(g.normals(K)));
  let y = orthonormalize(mul(omega));
  for (let it = 0; it < (opts.iterations ?? 6); it++) {
    y = orthonormalize(mul(orthonormalize(mulT(y))));
  }
  // Yᵀ·M [p, K] as columns of K values, and its Gram (Yᵀ·M)·(Yᵀ·M)ᵀ [p, p].
  const ym = mulT(y);
  const gram = new Float64Array(p * p);
  for (let i = 0; i < p; i++) for (let j = 0; j < p; j++) gram[i * p + j] = dot(ym[i], ym[j]);
  const { vectors } = symmetricEigen(gram, p);
  // B = Y·V[:, :R] [N, R] row-major.
  const b = new Float64Array(N * rank);
  for (let r = 0; r < rank; r++) {
    const vr = vectors[r];
    for (let j = 0; j < p; j++) {
      const c = vr[j];
      if (c === 0) continue;
      const yj = y[j];
      for (let n = 0; n < N; n++) b[n * rank + r] += c * yj[n];
    }
  }
  return Float32Array.from(b);
}

/**
 * Splits `wt` (W', what the quantizer would get) into a rank-`rank` float branch and the rest;
 * `w` is the layer's own weight W, from which the branch's A = Bᵀ·W is taken (pass `wt` again
 * for a layer without a rotation).
 *
 * @throws {RangeError} when the shapes differ or `rank` is not an integer in 1..min(N, K).
 */
export function lowRankSplit(
  wt: HostMatrix,
  w: HostMatrix,
  rank: number,
  opts: LowRankOptions = {},
): LowRankSplit {
  const { rows: N, cols: K } = wt;
  if (w.rows !== N || w.cols !== K) {
    throw new RangeError(`lowRankSplit: W is [${w.rows}, ${w.cols}], W' [${N}, ${K}]`);
  }
  if (!Number.isInteger(rank) || rank < 1 || rank > Math.min(N, K)) {
    throw new RangeError(`low rank must be an integer in 1..${Math.min(N, K)}, got ${rank}`);
  }
  const bf = topLeftVectors(
    (c) => mulCols(wt.data, N, K, c),
    (c) => mulColsT(wt.data, N, K, c),
    N,
    K,
    rank,
    opts,
  );
  // A and E from B as stored (f32): the split is exact for the B the layer runs with.
  const bCols = colsOf(bf, N);
  const a = mulColsT(w.data, N, K, bCols); // Bᵀ·W: R rows of K
  const pt = w === wt ? a : mulColsT(wt.data, N, K, bCols); // Bᵀ·W' (Bᵀ·W without a rotation)
  const residual = new Float32Array(N * K);
  let total = 0;
  let kept = 0;
  for (let r = 0; r < rank; r++) kept += dot(pt[r], pt[r]);
  const s = new Float64Array(K); // a row of B·Bᵀ·W', summed over r in order
  for (let n = 0; n < N; n++) {
    s.fill(0);
    for (let r = 0; r < rank; r++) {
      const b = bf[n * rank + r];
      const p = pt[r];
      for (let k = 0; k < K; k++) s[k] += b * p[k];
    }
    for (let k = 0; k < K; k++) {
      const v = wt.data[n * K + k];
      total += v * v;
      residual[n * K + k] = v - s[k];
    }
  }
  const aOut = new Float32Array(rank * K);
  for (let r = 0; r < rank; r++) aOut.set(a[r], r * K);
  return {
    a: aOut,
    b: bf,
    residual: { data: residual, rows: N, cols: K },
    energy: total > 0 ? kept / total : 0,
  };
}

/** The branch's down factor fitted to the quantized rest ({@linkcode refitLowRank}). */
export interface LowRankRefit {
  /** The new A [R, K] (row-major), in the layer's own input space. */
  a: Float32Array;
  /** ‖Bᵀ·(W' − Ê)‖²: the squared error the branch takes off ‖W' − Ê‖² (W''s space). */
  absorbed: number;
}

/** B [N, R] row-major as R columns of N values. */
function colsOf(b: Float32Array, N: number): Cols {
  const R = b.length / N;
  return Array.from(
    { length: R },
    (_, r) => Float64Array.from({ length: N }, (_, n) => b[n * R + r]),
  );
}

/**
 * Once the rest is quantized to Ê, the branch's down factor for B: A' = Bᵀ·(W' − Ê) in W''s
 * space, A = Bᵀ·W − restore(Bᵀ·Ê) in the layer's (`restore`: the rotation's restoreWeight;
 * none without one). For a fixed B this is the best A' in the output error of any inputs
 * (W' − Ê − B·A' splits into (I − B·Bᵀ)(W' − Ê), which A' does not touch, and
 * B·(Bᵀ(W' − Ê) − A'), orthogonal to it and zero here): with B from W''s SVD the branch
 * absorbs the rounding error's component in span(B), R/N of it for white error, at no cost
 * at run time. `w` is W, `wt` W' (`w` again without a rotation).
 */
export function refitLowRank(
  b: Float32Array,
  w: HostMatrix,
  wt: HostMatrix,
  quantized: ArrayLike<number>,
  restore?: (m: HostMatrix) => HostMatrix,
): LowRankRefit {
  const { rows: N, cols: K } = wt;
  const R = b.length / N;
  if (!Number.isInteger(R) || w.data.length !== N * K || quantized.length !== N * K) {
    throw new RangeError(`refitLowRank: B, W and Ê do not fit W' [${N}, ${K}]`);
  }
  const bCols = colsOf(b, N);
  const bw = mulColsT(w.data, N, K, bCols); // Bᵀ·W
  const bq = mulColsT(quantized, N, K, bCols); // Bᵀ·Ê
  const bwt = w === wt ? bw : mulColsT(wt.data, N, K, bCols); // Bᵀ·W'
  let absorbed = 0;
  const q = new Float32Array(R * K);
  for (let r = 0; r < R; r++) {
    for (let k = 0; k < K; k++) absorbed += (bwt[r][k] - bq[r][k]) ** 2;
    q.set(bq[r], r * K);
  }
  const own = restore ? restore({ data: q, rows: R, cols: K }).data : q;
  const a = new Float32Array(R * K);
  for (let r = 0; r < R; r++) for (let k = 0; k < K; k++) a[r * K + k] = bw[r][k] - own[r * K + k];
  return { a, absorbed };
}

/**
 * The lower Cholesky factor C of H + λI (f64 [K, K] row-major), H the calibration inputs' Gram
 * matrix in W''s basis: the norm {@linkcode hessianBranch} fits in. λ is `damp` × H's mean
 * diagonal, raised as GPTQ's is while H + λI is not positive definite.
 */
export function hessianFactor(h: ArrayLike<number>, K: number, damp = GPTQ_DAMP): Float64Array {
  if (h.length !== K * K) {
    throw new RangeError(`hessianFactor: H has ${h.length} values, not ${K}×${K}`);
  }
  let mean = 0;
  for (let j = 0; j < K; j++) mean += h[j * K + j];
  mean = mean / K || 1;
  for (const dd of gptqDampings(damp)) {
    const hd = Float64Array.from(h);
    for (let j = 0; j < K; j++) hd[j * K + j] += dd * mean;
    const c = cholesky(hd, K);
    if (c) return c;
  }
  throw notPositiveDefinite(damp);
}

/**
 * B for the branch of least output error on the calibration inputs once the rest is
 * quantized: with D = W' − Ê and C = {@linkcode hessianFactor}, the branch B·Bᵀ·D of rank R
 * that leaves the least ‖(D − B·Bᵀ·D)·C‖ (the output error's squared sum on those inputs) has
 * B the top R left singular vectors of D·C.
 */
export function hessianBranch(d: HostMatrix, c: Float64Array, rank: number): Float32Array {
  const { rows: N, cols: K } = d;
  if (c.length !== K * K) {
    throw new RangeError(`hessianBranch: C has ${c.length} values, not ${K}×${K}`);
  }
  const lower = (v: Float64Array) => { // C·v
    const out = new Float64Array(K);
    for (let i = 0; i < K; i++) {
      let t = 0;
      for (let j = 0; j <= i; j++) t += c[i * K + j] * v[j];
      out[i] = t;
    }
    return out;
  };
  const lowerT = (v: Float64Array) => { // Cᵀ·v
    const out = new Float64Array(K);
    for (let i = 0; i < K; i++) {
      const vi = v[i];
      for (let j = 0; j <= i; j++) out[j] += c[i * K + j] * vi;
    }
    return out;
  };
  return topLeftVectors(
    (cols) => mulCols(d.data, N, K, cols.map(lower)),
    (cols) => mulColsT(d.data, N, K, cols).map(lowerT),
    N,
    K,
    rank,
    {},
  );
}

/** W' − B·Bᵀ·D: the rest the quantizer gets once the branch is B·Bᵀ·D (D = W' − Ê). */
export function branchResidual(wt: HostMatrix, b: Float32Array, d: HostMatrix): HostMatrix {
  const { rows: N, cols: K } = wt;
  const R = b.length / N;
  const p = mulColsT(d.data, N, K, colsOf(b, N)); // Bᵀ·D
  const out = new Float32Array(N * K);
  const s = new Float64Array(K);
  for (let n = 0; n < N; n++) {
    s.fill(0);
    for (let r = 0; r < R; r++) {
      const v = b[n * R + r];
      for (let k = 0; k < K; k++) s[k] += v * p[r][k];
    }
    for (let k = 0; k < K; k++) out[n * K + k] = wt.data[n * K + k] - s[k];
  }
  return { data: out, rows: N, cols: K };
}
