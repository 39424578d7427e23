/**
 * Peer: ONNX Runtime Web 1.30's WebGPU execution provider in this Deno process, on
 * GPU-resident tensors (`Tensor.fromGpuBuffer`, `preferredOutputLocation: "gpu-buffer"`),
 * so a run is the kernel plus ORT's per-run overhead, with no upload or read-back.
 *
 * ORT creates its own GPUDevice; releasing the last session destroys it, so one session is
 * kept per model until {@linkcode PeerMatmul.dispose}.
 *
 * @module
 */
import { matmulModel } from "./onnx_graph.ts";

/** A matrix product of a peer library, ready to run on the GPU. */
export interface PeerMatmul {
  /** The device the peer runs on (timing waits on its queue). */
  device: GPUDevice;
  /** Runs one product (submitted; not awaited on the GPU). */
  run(): Promise<void>;
  /** Reads back the result of the last run, [M, N] row-major. */
  read(): Promise<Float32Array>;
  /** Frees the inputs, the output and the session. */
  dispose(): Promise<void>;
  /** Versions and settings, for the results note. */
  note: string;
}

// deno-lint-ignore no-explicit-any
type Ort = any;

let ortModule: Promise<Ort> | undefined;

/** Loads onnxruntime-web's WebGPU build once, with its wasm from node_modules. */
export function loadOrt(): Promise<Ort> {
  ortModule ??= (async () => {
    const ort = await import("onnxruntime-web/webgpu");
    const dist = new URL("../../node_modules/onnxruntime-web/dist/", import.meta.url);
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = dist.href;
    ort.env.logLevel = "error";
    return ort;
  })();
  return ortModule;
}

/**
 * Y [M, N] = A [M, K] · B [K, N] (both row-major f32) through ORT's WebGPU EP, with the
 * inputs in GPU buffers of ORT's device.
 */
export async function ortMatmul(
  a: Float32Array<ArrayBuffer>,
  b: Float32Array<ArrayBuffer>,
  M: number,
  K: number,
  N: number,
): Promise<PeerMatmul> {
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(matmulModel(M, K, N), {
    executionProviders: ["webgpu"], // no wasm fallback: fail loudly instead
    graphOptimizationLevel: "all",
    preferredOutputLocation: "gpu-buffer",
  });
  const device: GPUDevice = await ort.env.webgpu.device;
  const upload = (data: Float32Array<ArrayBuffer>) => {
    const buf = device.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(buf, 0, data);
    return buf;
  };
  const bufA = upload(a);
  const bufB = upload(b);
  const feeds = {
    A: ort.Tensor.fromGpuBuffer(bufA, { dataType: "float32", dims: [M, K] }),
    B: ort.Tensor.fromGpuBuffer(bufB, { dataType: "float32", dims: [K, N] }),
  };
  // deno-lint-ignore no-explicit-any
  let last: any;
  return {
    device,
    note: `onnxruntime-web ${ort.env.versions?.web ?? "?"} WebGPU EP, GPU-resident I/O`,
    async run() {
      const out = await session.run(feeds);
      last?.dispose(); // the previous output buffer goes back to ORT's pool
      last = out.Y;
    },
    async read() {
      return await last.getData() as Float32Array;
    },
    async dispose() {
      last?.dispose();
      await session.release();
      bufA.destroy();
      bufB.destroy();
    },
  };
}
