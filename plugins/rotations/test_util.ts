/**
 * Shared helpers of the rotation plugin tests: activations with salient channels, random
 * weights, host matrix products, and the GPU checks every rotation must pass.
 *
 * @module
 */
import { assert, assertEquals, relError } from "../../tests/assert.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import { Recorder } from "../../runtime/gpu/kernel.ts";
import { readTensor, readTensorRaw, uploadTensor } from "../../runtime/gpu/tensor.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { gemm } from "../../runtime/ops/gemm.ts";
import { detectFmaContraction } from "../../runtime/ops/rotq.ts";
import type { LayerRotation } from "../../runtime/quant/rotation.ts";
import { composesOutlier } from "../../runtime/quant/rotation_gpu.ts";
import { unpackCodes } from "../../runtime/reference/rotq.ts";
import type { HostMatrix } from "../types.ts";

/**
 * Rows [M, K] of N(0, 1) plus, in `salient` channels, a fixed-sign value `factor` times
 * larger (as salient outlier channels are: same channels, same sign, every token).
 */
export function salientRows(
  M: number,
  K: number,
  seed: number,
  salient: readonly number[] = [],
  factor = 100,
): Float32Array {
  const g = new Prng(seed);
  const x = g.normals(M * K);
  for (let r = 0; r < M; r++) {
    for (const [i, c] of salient.entries()) {
      x[r * K + c] = (i % 2 ? -1 : 1) * factor * (1 + 0.2 * x[r * K + c]);
    }
  }
  return x;
}

/** W [N, K] with N(0, 1/K) entries. */
export function randomWeight(N: number, K: number, seed: number): HostMatrix {
  const d = new Prng(seed).normals(N * K).map((v) => v / Math.sqrt(K));
  return { data: d, rows: N, cols: K };
}

/** X·Wᵀ in double precision. */
export function matmulT(x: Float32Array, M: number, w: HostMatrix): Float64Array {
  const K = w.cols;
  const y = new Float64Array(M * w.rows);
  for (let r = 0; r < M; r++) {
    for (let n = 0; n < w.rows; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[r * K + k] * w.data[n * K + k];
      y[r * w.rows + n] = acc;
    }
  }
  return y;
}

/**
 * (X·T)(W·diag(m)·R)ᵀ = X·Wᵀ on the CPU, to `tol` relative, and restoreWeight undoes
 * transformWeight.
 */
export function assertOrthogonalCpu(
  plan: LayerRotation,
  x: Float32Array,
  M: number,
  w: HostMatrix,
  tol = 2e-6,
): void {
  const err = relError(
    matmulT(plan.transformActivations(x, M), M, plan.transformWeight(w)),
    matmulT(x, M, w),
  );
  assert(err <= tol, `${plan.kind}: (XT)(WR)ᵀ differs from XWᵀ by ${err} (tol ${tol})`);
  const back = relError(plan.restoreWeight(plan.transformWeight(w)).data, w.data);
  assert(back <= tol, `${plan.kind}: restoreWeight(transformWeight(W)) differs by ${back}`);
}

/**
 * On the GPU: apply() equals the CPU transform bit for bit, a GEMM of it with the
 * transformed weight equals X·Wᵀ to `tol`, and applyQuant's codes equal the CPU
 * reference's exactly (scales to the last bit).
 */
export async function assertGpuMatches(
  rt: Runtime,
  plan: LayerRotation,
  x: Float32Array,
  M: number,
  w: HostMatrix,
  bits = 8,
  tol = 2e-6,
): Promise<void> {
  const K = plan.cols;
  const t = plan.gpu(rt);
  try {
    const xt = uploadTensor(rt, x, [M, K]);
    const w2 = plan.transformWeight(w);
    const wt = uploadTensor(rt, w2.data, [w2.rows, K]);
    const rec = new Recorder(rt);
    const y = t.apply(rec, xt);
    const out = gemm(rec, y, wt);
    const q = t.applyQuant(rec, xt, bits);
    await rec.submit();
    const rotated = await readTensor(rt, y);
    const fused = await detectFmaContraction(rt); // GPUs may contract the block products
    const composed = composesOutlier(rt, K, plan.block); // CPU adapters, one block
    assertEquals(
      Array.from(rotated),
      Array.from(plan.transformActivations(x, M, fused, composed)),
      `${plan.kind} apply`,
    );
    const err = relError(await readTensor(rt, out), matmulT(x, M, w));
    assert(err <= tol, `${plan.kind}: GPU (XT)(WR)ᵀ differs from XWᵀ by ${err} (tol ${tol})`);
    const ref = plan.quantizeActivations(x, M, bits, fused, composed);
    const words = (await readTensorRaw(rt, q.q)) as Uint32Array;
    const codes = unpackCodes(words, M, K);
    for (let i = 0; i < M * K; i++) {
      if (codes[i] !== ref.codes[i]) {
        throw new Error(`${plan.kind}: code ${i} is ${codes[i]}, reference ${ref.codes[i]}`);
      }
    }
    assertEquals(q.bits, bits);
    assertEquals(q.cols, K);
    const scales = await readTensor(rt, q.scales);
    for (let r = 0; r < M; r++) {
      assert(
        Math.abs(scales[r] - ref.scales[r]) <= 2 ** -22 * ref.scales[r],
        `${plan.kind}: scale ${r} ${scales[r]} vs ${ref.scales[r]}`,
      );
    }
  } finally {
    t.release();
  }
}
