/**
 * CPU reference of the streaming activation statistics (wgsl/act_stats.wgsl): per
 * channel absmax, min, max and Σx² over rows, in double precision.
 *
 * @module
 */

/** Per-channel statistics of a set of rows. */
export interface ChannelStats {
  /** max |x| per channel [K]. */
  absmax: Float32Array;
  /** min x per channel [K]. */
  min: Float32Array;
  /** max x per channel [K]. */
  max: Float32Array;
  /** Σ x² per channel [K]. */
  sumsq: Float64Array;
  /** Rows seen. */
  rows: number;
}

/** Empty statistics of K channels (absmax 0, min +∞, max −∞, sums 0). */
export function emptyChannelStats(K: number): ChannelStats {
  return {
    absmax: new Float32Array(K),
    min: new Float32Array(K).fill(Infinity),
    max: new Float32Array(K).fill(-Infinity),
    sumsq: new Float64Array(K),
    rows: 0,
  };
}

/** Folds the rows of x [M, K] into `into` (a new one when omitted) and returns it. */
export function actStatsRef(
  x: Float32Array,
  M: number,
  K: number,
  into: ChannelStats = emptyChannelStats(K),
): ChannelStats {
  if (x.length !== M * K) throw new RangeError(`x has ${x.length} values, not ${M}×${K}`);
  for (let r = 0; r < M; r++) {
    for (let c = 0; c < K; c++) {
      const v = x[r * K + c];
      into.absmax[c] = Math.max(into.absmax[c], Math.abs(v));
      into.min[c] = Math.min(into.min[c], v);
      into.max[c] = Math.max(into.max[c], v);
      into.sumsq[c] += v * v;
    }
  }
  into.rows += M;
  return into;
}

/** RMS J = ‖X‖_F / √(rows·K) of the rows the statistics saw (METHODS.md §2, ARS). */
export function rmsOf(s: ChannelStats): number {
  let t = 0;
  for (const v of s.sumsq) t += v;
  const n = s.rows * s.sumsq.length;
  return n > 0 ? Math.sqrt(t / n) : 0;
}
