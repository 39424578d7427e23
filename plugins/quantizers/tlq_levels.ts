/**
 * TLQ's levels as every adapter computes them: a plane's magnitude k is
 * max(2^((k+z)·Δ) − η, 0), with 2^x in integer fixed point ({@linkcode tlqExp2}) so that
 * the host and wgsl/qgemm_tlq.wgsl rebuild a row's LUT from its (Δ, z) bit for bit.
 *
 * @module
 */
import { f16Bits, f32FromBits } from "../../runtime/io/f16.ts";

/** Largest |z| of a plane (z is stored as an i16). */
export const TLQ_MAX_ZERO = 32767;

/** floor(a·b / 2^32) of two u32, exactly (16-bit halves, as the WGSL). */
function mulhi(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const lh = al * bh;
  const hl = ah * bl;
  const mid = ((al * bl) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (ah * bh + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/** round(2^31·2^(j/16)), j < 16: 2^(top 4 bits of the fraction), Q31. */
export const TLQ_EXP2_TABLE: readonly number[] = [
  2147483648,
  2242560872,
  2341847524,
  2445529972,
  2553802834,
  2666869345,
  2784941738,
  2908241642,
  3037000500,
  3171459999,
  3311872529,
  3458501653,
  3611622603,
  3771522796,
  3938502376,
  4112874773,
];

/**
 * 2^(kz·Δ) as an f32, for Δ given as its f16 bit pattern `h` (finite) and an integer kz
 * (|kz| ≤ 32775): x = kz·m·2^(e−25) is exact in integers, 2^frac(x) comes from a 16-entry
 * table times a degree-5 Taylor polynomial in Q32 fixed point (error < 2^−29 relative),
 * rounded to nearest even; 0 below 2^−126, Infinity above 2^127. Integer operations only,
 * so wgsl/qgemm_tlq.wgsl computes the same bits on every adapter.
 */
export function tlqExp2(h: number, kz: number): number {
  const e = (h >>> 10) & 31;
  if (e === 31) throw new RangeError(`tlq: Δ (f16 ${h.toString(16)}) is not finite`);
  const m = e > 0 ? 1024 + (h & 1023) : h & 1023;
  let n = kz * m;
  if (h & 0x8000) n = -n;
  const sh = 25 - Math.max(e, 1);
  let ip: number;
  let fq = 0;
  if (sh <= 0) {
    ip = Math.max(-256, Math.min(256, n)) * 2 ** -sh;
  } else {
    ip = n >> sh;
    fq = (n & ((1 << sh) - 1)) * 2 ** (32 - sh);
  }
  if (ip < -126) return 0;
  if (ip > 127) return Infinity;
  const u = mulhi(fq & 0x0fffffff, 2977044472); // frac below 1/16 times ln 2, Q32
  const a = 178956971 + mulhi(u, 35791394); // 1/24 + u/120
  const b = 715827883 + mulhi(u, a); // 1/6 + u·a
  const c = 2147483648 + mulhi(u, b); // 1/2 + u·b
  const poly = u + mulhi(u, mulhi(u, c)); // e^u − 1
  const t0 = TLQ_EXP2_TABLE[fq >>> 28];
  const t = t0 + Math.min(mulhi(t0, poly), 0xffffffff - t0); // 2^frac(x), Q31
  let mant = t >>> 8;
  const rem = t & 0xff;
  if (rem > 128 || (rem === 128 && (mant & 1))) mant++;
  if (mant === 2 ** 24) {
    mant = 2 ** 23;
    ip++;
    if (ip > 127) return Infinity;
  }
  return f32FromBits((((ip + 127) << 23) | (mant & 0x7fffff)) >>> 0);
}

/**
 * The magnitude of level k of a plane: max(2^((k+z)·Δ) − η, 0) in f32 (tlqExp2, then one
 * f32 subtraction of η as an f32); 0 for Δ = 0 (a plane without weights).
 */
export function tlqLevel(delta: number, zero: number, k: number, eta: number): number {
  const h = f16Bits(delta);
  if ((h & 0x7fff) === 0) return 0;
  return Math.max(Math.fround(tlqExp2(h, k + zero) - Math.fround(eta)), 0);
}

/** The TLQ parameters a LUT is rebuilt from (`params` of a TLQ weight). */
export interface TlqParams {
  deltaPos: Float32Array;
  zeroPos: Float32Array;
  deltaNeg: Float32Array;
  zeroNeg: Float32Array;
}

/**
 * The LUT [N, 2^b] of TLQ parameters: row n holds levels k < 2^(b−1) of the positive plane,
 * then the negated levels of the negative plane (as the GPU rebuilds them, −0 included).
 */
export function tlqLut(p: TlqParams, eta: number, bits: number): Float32Array {
  const N = p.deltaPos.length;
  const half = 2 ** (bits - 1);
  for (const k of ["zeroPos", "deltaNeg", "zeroNeg"] as const) {
    if (p[k].length !== N) throw new RangeError(`tlq: ${k} has ${p[k].length} values, not ${N}`);
  }
  const lut = new Float32Array(N * 2 * half);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < half; k++) {
      lut[n * 2 * half + k] = tlqLevel(p.deltaPos[n], p.zeroPos[n], k, eta);
      lut[n * 2 * half + half + k] = -tlqLevel(p.deltaNeg[n], p.zeroNeg[n], k, eta);
    }
  }
  return lut;
}
