/**
 * TLQ's least-squares plane fit (`fit: "mse"`, an option beyond METHODS.md): each row's
 * plane takes the (Δ, z) of least Σ(ŵ − |w|)², every weight on its nearest level, instead
 * of METHODS.md's lo = min L, Δ = (hi − lo)/2^(b−1). The grid family and the artifact are
 * the same (levels 2^((k+z)Δ) − η, Δ an f16, z an i16); only the choice differs.
 *
 * Why it matters: with lo = min log2(|w| + η) the lowest level of each plane is ≈ 0, so a
 * row's 2^b codes hold two near-zero levels (2^b − 1 distinct values in effect), and the
 * top level stops a step short of hi. On weights without long tails that costs ~1 dB of
 * SQNR against uniform at W3; the fitted grid moves the anchor up and the top out.
 *
 * The search per plane runs on sorted |w| with prefix sums, so a candidate grid costs
 * 2^(b−1) binary searches, not a pass over the weights: first the best log grid free of
 * the stored form's constraint, then the stored (Δ, z) near it ({@linkcode fitPlane}). The
 * caller's seeds are METHODS.md's grids, so the fit is never worse than them at the same η.
 *
 * @module
 */
import { f16Bits, f16FromBits } from "../../runtime/io/f16.ts";
import { TLQ_MAX_ZERO, tlqLevel } from "./tlq_levels.ts";

/** Sorted magnitudes of every row's plane with their prefix sums. */
export interface SortedPlanes {
  /** Sorted |w| of every row's plane, row after row. */
  abs: Float64Array;
  /** Row r's plane is abs[off[r] … off[r+1]). */
  off: Int32Array;
  /** s1[i] = Σ_{j<i} abs[j]. */
  s1: Float64Array;
  /** s2[i] = Σ_{j<i} abs[j]². */
  s2: Float64Array;
}

/** Adds the prefix sums {@linkcode SortedPlanes} needs. */
export function withPrefixSums(p: { abs: Float64Array; off: Int32Array }): SortedPlanes {
  const n = p.abs.length;
  const s1 = new Float64Array(n + 1);
  const s2 = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) {
    s1[i + 1] = s1[i] + p.abs[i];
    s2[i + 1] = s2[i] + p.abs[i] * p.abs[i];
  }
  return { ...p, s1, s2 };
}

/** A plane's grid parameters and its squared error. */
export interface PlaneFit {
  /** Δ, an f16 value. */
  delta: number;
  /** z, an integer with |z| ≤ 32767. */
  zero: number;
  /** Σ(ŵ − |w|)² of the plane (plus its exact zeros' level₀²), nearest levels. */
  err: number;
}

/** The plane being fitted: row r of `pl` at offset η, b−1 log bits, with `zeros` exact zeros. */
interface Job {
  pl: SortedPlanes;
  a: number;
  n: number;
  eta: number;
  half: number;
  zeros: number;
  levels: Float64Array;
}

/** First index in [lo, hi) with abs[i] ≥ t (hi if none). */
function lowerBound(abs: Float64Array, lo: number, hi: number, t: number): number {
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (abs[m] < t) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/** A grid the artifact can store: Δ an f16 normal, z an i16 (tlqExp2 takes k + z ≤ 32775). */
function valid(delta: number, zero: number): boolean {
  return delta >= 2 ** -14 && delta <= 65504 && Math.abs(zero) <= TLQ_MAX_ZERO;
}

/** Σ(ŵ − |w|)² of the plane on the levels in j.levels, each value on its nearest level. */
function sseLevels(j: Job): number {
  const { pl, a, n, half, levels } = j;
  let err = j.zeros * levels[0] * levels[0];
  let start = a;
  for (let k = 0; k < half; k++) {
    const l = levels[k];
    const end = k === half - 1 ? a + n : lowerBound(pl.abs, start, a + n, (l + levels[k + 1]) / 2);
    const s1 = pl.s1[end] - pl.s1[start];
    const s2 = pl.s2[end] - pl.s2[start];
    err += s2 - 2 * l * s1 + l * l * (end - start);
    start = end;
  }
  return Math.max(err, 0);
}

/**
 * Σ(ŵ − |w|)² of row r's plane at η on the stored grid `g` (exact levels), each value on its
 * nearest level, plus `zeros`·level₀².
 */
export function gridError(
  pl: SortedPlanes,
  r: number,
  eta: number,
  bits: number,
  zeros: number,
  g: { delta: number; zero: number },
): number {
  const a = pl.off[r];
  const half = 2 ** (bits - 1);
  const j: Job = { pl, a, n: pl.off[r + 1] - a, eta, half, zeros, levels: new Float64Array(half) };
  return sse(j, g.delta, g.zero);
}

/** The error on grid (Δ, z) as stored: exact levels (tlqLevel). */
function sse(j: Job, delta: number, zero: number): number {
  for (let k = 0; k < j.half; k++) j.levels[k] = tlqLevel(delta, zero, k, j.eta);
  return sseLevels(j);
}

/** The error of the unconstrained grid from log2 anchor `lo` to top `hi` (any real values). */
function sseFree(j: Job, lo: number, hi: number): number {
  const step = (hi - lo) / (j.half - 1);
  for (let k = 0; k < j.half; k++) j.levels[k] = Math.max(2 ** (lo + k * step) - j.eta, 0);
  return sseLevels(j);
}

/**
 * The grid of least error with `from`'s z, Δ moved in steps from Δ/32 halving down to one
 * f16 step (a local search: the error is not convex in Δ).
 */
function descendDelta(j: Job, from: PlaneFit): PlaneFit {
  let cur = from;
  for (let step = from.delta / 32;; step /= 2) {
    for (let moved = true; moved;) {
      moved = false;
      for (const s of [step, -step]) {
        const d = Math.f16round(cur.delta + s);
        if (d === cur.delta || !valid(d, cur.zero)) continue;
        const err = sse(j, d, cur.zero);
        if (err < cur.err) [cur, moved] = [{ delta: d, zero: cur.zero, err }, true];
      }
    }
    if (step < 2 ** (Math.floor(Math.log2(cur.delta)) - 10)) return cur; // below one f16 step
  }
}

/**
 * The (Δ, z) of least squared error for row r's plane at η; `seeds` (valid f16 Δ, integer
 * z) are tried too. Two stages: the best unconstrained log grid (anchor and top anywhere:
 * a coarse 5 × 5 search over the plane's log range, then a pattern search), then the
 * stored form's grids near it: the anchor z·Δ must be a multiple of Δ, so for the five z
 * around anchor/Δ it tries Δ = anchor/z (anchor exact) and Δ itself, and descends in Δ from
 * the best three (`refine` false: takes the best start as it is, a cheaper estimate to
 * compare η). A plane without values gets Δ = 0.
 */
export function fitPlane(
  pl: SortedPlanes,
  r: number,
  eta: number,
  bits: number,
  zeros: number,
  seeds: readonly { delta: number; zero: number }[],
  refine = true,
): PlaneFit {
  const a = pl.off[r];
  const n = pl.off[r + 1] - a;
  if (n === 0) return { delta: 0, zero: 0, err: 0 };
  const half = 2 ** (bits - 1);
  const j: Job = { pl, a, n, eta, half, zeros, levels: new Float64Array(half) };
  let best: PlaneFit = { delta: 0, zero: 0, err: Infinity };
  const tryGrid = (d: number, z: number) => {
    if (!valid(d, z)) return;
    const err = sse(j, d, z);
    if (err < best.err) best = { delta: d, zero: z, err };
  };
  for (const s of seeds) tryGrid(s.delta, s.zero);

  const lo = Math.log2(pl.abs[a] + eta);
  const hi = Math.log2(pl.abs[a + n - 1] + eta);
  const range = hi - lo;
  if (range > 0) {
    // Stage 1: the unconstrained grid (anchor f, top t in log2), coarse then pattern search.
    let free = { f: lo, t: hi, err: Infinity };
    for (const fa of [0, 0.1, 0.2, 0.3, 0.45]) {
      for (const ft of [0.55, 0.7, 0.85, 1, 1.1]) {
        const e = sseFree(j, lo + fa * range, lo + ft * range);
        if (e < free.err) free = { f: lo + fa * range, t: lo + ft * range, err: e };
      }
    }
    for (let step = range / 20; step > range / 640; step /= 2) {
      for (let moved = true; moved;) {
        moved = false;
        for (const [df, dt] of [[step, 0], [-step, 0], [0, step], [0, -step]]) {
          const f = free.f + df;
          const t = free.t + dt;
          if (t <= f) continue;
          const e = sseFree(j, f, t);
          if (e < free.err) [free, moved] = [{ f, t, err: e }, true];
        }
      }
    }
    // Stage 2: stored grids near it (z·Δ near the anchor f, Δ near (t − f)/(2^(b−1) − 1)).
    // The error is steep in Δ (moving Δ moves the anchor z times as far), so the best three
    // starts are descended in Δ down to single f16 steps.
    const d0 = (free.t - free.f) / (half - 1);
    const z0 = Math.round(free.f / d0);
    const starts: PlaneFit[] = [];
    for (let z = z0 - 2; z <= z0 + 2; z++) {
      const exact = z !== 0 && free.f / z > 0 ? free.f / z : d0;
      for (const d of new Set([Math.f16round(exact), Math.f16round(d0)])) {
        if (valid(d, z)) starts.push({ delta: d, zero: z, err: sse(j, d, z) });
      }
    }
    starts.sort((x, y) => x.err - y.err);
    for (const s of starts.slice(0, refine ? 3 : 1)) {
      const f = refine ? descendDelta(j, s) : s;
      if (f.err < best.err) best = f;
    }
  }
  if (!Number.isFinite(best.err)) { // one value (or all equal) and no seed: anchor on it
    let d = Math.f16round(Math.max(2 ** -14, Math.abs(lo) / TLQ_MAX_ZERO));
    while (!valid(d, Math.round(lo / d))) d = f16FromBits(f16Bits(d) + 1);
    tryGrid(d, Math.round(lo / d));
  }
  return best;
}

/** Every row's grid parameters of both planes, at one η, and the layer's squared error. */
export interface RowGrids {
  eta: number;
  deltaPos: Float32Array;
  zeroPos: Float32Array;
  deltaNeg: Float32Array;
  zeroNeg: Float32Array;
  err: number;
  /** METHODS.md's percentiles, when the grids are its. */
  pPos?: number;
  pNeg?: number;
}

/** {@linkcode RowGrids} of N rows at η, every plane's Δ = 0 (no weights) until set. */
export function rowGrids(N: number, eta: number): RowGrids {
  return {
    eta,
    deltaPos: new Float32Array(N),
    zeroPos: new Float32Array(N),
    deltaNeg: new Float32Array(N),
    zeroNeg: new Float32Array(N),
    err: 0,
  };
}

/**
 * Every row's least-squares grids (`fit: "mse"`) over the offsets `etas`. `seeds` gives
 * each row plane's candidate grids at η, the same list for every row (tlq.ts: METHODS.md's
 * grid at each percentile). First the seeds' search as METHODS.md runs it (per layer, the
 * best seed of each plane), each weight on its nearest level; its best η (η₀) and the
 * seeds make the result never worse than it. Then η by a coarse fit of ~64 rows, then
 * every row refined at that η and at η₀, the better kept.
 */
export function fitRows(
  pos: { abs: Float64Array; off: Int32Array },
  neg: { abs: Float64Array; off: Int32Array },
  zeros: Int32Array,
  etas: readonly number[],
  bits: number,
  seeds: (pl: SortedPlanes, n: number, eta: number) => readonly { delta: number; zero: number }[],
): RowGrids {
  const N = pos.off.length - 1;
  const sp = withPrefixSums(pos);
  const sn = withPrefixSums(neg);

  let eta0 = { eta: etas[0], err: Infinity };
  for (const eta of etas) {
    const ep: number[] = []; // the layer's error on each seed, either plane
    const en: number[] = [];
    for (let n = 0; n < N; n++) {
      seeds(sp, n, eta).forEach((g, i) =>
        ep[i] = (ep[i] ?? 0) + gridError(sp, n, eta, bits, zeros[n], g)
      );
      seeds(sn, n, eta).forEach((g, i) => en[i] = (en[i] ?? 0) + gridError(sn, n, eta, bits, 0, g));
    }
    const err = Math.min(Infinity, ...ep) + Math.min(Infinity, ...en);
    if (err < eta0.err) eta0 = { eta, err };
  }

  // Comparing η needs only a sample of rows: about 64, evenly spaced.
  const stride = Math.max(1, Math.floor(N / 64));
  const at = (eta: number, refine: boolean): RowGrids => {
    const out = rowGrids(N, eta);
    for (let n = 0; n < N; n += refine ? 1 : stride) {
      const fp = fitPlane(sp, n, eta, bits, zeros[n], seeds(sp, n, eta), refine);
      const fn = fitPlane(sn, n, eta, bits, 0, seeds(sn, n, eta), refine);
      out.deltaPos[n] = fp.delta;
      out.zeroPos[n] = fp.zero;
      out.deltaNeg[n] = fn.delta;
      out.zeroNeg[n] = fn.zero;
      out.err += fp.err + fn.err;
    }
    return out;
  };
  let coarse = { eta: etas[0], err: Infinity };
  for (const eta of etas) {
    const e = at(eta, false).err;
    if (e < coarse.err) coarse = { eta, err: e };
  }
  let best: RowGrids | undefined;
  for (const eta of new Set([coarse.eta, eta0.eta])) {
    const r = at(eta, true);
    if (!best || r.err < best.err) best = r;
  }
  return best!;
}
