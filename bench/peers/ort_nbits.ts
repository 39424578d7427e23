/**
 * Peer: ONNX Runtime Web 1.30's MatMulNBits (com.microsoft, 4-bit weights in blocks along K
 * with one f32 scale a block, implicit zero point 8) on its WebGPU EP, in this Deno process,
 * activations GPU-resident — what a JS user would run for int4 weight-only GEMMs.
 *
 * The one-node model is encoded here (MatMulNBits needs attributes, initializers and the
 * com.microsoft opset, which bench/peers/onnx_graph.ts does not write).
 *
 * @module
 */
import { Prng } from "../../runtime/io/prng.ts";
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

const enc = new TextEncoder();

function varint(v: number): number[] {
  const out: number[] = [];
  let x = BigInt(v);
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  return out;
}

function cat(parts: (Uint8Array | number[])[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const fInt = (f: number, v: number) => cat([varint(f << 3), varint(v)]);
const fLen = (f: number, b: Uint8Array) => cat([varint((f << 3) | 2), varint(b.length), b]);
const fStr = (f: number, s: string) => fLen(f, enc.encode(s));

const FLOAT = 1;
const UINT8 = 2;

function valueInfo(name: string, type: number, dims: number[]): Uint8Array {
  const shape = cat(dims.map((d) => fLen(1, fInt(1, d))));
  return cat([fStr(1, name), fLen(2, fLen(1, cat([fInt(1, type), fLen(2, shape)])))]);
}

function initializer(name: string, type: number, dims: number[], raw: Uint8Array): Uint8Array {
  return cat([...dims.map((d) => fInt(1, d)), fInt(2, type), fStr(8, name), fLen(9, raw)]);
}

function intAttr(name: string, v: number): Uint8Array {
  return cat([fStr(1, name), fInt(3, v), fInt(20, 2)]); // AttributeProto.type = INT
}

/** The ONNX model Y [M, N] = A [M, K] · Wᵀ with W a MatMulNBits 4-bit initializer. */
export function matmulNBitsModel(M: number, w: Nbits4Weight, accuracyLevel = 0): Uint8Array {
  const nb = w.K / w.block;
  const packed = new Uint8Array((w.N * w.K) / 2); // [N, nb, block/2], low nibble first
  for (let i = 0; i < packed.length; i++) packed[i] = w.q[2 * i] | (w.q[2 * i + 1] << 4);
  const node = cat([
    fStr(1, "A"),
    fStr(1, "B"),
    fStr(1, "scales"),
    fStr(2, "Y"),
    fStr(3, "matmulnbits_0"),
    fStr(4, "MatMulNBits"),
    ...[["K", w.K], ["N", w.N], ["bits", 4], ["block_size", w.block], [
      "accuracy_level",
      accuracyLevel,
    ]].map(([n, v]) => fLen(5, intAttr(n as string, v as number))),
    fStr(7, "com.microsoft"),
  ]);
  const graph = cat([
    fLen(1, node),
    fStr(2, "webdit_peer_nbits"),
    fLen(5, initializer("B", UINT8, [w.N, nb, w.block / 2], packed)),
    fLen(5, initializer("scales", FLOAT, [w.N * nb], new Uint8Array(w.scales.buffer))),
    fLen(11, valueInfo("A", FLOAT, [M, w.K])),
    fLen(12, valueInfo("Y", FLOAT, [M, w.N])),
  ]);
  return cat([
    fInt(1, 8),
    fStr(2, "webdit"),
    fLen(8, cat([fStr(1, ""), fInt(2, 17)])),
    fLen(8, cat([fStr(1, "com.microsoft"), fInt(2, 1)])),
    fLen(7, graph),
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
