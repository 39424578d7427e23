/**
 * A minimal ONNX model writer for peer benchmarks: just enough protobuf to encode one-node
 * graphs (e.g. MatMul) with typed, fixed-shape inputs and outputs.
 *
 * @module
 */
import { concatBytes } from "../../runtime/io/bytes.ts";

const enc = new TextEncoder();

/** ONNX TensorProto element types used here. */
export const ONNX_FLOAT = 1;
/** float16 element type. */
export const ONNX_FLOAT16 = 10;

/** A protobuf base-128 varint. */
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

/** The bytes of `parts`, one after another. */
export function pbConcat(parts: (Uint8Array | number[])[]): Uint8Array {
  return concatBytes(parts);
}

/** A varint field (wire type 0). */
export function pbInt(field: number, v: number): Uint8Array {
  return pbConcat([varint(field << 3), varint(v)]);
}

/** A length-delimited field (wire type 2). */
export function pbBytes(field: number, b: Uint8Array): Uint8Array {
  return pbConcat([varint((field << 3) | 2), varint(b.length), b]);
}

/** A UTF-8 string field (wire type 2). */
export function pbString(field: number, s: string): Uint8Array {
  return pbBytes(field, enc.encode(s));
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

/** A ValueInfoProto: name and fixed-shape tensor type. */
export function valueInfoProto(v: ValueInfo): Uint8Array {
  // TensorShapeProto: one dim (dim_value) per size.
  const shape = pbConcat(v.dims.map((d) => pbBytes(1, pbInt(1, d))));
  const tensorType = pbConcat([pbInt(1, v.type), pbBytes(2, shape)]); // TypeProto.Tensor
  return pbConcat([pbString(1, v.name), pbBytes(2, pbBytes(1, tensorType))]); // ValueInfoProto
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
  const graph = pbConcat([
    ...nodes.map((n, i) =>
      pbBytes(
        1,
        pbConcat([
          ...n.inputs.map((s) => pbString(1, s)),
          ...n.outputs.map((s) => pbString(2, s)),
          pbString(3, `${n.op}_${i}`),
          pbString(4, n.op),
        ]),
      )
    ),
    pbString(2, "webdit_peer"),
    ...inputs.map((v) => pbBytes(11, valueInfoProto(v))),
    ...outputs.map((v) => pbBytes(12, valueInfoProto(v))),
  ]);
  const opset = pbBytes(8, pbConcat([pbString(1, ""), pbInt(2, 17)]));
  return pbConcat([pbInt(1, 8), pbString(2, "webdit"), opset, pbBytes(7, graph)]);
}

/** The ONNX model of Y [M, N] = A [M, K] · B [K, N]. */
export function matmulModel(M: number, K: number, N: number, type = ONNX_FLOAT): Uint8Array {
  return onnxModel(
    [{ op: "MatMul", inputs: ["A", "B"], outputs: ["Y"] }],
    [{ name: "A", type, dims: [M, K] }, { name: "B", type, dims: [K, N] }],
    [{ name: "Y", type, dims: [M, N] }],
  );
}
