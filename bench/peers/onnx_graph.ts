/**
 * A minimal ONNX model writer for peer benchmarks: just enough protobuf to encode one-node
 * graphs (e.g. MatMul) with typed, fixed-shape inputs and outputs.
 *
 * @module
 */

const enc = new TextEncoder();

/** ONNX TensorProto element types used here. */
export const ONNX_FLOAT = 1;
/** float16 element type. */
export const ONNX_FLOAT16 = 10;

function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

function concat(parts: (Uint8Array | number[])[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A varint field (wire type 0). */
function int(field: number, v: number): Uint8Array {
  return concat([varint(field << 3), varint(v)]);
}

/** A length-delimited field (wire type 2). */
function bytes(field: number, b: Uint8Array): Uint8Array {
  return concat([varint((field << 3) | 2), varint(b.length), b]);
}

function str(field: number, s: string): Uint8Array {
  return bytes(field, enc.encode(s));
}

/** A graph input or output: name, element type and fixed dims. */
export interface ValueInfo {
  /** Tensor name. */
  name: string;
  /** ONNX element type (ONNX_FLOAT, ONNX_FLOAT16). */
  type: number;
  /** Fixed dims. */
  dims: readonly number[];
}

function valueInfo(v: ValueInfo): Uint8Array {
  const shape = concat(v.dims.map((d) => bytes(1, int(1, d)))); // TensorShapeProto.dim.dim_value
  const tensorType = concat([int(1, v.type), bytes(2, shape)]); // TypeProto.Tensor
  return concat([str(1, v.name), bytes(2, bytes(1, tensorType))]); // ValueInfoProto
}

/** One node: op type, inputs, outputs (default domain, no attributes). */
export interface GraphNode {
  /** The ONNX op, e.g. "MatMul". */
  op: string;
  /** Input tensor names. */
  inputs: readonly string[];
  /** Output tensor names. */
  outputs: readonly string[];
}

/** Encodes a ModelProto (IR 8, opset 17) with the given nodes, inputs and outputs. */
export function onnxModel(
  nodes: readonly GraphNode[],
  inputs: readonly ValueInfo[],
  outputs: readonly ValueInfo[],
): Uint8Array {
  const graph = concat([
    ...nodes.map((n, i) =>
      bytes(
        1,
        concat([
          ...n.inputs.map((s) => str(1, s)),
          ...n.outputs.map((s) => str(2, s)),
          str(3, `${n.op}_${i}`),
          str(4, n.op),
        ]),
      )
    ),
    str(2, "webdit_peer"),
    ...inputs.map((v) => bytes(11, valueInfo(v))),
    ...outputs.map((v) => bytes(12, valueInfo(v))),
  ]);
  const opset = bytes(8, concat([str(1, ""), int(2, 17)]));
  return concat([int(1, 8), str(2, "webdit"), opset, bytes(7, graph)]);
}

/** The ONNX model of Y [M, N] = A [M, K] · B [K, N]. */
export function matmulModel(M: number, K: number, N: number, type = ONNX_FLOAT): Uint8Array {
  return onnxModel(
    [{ op: "MatMul", inputs: ["A", "B"], outputs: ["Y"] }],
    [{ name: "A", type, dims: [M, K] }, { name: "B", type, dims: [K, N] }],
    [{ name: "Y", type, dims: [M, N] }],
  );
}
