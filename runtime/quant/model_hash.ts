/**
 * The identity of a model's weights, which calibration caches and artifacts are keyed by.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { CheckpointError } from "../errors.ts";
import { transformerDir } from "../io/safetensors_index.ts";
import { DEFAULT_MODEL_DIR } from "../pipeline.ts";
// Hashes are kept for the process while the files' sizes and times stay the same: one
// quantize asks for the same ones several times (the artifact, the calibration and PARO
// caches), and a FLUX checkpoint is tens of gigabytes to read.
const memo = new Map<string, string>();

/**
 * sha-256 (hex) of files under `dir` (relative paths, in order), streamed; each file's path
 * and a NUL go first when `withNames`.
 */
async function hashFiles(
  dir: string,
  files: readonly string[],
  withNames: boolean,
): Promise<string> {
  const stats = await Promise.all(files.map((f) => Deno.stat(join(dir, f))));
  const key = JSON.stringify([
    dir,
    withNames,
    files.map((f, i) => [f, stats[i].size, stats[i].mtime?.getTime() ?? null]),
  ]);
  const known = memo.get(key);
  if (known) return known;
  const h = createHash("sha256");
  const buf = new Uint8Array(1 << 22);
  for (const rel of files) {
    if (withNames) h.update(`${rel}\0`);
    using f = await Deno.open(join(dir, rel));
    for (let n = await f.read(buf); n !== null; n = await f.read(buf)) h.update(buf.subarray(0, n));
  }
  const hex = h.digest("hex");
  memo.set(key, hex);
  return hex;
}

/**
 * sha-256 (hex) of a model's transformer weights: every `*.safetensors` file of
 * `<path>/transformer` (or of `path` itself when it holds them), by name, streamed.
 */
export async function transformerWeightsHash(path: string = DEFAULT_MODEL_DIR): Promise<string> {
  const dir = await transformerDir(path);
  const files: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.endsWith(".safetensors")) files.push(e.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new CheckpointError(dir, "no such model folder");
    throw e;
  }
  if (files.length === 0) throw new RangeError(`No .safetensors weights in ${dir}`);
  return await hashFiles(dir, files.sort(), false);
}

/**
 * sha-256 (hex) of every file under the given subfolders of `dir` (by relative path, sorted,
 * streamed): the identity of a real checkpoint's prompt encoders (text_encoder/, tokenizer/…)
 * for calibration caches. Subfolders that do not exist are skipped.
 */
export async function foldersHash(dir: string, subfolders: readonly string[]): Promise<string> {
  const files: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(join(dir, rel))) {
      const p = join(rel, e.name);
      if (e.isDirectory) await walk(p);
      else if (e.isFile) files.push(p);
    }
  };
  for (const s of subfolders) {
    await walk(s).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
  return await hashFiles(dir, files.sort(), true);
}
