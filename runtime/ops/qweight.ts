/**
 * A quantized weight on the GPU: its packed codes plus the parameters each GEMM path reads
 * (weight-only: a LUT a row or group, or scale/zero; integer: scales and int8 LUT words; TLQ by
 * default: 8 bytes a row, Δ± and z±, and η, from which the kernels rebuild the LUTs).
 * {@linkcode uploadQWeight} uploads them once per layer; runtime/ops/qgemm.ts runs them.
 *
 * @module
 */
import type { QuantizedWeight } from "../../plugins/types.ts";
import type { Runtime } from "../gpu/device.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { wordsPerRow } from "../quant/pack.ts";
import {
  a16Params,
  checkInt8Groups,
  checkIntWeightGroups,
  hasCompactTlq,
  int8Lut,
  isAffineGrouped,
  tlqCompactWords,
} from "../reference/qgemm.ts";

/** A quantized weight on the GPU. */
export interface QWeightGpu {
  /** Output features. */
  readonly N: number;
  /** Input features. */
  readonly K: number;
  /** Bits per code. */
  readonly bits: number;
  /** Codes, u32 words [N, ⌈K / ⌊32/b⌋⌉]. */
  readonly codes: Tensor;
  /**
   * Weight-only parameters, when uploaded: qgemm_dec.wgsl MODE 0 (f32 LUT), 1 (affine), 5
   * (TLQ compact: [2N + 1] words, see runtime/reference/qgemm.ts tlqCompactWords) or 8 (a
   * LUT-coded weight in groups uploaded for both paths: the integer MODE 2 tensor, its int8
   * tables times their scales).
   */
  readonly a16?: { mode: 0 | 1 | 5 | 8; params: Tensor; groupSize: number };
  /**
   * Integer parameters, when uploaded: MODE 2 row scales then int8 LUT words (LUT-coded;
   * with `groupSize`, a scale and a table per (row, group)); 3 row scales (8-bit offset
   * codes); 4 row scales then zeros (uniform per-row); 6 TLQ compact (the same tensor as
   * a16's MODE 5 when both are uploaded); 7 scales then zeros per (row, group of
   * `groupSize` channels) (uniform in groups).
   */
  readonly int?: { mode: 2 | 3 | 4 | 6 | 7; params: Tensor; groupSize?: number };
  /** Bytes on the GPU. */
  readonly byteLength: number;
  /** Frees the tensors. */
  release(): void;
}

/** Which paths a weight is uploaded for. */
export interface UploadQWeightOptions {
  /** Weight-only (A16) parameters; default true. */
  a16?: boolean;
  /** Integer (A8/A6/A4) parameters; default false. */
  int?: boolean;
  /**
   * TLQ weights: "compact" (MODE 5/6: 8 bytes a row + η; the default where the weight has
   * f16 Δ, i.e. was quantized by this version) or "lut" (MODE 0/2: the tables themselves;
   * weights of older artifacts, and benchmarks comparing the two).
   */
  tlq?: "compact" | "lut";
}

function u32View(a: Float32Array | Int8Array): Uint32Array {
  const b = new Uint8Array(Math.ceil(a.byteLength / 4) * 4);
  b.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  return new Uint32Array(b.buffer);
}

/**
 * The integer parameters of a non-compact weight (MODE 2, 3 or 4; MODE 2 in groups for a
 * LUT-coded weight with a table a group), uploaded through `up`.
 */
function uploadInt8(
  q: QuantizedWeight,
  up: (data: Uint32Array, shape: number[]) => Tensor,
): NonNullable<QWeightGpu["int"]> {
  const N = q.rows;
  const l = int8Lut(q);
  if (l.direct) return { mode: 3, params: up(u32View(l.scale), [N]) };
  if (l.zero) {
    const data = new Float32Array(2 * N);
    data.set(l.scale, 0);
    data.set(l.zero, N);
    return { mode: 4, params: up(u32View(data), [2 * N]) };
  }
  const grouped = l.groupSize < q.cols;
  if (grouped) checkIntWeightGroups(l.groupSize, q.cols, q.quantizer);
  const words = u32View(l.lut8);
  const data = new Uint32Array(l.scale.length + words.length);
  data.set(u32View(l.scale), 0);
  data.set(words, l.scale.length);
  return {
    mode: 2,
    params: up(data, [data.length]),
    ...(grouped ? { groupSize: l.groupSize } : {}),
  };
}

/** Uploads a quantized weight's codes and the parameters of the paths asked for. */
export function uploadQWeight(
  rt: Runtime,
  q: QuantizedWeight,
  opts: UploadQWeightOptions = {},
): QWeightGpu {
  const { rows: N, cols: K, bits } = q;
  const wpr = wordsPerRow(K, bits);
  if (q.codes.length !== N * wpr) {
    throw new RangeError(`uploadQWeight: ${q.codes.length} code words, expected ${N}×${wpr}`);
  }
  if (K % 4 !== 0) throw new RangeError(`uploadQWeight: K must be a multiple of 4, got ${K}`);
  const tensors: Tensor[] = [];
  const up = (data: Uint32Array, shape: number[]) => {
    const t = uploadTensor(rt, data, shape, "u32");
    tensors.push(t);
    return t;
  };
  try {
    const codes = up(q.codes, [N, wpr]);
    let a16: QWeightGpu["a16"];
    let int: QWeightGpu["int"];
    if (opts.tlq !== undefined && opts.tlq !== "compact" && opts.tlq !== "lut") {
      throw new RangeError(`uploadQWeight: tlq must be "compact" or "lut", got ${opts.tlq}`);
    }
    const compact = opts.tlq === "compact" || (opts.tlq === undefined && hasCompactTlq(q));
    const wantA16 = opts.a16 ?? true;
    if (compact) {
      if (wantA16 || opts.int) {
        // One tensor serves both paths (tlqCompactWords throws on parameters it cannot hold).
        const words = tlqCompactWords(q);
        const params = up(words, [words.length]);
        if (wantA16) a16 = { mode: 5, params, groupSize: 0 };
        if (opts.int) int = { mode: 6, params };
      }
    } else {
      const upA16 = (): NonNullable<QWeightGpu["a16"]> => {
        const p = a16Params(q);
        return {
          mode: p.mode,
          params: up(u32View(p.data), [p.data.length]),
          groupSize: p.groupSize,
        };
      };
      if (opts.int && isAffineGrouped(q)) {
        if (wantA16) a16 = upA16();
        const groupSize = checkInt8Groups(q);
        // MODE 7 reads MODE 1's scales and zeros: one tensor serves both paths.
        int = { mode: 7, params: (a16 ?? upA16()).params, groupSize };
      } else if (opts.int) {
        int = uploadInt8(q, up);
        // A LUT a group: the weight-only GEMM (centring's) reads the int8 tables as floats,
        // MODE 8, instead of an f32 LUT a group beside them (3.2× their bytes).
        if (wantA16 && int.mode === 2 && int.groupSize) {
          a16 = { mode: 8, params: int.params, groupSize: int.groupSize };
        } else if (wantA16) a16 = upA16();
      } else if (wantA16) a16 = upA16();
    }
    const byteLength = tensors.reduce((s, t) => s + t.byteLength, 0);
    return {
      N,
      K,
      bits,
      codes,
      a16,
      int,
      byteLength,
      release: () => tensors.forEach((t) => t.release()),
    };
  } catch (e) {
    tensors.forEach((t) => t.release());
    throw e;
  }
}
