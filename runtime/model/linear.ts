/**
 * The linear layer as models see it: Y = X·Wᵀ + b with a fused epilogue. Models create
 * every linear through a {@linkcode LinearFactory}, so a quantization plan swaps the
 * implementation (dense f32/f16, quantized) without touching the model's code.
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import type { Runtime } from "../gpu/device.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { gemm, type GemmActivation } from "../ops/gemm.ts";

/** What is fused after the matrix product (see runtime/ops/gemm.ts). */
export interface LinearEpilogue {
  /** Activation after the bias. */
  activation?: GemmActivation;
  /** out = residual + gate ⊙ y. */
  residual?: Tensor;
  /** Per-batch gate rows [B, N]. */
  gate?: Tensor;
  /** Output rows per gate row. */
  rowsPerGate?: number;
  /** Where to write. */
  out?: Tensor;
  /**
   * Rows of x per sample (its tokens). Layers that centre their input before quantizing it
   * take each sample's centre over these rows; default all rows. Dense layers ignore it.
   */
  rowsPerSample?: number;
  /**
   * x is a classifier-free-guidance pair: its first half of rows the unconditional batch,
   * the second the conditional one, row for row. Layers that quantize by CFG delta use it;
   * dense layers ignore it.
   */
  cfgPair?: boolean;
}

/**
 * How many of a batch's rows a layer must see in one call, so that work too wide to bind
 * whole can be split into row chunks (runtime/model/row_chunks.ts): "row" — each row alone
 * (dense layers, per-token quantizers); "sample" — each sample's rows together (centring);
 * "pair" — a CFG pair's two samples together (CFG delta); "batch" — never split.
 */
export type RowScope = "row" | "sample" | "pair" | "batch";

/** A linear layer on the GPU. */
export interface Linear {
  /** The checkpoint name, e.g. "transformer_blocks.0.attn1.to_q". */
  readonly name: string;
  /** K. */
  readonly inFeatures: number;
  /** N. */
  readonly outFeatures: number;
  /** Bytes of the weight (and its quantization parameters) on the GPU. */
  readonly weightBytes: number;
  /** Which rows must come in one call (absent: "batch", never split). */
  readonly rowScope?: RowScope;
  /** Records Y = X·Wᵀ + b (+ epilogue) for x [M, K]. */
  forward(rec: Recorder, x: Tensor, epilogue?: LinearEpilogue): Tensor;
  /** Frees the GPU tensors. */
  release(): void;
}

/** The host data a linear is built from. */
export interface LinearSource {
  /** Checkpoint name (without .weight). */
  name: string;
  /** W [N, K] row-major, f32. */
  weight: Float32Array;
  /** b [N], or undefined. */
  bias: Float32Array | undefined;
  /** N. */
  outFeatures: number;
  /** K. */
  inFeatures: number;
}

/** Builds the linear layers of a model (dense, or as a quantization plan says). */
export interface LinearFactory {
  /** Creates the layer for `src` on `rt`. */
  create(rt: Runtime, src: LinearSource): Linear | Promise<Linear>;
}

/** A dense linear with f32 or f16 weights. */
export class DenseLinear implements Linear {
  readonly name: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly weightBytes: number;
  readonly rowScope: RowScope = "row";
  #w: Tensor;
  #b: Tensor | undefined;

  /**
   * Uploads W and b in `dtype` (the activations'); `weights` "f16" with f32 activations
   * stores W alone in f16 (half the bytes; the GEMM's w16 load, f32 arithmetic).
   */
  constructor(
    rt: Runtime,
    src: LinearSource,
    dtype: "f32" | "f16",
    weights: "f32" | "f16" = dtype,
  ) {
    if (dtype === "f16" && weights === "f32") {
      throw new TypeError(`${src.name}: f32 weights under f16 activations are not supported`);
    }
    this.name = src.name;
    this.inFeatures = src.inFeatures;
    this.outFeatures = src.outFeatures;
    if (src.weight.length !== src.outFeatures * src.inFeatures) {
      throw new RangeError(
        `${src.name}: weight has ${src.weight.length} values, not ${src.outFeatures}×${src.inFeatures}`,
      );
    }
    this.#w = uploadTensor(rt, src.weight, [src.outFeatures, src.inFeatures], weights);
    this.#b = src.bias ? uploadTensor(rt, src.bias, [src.outFeatures], dtype) : undefined;
    this.weightBytes = this.#w.byteLength + (this.#b?.byteLength ?? 0);
  }

  forward(rec: Recorder, x: Tensor, e: LinearEpilogue = {}): Tensor {
    return gemm(rec, x, this.#w, { ...e, bias: this.#b });
  }

  release(): void {
    this.#w.release();
    this.#b?.release();
  }
}

/** The factory of dense layers in one dtype. */
export function denseLinears(dtype: "f32" | "f16"): LinearFactory {
  return { create: (rt, src) => new DenseLinear(rt, src, dtype) };
}
