/**
 * TLQ's grids refitted to codes GPTQ chose (`quantize --gptq-refit`; runtime/quant/gptq_refit.ts):
 * each row's planes keep their codes and η, and take the (Δ, z) whose levels 2^((k+z)Δ) − η give
 * the least output error on the calibration inputs, by the row's level normal equations. The
 * family stays TLQ's stored form (Δ an f16, z an i16), so the artifact and the compact kernels
 * are unchanged. The search, a plane at a time and twice over: Δ over the 2·{@linkcode REFIT_STEPS}
 * f16 values nearest the current one, and for each the z that keeps the plane's top level where
 * it was, ±2. The current grid is a candidate, so the error never rises.
 *
 * @module
 */
import type { QuantizedWeight } from "../types.ts";
import { f16Bits, f16FromBits } from "../../runtime/io/f16.ts";
import { levelError, type LevelNormals } from "../../runtime/quant/gptq_refit.ts";
import { TLQ_MAX_ZERO, tlqLevel, tlqLut } from "./tlq_levels.ts";

/** f16 steps of Δ searched each way (an f16 step is ~0.1 % of Δ: ±2.4 %). */
export const REFIT_STEPS = 24;

/** Writes a plane's levels (negated for the negative plane) at `off` of `lut`. */
function fillPlane(
  lut: Float64Array,
  off: number,
  half: number,
  delta: number,
  zero: number,
  eta: number,
  sign: number,
): void {
  for (let k = 0; k < half; k++) lut[off + k] = sign * tlqLevel(delta, zero, k, eta);
}

/** TLQ's (Δ, z) refitted to the codes of `q` (see the module doc). One grid a row. */
export function tlqRefit(q: QuantizedWeight, m: LevelNormals): QuantizedWeight {
  const G = Number(q.meta.groupSize ?? 0);
  if (G > 0 && G < q.cols) {
    throw new RangeError("tlq: the refit takes one grid a row, not groups");
  }
  const eta = Number(q.meta.eta);
  const half = 2 ** (q.bits - 1);
  const planes = [
    { delta: Float32Array.from(q.params.deltaPos), zero: Float32Array.from(q.params.zeroPos) },
    { delta: Float32Array.from(q.params.deltaNeg), zero: Float32Array.from(q.params.zeroNeg) },
  ];
  const lut = new Float64Array(2 * half);
  for (let n = 0; n < q.rows; n++) {
    planes.forEach((p, i) => fillPlane(lut, i * half, half, p.delta[n], p.zero[n], eta, 1 - 2 * i));
    let best = levelError(m, n, lut);
    for (let round = 0; round < 2; round++) {
      for (const [i, p] of planes.entries()) {
        const [d0, z0] = [p.delta[n], p.zero[n]];
        const h0 = f16Bits(d0);
        if ((h0 & 0x7fff) === 0) continue; // a plane without weights
        const top = (half - 1 + z0) * d0; // the top level's exponent
        for (let j = -REFIT_STEPS; j <= REFIT_STEPS; j++) {
          const d = f16FromBits(h0 + j);
          if (!(d >= 2 ** -14) || !Number.isFinite(d)) continue;
          const zc = Math.round(top / d) - (half - 1);
          for (let z = zc - 2; z <= zc + 2; z++) {
            if (Math.abs(z) > TLQ_MAX_ZERO) continue;
            fillPlane(lut, i * half, half, d, z, eta, 1 - 2 * i);
            const e = levelError(m, n, lut);
            if (e < best) [best, p.delta[n], p.zero[n]] = [e, d, z];
          }
        }
        fillPlane(lut, i * half, half, p.delta[n], p.zero[n], eta, 1 - 2 * i);
      }
    }
  }
  const [pos, neg] = planes;
  const params = { deltaPos: pos.delta, zeroPos: pos.zero, deltaNeg: neg.delta, zeroNeg: neg.zero };
  return { ...q, params: { ...q.params, ...params, lut: tlqLut(params, eta, q.bits) } };
}
