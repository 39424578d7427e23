/**
 * Random quantized weights for the quantized-GEMM benchmark (bench/qgemm_bench.ts) and the
 * entry-wise value of one, for its sampled checks.
 *
 * @module
 */
import type { QuantizedWeight } from "../plugins/types.ts";
import { tlqLut } from "../plugins/quantizers/tlq.ts";
import { Prng } from "../runtime/io/prng.ts";
import { codesPerWord, packCodes } from "../runtime/quant/pack.ts";

/** N×K random b-bit codes from `g`, packed. */
function randomCodes(g: Prng, N: number, K: number, bits: number): Uint32Array {
  const codes = new Uint8Array(N * K);
  for (let i = 0; i < codes.length; i++) codes[i] = g.nextU32() % 2 ** bits;
  return packCodes(codes, N, K, bits);
}

/**
 * A random uniform weight in groups of `group` channels along K (`quantize --group-size`):
 * codes and zero points in [0, 2^b), scales ≈ 1e-3…3e-3 per (row, group).
 */
export function randomGroupedWeight(
  N: number,
  K: number,
  bits: number,
  group: number,
  seed: number,
): QuantizedWeight {
  const g = new Prng(seed);
  const codes = randomCodes(g, N, K, bits);
  const ng = K / group;
  const zero = new Float32Array(N * ng);
  for (let i = 0; i < zero.length; i++) zero[i] = g.nextU32() % 2 ** bits;
  return {
    quantizer: "uniform",
    bits,
    rows: N,
    cols: K,
    codes,
    params: { scale: g.uniforms(N * ng, 1e-3, 3e-3), zero },
    meta: { symmetric: false, groupSize: group },
  };
}

/**
 * A random weight: "lut" = a TLQ weight (per row Δ± exactly f16, integer z±, η = 0, levels
 * 2^((k+z)Δ) ≈ 0.003…0.2 as `tlqLut` builds them, so it uploads in the compact MODE 5/6 as
 * the product does; `{ tlq: "lut" }` uploads the same levels as MODE 0/2), "u8s" = 8-bit
 * symmetric uniform.
 */
export function randomWeight(
  kind: "lut" | "u8s",
  N: number,
  K: number,
  bits: number,
  seed: number,
): QuantizedWeight {
  const g = new Prng(seed);
  const packed = randomCodes(g, N, K, bits);
  if (kind === "u8s") {
    const scale = g.uniforms(N, 1e-3, 3e-3);
    return {
      quantizer: "uniform",
      bits,
      rows: N,
      cols: K,
      codes: packed,
      params: { scale, zero: new Float32Array(N).fill(128) },
      meta: { symmetric: true, groupSize: 0 },
    };
  }
  // Δ from a few f16-exact values (multiples of 1/64), z so the smallest level is ≈ 2^-8.
  const params = {
    deltaPos: new Float32Array(N),
    zeroPos: new Float32Array(N),
    deltaNeg: new Float32Array(N),
    zeroNeg: new Float32Array(N),
  };
  for (let n = 0; n < N; n++) {
    params.deltaPos[n] = (32 + (g.nextU32() % 16)) / 64;
    params.deltaNeg[n] = (32 + (g.nextU32() % 16)) / 64;
    params.zeroPos[n] = Math.round(-8 / params.deltaPos[n]) + (g.nextU32() % 3);
    params.zeroNeg[n] = Math.round(-8 / params.deltaNeg[n]) + (g.nextU32() % 3);
  }
  const lut = tlqLut(params, 0, bits);
  return {
    quantizer: "tlq",
    bits,
    rows: N,
    cols: K,
    codes: packed,
    params: { lut, ...params },
    meta: { eta: 0 },
  };
}

/**
 * A random TLQ weight in groups of `group` channels (`quantize --quantizer tlq --group-size`):
 * {@linkcode randomWeight}'s "lut" levels, a table per (row, group).
 */
export function randomLutGroups(
  N: number,
  K: number,
  bits: number,
  group: number,
  seed: number,
): QuantizedWeight {
  if (group % codesPerWord(bits) !== 0) throw new RangeError(`groups of ${group}: whole words`);
  // Each group a row of its own: whole words a group, so the codes pack as [N, K] alike.
  const q = randomWeight("lut", N * (K / group), group, bits, seed);
  return { ...q, rows: N, cols: K, meta: { ...q.meta, groupSize: group } };
}

/** ŵ[n, k] of a LUT (per row or in groups) or per-row affine weight (sampled checks). */
export function weightAt(q: QuantizedWeight, n: number, k: number): number {
  const cpw = codesPerWord(q.bits);
  const wpr = Math.ceil(q.cols / cpw);
  const c = (q.codes[n * wpr + Math.floor(k / cpw)] >>> ((k % cpw) * q.bits)) & (2 ** q.bits - 1);
  const G = Number(q.meta.groupSize || q.cols);
  const t = n * (q.cols / G) + Math.floor(k / G); // the row's (group's) table
  if (q.params.lut) return q.params.lut[t * 2 ** q.bits + c];
  return (c - q.params.zero[n]) * q.params.scale[n];
}
