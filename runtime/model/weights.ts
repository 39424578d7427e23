/**
 * Loads a model's tensors from a checkpoint against the shapes its plugin expects,
 * with errors naming the file and the tensor, and uploads them in f32 or f16.
 *
 * @module
 */
import { CheckpointError } from "../errors.ts";
import type { Runtime } from "../gpu/device.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import type { TensorSource } from "../io/safetensors.ts";
import type { LinearSource } from "./linear.ts";

const FLOAT_DTYPES = new Set(["F32", "F16", "BF16", "F64"]);

/** Reads expected tensors from a checkpoint, checking presence, shape and dtype first. */
export class WeightLoader {
  /** The checkpoint. */
  readonly source: TensorSource;
  /** The expected tensors and shapes. */
  readonly expected: ReadonlyMap<string, readonly number[]>;

  /** Checks every expected tensor up front, so a bad file fails before any upload. */
  constructor(source: TensorSource, expected: ReadonlyMap<string, readonly number[]>) {
    this.source = source;
    this.expected = expected;
    for (const [name, shape] of expected) {
      const info = source.tensors.get(name);
      if (!info) throw new CheckpointError(source.path, "missing tensor", name);
      if (!FLOAT_DTYPES.has(info.dtype)) {
        throw new CheckpointError(source.path, `expected a float tensor, got ${info.dtype}`, name);
      }
      const same = info.shape.length === shape.length && info.shape.every((d, i) => d === shape[i]);
      if (!same) {
        throw new CheckpointError(
          source.path,
          `expected shape [${shape}], got [${info.shape}]`,
          name,
        );
      }
    }
  }

  /** Names in the checkpoint that the model does not use. */
  unused(): string[] {
    return [...this.source.tensors.keys()].filter((n) => !this.expected.has(n));
  }

  /** A tensor as f32 on the host. */
  async host(name: string): Promise<Float32Array> {
    if (!this.expected.has(name)) throw new RangeError(`Tensor ${name} was not declared`);
    return await this.source.readF32(name);
  }

  /**
   * The linear `name` as its layers take it: `name.weight` [N, K…] (K the product of the
   * trailing dims, e.g. a patch convolution's), and `name.bias` when it was declared.
   */
  async linearSource(name: string): Promise<LinearSource> {
    const shape = this.expected.get(`${name}.weight`);
    if (!shape) throw new RangeError(`Tensor ${name}.weight was not declared`);
    const hasBias = this.expected.has(`${name}.bias`);
    return {
      name,
      weight: await this.host(`${name}.weight`),
      bias: hasBias ? await this.host(`${name}.bias`) : undefined,
      outFeatures: shape[0]!,
      inFeatures: shape.slice(1).reduce((a, b) => a * b, 1),
    };
  }

  /** A tensor uploaded to the GPU in `dtype` (f16 is rounded to nearest-even). */
  async gpu(rt: Runtime, name: string, dtype: "f32" | "f16"): Promise<Tensor> {
    const shape = this.expected.get(name);
    if (!shape) throw new RangeError(`Tensor ${name} was not declared`);
    if (dtype === "f16") {
      return uploadTensor(rt, await this.source.readF16Bits(name), shape, "f16");
    }
    return uploadTensor(rt, await this.source.readF32(name), shape, "f32");
  }
}

/**
 * What a model loader has put on the GPU so far (tensors, linears), so that a tensor failing
 * to load halfway (a bad file, the binding limit) frees everything before it, a half-built
 * layer included.
 */
export class LoadedSoFar {
  readonly #items: { release(): void }[] = [];

  /** Tracks `x` and returns it. */
  keep<T extends { release(): void }>(x: T): T {
    this.#items.push(x);
    return x;
  }

  /** Frees everything kept (the load failed). */
  release(): void {
    for (const x of this.#items.splice(0)) x.release();
  }
}
