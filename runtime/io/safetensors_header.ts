/**
 * The safetensors header, validated strictly: the dtype table; the JSON (UTF-8, a
 * leading `{`, bounded nesting, no duplicate keys — JSON.parse would silently keep
 * the last —, integers in plain digits, every entry's fields present and
 * well-typed); and the layout (sizes match dtype × shape, offsets sorted, neither
 * overlapping nor leaving holes, the data exactly covered, nothing truncated). Also
 * the dtype → f32 conversion. The reader and writer are in safetensors.ts.
 *
 * @module
 */
import { CheckpointError } from "../errors.ts";
import { parseJson } from "./json.ts";
import { bf16BitsToF32, f16BitsToF32, type Fp8Format, fp8ToF32 } from "./f16.ts";

/** Every dtype of the safetensors spec, with its element size in bits and its sort rank. */
export const SAFETENSORS_DTYPES = {
  BOOL: { bits: 8, rank: 0 },
  F4: { bits: 4, rank: 1 },
  F6_E2M3: { bits: 6, rank: 2 },
  F6_E3M2: { bits: 6, rank: 3 },
  U8: { bits: 8, rank: 4 },
  I8: { bits: 8, rank: 5 },
  F8_E5M2: { bits: 8, rank: 6 },
  F8_E4M3: { bits: 8, rank: 7 },
  F8_E8M0: { bits: 8, rank: 8 },
  F8_E4M3FNUZ: { bits: 8, rank: 9 },
  F8_E5M2FNUZ: { bits: 8, rank: 10 },
  I16: { bits: 16, rank: 11 },
  U16: { bits: 16, rank: 12 },
  F16: { bits: 16, rank: 13 },
  BF16: { bits: 16, rank: 14 },
  I32: { bits: 32, rank: 15 },
  U32: { bits: 32, rank: 16 },
  F32: { bits: 32, rank: 17 },
  C64: { bits: 64, rank: 18 },
  F64: { bits: 64, rank: 19 },
  I64: { bits: 64, rank: 20 },
  U64: { bits: 64, rank: 21 },
} as const;

/** A safetensors dtype name ("F32", "BF16", "F8_E4M3"…). */
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPES;

/** Bytes of `count` elements of `dtype`, or -1 when that is not a whole number of bytes. */
export function dtypeBytes(dtype: SafetensorsDtype, count: number | bigint): bigint {
  const bits = BigInt(count) * BigInt(SAFETENSORS_DTYPES[dtype].bits);
  return bits % 8n === 0n ? bits / 8n : -1n;
}

/** Whether `s` names a safetensors dtype. */
export function isSafetensorsDtype(s: unknown): s is SafetensorsDtype {
  return typeof s === "string" && Object.hasOwn(SAFETENSORS_DTYPES, s);
}

/** Nesting cap: a valid header nests 3 deep (header → entry → shape). */
export const MAX_JSON_DEPTH = 8;

/** One entry of a header, typed but not yet checked against the data. */
export interface HeaderEntry {
  /** Tensor name. */
  name: string;
  /** Element type. */
  dtype: SafetensorsDtype;
  /** Dimensions. */
  shape: number[];
  /** [begin, end) relative to the data buffer. */
  dataOffsets: [number, number];
}

/** A problem the structural scan found, with the top-level key it is under. */
export interface JsonScanIssue {
  /** The top-level key being read ("" before the first). */
  key: string;
  /** What is wrong. */
  message: string;
  /** Whether it must be reported before JSON.parse runs (nesting). */
  early: boolean;
}

/**
 * Scans JSON text once, without building it: nesting depth, duplicate keys in any
 * object, and number tokens that are not plain non-negative integers (when
 * `integersOnly`). Returns the first issue, or null. On malformed text it stops or
 * returns null and leaves the diagnosis to JSON.parse.
 */
export function scanJson(
  text: string,
  maxDepth: number,
  integersOnly: boolean,
): JsonScanIssue | null {
  const stack: { keys: Set<string> | null; expectKey: boolean }[] = [];
  let top = "";
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let j = i + 1;
      let escaped = false;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d === 0x5c) {
          escaped = true;
          j += 2;
          continue;
        }
        if (d === 0x22) break;
        j++;
      }
      if (j >= n) return null;
      const frame = stack[stack.length - 1];
      if (frame?.keys && frame.expectKey) {
        let key: string;
        try {
          key = escaped ? JSON.parse(text.slice(i, j + 1)) : text.slice(i + 1, j);
        } catch {
          return null;
        }
        if (frame.keys.has(key)) {
          const where = stack.length === 1 ? key : top;
          const what = stack.length === 1
            ? "name appears twice in the header (JSON.parse would keep only the last)"
            : `key "${key}" appears twice`;
          return { key: where, message: what, early: false };
        }
        frame.keys.add(key);
        frame.expectKey = false;
        if (stack.length === 1) top = key;
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      stack.push({ keys: c === 0x7b ? new Set() : null, expectKey: c === 0x7b });
      if (stack.length > maxDepth) {
        return { key: top, message: `JSON nests deeper than ${maxDepth} levels`, early: true };
      }
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
    } else if (c === 0x2c) {
      const frame = stack[stack.length - 1];
      if (frame?.keys) frame.expectKey = true;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i;
      while (j < n && /[0-9eE.+-]/.test(text[j])) j++;
      const tok = text.slice(i, j);
      if (integersOnly && !/^(0|[1-9][0-9]*)$/.test(tok)) {
        return {
          key: top,
          message: `number ${tok} is not a non-negative integer in plain digits`,
          early: false,
        };
      }
      i = j;
      continue;
    }
    i++;
  }
  return null;
}

const FATAL_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function sizeList(v: unknown): v is number[] {
  return Array.isArray(v) &&
    v.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0);
}

/** Parses and type-checks the header JSON of `file` (the N bytes after the length). */
export function parseHeaderJson(
  file: string,
  bytes: Uint8Array,
): { tensors: HeaderEntry[]; metadata: Record<string, string> } {
  if (bytes.length === 0 || bytes[0] !== 0x7b) {
    throw new CheckpointError(
      file,
      `must begin with "{" (byte 0x7B), found ${
        bytes.length ? `0x${bytes[0].toString(16).toUpperCase().padStart(2, "0")}` : "nothing"
      }`,
      "header",
    );
  }
  let text: string;
  try {
    text = FATAL_UTF8.decode(bytes);
  } catch {
    throw new CheckpointError(file, "is not valid UTF-8", "header");
  }
  const issue = scanJson(text, MAX_JSON_DEPTH, true);
  if (issue?.early) throw new CheckpointError(file, issue.message, issue.key || "header");
  const parsed = parseJson(text, file, "header");
  if (issue) throw new CheckpointError(file, issue.message, issue.key || "header");
  if (!isPlainObject(parsed)) {
    throw new CheckpointError(
      file,
      `must be a JSON object, got ${Array.isArray(parsed) ? "an array" : typeof parsed}`,
      "header",
    );
  }
  let metadata: Record<string, string> = {};
  const tensors: HeaderEntry[] = [];
  for (const [name, v] of Object.entries(parsed)) {
    if (name === "__metadata__") {
      if (v === null) continue; // the reference implementation reads null as "no metadata"
      if (!isPlainObject(v)) throw new CheckpointError(file, "must be an object of strings", name);
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== "string") {
          throw new CheckpointError(
            file,
            `value of "${k}" must be a string, got ${s === null ? "null" : typeof s}`,
            name,
          );
        }
      }
      metadata = v as Record<string, string>;
      continue;
    }
    if (!isPlainObject(v)) {
      throw new CheckpointError(file, "entry must be an object {dtype, shape, data_offsets}", name);
    }
    for (const k of Object.keys(v)) {
      if (k !== "dtype" && k !== "shape" && k !== "data_offsets") {
        throw new CheckpointError(file, `unknown field "${k}"`, name);
      }
    }
    for (const k of ["dtype", "shape", "data_offsets"]) {
      if (!Object.hasOwn(v, k)) throw new CheckpointError(file, `missing field "${k}"`, name);
    }
    if (!isSafetensorsDtype(v.dtype)) {
      throw new CheckpointError(file, `unknown dtype ${JSON.stringify(v.dtype)}`, name);
    }
    if (!sizeList(v.shape)) {
      throw new CheckpointError(file, "shape must be an array of non-negative integers", name);
    }
    const off = v.data_offsets;
    if (!sizeList(off) || off.length !== 2) {
      throw new CheckpointError(
        file,
        "data_offsets must be [begin, end], two non-negative integers",
        name,
      );
    }
    if (off[1] < off[0]) {
      throw new CheckpointError(
        file,
        `data_offsets [${off[0]}, ${off[1]}] end before they begin`,
        name,
      );
    }
    tensors.push({ name, dtype: v.dtype, shape: v.shape, dataOffsets: [off[0], off[1]] });
  }
  return { tensors, metadata };
}

/** Header length cap, as in the reference implementation (a header is metadata, not data). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Largest single read: one typed array over one ArrayBuffer. */
export const MAX_READ_BYTES = 2 ** 31;

/** Where one tensor lives. */
export interface TensorInfo {
  /** Element type. */
  readonly dtype: SafetensorsDtype;
  /** Dimensions (row-major); [] is a scalar. */
  readonly shape: readonly number[];
  /** Size of the data in bytes. */
  readonly byteLength: number;
  /** Absolute byte position of the data in `file`. */
  readonly offset: number;
  /** The data_offsets of the header (relative to the data buffer). */
  readonly dataOffsets: readonly [number, number];
  /** The file that holds it (the shard, for a sharded checkpoint). */
  readonly file: string;
}

/** A validated header. */
export interface SafetensorsHeader {
  /** N, the JSON's length in bytes (padding included). */
  readonly headerLength: number;
  /** Tensors in data order. */
  readonly tensors: Map<string, TensorInfo>;
  /** The `__metadata__` map ({} when absent). */
  readonly metadata: Record<string, string>;
  /** Size of the data buffer in bytes. */
  readonly dataLength: number;
}

/**
 * Validates a header: `prefix` holds at least the first 8 + N bytes of a file of
 * `fileSize` bytes. Throws CheckpointError naming `file` and the field or tensor.
 */
export function parseSafetensorsHeader(
  file: string,
  prefix: Uint8Array,
  fileSize: number,
): SafetensorsHeader {
  if (fileSize < 8) {
    throw new CheckpointError(
      file,
      `file is ${fileSize} bytes, shorter than the 8-byte header length`,
      "header length",
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(
      file,
      `${n} bytes exceeds the ${MAX_HEADER_BYTES}-byte cap`,
      "header length",
    );
  }
  const headerLength = Number(n);
  if (8 + headerLength > fileSize) {
    throw new CheckpointError(
      file,
      `${headerLength} bytes runs past the end of the file (${fileSize} bytes): the file is truncated or not safetensors`,
      "header length",
    );
  }
  const { tensors: raw, metadata } = parseHeaderJson(file, prefix.subarray(8, 8 + headerLength));
  const dataLength = fileSize - 8 - headerLength;
  const entries: [string, TensorInfo][] = raw.map((t) => {
    const count = t.shape.reduce((a, d) => a * BigInt(d), 1n);
    const bytes = dtypeBytes(t.dtype, count);
    if (bytes < 0n) {
      throw new CheckpointError(
        file,
        `${count} ${t.dtype} elements are not a whole number of bytes`,
        t.name,
      );
    }
    const [begin, end] = t.dataOffsets;
    if (BigInt(end - begin) !== bytes) {
      throw new CheckpointError(
        file,
        `data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${t.dtype} [${
          t.shape.join(", ")
        }] needs ${bytes}`,
        t.name,
      );
    }
    const info: TensorInfo = {
      dtype: t.dtype,
      shape: t.shape,
      byteLength: end - begin,
      offset: 8 + headerLength + begin,
      dataOffsets: [begin, end],
      file,
    };
    return [t.name, info];
  });
  entries.sort((a, b) =>
    a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]
  );
  let pos = 0;
  let prev = "";
  for (const [name, t] of entries) {
    const [begin, end] = t.dataOffsets;
    if (begin < pos) {
      throw new CheckpointError(
        file,
        `data_offsets [${begin}, ${end}] overlap tensor "${prev}" (which ends at ${pos})`,
        name,
      );
    }
    if (begin > pos) {
      throw new CheckpointError(
        file,
        `data_offsets [${begin}, ${end}] leave a hole of ${begin - pos} bytes after ${
          prev ? `tensor "${prev}"` : "the header"
        }`,
        name,
      );
    }
    if (end > dataLength) {
      throw new CheckpointError(
        file,
        `data_offsets [${begin}, ${end}] run past the end of the data (${dataLength} bytes): the file is truncated`,
        name,
      );
    }
    pos = end;
    prev = name;
  }
  if (pos !== dataLength) {
    throw new CheckpointError(
      file,
      `${dataLength - pos} bytes after the last tensor are covered by no tensor`,
      "data",
    );
  }
  return { headerLength, tensors: new Map(entries), metadata, dataLength };
}

/** The float dtypes {@linkcode bytesToF32} converts (sub-byte F4/F6 it does not). */
export const FLOAT_DTYPES: ReadonlySet<string> = new Set<SafetensorsDtype>([
  "F64",
  "F32",
  "F16",
  "BF16",
  "F8_E4M3",
  "F8_E5M2",
  "F8_E4M3FNUZ",
  "F8_E5M2FNUZ",
  "F8_E8M0",
]);

/** Converts raw bytes of `dtype` to f32. */
export function bytesToF32(
  file: string,
  name: string,
  dtype: SafetensorsDtype,
  b: Uint8Array,
): Float32Array {
  const buf = b.buffer as ArrayBuffer;
  const o = b.byteOffset;
  const n = b.byteLength / (SAFETENSORS_DTYPES[dtype].bits / 8);
  switch (dtype) {
    case "F32":
      return new Float32Array(buf, o, n);
    case "F16":
      return f16BitsToF32(new Uint16Array(buf, o, n));
    case "BF16":
      return bf16BitsToF32(new Uint16Array(buf, o, n));
    case "F64":
      return Float32Array.from(new Float64Array(buf, o, n));
    case "F8_E4M3":
    case "F8_E5M2":
    case "F8_E4M3FNUZ":
    case "F8_E5M2FNUZ":
    case "F8_E8M0":
      return fp8ToF32(b, dtype as Fp8Format);
    case "I8":
      return Float32Array.from(new Int8Array(buf, o, n));
    case "U8":
    case "BOOL":
      return Float32Array.from(b);
    case "I16":
      return Float32Array.from(new Int16Array(buf, o, n));
    case "U16":
      return Float32Array.from(new Uint16Array(buf, o, n));
    case "I32":
      return Float32Array.from(new Int32Array(buf, o, n));
    case "U32":
      return Float32Array.from(new Uint32Array(buf, o, n));
    case "I64":
      return Float32Array.from(new BigInt64Array(buf, o, n), Number);
    case "U64":
      return Float32Array.from(new BigUint64Array(buf, o, n), Number);
    default:
      throw new CheckpointError(
        file,
        `${dtype} has no f32 conversion (packed sub-byte or complex)`,
        name,
      );
  }
}
