/**
 * CPU references of the elementwise kernels (f32, double-precision math where cheap).
 *
 * @module
 */

/** GELU with the tanh approximation, as torch's gelu(approximate="tanh"). */
export function geluTanh(v: number): number {
  const u = Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v);
  return 0.5 * v * (1 + Math.tanh(u));
}

/** SiLU: v · sigmoid(v). */
export function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** Applies `f` to every element. */
export function map(x: Float32Array, f: (v: number, i: number) => number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(x[i], i);
  return out;
}
