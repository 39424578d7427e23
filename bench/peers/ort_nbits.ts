/**
 * Peer: ONNX Runtime Web 1.30's MatMulNBits (com.microsoft, 4-bit weights in blocks along K
 * with one f32 scale a block, implicit zero point 8) on its WebGPU EP, in this Deno process,
 * activations GPU-resident — what a JS user would run for int4 weight-only GEMMs.
 *
 * The one-node model is encoded here from bench/peers/onnx_graph.ts' protobuf fields
 * (MatMulNBits needs attributes, initializers and the com.microsoft opset, which its
 * onnxModel does not write).
 *
 * @module
 */
import { Prng } from "../../runtime/io/prng.ts";
import { ONNX_FLOAT, pbBytes, pbConcat, pbInt, pbString, valueInfoProto } from "./onnx_graph.ts";
import { loadOrt, type PeerMatmul } from "./ort.ts";

/** A 4-bit blocked weight in MatMulNBits' form: W[n, k] = (q[n, k] − 8)·scale[n, k / block]. */
export interface Nbits4Weight {
  /** N. */
  N: number;
  /** K. */
  K: number;
  /** Block size along K. */
  block: number;
  /** Codes 0…15, [N, K]. */
  q: Uint8Array;
  /** Scales [N, K / block]. */
  scales: Float32Array;
}

/** Random codes and scales (shape benchmarks: the values do not matter, the check does). */
export function randomNbits4(N: number, K: number, block: number, seed: number): Nbits4Weight {
  if (K % block !== 0 || block % 2 !== 0) throw new RangeError("K must be a multiple of block");
  const g = new Prng(seed);
  const q = new Uint8Array(N * K);
  for (let i = 0; i < q.length; i++) q[i] = g.nextU32() & 15;
  const scales = g.uniforms(N * (K / block), 0.01, 0.03);
  return { N, K, block, q, scales };
}

/** W[n, k] of a blocked 4-bit weight. */
export function nbits4At(w: Nbits4Weight, n: number, k: number): number {
  return (w.q[n * w.K + k] - 8) * w.scales[n * (w.K / w.block) + Math.floor(k / w.block)];
}

/** ONNX TensorProto element type uint8. */
const ONNX_UINT8 = 2;

function initializer(name: string, type: number, dims: number[], raw: Uint8Array): Uint8Array {
  return pbConcat([
    ...dims.map((d) => pbInt(1, d)),
    pbInt(2, type),
    pbString(8, name),
    pbBytes(9, raw),
  ]);
}

function intAttr(name: string, v: number): Uint8Array {
  return pbConcat([pbString(1, name), pbInt(3, v), pbInt(20, 2)]); // AttributeProto.type = INT
}

/** The ONNX model Y [M, N] = A [M, K] · Wᵀ with W a MatMulNBits 4-bit initializer. */
export function matmulNBitsModel(M: number, w: Nbits4Weight, accuracyLevel = 0): Uint8Array {
  const nb = w.K / w.block;
  const packed = new Uint8Array((w.N * w.K) / 2); // [N, nb, block/2], low nibble first
  for (let i = 0; i < packed.length; i++) packed[i] = w.q[2 * i] | (w.q[2 * i + 1] << 4);
  const node = pbConcat([
    pbString(1, "A"),
    pbString(1, "B"),
    pbString(1, "scales"),
    pbString(2, "Y"),
    pbString(3, "matmulnbits_0"),
    pbString(4, "MatMulNBits"),
    ...[["K", w.K], ["N", w.N], ["bits", 4], ["block_size", w.block], [
      "accuracy_level",
      accuracyLevel,
    ]].map(([n, v]) => pbBytes(5, intAttr(n as string, v as number))),
    pbString(7, "com.microsoft"),
  ]);
  const graph = pbConcat([
    pbBytes(1, node),
    pbString(2, "webdit_peer_nbits"),
    pbBytes(5, initializer("B", ONNX_UINT8, [w.N, nb, w.block / 2], packed)),
    pbBytes(5, initializer("scales", ONNX_FLOAT, [w.N * nb], new Uint8Array(w.scales.buffer))),
    pbBytes(11, valueInfoProto({ name: "A", type: ONNX_FLOAT, dims: [M, w.K] })),
    pbBytes(12, valueInfoProto({ name: "Y", type: ONNX_FLOAT, dims: [M, w.N] })),
  ]);
  return pbConcat([
    pbInt(1, 8),
    pbString(2, "webdit"),
    pbBytes(8, pbConcat([pbString(1, ""), pbInt(2, 17)])),
    pbBytes(8, pbConcat([pbString(1, "com.microsoft"), pbInt(2, 1)])),
    pbBytes(7, graph),
  ]);
}

/** Y = A · Wᵀ through ORT's MatMulNBits on its WebGPU EP, A in a GPU buffer of ORT's device. */
export async function ortMatmulNBits(
  a: Float32Array<ArrayBuffer>,
  M: number,
  w: Nbits4Weight,
  accuracyLevel = 0,
): Promise<PeerMatmul> {
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(matmulNBitsModel(M, w, accuracyLevel), {
    executionProviders: ["webgpu"],
    graphOptimizationLevel: "all",
    preferredOutputLocation: "gpu-buffer",
  });
  const device: GPUDevice = await ort.env.webgpu.device;
  const buf = device.createBuffer({
    size: a.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buf, 0, a);
  const feeds = { A: ort.Tensor.fromGpuBuffer(buf, { dataType: "float32", dims: [M, w.K] }) };
  // deno-lint-ignore no-explicit-any
  let last: any;
  return {
    device,
    note: `onnxruntime-web ${
      ort.env.versions?.web ?? "?"
    } WebGPU EP MatMulNBits int4 block ${w.block}, accuracy_level ${accuracyLevel}`,
    async run() {
      const out = await session.run(feeds);
      last?.dispose();
      last = out.Y;
    },
    async read() {
      return await last.getData() as Float32Array;
    },
    async dispose() {
      last?.dispose();
      await session.release();
      buf.destroy();
    },
  };
}
