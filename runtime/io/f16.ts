/**
 * Conversions between f32 and the narrow float formats found in checkpoints: IEEE
 * half (F16), bfloat16 (BF16) and the 8-bit floats (F8_E4M3, F8_E5M2, their FNUZ
 * variants and F8_E8M0). Everything works on raw bits (Uint16Array / Uint8Array) so
 * files can be read and written byte-exactly; rounding is to nearest, ties to even.
 *
 * @module
 */

/** Widens f16 bit patterns to f32 (exact: every f16 is an f32). */
export function f16BitsToF32(bits: Uint16Array): Float32Array {
  const h = new Float16Array(bits.buffer, bits.byteOffset, bits.length);
  return Float32Array.from(h);
}

/** Rounds f32 values to f16 bit patterns (nearest-even; overflow → ±Inf, NaN stays NaN). */
export function f32ToF16Bits(x: ArrayLike<number>): Uint16Array {
  const h = Float16Array.from(x);
  return new Uint16Array(h.buffer, h.byteOffset, h.length);
}

const F16 = new Float16Array(1);
const F16_BITS = new Uint16Array(F16.buffer);
const F32 = new Float32Array(1);
const F32_BITS = new Uint32Array(F32.buffer);

/** The f16 bit pattern of one number (nearest-even), without an array per call. */
export function f16Bits(x: number): number {
  F16[0] = x;
  return F16_BITS[0];
}

/** The value of an f16 bit pattern. */
export function f16FromBits(bits: number): number {
  F16_BITS[0] = bits;
  return F16[0];
}

/** The f32 bit pattern of one number (nearest-even). */
export function f32Bits(x: number): number {
  F32[0] = x;
  return F32_BITS[0];
}

/** The value of an f32 bit pattern. */
export function f32FromBits(bits: number): number {
  F32_BITS[0] = bits;
  return F32[0];
}

/** Widens bfloat16 bit patterns to f32 (exact: bf16 is the top half of an f32). */
export function bf16BitsToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return out;
}

/** Rounds f32 values to bfloat16 bit patterns (nearest-even; NaN stays a quiet NaN). */
export function f32ToBf16Bits(x: ArrayLike<number>): Uint16Array {
  const f = x instanceof Float32Array ? x : Float32Array.from(x);
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < u.length; i++) {
    const v = u[i];
    if ((v & 0x7fffffff) > 0x7f800000) {
      out[i] = (v >>> 16) | 0x0040; // keep sign and set the quiet bit so NaN never rounds to Inf
    } else {
      out[i] = (v + 0x7fff + ((v >>> 16) & 1)) >>> 16; // carry into the exponent gives Inf on overflow
    }
  }
  return out;
}

/** The 8-bit float formats that safetensors names. */
export type Fp8Format = "F8_E4M3" | "F8_E5M2" | "F8_E4M3FNUZ" | "F8_E5M2FNUZ" | "F8_E8M0";

function decodeFp8(format: Fp8Format, b: number): number {
  if (format === "F8_E8M0") return b === 0xff ? NaN : 2 ** (b - 127);
  const fnuz = format.endsWith("FNUZ");
  if (fnuz && b === 0x80) return NaN; // FNUZ: the "negative zero" code is the only NaN
  const e4 = format.startsWith("F8_E4M3");
  const manBits = e4 ? 3 : 2;
  const expBits = 7 - manBits;
  const bias = (1 << (expBits - 1)) - 1 + (fnuz ? 1 : 0);
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >> manBits) & ((1 << expBits) - 1);
  const man = b & ((1 << manBits) - 1);
  if (!fnuz) {
    if (e4 && exp === 15 && man === 7) return NaN; // E4M3FN: no Inf, one NaN code per sign
    if (!e4 && exp === 31) return man === 0 ? sign * Infinity : NaN; // E5M2 is IEEE-like
  }
  if (exp === 0) return sign * man * 2 ** (1 - bias - manBits);
  return sign * (1 + man / (1 << manBits)) * 2 ** (exp - bias);
}

const FP8_TABLES = new Map<Fp8Format, Float32Array>();

/** The 256 f32 values of an 8-bit float format, indexed by code. */
export function fp8Table(format: Fp8Format): Float32Array {
  let t = FP8_TABLES.get(format);
  if (!t) {
    t = new Float32Array(256);
    for (let b = 0; b < 256; b++) t[b] = decodeFp8(format, b);
    FP8_TABLES.set(format, t);
  }
  return t;
}

/** Widens 8-bit float codes to f32 (exact). */
export function fp8ToF32(codes: Uint8Array, format: Fp8Format): Float32Array {
  const t = fp8Table(format);
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = t[codes[i]];
  return out;
}
