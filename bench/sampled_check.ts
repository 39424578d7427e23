/**
 * The benchmarks' checks of an output before it is timed: 256 sampled entries of a product (the
 * last one always) against a reference computed on the host, or a whole output against its
 * reference relative to the reference's RMS.
 *
 * @module
 */
import { Prng } from "../runtime/io/prng.ts";
import { maxError } from "../runtime/ops/selfcheck.ts";

/** An entry of the reference: its value and Σ|terms| (the scale of its rounding error). */
export interface SampledRef {
  /** The reference value. */
  v: number;
  /** Σ of the terms' magnitudes. */
  mag: number;
}

/**
 * Checks 256 sampled entries of y [M, N] against `ref(m, n)`, each within `tol(r)` (default
 * 1e-5·Σ|terms| + 1e-6: f32 accumulation); throws naming the first entry off, else returns a
 * note with the worst error as a share of its tolerance.
 */
export function checkSampled(
  label: string,
  y: Float32Array,
  M: number,
  N: number,
  ref: (m: number, n: number) => SampledRef,
  tol: (r: SampledRef) => number = (r) => 1e-5 * r.mag + 1e-6,
): string {
  const g = new Prng(4242);
  let worst = 0;
  for (let s = 0; s < 256; s++) {
    const m = s === 0 ? M - 1 : Math.floor(g.uniform() * M);
    const n = s === 0 ? N - 1 : Math.floor(g.uniform() * N);
    const r = ref(m, n);
    const err = Math.abs(y[m * N + n] - r.v);
    const t = tol(r);
    if (!(err <= t)) {
      throw new Error(
        `${label}: wrong result at [${m}, ${n}]: got ${y[m * N + n]}, expected ${r.v} (tol ${t})`,
      );
    }
    worst = Math.max(worst, err / t);
  }
  return `checked 256 sampled entries (worst ${(100 * worst).toFixed(0)}% of tol)`;
}

/**
 * Entry (m, n) of A·Bᵀ for A [M, K] and B [N, K] row-major, row m of A scaled by `rowScale[m]`
 * (a per-token quantizer's Δ; default 1), for {@linkcode checkSampled}.
 */
export function productRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  K: number,
  rowScale?: ArrayLike<number>,
): (m: number, n: number) => SampledRef {
  return (m, n) => {
    const s = rowScale?.[m] ?? 1;
    let v = 0;
    let mag = 0;
    for (let k = 0; k < K; k++) {
      const p = s * a[m * K + k] * b[n * K + k];
      v += p;
      mag += Math.abs(p);
    }
    return { v, mag };
  };
}

/**
 * Checks an activation quantizer's output against its CPU reference (runtime/reference/
 * act_quant.ts actQuantRef): every code equal, except ±1 where the reference's x·(1/Δ) lies
 * within 1e-4 of a rounding tie (the GPU's 1/Δ may differ by an ulp), and every scale Δ within
 * `scaleTol` of the reference relatively (WGSL's division: 2.5 ulp). Throws naming the first
 * entry off, else returns a note.
 */
export function checkActCodes(
  label: string,
  codes: Int8Array,
  scales: Float32Array,
  ref: { codes: Int8Array; scales: Float32Array; scaled: Float32Array },
  scaleTol = 2.5 * 2 ** -23,
): string {
  if (codes.length !== ref.codes.length || scales.length !== ref.scales.length) {
    throw new Error(
      `${label}: ${codes.length} codes / ${scales.length} scales, reference ${ref.codes.length} / ${ref.scales.length}`,
    );
  }
  let ties = 0;
  for (let i = 0; i < codes.length; i++) {
    if (codes[i] === ref.codes[i]) continue;
    const nearTie = Math.abs(Math.abs(ref.scaled[i] % 1) - 0.5) < 1e-4;
    if (!nearTie || Math.abs(codes[i] - ref.codes[i]) !== 1) {
      throw new Error(`${label}: code ${i} is ${codes[i]}, reference ${ref.codes[i]}`);
    }
    ties++;
  }
  for (let s = 0; s < scales.length; s++) {
    if (!(Math.abs(scales[s] - ref.scales[s]) <= scaleTol * Math.abs(ref.scales[s]))) {
      throw new Error(`${label}: scale ${s} is ${scales[s]}, reference ${ref.scales[s]}`);
    }
  }
  return `checked all ${codes.length} codes and ${scales.length} scales against actQuantRef` +
    (ties ? ` (${ties} ±1 at rounding ties)` : "");
}

/**
 * Checks a whole output against its reference: max |out − ref| ≤ `rel` × RMS(ref), NaN failing
 * (maxError), and a non-finite reference failing too (its RMS would admit anything); throws
 * naming `label`, else returns the error and the RMS (f64 sums).
 */
export function checkWithinRms(
  label: string,
  out: ArrayLike<number>,
  ref: ArrayLike<number>,
  rel: number,
): { maxErr: number; rms: number } {
  let ss = 0;
  for (let i = 0; i < ref.length; i++) ss += ref[i] * ref[i];
  const rms = Math.sqrt(ss / ref.length);
  const maxErr = out.length === ref.length ? maxError(out, ref) : Infinity;
  if (!Number.isFinite(rms) || !(maxErr <= rel * rms)) {
    throw new Error(`${label}: max |err| ${maxErr} > ${rel} × the reference's RMS ${rms}`);
  }
  return { maxErr, rms };
}
