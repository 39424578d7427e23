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

/**
 * Row-slice gather: x read as rows of `stride` elements, the first `width` of each kept
 * (the learned-sigma split of [B, 2C, H, W] is width C·H·W, stride 2C·H·W).
 */
export function gatherRows(x: Float32Array, width: number, stride: number): Float32Array {
  const rows = x.length / stride;
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * stride, r * stride + width), r * width);
  return out;
}

/**
 * Classifier-free guidance over row slices: with the first half of x's rows as u and the
 * second half as c, u + scale·(c − u), rounded to f32 after each op as torch evaluates
 * `uncond + g * (cond - uncond)` in float32.
 */
export function cfgRows(
  x: Float32Array,
  width: number,
  stride: number,
  scale: number,
): Float32Array {
  const half = x.length / 2;
  const u = gatherRows(x.subarray(0, half), width, stride);
  const c = gatherRows(x.subarray(half), width, stride);
  const g = Math.fround(scale);
  return map(u, (v, i) => v + Math.fround(g * Math.fround(c[i] - v)));
}
