/**
 * How the text encoders (T5, CLIP) keep their weights: the linears' weights on the GPU in f32
 * or f16 ({@linkcode TextWeights}; activations stay f32: T5's overflow f16), and the token
 * embedding tables on the host, gathered there ({@linkcode HostEmbedding}): T5-XXL's is
 * 32128 × 4096 (526 MB in f32), over the storage-binding limit of small adapters, and only
 * B·L of its rows are read per prompt batch.
 *
 * @module
 */
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { TensorSource } from "../../runtime/io/safetensors.ts";
import { DenseLinear } from "../../runtime/model/linear.ts";
import type { WeightLoader } from "../../runtime/model/weights.ts";

/**
 * Storage of a text encoder's weights: "auto" (default) keeps the checkpoint's precision —
 * f16 where it stores f16 or bf16 (bf16's 8-bit mantissa fits f16's 11: exact within f16's
 * range), else f32; "f32"; or "f16" (an f32 checkpoint in half the bytes, rounded). A tensor
 * with a value past f16's range (|w| > 65504) stays f32 in every mode.
 */
export type TextWeights = "auto" | "f32" | "f16";

/** The modes of {@linkcode TextWeights}, for options and help. */
export const TEXT_WEIGHTS: readonly TextWeights[] = ["auto", "f32", "f16"];

const F16_MAX = 65504;

/** Whether every value survives f16 storage without overflowing. */
export function fitsF16(values: Float32Array): boolean {
  for (let i = 0; i < values.length; i++) if (!(Math.abs(values[i]) <= F16_MAX)) return false;
  return true;
}

/** The storage of the stored tensor `name` (values already read) under `mode`. */
export function weightStorage(
  source: TensorSource,
  name: string,
  values: Float32Array,
  mode: TextWeights,
): "f32" | "f16" {
  if (mode === "f32") return "f32";
  const stored = source.tensors.get(name)?.dtype;
  if (mode === "auto" && stored !== "F16" && stored !== "BF16") return "f32";
  return fitsF16(values) ? "f16" : "f32";
}

/** A dense linear of a text encoder: f32 activations, its weight stored per `mode`. */
export async function textLinear(
  rt: Runtime,
  w: WeightLoader,
  name: string,
  mode: TextWeights,
): Promise<DenseLinear> {
  const src = await w.linearSource(name);
  return new DenseLinear(
    rt,
    src,
    "f32",
    weightStorage(w.source, `${name}.weight`, src.weight, mode),
  );
}

/** The stored table `name` [rows, cols] as a host embedding, kept per `mode` (weightStorage). */
export async function hostEmbedding(
  w: WeightLoader,
  name: string,
  rows: number,
  cols: number,
  mode: TextWeights,
): Promise<HostEmbedding> {
  const v = await w.host(name);
  return new HostEmbedding(v, rows, cols, weightStorage(w.source, name, v, mode));
}

/** An embedding table [rows, cols] on the host, its rows gathered there (see the module doc). */
export class HostEmbedding {
  readonly rows: number;
  readonly cols: number;
  readonly #table: Float32Array | Float16Array;

  /**
   * `values` [rows, cols]; kept as f16 when `storage` says so (the table of a 16-bit
   * checkpoint: exact), else as given.
   */
  constructor(values: Float32Array, rows: number, cols: number, storage: "f32" | "f16") {
    if (values.length !== rows * cols) {
      throw new RangeError(`embedding: ${values.length} values are not [${rows}, ${cols}]`);
    }
    this.rows = rows;
    this.cols = cols;
    this.#table = storage === "f16" ? Float16Array.from(values) : values;
  }

  /** Bytes held on the host. */
  get byteLength(): number {
    return this.#table.byteLength;
  }

  /** The rows of `ids` ([n] ids < rows) as f32 [n, cols]. */
  gather(ids: ArrayLike<number>): Float32Array {
    const d = this.cols;
    const out = new Float32Array(ids.length * d);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(id >= 0 && id < this.rows)) {
        throw new RangeError(`embedding: id ${id} is past the table's ${this.rows} rows`);
      }
      out.set(this.#table.subarray(id * d, (id + 1) * d), i * d);
    }
    return out;
  }
}
