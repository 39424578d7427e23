/**
 * GPU tensors: storage buffers with a shape and dtype, a size-bucketed pool, and
 * upload / read-back.
 *
 * @module
 */
import { UnsupportedFeatureError } from "../errors.ts";
import type { Runtime } from "./device.ts";

/** Element types of GPU tensors. `i8` packs four per u32 word. */
export type DType = "f32" | "f16" | "i32" | "u32" | "i8";

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  f32: 4,
  f16: 2,
  i32: 4,
  u32: 4,
  i8: 1,
};

/** Usage flags of every pooled storage buffer. */
const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Rounds a byte size up to its pool bucket: at most 1/8 wasted, multiples of 256. */
export function bucketSize(bytes: number): number {
  const n = Math.max(256, Math.ceil(bytes / 4) * 4);
  const step = Math.max(256, 2 ** (Math.floor(Math.log2(n)) - 3));
  return Math.ceil(n / step) * step;
}

/** A pool of storage buffers, bucketed by size. */
export class BufferPool {
  #device: GPUDevice;
  #usage: number;
  #free = new Map<number, { buffer: GPUBuffer; at: number }[]>();
  // Release times and open recordings on one clock, for queue-write safety.
  #clock = 0;
  #open = new Map<object, number>();
  #live = 0;
  #peak = 0;

  /**
   * Creates an empty pool on `device`; its buffers get `extraUsage` besides storage and copies
   * (the runtime adds UNIFORM on CPU adapters, where small operands read faster as uniforms).
   */
  constructor(device: GPUDevice, extraUsage = 0) {
    this.#device = device;
    this.#usage = STORAGE_USAGE | extraUsage;
  }

  /** Bytes held by buffers handed out and not released. */
  get liveBytes(): number {
    return this.#live;
  }

  /** The most bytes handed out at one time since the last {@linkcode resetPeak}. */
  get peakBytes(): number {
    return this.#peak;
  }

  /** Bytes held by free buffers kept for reuse. */
  get freeBytes(): number {
    let n = 0;
    for (const [size, list] of this.#free) n += size * list.length;
    return n;
  }

  /** Starts a new peak measurement at the current live bytes. */
  resetPeak(): void {
    this.#peak = this.#live;
  }

  /** Marks a recording as open: buffers released after this may still be read by it. */
  openRecording(key: object): void {
    this.#open.set(key, ++this.#clock);
  }

  /** Marks a recording as submitted or discarded. */
  closeRecording(key: object): void {
    this.#open.delete(key);
  }

  /**
   * Hands out a storage buffer of at least `bytes` bytes. With `queueWrite`, the caller
   * writes it through the queue at once (queue.writeBuffer lands before any open
   * recording's kernels), so only a buffer released before every open recording began
   * will do.
   */
  acquire(bytes: number, label?: string, queueWrite = false): GPUBuffer {
    const size = bucketSize(bytes);
    const list = this.#free.get(size);
    let buffer: GPUBuffer | undefined;
    if (list?.length) {
      let limit = Infinity;
      if (queueWrite) { for (const t of this.#open.values()) limit = Math.min(limit, t); }
      for (let i = list.length - 1; i >= 0; i--) {
        if (list[i].at < limit) {
          buffer = list[i].buffer;
          list.splice(i, 1);
          break;
        }
      }
    }
    buffer ??= this.#device.createBuffer({ size, usage: this.#usage, label: label ?? "pooled" });
    this.#live += size;
    this.#peak = Math.max(this.#peak, this.#live);
    return buffer;
  }

  /**
   * Returns a buffer for reuse. Work already recorded or submitted that reads it stays
   * valid: the queue runs in order, so a later writer comes after the last reader.
   */
  release(buffer: GPUBuffer): void {
    this.#live -= buffer.size;
    let list = this.#free.get(buffer.size);
    if (!list) this.#free.set(buffer.size, list = []);
    list.push({ buffer, at: ++this.#clock });
  }

  /** Destroys every free buffer. */
  clear(): void {
    for (const list of this.#free.values()) for (const b of list) b.buffer.destroy();
    this.#free.clear();
  }
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Checks that a shape is a list of non-negative integers. */
export function assertShape(shape: readonly number[], what = "shape"): void {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new TypeError(
      `${what} must be a list of non-negative integers, got ${JSON.stringify(shape)}`,
    );
  }
}

/** A tensor in a GPU storage buffer, row-major. */
export class Tensor {
  /** The storage buffer (may be larger than the tensor). */
  readonly buffer: GPUBuffer;
  /** The shape, row-major. */
  readonly shape: readonly number[];
  /** The element type. */
  readonly dtype: DType;
  // Shared by a tensor and its reshaped views: the buffer goes back to the pool once.
  #owner: { rt: Runtime; pooled: boolean; released: boolean };

  /** Wraps a buffer; use {@linkcode createTensor} or {@linkcode uploadTensor}. */
  constructor(
    rt: Runtime,
    buffer: GPUBuffer,
    shape: readonly number[],
    dtype: DType,
    pooled: boolean | Tensor,
  ) {
    this.buffer = buffer;
    this.shape = [...shape];
    this.dtype = dtype;
    this.#owner = pooled instanceof Tensor ? pooled.#owner : { rt, pooled, released: false };
  }

  /** Number of elements. */
  get size(): number {
    return numel(this.shape);
  }

  /** Bytes of data (rounded up to 4, as buffers are). */
  get byteLength(): number {
    return Math.ceil((this.size * DTYPE_BYTES[this.dtype]) / 4) * 4;
  }

  /**
   * A view of the same buffer with another shape of the same size. The view shares
   * ownership: releasing the tensor or any of its views releases the buffer, once.
   */
  reshape(shape: readonly number[]): Tensor {
    assertShape(shape);
    if (numel(shape) !== this.size) {
      throw new RangeError(`Cannot reshape [${this.shape}] to [${shape}]`);
    }
    return new Tensor(this.#owner.rt, this.buffer, shape, this.dtype, this);
  }

  /** True once the buffer was given back. */
  get released(): boolean {
    return this.#owner.released;
  }

  /** Gives the buffer back to the pool (for pooled tensors); later calls do nothing. */
  release(): void {
    const o = this.#owner;
    if (o.released) return;
    o.released = true;
    if (o.pooled) o.rt.pool.release(this.buffer);
  }
}

/**
 * Allocates an uninitialised tensor from the pool. `queueWrite`: the caller fills it with
 * queue.writeBuffer right away (see {@linkcode BufferPool.acquire}).
 */
export function createTensor(
  rt: Runtime,
  shape: readonly number[],
  dtype: DType = "f32",
  queueWrite = false,
): Tensor {
  assertShape(shape);
  rt.assertAlive();
  if (!(dtype in DTYPE_BYTES)) throw new TypeError(`Unknown dtype ${JSON.stringify(dtype)}`);
  if (dtype === "f16" && !rt.info.f16) {
    throw new UnsupportedFeatureError(
      "shader-f16",
      `f16 tensors need shader-f16, which this runtime (${rt.info.description}) does not have; use f32`,
    );
  }
  const bytes = Math.ceil((numel(shape) * DTYPE_BYTES[dtype]) / 4) * 4;
  const max = rt.bindingLimit;
  if (bytes > max) {
    throw new RangeError(
      `Tensor [${shape}] ${dtype} needs ${bytes} bytes, over this adapter's storage binding limit of ${max}`,
    );
  }
  return new Tensor(rt, rt.pool.acquire(bytes, undefined, queueWrite), shape, dtype, true);
}

/** Host data accepted by {@linkcode uploadTensor}. */
export type HostArray =
  | Float32Array
  | Int32Array
  | Uint32Array
  | Uint16Array
  | Int8Array
  | Uint8Array;

/** Converts host data to the bytes of `dtype` (f32 data becomes f16 for an f16 tensor). */
function toBytes(data: HostArray, dtype: DType): Uint8Array<ArrayBuffer> {
  if (dtype === "f16" && data instanceof Float32Array) {
    const h = new Float16Array(data.length);
    h.set(data);
    return new Uint8Array(h.buffer);
  }
  return new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
}

/** Uploads host data into a new tensor. f32 data is converted when `dtype` is f16. */
export function uploadTensor(
  rt: Runtime,
  data: HostArray,
  shape: readonly number[],
  dtype: DType = "f32",
): Tensor {
  const t = createTensor(rt, shape, dtype, true);
  writeTensor(rt, t, data);
  return t;
}

/** The bytes of host data for tensor `t` of `dtype`, checking that the sizes match. */
export function hostBytes(data: HostArray, dtype: DType, t: Tensor): Uint8Array<ArrayBuffer> {
  const bytes = toBytes(data, dtype);
  const expected = t.size * DTYPE_BYTES[dtype];
  if (bytes.byteLength !== expected) {
    throw new RangeError(
      `Data of ${bytes.byteLength} bytes does not fit tensor [${t.shape}] ${dtype} (${expected} bytes)`,
    );
  }
  return bytes;
}

/**
 * Overwrites a tensor's contents from host data. The write is queued at once: it lands
 * after work already submitted and before the next submit — never mid-recording (use
 * Recorder.upload for data a recording needs after it released buffers).
 */
export function writeTensor(rt: Runtime, t: Tensor, data: HostArray): void {
  const bytes = hostBytes(data, t.dtype, t);
  if (bytes.byteLength % 4 === 0) {
    rt.device.queue.writeBuffer(t.buffer, 0, bytes);
  } else {
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    rt.device.queue.writeBuffer(t.buffer, 0, padded);
  }
}

/**
 * Reads raw bytes of several buffers back to the host with one copy and one map (waits for
 * queued work). Every read-back waits for the GPU and then ~10 ms for Deno to notice, so
 * what is needed together is best read together.
 */
export async function readBytesMany(
  rt: Runtime,
  parts: readonly { buffer: GPUBuffer; bytes: number }[],
): Promise<Uint8Array[]> {
  rt.assertAlive();
  const sizes = parts.map((p) => Math.ceil(p.bytes / 4) * 4);
  const offsets: number[] = [];
  let total = 0;
  for (const size of sizes) {
    offsets.push(total);
    total += size;
  }
  const staging = rt.device.createBuffer({
    size: Math.max(4, total),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const enc = rt.device.createCommandEncoder();
    parts.forEach((p, i) => {
      if (sizes[i] > 0) enc.copyBufferToBuffer(p.buffer, 0, staging, offsets[i], sizes[i]);
    });
    rt.device.queue.submit([enc.finish()]);
    await Promise.race([
      staging.mapAsync(GPUMapMode.READ),
      rt.lost.then((e) => Promise.reject(e)),
    ]);
    const all = staging.getMappedRange().slice(0);
    staging.unmap();
    return parts.map((p, i) => new Uint8Array(all, offsets[i], p.bytes));
  } finally {
    staging.destroy();
  }
}

/** Reads raw bytes of a buffer back to the host (waits for queued work). */
export async function readBytes(
  rt: Runtime,
  buffer: GPUBuffer,
  bytes: number,
): Promise<Uint8Array> {
  return (await readBytesMany(rt, [{ buffer, bytes }]))[0];
}

// A float tensor's bytes as f32 (f16 widened).
function floatsOf(t: Tensor, bytes: Uint8Array): Float32Array {
  if (t.dtype === "f32") return new Float32Array(bytes.buffer, bytes.byteOffset, t.size);
  return Float32Array.from(new Float16Array(bytes.buffer, bytes.byteOffset, t.size));
}

/** Reads a float tensor back as f32 (f16 is widened). */
export async function readTensor(rt: Runtime, t: Tensor): Promise<Float32Array> {
  if (t.dtype !== "f32" && t.dtype !== "f16") {
    throw new TypeError(`readTensor reads f32/f16 tensors; use readTensorRaw for ${t.dtype}`);
  }
  return floatsOf(t, await readBytes(rt, t.buffer, t.size * DTYPE_BYTES[t.dtype]));
}

/** Reads several float tensors back as f32 with one map (see {@linkcode readBytesMany}). */
export async function readTensors(rt: Runtime, ts: readonly Tensor[]): Promise<Float32Array[]> {
  for (const t of ts) {
    if (t.dtype !== "f32" && t.dtype !== "f16") {
      throw new TypeError(`readTensors reads f32/f16 tensors, got ${t.dtype}`);
    }
  }
  const bytes = await readBytesMany(
    rt,
    ts.map((t) => ({ buffer: t.buffer, bytes: t.size * DTYPE_BYTES[t.dtype] })),
  );
  return ts.map((t, i) => floatsOf(t, bytes[i]));
}

/** Reads f32/f16 tensors back in one wait (as {@linkcode readTensors}), then releases them. */
export async function readAndRelease(rt: Runtime, ts: readonly Tensor[]): Promise<Float32Array[]> {
  try {
    return await readTensors(rt, ts);
  } finally {
    for (const t of ts) t.release();
  }
}

/** Reads an integer tensor back as its raw typed array. */
export async function readTensorRaw(
  rt: Runtime,
  t: Tensor,
): Promise<Int32Array | Uint32Array | Int8Array> {
  const bytes = await readBytes(rt, t.buffer, t.size * DTYPE_BYTES[t.dtype]);
  switch (t.dtype) {
    case "i32":
      return new Int32Array(bytes.buffer, bytes.byteOffset, t.size);
    case "i8":
      return new Int8Array(bytes.buffer, bytes.byteOffset, t.size);
    default:
      return new Uint32Array(bytes.buffer, bytes.byteOffset, Math.ceil(bytes.byteLength / 4));
  }
}
