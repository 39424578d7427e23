/**
 * Shared cases of the quantized-GEMM tests (qgemm_test.ts, qgemm_tlq_test.ts): weights of
 * each format, random operands, the epilogue operands and their reference options.
 *
 * @module
 */
import type { QuantizedWeight } from "../../plugins/types.ts";
import { kmeansQuantize } from "../../plugins/quantizers/kmeans.ts";
import { lutDequantize, tlqQuantize } from "../../plugins/quantizers/tlq.ts";
import { uniformDequantize, uniformQuantize } from "../../plugins/quantizers/uniform.ts";
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, readTensorRaw, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { unpackInt8 } from "../quant/pack.ts";
import type { GemmRefOptions } from "../reference/gemm.ts";
import { actQuant } from "./act_quant.ts";
import type { QGemmA16Version, QGemmIntVersion } from "./qgemm.ts";

/**
 * Weight formats: TLQ W4/W3, uniform W4, W3 groups of 32, W8 symmetric, W4 groups of 64, k-means
 * W3 per row and W4 in groups of 32 (LUT-coded like TLQ, without TLQ's parameters).
 */
export type Kind =
  | "tlq4"
  | "tlq3"
  | "tlq4mse"
  | "tlq3mse"
  | "u4"
  | "u3g"
  | "u8s"
  | "u4g"
  | "km3"
  | "km4g";

/** Quantizes [rows, cols] in format `kind`. */
export function quantize(
  kind: Kind,
  data: Float32Array,
  rows: number,
  cols: number,
): QuantizedWeight {
  const w = { data, rows, cols };
  switch (kind) {
    case "tlq4":
      return tlqQuantize(w, { bits: 4, etas: [0, 0.02, 0.5], percentiles: [0.99, 1] });
    case "tlq3":
      return tlqQuantize(w, { bits: 3, etas: [0, 0.02, 0.5], percentiles: [0.99, 1] });
    case "tlq4mse": // least-squares grids (plugins/quantizers/tlq_fit.ts): other Δ and z
      return tlqQuantize(w, { bits: 4, fit: "mse" });
    case "tlq3mse":
      return tlqQuantize(w, { bits: 3, fit: "mse" });
    case "u4":
      return uniformQuantize(w, { bits: 4 });
    case "u3g":
      return uniformQuantize(w, { bits: 3, groupSize: 32 });
    case "u4g":
      return uniformQuantize(w, { bits: 4, groupSize: 64 });
    case "u8s":
      return uniformQuantize(w, { bits: 8, symmetric: true });
    case "km3":
      return kmeansQuantize(w, { bits: 3 });
    case "km4g":
      return kmeansQuantize(w, { bits: 4, groupSize: 32 });
  }
}

/** X = I [K, K] on the GPU: Y = X·Ŵᵀ = Ŵᵀ exactly (one product 1·ŵ a sum) shows the decoded weights. */
export function identityInput(rt: Runtime, K: number): Tensor {
  const eye = new Float32Array(K * K);
  for (let k = 0; k < K; k++) eye[k * K + k] = 1;
  return uploadTensor(rt, eye, [K, K]);
}

/** The dequantized weight (CPU reference). */
export function dequant(q: QuantizedWeight): Float32Array {
  return q.params.lut ? lutDequantize(q) : uniformDequantize(q);
}

/** One GEMM case: operands of [M, K] × [N, K]ᵀ and the epilogue's. */
export interface Case {
  M: number;
  N: number;
  K: number;
  xs: Float32Array;
  ws: Float32Array;
  bias: Float32Array;
  res: Float32Array;
  gate: Float32Array;
}

/** Random operands (weights scaled by 1/√K). */
export function makeCase(M: number, N: number, K: number, seed: number): Case {
  const g = new Prng(seed);
  return {
    M,
    N,
    K,
    xs: g.normals(M * K),
    ws: g.normals(N * K).map((v) => v / Math.sqrt(K)),
    bias: g.normals(N),
    res: g.normals(M * N),
    gate: g.normals(2 * N),
  };
}

/** Epilogue tensors and their reference options (gate over two batch halves). */
export function epilogue(rt: Runtime, c: Case, dt: "f32" | "f16") {
  const r = (a: Float32Array) => dt === "f16" ? Float32Array.from(Float16Array.from(a)) : a;
  const ref: GemmRefOptions = {
    bias: r(c.bias),
    activation: "gelu",
    residual: r(c.res),
    gate: r(c.gate),
    rowsPerGate: Math.ceil(c.M / 2),
  };
  return {
    ref,
    gpu: {
      bias: uploadTensor(rt, c.bias, [c.N], dt),
      activation: "gelu" as const,
      residual: uploadTensor(rt, c.res, [c.M, c.N], dt),
      gate: uploadTensor(rt, c.gate, [2, c.N], dt),
      rowsPerGate: Math.ceil(c.M / 2),
    },
  };
}

/** Every A16 version. */
export const A16: QGemmA16Version[] = ["fused", "skinny", "dequant"];

/** Uploads x, quantizes it on the GPU, and reads the codes back for the reference. */
export async function quantized(rt: Runtime, c: Case, bits: number) {
  const x = uploadTensor(rt, c.xs, [c.M, c.K]);
  const rec = new Recorder(rt);
  const xa = actQuant(rec, x, bits);
  await rec.submit();
  const words = (await readTensorRaw(rt, xa.q)) as Uint32Array;
  return {
    xa,
    x8: unpackInt8(words, c.M, c.K),
    xScale: await readTensor(rt, xa.scales),
  };
}

/** Every integer version. */
export const INT_VERSIONS: QGemmIntVersion[] = ["tiled", "cpu"];

/** Throws at the first i32 sum that differs. */
export function assertSums(got: Int32Array, want: Int32Array, what: string): void {
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) throw new Error(`${what}: sum ${i} is ${got[i]}, expected ${want[i]}`);
  }
}
