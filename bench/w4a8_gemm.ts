/**
 * The W4A8 GEMM a bench times beside the op it is about (rotq_bench, low_rank_bench): a uniform
 * 4-bit weight (per row) on int8 activations, checked on sampled entries before it is timed;
 * optionally with a low-rank branch (qgemmIntLowRank: X·Aᵀ, then the GEMM adding U·Bᵀ).
 *
 * @module
 */
import type { Runtime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, readTensorRaw } from "../runtime/gpu/tensor.ts";
import type { Tensor } from "../runtime/gpu/tensor.ts";
import { qgemmIntLowRank } from "../runtime/ops/low_rank.ts";
import { qgemmInt, uploadQWeight } from "../runtime/ops/qgemm.ts";
import type { QuantizedActivations } from "../runtime/quant/transform.ts";
import { unpackCodes } from "../runtime/reference/rotq.ts";
import { uniformDequantize, uniformQuantize } from "../plugins/quantizers/uniform.ts";
import type { PreparedCase } from "./harness.ts";
import { checkSampled, productRef, type SampledRef } from "./sampled_check.ts";

/**
 * Quantizes `ws` [N, K] to uniform W4, records `quantize` (the activations' codes, once: the
 * timed loop is the GEMM alone) and one qgemmInt, checks sampled entries against the codes ×
 * scales × dequantized weight (+ the branch's `ref`), and returns the timed loop (into that
 * first output).
 */
export async function prepareW4a8(
  rt: Runtime,
  shape: { M: number; K: number; N: number },
  ws: Float32Array,
  quantize: (rec: Recorder) => QuantizedActivations,
  tol?: (r: SampledRef) => number,
  branch?: { x: Tensor; a: Tensor; b: Tensor; ref: (m: number, n: number) => SampledRef },
): Promise<PreparedCase> {
  const { M, K, N } = shape;
  const qw = uniformQuantize({ data: ws, rows: N, cols: K }, { bits: 4 });
  const w = uploadQWeight(rt, qw, { a16: false, int: true });
  const rec = new Recorder(rt);
  const xa = quantize(rec);
  const gemmOf = (r: Recorder, out?: Tensor) =>
    branch
      ? qgemmIntLowRank(r, xa, w, branch.x, branch.a, branch.b, { out })
      : qgemmInt(r, xa, w, { out });
  const y = gemmOf(rec);
  await rec.submit();
  const codes = unpackCodes((await readTensorRaw(rt, xa.q)) as Uint32Array, M, K);
  const sc = await readTensor(rt, xa.scales);
  const gemmRef = productRef(codes, uniformDequantize(qw), K, sc);
  const ref = branch
    ? (m: number, n: number): SampledRef => {
      const [g, b] = [gemmRef(m, n), branch.ref(m, n)];
      return { v: g.v + b.v, mag: g.mag + b.mag };
    }
    : gemmRef;
  const note = checkSampled("W4A8", await readTensor(rt, y), M, N, ref, tol);
  return {
    device: rt.device,
    run: (reps) => {
      // Into the first output: a fresh output per chunk of reps would time its allocation
      // (2.9 TFLOP/s for 75 MB on the H200 at 564fd9d).
      const r = new Recorder(rt);
      for (let i = 0; i < reps; i++) gemmOf(r, y);
      return r.submit();
    },
    dispose: () => [y, xa.q, xa.scales].forEach((t) => t.release()),
    note,
  };
}
