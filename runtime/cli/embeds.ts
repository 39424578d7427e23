/**
 * Readers of the precomputed inputs the CLIs take as safetensors (diffusers' pipeline
 * names): caption embeddings (`generate --caption-embeds/--pooled-embeds`,
 * `quantize --calib-embeds`) and latents.
 *
 * @module
 */
import { resolve } from "node:path";
import { FLOAT_DTYPES, openSafetensors, type SafetensorsFile } from "../io/safetensors.ts";
import type { CaptionEmbeds } from "../pipeline.ts";
import { info, UsageError } from "./common.ts";

/** The tensor names a caption-embeddings file may hold (besides what a caller adds). */
const CAPTION_TENSORS = [
  "prompt_embeds",
  "prompt_attention_mask",
  "mask", // the contract's alias of prompt_attention_mask
  "negative_prompt_embeds",
  "negative_prompt_attention_mask",
  "pooled_prompt_embeds",
  "negative_pooled_prompt_embeds",
];

/** The tensor names of a pooled-embeddings file. */
const POOLED_TENSORS = ["pooled_prompt_embeds", "negative_pooled_prompt_embeds"];

/**
 * Names the tensors of `f` not in `used` in a warning, so nothing in an input file is
 * ignored silently. (A warning, not an error: the README's FLUX example passes the fixture
 * io.safetensors, which holds the reference run's other tensors too.)
 */
function warnUnused(f: SafetensorsFile, path: string, used: readonly string[]): void {
  const unused = [...f.tensors.keys()].filter((n) => !used.includes(n));
  if (unused.length) {
    info(
      `warning: ${path}: ignoring tensor${unused.length > 1 ? "s" : ""} ${
        unused.map((n) => `"${n}"`).join(", ")
      } (read: ${used.filter((n) => f.tensors.has(n)).join(", ")})`,
    );
  }
}

/** Refuses a shape with a dimension below 1 (an empty tensor). */
function checkNotEmpty(path: string, name: string, shape: readonly number[]): void {
  if (shape.some((d) => d < 1)) {
    throw new UsageError(
      `${path}: ${name} [${shape.join(", ")}] is empty: every dimension must be ≥ 1`,
    );
  }
}

/** A float tensor read as f32, refused when it is not a float dtype or holds NaN or ±Inf. */
async function readFloat(f: SafetensorsFile, path: string, name: string): Promise<Float32Array> {
  const t = f.tensors.get(name)!;
  if (!FLOAT_DTYPES.has(t.dtype)) {
    throw new UsageError(
      `${path}: ${name} must be a float tensor webdit reads (${[...FLOAT_DTYPES].join(", ")}), ` +
        `not ${t.dtype}`,
    );
  }
  const data = await f.readF32(name);
  let bad = 0, first = -1;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      if (bad++ === 0) first = i;
    }
  }
  if (bad) {
    throw new UsageError(
      `${path}: ${name} holds ${bad} non-finite value${bad > 1 ? "s" : ""} (NaN or ±Inf; ` +
        `the first at flat index ${first} of ${data.length})`,
    );
  }
  return data;
}

/**
 * Reads precomputed caption embeddings under diffusers' pipeline names: prompt_embeds
 * [B, L, C] (or [L, C]), optional prompt_attention_mask (or "mask"), negative_prompt_embeds
 * (+ mask), and FLUX's pooled_prompt_embeds [B, P] (+ negative_pooled_prompt_embeds) when
 * present. Any other tensor is named in a warning, except those in `alsoUsed` (which the
 * caller reads itself).
 */
export async function readCaptionEmbeds(
  path: string,
  alsoUsed: readonly string[] = [],
): Promise<CaptionEmbeds> {
  const f = await openSafetensors(path);
  try {
    const need = (name: string) => {
      const t = f.tensors.get(name);
      if (!t) throw new UsageError(`${path}: missing tensor "${name}"`);
      return t;
    };
    const pe = need("prompt_embeds");
    warnUnused(f, path, [...CAPTION_TENSORS, ...alsoUsed]);
    const shape = pe.shape.length === 2 ? [1, ...pe.shape] : pe.shape;
    if (shape.length !== 3) {
      throw new UsageError(`${path}: prompt_embeds must be [B, L, C], got [${pe.shape}]`);
    }
    checkNotEmpty(path, "prompt_embeds", pe.shape);
    const [B, L] = shape;
    if (f.tensors.has("mask") && f.tensors.has("prompt_attention_mask")) {
      throw new UsageError(
        `${path}: give "prompt_attention_mask" or its alias "mask", not both`,
      );
    }
    const maskOf = async (name: string) => {
      const t = f.tensors.get(name);
      if (!t) return undefined;
      if (t.shape.reduce((a, b) => a * b, 1) !== B * L) {
        throw new UsageError(`${path}: ${name} must be [${B}, ${L}], got [${t.shape}]`);
      }
      return await f.readF32(name);
    };
    const out: CaptionEmbeds = {
      embeds: await readFloat(f, path, "prompt_embeds"),
      mask: await maskOf(f.tensors.has("mask") ? "mask" : "prompt_attention_mask"),
      shape: shape as [number, number, number],
    };
    const ne = f.tensors.get("negative_prompt_embeds");
    if (ne) {
      const n = ne.shape.reduce((a, b) => a * b, 1);
      if (n !== B * L * shape[2]) {
        throw new UsageError(
          `${path}: negative_prompt_embeds must match prompt_embeds [${shape}], got [${ne.shape}]`,
        );
      }
      out.negative = {
        embeds: await readFloat(f, path, "negative_prompt_embeds"),
        mask: await maskOf("negative_prompt_attention_mask"),
      };
    } else if (f.tensors.has("negative_prompt_attention_mask")) {
      throw new UsageError(
        `${path}: negative_prompt_attention_mask needs negative_prompt_embeds`,
      );
    }
    if (f.tensors.has("pooled_prompt_embeds")) await readPooledInto(f, path, out);
    else if (f.tensors.has("negative_pooled_prompt_embeds")) {
      throw new UsageError(
        `${path}: negative_pooled_prompt_embeds needs pooled_prompt_embeds`,
      );
    }
    return out;
  } finally {
    f.close();
  }
}

/** FLUX: pooled_prompt_embeds [B, P] (+ negative_pooled_prompt_embeds) into `out`. */
async function readPooledInto(f: SafetensorsFile, path: string, out: CaptionEmbeds): Promise<void> {
  const B = out.shape[0];
  const t = f.tensors.get("pooled_prompt_embeds");
  if (!t) throw new UsageError(`${path}: missing tensor "pooled_prompt_embeds"`);
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (
    (t.shape.length !== 2 && t.shape.length !== 1) || n % B ||
    (t.shape.length === 2 && t.shape[0] !== B)
  ) {
    throw new UsageError(`${path}: pooled_prompt_embeds must be [${B}, P], got [${t.shape}]`);
  }
  checkNotEmpty(path, "pooled_prompt_embeds", t.shape);
  out.pooled = await readFloat(f, path, "pooled_prompt_embeds");
  const ne = f.tensors.get("negative_pooled_prompt_embeds");
  if (ne) {
    if (ne.shape.reduce((a, b) => a * b, 1) !== n) {
      throw new UsageError(
        `${path}: negative_pooled_prompt_embeds must match pooled_prompt_embeds [${t.shape}]`,
      );
    }
    if (!out.negative) {
      throw new UsageError(`${path}: negative_pooled_prompt_embeds needs negative_prompt_embeds`);
    }
    out.negative.pooled = await readFloat(f, path, "negative_pooled_prompt_embeds");
  }
}

/**
 * Reads pooled_prompt_embeds (+ negative) from a separate file into `out`. Its other tensors
 * are named in a warning, except those in `alsoUsed` (read from the same file by another
 * reader: the caption embeddings' or the latents').
 */
export async function readPooled(
  path: string,
  out: CaptionEmbeds,
  alsoUsed: readonly string[] = [],
): Promise<void> {
  const f = await openSafetensors(path);
  try {
    warnUnused(f, path, [...POOLED_TENSORS, ...alsoUsed]);
    await readPooledInto(f, path, out);
  } finally {
    f.close();
  }
}

/** What `generate` reads from its input files (--caption-embeds, --pooled-embeds, --latents). */
export interface GenerateInputs {
  /** The caption embeddings, with the --pooled-embeds file's pooled embeddings in them. */
  captionEmbeds?: CaptionEmbeds;
  /** The initial noise [B, C, H, W]. */
  latents?: { data: Float32Array; shape: number[] };
}

/**
 * Reads `generate`'s input files. One file may be given to several flags (a reference run's
 * record holds embeddings, pooled embeddings and latents): the tensors one flag reads are then
 * not named in another's "ignoring" warning, and a file is warned about once.
 */
export async function readGenerateInputs(files: {
  captionEmbeds?: string;
  pooledEmbeds?: string;
  latents?: string;
}): Promise<GenerateInputs> {
  const same = (a?: string, b?: string) =>
    a !== undefined && b !== undefined && resolve(a) === resolve(b);
  const { captionEmbeds: ce, pooledEmbeds: pe, latents: lat } = files;
  const latentNames = (p: string) => same(p, lat) ? ["latents"] : [];
  const captionEmbeds = ce !== undefined ? await readCaptionEmbeds(ce, latentNames(ce)) : undefined;
  if (pe !== undefined) {
    if (!captionEmbeds) throw new UsageError("--pooled-embeds needs --caption-embeds");
    if (!same(pe, ce)) await readPooled(pe, captionEmbeds, latentNames(pe));
    // The caption reader read (and checked) the file's pooled embeddings, and named the rest.
    else if (!captionEmbeds.pooled) {
      throw new UsageError(`${pe}: missing tensor "pooled_prompt_embeds"`);
    }
  }
  const latents = lat !== undefined ? await readLatents(lat) : undefined;
  return { captionEmbeds, latents };
}

/**
 * Reads tensor "latents" [B, C, H, W]: a float tensor, every dimension ≥ 1, all values
 * finite (the file's other tensors are left alone: it may be a reference run's record).
 */
export async function readLatents(path: string): Promise<{ data: Float32Array; shape: number[] }> {
  const f = await openSafetensors(path);
  try {
    const t = f.tensors.get("latents");
    if (!t) throw new UsageError(`${path}: missing tensor "latents"`);
    if (t.shape.length !== 4) {
      throw new UsageError(`${path}: latents must be [B, C, H, W], got [${t.shape}]`);
    }
    checkNotEmpty(path, "latents", t.shape);
    return { data: await readFloat(f, path, "latents"), shape: [...t.shape] };
  } finally {
    f.close();
  }
}

/**
 * `quantize --calib-embeds FILE`: the caption embeddings (each batch row one calibration
 * prompt; FLUX also needs pooled_prompt_embeds) and, when the file holds "latents"
 * [B, C, H, W], the initial noise (its H×W is the calibrated latent size; PARO plans are
 * per size).
 */
export async function readCalibrationEmbeds(
  path: string,
): Promise<{ embeds: CaptionEmbeds; latents?: { data: Float32Array; shape: number[] } }> {
  const embeds = await readCaptionEmbeds(path, ["latents"]);
  const f = await openSafetensors(path);
  const has = f.tensors.has("latents");
  f.close();
  if (!has) return { embeds };
  const latents = await readLatents(path);
  if (latents.shape[0] !== embeds.shape[0]) {
    throw new UsageError(
      `${path}: latents have batch ${latents.shape[0]}, prompt_embeds ${embeds.shape[0]}`,
    );
  }
  return { embeds, latents };
}
