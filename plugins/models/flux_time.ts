/**
 * FLUX's time values as diffusers forms them: FluxPipeline passes the transformer
 * `t.to(dtype) / 1000` for scheduler time t, and the transformer multiplies timestep and
 * guidance by 1000 again in its dtype — in an f16 pipeline each of those products rounds to f16.
 *
 * @module
 */

/**
 * The product `v·1000` diffusers' forward applies to timestep and guidance, in the model's
 * dtype as torch computes `v.to(dtype) * 1000` (an f16 product is formed in f32, then rounded).
 */
export function times1000(v: number, dtype: "f32" | "f16"): number {
  if (dtype === "f32") return Math.fround(Math.fround(v) * 1000);
  return Math.f16round(Math.fround(Math.f16round(v) * 1000));
}

/** What FluxPipeline passes the transformer for scheduler time t: `t.to(dtype) / 1000`. */
export function fluxModelTime(t: number, dtype: "f32" | "f16"): number {
  if (dtype === "f32") return Math.fround(t / 1000);
  return Math.f16round(Math.fround(Math.f16round(t) / 1000));
}
