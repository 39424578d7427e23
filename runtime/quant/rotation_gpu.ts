/**
 * The online side of a layer rotation (runtime/quant/rotation.ts) on the GPU: the
 * {@linkcode ActivationTransform}s that `LayerRotation.gpu` returns (hadamard or identity,
 * outlier-aware), which upload the transform's tensors once and run each layer input
 * through runtime/ops/rotq.ts's kernels (the rotation fused with the per-token quantizer).
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import type { Recorder } from "../gpu/kernel.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import {
  type HadamardTransformTensors,
  type OutlierTransformTensors,
  rotateHadamard,
  rotateOutlier,
  rotqHadamard,
  rotqOutlier,
  uploadOutlierTransform,
} from "../ops/rotq.ts";
import { ACT_BITS, actQuant } from "../ops/act_quant.ts";
import { composeOutlierQ } from "../reference/rotq.ts";
import type { ActGrouping, ActivationTransform, QuantizedActivations } from "./transform.ts";
import type { OutlierRotation } from "./rotation.ts";

/** The hadamard (or identity) transform on the GPU. */
export class GpuHadamardTransform implements ActivationTransform {
  readonly name: string;
  #t: HadamardTransformTensors;

  /** Uploads the kernel's pre-multiplier `s` [K]; `name` is the rotation's kind. */
  constructor(rt: Runtime, name: string, s: Float32Array, block: number) {
    this.name = name;
    this.#t = { s: uploadTensor(rt, s, [s.length]), block };
  }

  apply(rec: Recorder, x: Tensor): Tensor {
    return rotateHadamard(rec, x, this.#t);
  }

  applyQuant(rec: Recorder, x: Tensor, bits: number, g: ActGrouping = {}): QuantizedActivations {
    // "none" is the plain quantizer (same operations, so the same codes); per token the
    // Hadamard kernel also covers bits actQuant lacks, groups have no such fallback.
    if (this.name === "none" && (g.group || ACT_BITS.includes(bits))) {
      return actQuant(rec, x, bits, g);
    }
    return rotqHadamard(rec, x, this.#t, bits, g);
  }

  release(): void {
    this.#t.s.release();
  }
}

/**
 * Whether the outlier-aware transform of K channels in blocks of B multiplies by Q1·P·Q2
 * composed on `rt`: CPU adapters (its kernel's time is its products: one instead of two,
 * where the rotation took 43 % of the bundled model's W4A8 step on lavapipe) when K is one
 * block. Its values are then the reference's with `composed` (LayerRotation).
 */
export function composesOutlier(rt: Runtime, K: number, B: number): boolean {
  return rt.info.fallback && K === B && B % 8 === 0; // the CPU kernel's tiles: 8 columns
}

/** The outlier-aware transform on the GPU. */
export class GpuOutlierTransform implements ActivationTransform {
  readonly name = "outlier";
  #t: OutlierTransformTensors;

  /**
   * Uploads `r`'s tensors, its gather permutation as the kernel's scatter `dest`, and
   * Q1·P·Q2 composed where {@linkcode composesOutlier}.
   */
  constructor(rt: Runtime, r: OutlierRotation) {
    const K = r.cols;
    const c = composesOutlier(rt, K, r.block) ? composeOutlierQ(r.params) : null;
    this.#t = {
      ...uploadOutlierTransform(rt, r.params),
      ...(c ? { composed: uploadTensor(rt, c, [K, K]) } : {}),
    };
  }

  apply(rec: Recorder, x: Tensor): Tensor {
    return rotateOutlier(rec, x, this.#t);
  }

  applyQuant(rec: Recorder, x: Tensor, bits: number, g: ActGrouping = {}): QuantizedActivations {
    return rotqOutlier(rec, x, this.#t, bits, g);
  }

  release(): void {
    for (const t of [this.#t.s, this.#t.q1, this.#t.q2, this.#t.dest]) t.release();
    this.#t.composed?.release();
  }
}
