/**
 * The safetensors format: strict header validation, a lazy reader that fetches one
 * tensor at a time by offset, and an atomic writer whose output matches the
 * reference implementation byte for byte (same tensor order, same 8-byte header
 * padding with spaces).
 *
 * Layout: an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
 * `{ "__metadata__"?: {string: string}, name: {dtype, shape, data_offsets: [begin, end]} }`,
 * then the data buffer, which the tensors must cover exactly (no holes, no overlaps,
 * nothing after the last one). Sharded checkpoints live in safetensors_index.ts.
 *
 * @module
 */
import { concatBytes } from "./bytes.ts";
import { CheckpointError } from "../errors.ts";
import { f32ToBf16Bits, f32ToF16Bits } from "./f16.ts";
import {
  bytesToF32,
  dtypeBytes,
  FLOAT_DTYPES,
  isSafetensorsDtype,
  MAX_HEADER_BYTES,
  MAX_READ_BYTES,
  parseSafetensorsHeader,
  SAFETENSORS_DTYPES,
  type SafetensorsDtype,
  type SafetensorsHeader,
  type TensorInfo,
} from "./safetensors_header.ts";

export {
  bytesToF32,
  dtypeBytes,
  FLOAT_DTYPES,
  isSafetensorsDtype,
  MAX_HEADER_BYTES,
  MAX_READ_BYTES,
  parseSafetensorsHeader,
  SAFETENSORS_DTYPES,
  type SafetensorsDtype,
  type SafetensorsHeader,
  type TensorInfo,
};

/** Anything tensors can be read from by name: one file or a sharded checkpoint. */
export interface TensorSource extends Disposable {
  /** The path opened. */
  readonly path: string;
  /** Every tensor, by name. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** String metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The raw little-endian bytes of a tensor (≤ 2 GiB; use readRange beyond). */
  readRaw(name: string): Promise<Uint8Array>;
  /** Bytes [begin, end) of a tensor's data. */
  readRange(name: string, begin: number, end: number): Promise<Uint8Array>;
  /** A float or integer tensor converted to f32. */
  readF32(name: string): Promise<Float32Array>;
  /** A float tensor as f16 bit patterns (F16 as stored, others rounded to nearest-even). */
  readF16Bits(name: string): Promise<Uint16Array>;
  /** Releases the file handle(s); `using` calls it too. */
  close(): void;
}

/** Turns a failure to open or stat `path` into a CheckpointError. */
export function openError(path: string, e: unknown): CheckpointError {
  if (e instanceof CheckpointError) return e;
  if (e instanceof Deno.errors.NotFound) return new CheckpointError(path, "no such file", "path");
  if (e instanceof Deno.errors.PermissionDenied) {
    return new CheckpointError(path, "permission denied", "path");
  }
  if (e instanceof Deno.errors.IsADirectory) {
    return new CheckpointError(path, "is a directory, not a file", "path");
  }
  return new CheckpointError(path, (e as Error)?.message ?? String(e), "path");
}

/** One safetensors file opened for lazy reading. */
export class SafetensorsFile implements TensorSource {
  /** The path opened. */
  readonly path: string;
  /** Every tensor, by name, in data order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** The `__metadata__` map. */
  readonly metadata: Readonly<Record<string, string>>;
  /** N, the header's length in bytes. */
  readonly headerLength: number;
  /** Total file size in bytes. */
  readonly fileSize: number;
  #file: Deno.FsFile | null;
  #queue: Promise<unknown> = Promise.resolve();

  /** Use openSafetensors(). */
  constructor(path: string, file: Deno.FsFile, header: SafetensorsHeader, fileSize: number) {
    this.path = path;
    this.#file = file;
    this.tensors = header.tensors;
    this.metadata = header.metadata;
    this.headerLength = header.headerLength;
    this.fileSize = fileSize;
  }

  /** Info of `name`, or a CheckpointError naming it. */
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) {
      throw new CheckpointError(
        this.path,
        `no such tensor (the file has ${this.tensors.size})`,
        name,
      );
    }
    return t;
  }

  /** Bytes [begin, end) of a tensor's data. */
  async readRange(name: string, begin: number, end: number): Promise<Uint8Array> {
    const t = this.info(name);
    if (
      !Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || begin < 0 || end < begin ||
      end > t.byteLength
    ) {
      throw new RangeError(
        `readRange: [${begin}, ${end}) is not inside the ${t.byteLength} bytes of "${name}"`,
      );
    }
    if (end - begin > MAX_READ_BYTES) {
      throw new RangeError(
        `readRange: ${end - begin} bytes exceeds the 2 GiB a single typed array can hold`,
      );
    }
    return await this.#readAt(name, t.offset + begin, end - begin);
  }

  /** The raw little-endian bytes of a tensor. */
  async readRaw(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    if (t.byteLength > MAX_READ_BYTES) {
      throw new CheckpointError(
        this.path,
        `${
          gib(t.byteLength)
        } GiB is more than one typed array can hold (2 GiB); read it in slices with readRange`,
        name,
      );
    }
    return await this.#readAt(name, t.offset, t.byteLength);
  }

  /** A tensor converted to f32. */
  async readF32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    const elems = Number(t.shape.reduce((a, d) => a * d, 1));
    if (elems * 4 > MAX_READ_BYTES) {
      throw new CheckpointError(
        this.path,
        `${gib(elems * 4)} GiB as f32 is more than one typed array can hold (2 GiB)`,
        name,
      );
    }
    return bytesToF32(this.path, name, t.dtype, await this.readRaw(name));
  }

  /** A float tensor as f16 bits: F16 as stored, other float dtypes rounded. */
  async readF16Bits(name: string): Promise<Uint16Array> {
    const t = this.info(name);
    if (t.dtype === "F16") {
      const b = await this.readRaw(name);
      return new Uint16Array(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength / 2);
    }
    if (!/^(F|BF)\d|^F8_/.test(t.dtype)) {
      throw new CheckpointError(
        this.path,
        `${t.dtype} is not a float dtype; readF16Bits wants one`,
        name,
      );
    }
    return f32ToF16Bits(await this.readF32(name));
  }

  /** Closes the file; later reads fail. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }

  /** Closes the file (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  #readAt(name: string, position: number, length: number): Promise<Uint8Array> {
    // One handle, one cursor: reads are queued so concurrent callers never interleave seeks.
    const run = async () => {
      const f = this.#file;
      if (!f) throw new CheckpointError(this.path, "the file is closed", name);
      const out = new Uint8Array(length);
      await f.seek(position, Deno.SeekMode.Start);
      let done = 0;
      while (done < length) {
        const got = await f.read(out.subarray(done));
        if (got === null) {
          throw new CheckpointError(
            this.path,
            `the file ended ${length - done} bytes early (changed since it was opened?)`,
            name,
          );
        }
        done += got;
      }
      return out;
    };
    const p = this.#queue.then(run);
    this.#queue = p.catch(() => {});
    return p;
  }
}

function gib(bytes: number): string {
  return (bytes / 2 ** 30).toFixed(2);
}

/** Opens `path`, reads and validates its header; the data is read on demand. */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw openError(path, e);
  }
  try {
    const st = await file.stat();
    if (st.isDirectory) throw new CheckpointError(path, "is a directory, not a file", "path");
    const size = st.size;
    const head = await readExactly(file, Math.min(size, 8));
    let prefix = head;
    if (size >= 8) {
      const n = new DataView(head.buffer).getBigUint64(0, true);
      if (n <= BigInt(MAX_HEADER_BYTES) && 8n + n <= BigInt(size)) {
        prefix = new Uint8Array(8 + Number(n));
        prefix.set(head);
        prefix.set(await readExactly(file, Number(n)), 8);
      }
    }
    const header = parseSafetensorsHeader(path, prefix, size);
    return new SafetensorsFile(path, file, header, size);
  } catch (e) {
    file.close();
    throw openError(path, e);
  }
}

async function readExactly(file: Deno.FsFile, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let done = 0;
  while (done < n) {
    const got = await file.read(out.subarray(done));
    if (got === null) break;
    done += got;
  }
  return out.subarray(0, done);
}

/** A tensor to write: `data` is raw bytes, or a typed array matching the dtype. */
export interface TensorToWrite {
  /** Element type in the file. */
  dtype: SafetensorsDtype;
  /** Dimensions. */
  shape: readonly number[];
  /**
   * The values: a Uint8Array of raw little-endian bytes for any dtype, or the typed
   * array of the dtype (Float32Array for F32, Int32Array for I32, BigInt64Array for
   * I64…). For F16 and BF16 a Float32Array is rounded (nearest-even); a Uint16Array
   * is taken as bit patterns.
   */
  data: ArrayBufferView;
}

const TYPED_FOR: Partial<Record<SafetensorsDtype, string>> = {
  F64: "Float64Array",
  F32: "Float32Array",
  F16: "Float16Array",
  I64: "BigInt64Array",
  U64: "BigUint64Array",
  I32: "Int32Array",
  U32: "Uint32Array",
  I16: "Int16Array",
  U16: "Uint16Array",
  I8: "Int8Array",
};

function tensorBytes(name: string, t: TensorToWrite): Uint8Array {
  if (!isSafetensorsDtype(t.dtype)) {
    throw new TypeError(`tensors["${name}"].dtype: unknown dtype "${t.dtype}"`);
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new TypeError(`tensors["${name}"].shape must be an array of non-negative integers`);
  }
  let d: ArrayBufferView = t.data;
  if (!ArrayBuffer.isView(d)) throw new TypeError(`tensors["${name}"].data must be a typed array`);
  const cls = d.constructor.name;
  if ((t.dtype === "F16" || t.dtype === "BF16") && d instanceof Float32Array) {
    d = t.dtype === "F16" ? f32ToF16Bits(d) : f32ToBf16Bits(d);
  } else if (
    cls !== "Uint8Array" && cls !== TYPED_FOR[t.dtype] &&
    !(cls === "Uint16Array" && t.dtype === "BF16") &&
    !(cls === "Uint16Array" && t.dtype === "F16")
  ) {
    throw new TypeError(
      `tensors["${name}"].data is a ${cls}, which does not fit dtype ${t.dtype} (pass raw bytes as a Uint8Array)`,
    );
  }
  const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  const need = dtypeBytes(t.dtype, t.shape.reduce((a, x) => a * BigInt(x), 1n));
  if (need < 0n) {
    throw new RangeError(
      `tensors["${name}"]: ${t.dtype} [${t.shape.join(", ")}] is not a whole number of bytes`,
    );
  }
  if (BigInt(bytes.byteLength) !== need) {
    throw new RangeError(
      `tensors["${name}"]: ${t.dtype} [${
        t.shape.join(", ")
      }] needs ${need} bytes, data has ${bytes.byteLength}`,
    );
  }
  return bytes;
}

const UTF8 = new TextEncoder();

function compareUtf8(a: string, b: string): number {
  const x = UTF8.encode(a);
  const y = UTF8.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/**
 * Lays a file out as the reference implementation does: tensors sorted by dtype
 * (widest alignment first) then name, `__metadata__` first with sorted keys, header
 * padded with spaces to a multiple of 8. Returns the parts to write in order.
 */
export function serializeSafetensors(
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Uint8Array[] {
  const items = Object.entries(tensors).map(([name, t]) => {
    if (name === "__metadata__") throw new TypeError(`tensors: "__metadata__" is reserved`);
    return { name, dtype: t.dtype, shape: [...t.shape], bytes: tensorBytes(name, t) };
  });
  items.sort((a, b) =>
    SAFETENSORS_DTYPES[b.dtype].rank - SAFETENSORS_DTYPES[a.dtype].rank ||
    compareUtf8(a.name, b.name)
  );
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    const m: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort(compareUtf8)) {
      if (typeof metadata[k] !== "string") throw new TypeError(`metadata["${k}"] must be a string`);
      m[k] = metadata[k];
    }
    header["__metadata__"] = m;
  }
  let offset = 0;
  for (const it of items) {
    header[it.name] = {
      dtype: it.dtype,
      shape: it.shape,
      data_offsets: [offset, offset + it.bytes.byteLength],
    };
    offset += it.bytes.byteLength;
  }
  const json = UTF8.encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES) {
    throw new RangeError(
      `the header would be ${padded} bytes, over the ${MAX_HEADER_BYTES}-byte cap`,
    );
  }
  const head = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return [head, ...items.map((it) => it.bytes)];
}

/** Encodes a whole safetensors file in memory. */
export function encodeSafetensors(
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Uint8Array {
  return concatBytes(serializeSafetensors(tensors, metadata));
}

/**
 * Writes a safetensors file atomically: to a temporary file beside `path`, then
 * renamed over it, so readers never see a half-written file.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  const parts = serializeSafetensors(tensors, metadata);
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const f = await Deno.open(tmp, { write: true, createNew: true });
    try {
      for (const p of parts) {
        let o = 0;
        while (o < p.byteLength) o += await f.write(p.subarray(o, o + 2 ** 30));
      }
      await f.syncData();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
