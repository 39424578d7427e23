/**
 * CPU reference of the streaming Gram matrix (wgsl/act_gram.wgsl): G = Σ over rows of xᵀx,
 * in double precision. GPTQ (runtime/quant/gptq.ts) uses it as the layer's Hessian.
 *
 * @module
 */

/** Adds xᵀx of x [M, K] into `into` [K, K] (a new zero matrix when omitted) and returns it. */
export function gramRef(
  x: ArrayLike<number>,
  M: number,
  K: number,
  into: Float64Array = new Float64Array(K * K),
): Float64Array {
  if (x.length !== M * K) throw new RangeError(`x has ${x.length} values, not ${M}×${K}`);
  if (into.length !== K * K) throw new RangeError(`into has ${into.length} values, not ${K}×${K}`);
  for (let r = 0; r < M; r++) {
    const o = r * K;
    for (let i = 0; i < K; i++) {
      const xi = x[o + i];
      if (xi === 0) continue;
      const gi = i * K;
      for (let j = 0; j < K; j++) into[gi + j] += xi * x[o + j];
    }
  }
  return into;
}
