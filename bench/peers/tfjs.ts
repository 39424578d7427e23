/**
 * Peer: TensorFlow.js 4.22's WebGPU backend in this Deno process — what a JS user would
 * pick instead. Inputs stay on the GPU; a run is `tf.matMul` plus a flush of tfjs's command
 * queue, so the GPU time can be awaited on the backend's device.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-webgpu";
import type { PeerMatmul } from "./ort.ts";

/** The parts of tfjs's WebGPU backend used here (not in tfjs-core's typings). */
interface WebGpuBackend {
  device: GPUDevice;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

let ready: Promise<WebGpuBackend> | undefined;

/** Selects the webgpu backend once and returns it. */
function backend(): Promise<WebGpuBackend> {
  ready ??= (async () => {
    const ok = await tf.setBackend("webgpu");
    if (!ok) throw new Error("tfjs could not initialise its webgpu backend");
    await tf.ready();
    return tf.backend() as unknown as WebGpuBackend;
  })();
  return ready;
}

/** Y [M, N] = A [M, K] · B [K, N] (row-major f32) with tf.matMul on tfjs-backend-webgpu. */
export async function tfjsMatmul(
  a: Float32Array<ArrayBuffer>,
  b: Float32Array<ArrayBuffer>,
  M: number,
  K: number,
  N: number,
): Promise<PeerMatmul> {
  const be = await backend();
  const ta = tf.tensor2d(a, [M, K]);
  const tb = tf.tensor2d(b, [K, N]);
  let last: tf.Tensor | undefined;
  return {
    device: be.device,
    note: `tfjs-backend-webgpu ${tf.version_core}`,
    run() {
      const y = tf.matMul(ta, tb);
      // tfjs batches commands; flush so the GPU work is in the queue (the open pass first:
      // finishing an encoder inside a pass is a validation error and runs nothing).
      be.endComputePassEncoder();
      be.submitQueue();
      last?.dispose();
      last = y;
      return Promise.resolve();
    },
    async read() {
      return await last!.data() as Float32Array;
    },
    dispose() {
      last?.dispose();
      ta.dispose();
      tb.dispose();
      return Promise.resolve();
    },
  };
}
