/**
 * Calibration statistics as a centring plan's quantizer sees its inputs: shifted by each
 * channel's midpoint (max + min) / 2 over the calibration run. With `--center` the
 * per-token quantizer gets x − centre, so the smoothing factors and the outlier-aware
 * rotation are planned on the spread around the centre (range / 2), not on an offset the
 * centring removes: planned on the raw absmax, smoothing would move an offset's size into
 * the weights for nothing. The centre itself is per sample at run time; the run-wide
 * midpoint stands in for it here.
 *
 * @module
 */
import type { LayerStats } from "./calibrate.ts";

/**
 * `s` shifted by its per-channel midpoint: absmax = range / 2, min = −max, sample rows
 * shifted (`shift` the midpoint; `quantSample`, already the quantizer's input, as it is).
 */
export function centredStats(s: LayerStats): LayerStats {
  const K = s.cols;
  const mid = new Float32Array(K);
  const absmax = new Float32Array(K);
  const min = new Float32Array(K);
  const max = new Float32Array(K);
  for (let j = 0; j < K; j++) {
    // A channel never seen (min > max) keeps its empty statistics.
    if (!(s.max[j] >= s.min[j])) {
      [absmax[j], min[j], max[j]] = [s.absmax[j], s.min[j], s.max[j]];
      continue;
    }
    mid[j] = 0.5 * s.max[j] + 0.5 * s.min[j];
    const h = Math.fround(0.5 * (s.max[j] - s.min[j]));
    [absmax[j], min[j], max[j]] = [h, -h, h];
  }
  const sample = s.sample.map((v, i) => v - mid[i % K]);
  return { ...s, absmax, min, max, sample, shift: mid };
}
