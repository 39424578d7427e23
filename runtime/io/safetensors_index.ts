/**
 * Checkpoints beyond one file: sharded safetensors (`*.safetensors.index.json`, a
 * weight_map from tensor name to shard file) read as one logical file, diffusers
 * model folders, and full validation (every byte read, NaN/Inf counted).
 *
 * @module
 */
import { basename, dirname, isAbsolute, join } from "node:path";
import { CheckpointError } from "../errors.ts";
import { parseJson } from "./json.ts";
import {
  bytesToF32,
  FLOAT_DTYPES,
  MAX_HEADER_BYTES,
  openError,
  openSafetensors,
  SAFETENSORS_DTYPES,
  type SafetensorsFile,
  type TensorInfo,
  type TensorSource,
} from "./safetensors.ts";
import { MAX_JSON_DEPTH, scanJson } from "./safetensors_header.ts";

/** A sharded checkpoint: several safetensors files behind one index. */
export class ShardedSafetensors implements TensorSource {
  /** The index file. */
  readonly path: string;
  /** Every tensor of every shard, by name (each info names its shard in `file`). */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** The index's metadata, values as strings (numbers such as total_size are stringified). */
  readonly metadata: Readonly<Record<string, string>>;
  /** The open shards, by path. */
  readonly shards: ReadonlyMap<string, SafetensorsFile>;

  /** Use openShardedSafetensors(). */
  constructor(
    path: string,
    shards: Map<string, SafetensorsFile>,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
  ) {
    this.path = path;
    this.shards = shards;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  #shard(name: string): SafetensorsFile {
    const t = this.tensors.get(name);
    if (!t) {
      throw new CheckpointError(
        this.path,
        `no such tensor (the index has ${this.tensors.size})`,
        name,
      );
    }
    return this.shards.get(t.file)!;
  }

  /** The raw bytes of a tensor, from its shard. */
  async readRaw(name: string): Promise<Uint8Array> {
    return await this.#shard(name).readRaw(name);
  }

  /** Bytes [begin, end) of a tensor's data. */
  async readRange(name: string, begin: number, end: number): Promise<Uint8Array> {
    return await this.#shard(name).readRange(name, begin, end);
  }

  /** A tensor converted to f32. */
  async readF32(name: string): Promise<Float32Array> {
    return await this.#shard(name).readF32(name);
  }

  /** A float tensor as f16 bits. */
  async readF16Bits(name: string): Promise<Uint16Array> {
    return await this.#shard(name).readF16Bits(name);
  }

  /** Closes every shard. */
  close(): void {
    for (const s of this.shards.values()) s.close();
  }

  /** Closes every shard (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

function parseIndex(
  path: string,
  bytes: Uint8Array,
): { weightMap: Map<string, string>; metadata: Record<string, string> } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new CheckpointError(path, "is not valid UTF-8", "index");
  }
  const issue = scanJson(text, MAX_JSON_DEPTH, false);
  if (issue?.early) throw new CheckpointError(path, issue.message, issue.key || "index");
  const parsed = parseJson(text, path, "index");
  if (issue) throw new CheckpointError(path, issue.message, issue.key || "index");
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new CheckpointError(path, "must be a JSON object {metadata, weight_map}", "index");
  }
  const obj = parsed as Record<string, unknown>;
  const wm = obj.weight_map;
  if (typeof wm !== "object" || wm === null || Array.isArray(wm)) {
    throw new CheckpointError(
      path,
      "missing or not an object of tensor name → shard file",
      "weight_map",
    );
  }
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(wm)) {
    if (typeof shard !== "string" || shard === "") {
      throw new CheckpointError(path, `shard of "${name}" must be a file name`, "weight_map");
    }
    if (isAbsolute(shard) || shard.split(/[\\/]/).includes("..")) {
      throw new CheckpointError(
        path,
        `shard "${shard}" of "${name}" must be a path inside the index's folder`,
        "weight_map",
      );
    }
    weightMap.set(name, shard);
  }
  const metadata: Record<string, string> = {};
  const md = obj.metadata ?? {};
  if (typeof md !== "object" || md === null || Array.isArray(md)) {
    throw new CheckpointError(path, "must be an object", "metadata");
  }
  for (const [k, v] of Object.entries(md)) {
    metadata[k] = typeof v === "string" ? v : JSON.stringify(v);
  }
  return { weightMap, metadata };
}

/** Opens a `*.safetensors.index.json` and all its shards; errors name the shard. */
export async function openShardedSafetensors(indexPath: string): Promise<ShardedSafetensors> {
  let bytes: Uint8Array;
  try {
    const st = await Deno.stat(indexPath);
    if (st.isDirectory) throw new CheckpointError(indexPath, "is a directory, not a file", "path");
    if (st.size > MAX_HEADER_BYTES) {
      throw new CheckpointError(
        indexPath,
        `${st.size} bytes is over the ${MAX_HEADER_BYTES}-byte cap`,
        "index",
      );
    }
    bytes = await Deno.readFile(indexPath);
  } catch (e) {
    throw openError(indexPath, e);
  }
  const { weightMap, metadata } = parseIndex(indexPath, bytes);
  const dir = dirname(indexPath);
  const shards = new Map<string, SafetensorsFile>();
  const tensors = new Map<string, TensorInfo>();
  try {
    for (const shard of [...new Set(weightMap.values())].sort()) {
      const p = join(dir, shard);
      const f = await openSafetensors(p);
      shards.set(p, f);
      for (const [name, info] of f.tensors) {
        const listed = weightMap.get(name);
        if (listed === undefined) {
          throw new CheckpointError(
            p,
            `tensor is not in the weight_map of ${basename(indexPath)}`,
            name,
          );
        }
        if (listed !== shard) {
          throw new CheckpointError(
            p,
            `tensor is also here, but the weight_map of ${
              basename(indexPath)
            } puts it in ${listed}`,
            name,
          );
        }
        tensors.set(name, info);
      }
    }
    for (const [name, shard] of weightMap) {
      if (!tensors.has(name)) {
        throw new CheckpointError(
          join(dir, shard),
          `tensor listed in the weight_map of ${basename(indexPath)} is missing from this shard`,
          name,
        );
      }
    }
  } catch (e) {
    for (const f of shards.values()) f.close();
    throw e;
  }
  return new ShardedSafetensors(indexPath, shards, tensors, metadata);
}

/** Options of openCheckpoint. */
export interface OpenCheckpointOptions {
  /** A diffusers weight variant ("fp16" → diffusion_pytorch_model.fp16.safetensors). */
  variant?: string;
}

/**
 * Opens a checkpoint given as a `.safetensors` file, a `.safetensors.index.json`,
 * a diffusers model folder (diffusion_pytorch_model[.variant].safetensors[.index.json],
 * or model[.variant]…), or a pipeline folder whose transformer/ holds one.
 */
export async function openCheckpoint(
  pathOrDir: string,
  opts: OpenCheckpointOptions = {},
): Promise<TensorSource> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(pathOrDir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError(pathOrDir, "no such file or directory", "path");
    }
    throw openError(pathOrDir, e);
  }
  if (!st.isDirectory) {
    return pathOrDir.endsWith(".json")
      ? await openShardedSafetensors(pathOrDir)
      : await openSafetensors(pathOrDir);
  }
  const v = opts.variant ? `.${opts.variant}` : "";
  const names = [`diffusion_pytorch_model${v}.safetensors`, `model${v}.safetensors`];
  for (const base of names) {
    for (const name of [base, `${base}.index.json`]) {
      const p = join(pathOrDir, name);
      if (await isFile(p)) return await openCheckpoint(p);
    }
  }
  const sub = join(pathOrDir, "transformer");
  if (
    await isFile(join(pathOrDir, "model_index.json")) &&
    (await Deno.stat(sub).catch(() => null))?.isDirectory
  ) {
    return await openCheckpoint(sub, opts);
  }
  throw new CheckpointError(
    pathOrDir,
    `is a directory without ${names[0]} or ${names[1]} (nor their .index.json)`,
    "path",
  );
}

/**
 * The transformer folder of a model: `<path>/transformer` when it holds a config.json (a
 * diffusers model folder), else `path` itself (a transformer folder given directly).
 */
export async function transformerDir(path: string): Promise<string> {
  const sub = join(path, "transformer");
  return await isFile(join(sub, "config.json")) ? sub : path;
}

async function isFile(p: string): Promise<boolean> {
  return (await Deno.stat(p).catch(() => null))?.isFile ?? false;
}

/** What validation found about one tensor. */
export interface TensorReport {
  /** Tensor name. */
  name: string;
  /** Element type. */
  dtype: string;
  /** Dimensions. */
  shape: number[];
  /** Data size in bytes. */
  bytes: number;
  /** The file holding it. */
  file: string;
  /** NaN count (float dtypes, when values were checked). */
  nan?: number;
  /** ±Inf count (float dtypes, when values were checked). */
  inf?: number;
}

/** Options of validateCheckpoint. */
export interface ValidateOptions {
  /** Read every tensor and count NaN/Inf in float ones (default true). */
  values?: boolean;
  /** Throw a CheckpointError on the first tensor holding NaN/Inf (default false: report). */
  failOnNonFinite?: boolean;
}

const CHUNK = 64 * 2 ** 20;

/**
 * Reads every tensor of an opened checkpoint (in slices, so memory stays bounded) and
 * counts NaN/Inf values in float tensors. The header was validated when it was opened.
 */
export async function validateCheckpoint(
  src: TensorSource,
  opts: ValidateOptions = {},
): Promise<TensorReport[]> {
  const values = opts.values ?? true;
  const out: TensorReport[] = [];
  for (const [name, t] of src.tensors) {
    const r: TensorReport = {
      name,
      dtype: t.dtype,
      shape: [...t.shape],
      bytes: t.byteLength,
      file: t.file,
    };
    if (values && FLOAT_DTYPES.has(t.dtype)) {
      const elem = SAFETENSORS_DTYPES[t.dtype].bits / 8;
      const step = Math.floor(CHUNK / elem) * elem;
      let nan = 0;
      let inf = 0;
      for (let o = 0; o < t.byteLength; o += step) {
        const b = await src.readRange(name, o, Math.min(t.byteLength, o + step));
        // f64 is checked as f64: narrowing to f32 would turn large finite values into Inf.
        const v = t.dtype === "F64"
          ? new Float64Array(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength / 8)
          : bytesToF32(t.file, name, t.dtype, b);
        for (let i = 0; i < v.length; i++) {
          const x = v[i];
          if (x !== x) nan++;
          else if (x === Infinity || x === -Infinity) inf++;
        }
      }
      r.nan = nan;
      r.inf = inf;
      if (opts.failOnNonFinite && nan + inf > 0) {
        throw new CheckpointError(t.file, `holds ${nan} NaN and ${inf} Inf values`, name);
      }
    } else if (values) {
      for (let o = 0; o < t.byteLength; o += CHUNK) {
        await src.readRange(name, o, Math.min(t.byteLength, o + CHUNK));
      }
    }
    out.push(r);
  }
  return out;
}

/** Opens `path` (see openCheckpoint), validates it fully and closes it. */
export async function validateSafetensors(
  path: string,
  opts: ValidateOptions = {},
): Promise<TensorReport[]> {
  const src = await openCheckpoint(path);
  try {
    return await validateCheckpoint(src, opts);
  } finally {
    src.close();
  }
}
