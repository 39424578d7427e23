import { assert, assertAlmostEquals, assertClose, assertThrows } from "../../tests/assert.ts";
import { Prng } from "../io/prng.ts";
import { gemmRef } from "../reference/gemm.ts";
import {
  branchResidual,
  hessianBranch,
  hessianFactor,
  lowRankSplit,
  refitLowRank,
  symmetricEigen,
} from "./low_rank.ts";
import { HadamardRotation } from "./rotation.ts";
import { gramRef } from "../reference/act_gram.ts";

/** n columns of length m (m ≥ n), orthonormal, as a row-major [m, n] matrix. */
function orthonormal(g: Prng, m: number, n: number): Float64Array {
  const cols: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const v = Float64Array.from(g.normals(m));
    for (const c of cols) {
      let d = 0;
      for (let k = 0; k < m; k++) d += c[k] * v[k];
      for (let k = 0; k < m; k++) v[k] -= d * c[k];
    }
    const nrm = Math.hypot(...v);
    cols.push(v.map((x) => x / nrm));
  }
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[i * n + j] = cols[j][i];
  return out;
}

/** W = U·diag(s)·Vᵀ [N, K] with the given singular values. */
function withSingularValues(g: Prng, N: number, K: number, s: number[]): Float32Array {
  const r = s.length;
  const u = orthonormal(g, N, r);
  const v = orthonormal(g, K, r);
  const w = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      let t = 0;
      for (let j = 0; j < r; j++) t += u[n * r + j] * s[j] * v[k * r + j];
      w[n * K + k] = t;
    }
  }
  return w;
}

const sq = (a: ArrayLike<number>) => Array.from(a).reduce((t, v) => t + v * v, 0);

Deno.test("low rank: symmetric eigen-decomposition, largest first", () => {
  const p = 7;
  const q = orthonormal(new Prng(1), p, p);
  const lambda = [0.5, 9, -2, 4, 0, 1e-3, 3];
  const s = new Float64Array(p * p);
  for (let i = 0; i < p; i++) {
    for (let j = 0; j < p; j++) {
      for (let k = 0; k < p; k++) s[i * p + j] += q[i * p + k] * lambda[k] * q[j * p + k];
    }
  }
  const a = s.slice();
  const { values, vectors } = symmetricEigen(s, p);
  assertClose(values, [...lambda].sort((x, y) => y - x), { atol: 1e-12 });
  for (const [i, v] of vectors.entries()) { // A·v = λ·v
    const av = Array.from({ length: p }, (_, r) => v.reduce((t, x, c) => t + a[r * p + c] * x, 0));
    assertClose(av, Array.from(v, (x) => x * values[i]), { atol: 1e-10 });
  }
});

Deno.test("low rank: the branch holds the top singular values; B·A + E is W", () => {
  const [N, K] = [40, 24];
  const s = Array.from({ length: 24 }, (_, i) => 10 * 0.8 ** i);
  const data = withSingularValues(new Prng(2), N, K, s);
  const w = { data, rows: N, cols: K };
  for (const R of [1, 4, 9]) {
    const { a, b, residual, energy } = lowRankSplit(w, w, R);
    const top = sq(s.slice(0, R)) / sq(s);
    assertAlmostEquals(energy, top, 1e-7); // W and B are f32
    assertAlmostEquals(sq(residual.data) / sq(data), 1 - top, 1e-6);
    // B's columns are orthonormal.
    const btb = gemmRef(transpose(b, N, R), transpose(b, N, R), R, R, N);
    assertClose(btb, Array.from({ length: R * R }, (_, i) => i % (R + 1) === 0 ? 1 : 0), {
      atol: 1e-6,
    });
    // B·A + E = W (B [N, R] times A [R, K]: gemmRef wants the right operand as [K, R]).
    const ba = gemmRef(b, transpose(a, R, K), N, K, R, { residual: residual.data });
    assertClose(ba, data, { atol: 1e-5 });
  }
  // Full rank leaves nothing to quantize.
  const full = lowRankSplit(w, w, 24);
  assert(Math.sqrt(sq(full.residual.data) / sq(data)) < 1e-6);
});

Deno.test("low rank: with a rotation, x·Aᵀ·Bᵀ + x'·Eᵀ = x·Wᵀ", () => {
  const [N, K, M, R] = [12, 16, 5, 3];
  const g = new Prng(3);
  const w = { data: g.normals(N * K), rows: N, cols: K };
  const m = Float64Array.from({ length: K }, () => 0.5 + g.nextU32() / 2 ** 32);
  const rot = orthonormal(g, K, K); // R [K, K]
  // W' = W·diag(m)·R; x' = x·diag(m)⁻¹·R.
  const right = (x: Float32Array, rows: number, scale: (k: number) => number) => {
    const out = new Float32Array(rows * K);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < K; j++) {
        let t = 0;
        for (let k = 0; k < K; k++) t += x[i * K + k] * scale(k) * rot[k * K + j];
        out[i * K + j] = t;
      }
    }
    return out;
  };
  const wt = { data: right(w.data, N, (k) => m[k]), rows: N, cols: K };
  const x = g.normals(M * K);
  const xt = right(x, M, (k) => 1 / m[k]);
  const { a, b, residual } = lowRankSplit(wt, w, R);
  const u = gemmRef(x, a, M, R, K); // x·Aᵀ
  const y = gemmRef(u, b, M, N, R, { residual: gemmRef(xt, residual.data, M, N, K) });
  assertClose(y, gemmRef(x, w.data, M, N, K), { atol: 1e-4 });
  // E depends on W' alone.
  assertClose(residual.data, lowRankSplit(wt, wt, R).residual.data, { atol: 0 });
});

Deno.test("low rank refit: the branch takes the rounding error's share in span(B), in W's space", () => {
  const [N, K, M, R] = [16, 32, 7, 4];
  const g = new Prng(5);
  const w = { data: g.normals(N * K), rows: N, cols: K };
  const m = Float32Array.from({ length: K }, () => 0.5 + g.nextU32() / 2 ** 32);
  const signs = Float32Array.from({ length: K }, () => (g.nextU32() & 1 ? 1 : -1));
  const rot = new HadamardRotation(m, signs, 16);
  const wt = rot.transformWeight(w);
  const split = lowRankSplit(wt, w, R);
  const noise = g.normals(N * K);
  const deq = Float32Array.from(split.residual.data, (v, i) => v + 0.05 * noise[i]); // Ê
  const { a, absorbed } = refitLowRank(split.b, w, wt, deq, (x) => rot.restoreWeight(x));
  const x = g.normals(M * K);
  const xt = rot.transformActivations(x, M);
  const out = (a: Float32Array) =>
    gemmRef(gemmRef(x, a, M, R, K), split.b, M, N, R, { residual: gemmRef(xt, deq, M, N, K) });
  const exact = gemmRef(x, w.data, M, N, K);
  const err = (y: Float32Array) => sq(y.map((v, i) => v - exact[i]));
  assert(err(out(a)) < 0.9 * err(out(split.a)), `${err(out(a))} vs ${err(out(split.a))}`);
  // What is left, W' − Ê − B·A', is orthogonal to B, and ‖W' − Ê‖² less `absorbed`.
  const aRot = rot.transformWeight({ data: a, rows: R, cols: K }).data;
  const left = Float32Array.from(wt.data, (v, i) => v - deq[i]);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      for (let r = 0; r < R; r++) left[n * K + k] -= split.b[n * R + r] * aRot[r * K + k];
    }
  }
  const bt = gemmRef(transpose(split.b, N, R), transpose(left, N, K), R, K, N); // Bᵀ·left
  assert(Math.max(...bt.map(Math.abs)) < 1e-4, `Bᵀ·(what is left) ${Math.max(...bt)}`);
  const before = sq(wt.data.map((v, i) => v - deq[i]));
  assertAlmostEquals(sq(left), before - absorbed, 1e-3 * before);
  // Without a rotation the refit is Bᵀ·(W − Ê) itself.
  const plain = lowRankSplit(w, w, R);
  const { a: a0 } = refitLowRank(plain.b, w, w, deq);
  const want = gemmRef(
    transpose(plain.b, N, R),
    transpose(
      Float32Array.from(w.data, (v, i) => v - deq[i]),
      N,
      K,
    ),
    R,
    K,
    N,
  );
  assertClose(a0, want, { atol: 1e-5 });
  assertThrows(() => refitLowRank(plain.b, w, w, deq.subarray(1)), RangeError, "do not fit");
});

Deno.test("low rank, hessian: B·Bᵀ·D leaves less output error on the inputs than D's own top R", () => {
  const [N, K, M, R] = [24, 32, 96, 4];
  const g = new Prng(9);
  // Inputs with a few loud channels: their Gram matrix weighs D's columns very unequally.
  const x = g.normals(M * K).map((v, i) => (i % K < 3 ? 30 * v : v));
  const h = gramRef(x, M, K);
  const d = { data: g.normals(N * K), rows: N, cols: K };
  const outErr = (b: Float32Array) => {
    const left = branchResidual(d, b, d).data; // D − B·Bᵀ·D
    return sq(gemmRef(x, left, M, N, K));
  };
  const bh = hessianBranch(d, hessianFactor(h, K), R);
  const bs = lowRankSplit(d, d, R).b;
  assert(outErr(bh) < 0.5 * outErr(bs), `${outErr(bh)} vs ${outErr(bs)}`);
  // B's columns are orthonormal.
  for (let r = 0; r < R; r++) {
    for (let t = 0; t < R; t++) {
      let v = 0;
      for (let n = 0; n < N; n++) v += bh[n * R + r] * bh[n * R + t];
      assertAlmostEquals(v, r === t ? 1 : 0, 1e-5);
    }
  }
  // With H = I it is D's own top R (the same subspace).
  const eye = Float64Array.from({ length: K * K }, (_, i) => (i % (K + 1) ? 0 : 1));
  const identity = hessianBranch(d, hessianFactor(eye, K, 0), R);
  assertAlmostEquals(outErr(identity), outErr(bs), 1e-3 * outErr(bs));
  assertThrows(() => hessianFactor(h.subarray(1), K), RangeError, "not 32×32");
  assertThrows(() => hessianBranch(d, new Float64Array(4), R), RangeError, "not 32×32");
  // A Gram matrix no dampening makes positive definite is named.
  assertThrows(
    () => hessianFactor(new Float64Array(K * K).fill(NaN), K),
    RangeError,
    "positive definite",
  );
});

Deno.test("low rank: a bad rank or shape is named", () => {
  const w = { data: new Float32Array(12), rows: 3, cols: 4 };
  assertThrows(() => lowRankSplit(w, w, 4), RangeError, "1..3, got 4");
  assertThrows(() => lowRankSplit(w, w, 1.5), RangeError, "got 1.5");
  assertThrows(() => lowRankSplit(w, { ...w, rows: 4, cols: 3 }, 1), RangeError, "W is [4, 3]");
  // A zero weight: nothing in the branch, and no NaN.
  const z = lowRankSplit(w, w, 2);
  assert(z.energy === 0 && z.residual.data.every((v) => v === 0) && z.b.every(Number.isFinite));
});

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j];
  return out;
}
