/**
 * CPU reference of activation centring (wgsl/act_center.wgsl): per group of rows (one
 * sample's tokens) and channel, the centre the per-token quantizer subtracts first — the
 * mean over the group's rows, or the midrange (min + max) / 2.
 *
 * @module
 */

/** How a channel's centre is taken over a sample's tokens. */
export type CenterMode = "mean" | "midrange";

/** The centre modes, for validation and help. */
export const CENTER_MODES: readonly CenterMode[] = ["mean", "midrange"];

/**
 * Centres [G, K] of x [G·R, K]: the mean (f64 sum) or the midrange of each group's R rows,
 * rounded to f32.
 */
export function actCentresRef(
  x: Float32Array,
  R: number,
  K: number,
  mode: CenterMode,
): Float32Array {
  if (R < 1 || K < 1 || x.length % (R * K) !== 0) {
    throw new RangeError(`x has ${x.length} values, not whole groups of ${R}×${K}`);
  }
  const G = x.length / (R * K);
  const out = new Float32Array(G * K);
  for (let g = 0; g < G; g++) {
    for (let c = 0; c < K; c++) {
      let a = mode === "mean" ? 0 : Infinity;
      let b = -Infinity;
      for (let r = 0; r < R; r++) {
        const v = x[(g * R + r) * K + c];
        if (mode === "mean") a += v;
        else {
          a = Math.min(a, v);
          b = Math.max(b, v);
        }
      }
      out[g * K + c] = mode === "mean" ? a / R : Math.fround(0.5 * a) + Math.fround(0.5 * b);
    }
  }
  return out;
}
