/**
 * Readers of the precomputed inputs the CLIs take as safetensors (diffusers' pipeline
 * names): caption embeddings (`generate --caption-embeds/--pooled-embeds`,
 * `quantize --calib-embeds`) and latents.
 *
 * @module
 */
import { openSafetensors, type SafetensorsFile } from "../io/safetensors.ts";
import type { CaptionEmbeds } from "../pipeline.ts";
import { UsageError } from "./common.ts";

/**
 * Reads precomputed caption embeddings under diffusers' pipeline names: prompt_embeds
 * [B, L, C] (or [L, C]), optional prompt_attention_mask, negative_prompt_embeds (+ mask),
 * and FLUX's pooled_prompt_embeds [B, P] (+ negative_pooled_prompt_embeds) when present.
 */
export async function readCaptionEmbeds(path: string): Promise<CaptionEmbeds> {
  const f = await openSafetensors(path);
  try {
    const need = (name: string) => {
      const t = f.tensors.get(name);
      if (!t) throw new UsageError(`${path}: missing tensor "${name}"`);
      return t;
    };
    const pe = need("prompt_embeds");
    const shape = pe.shape.length === 2 ? [1, ...pe.shape] : pe.shape;
    if (shape.length !== 3) {
      throw new UsageError(`${path}: prompt_embeds must be [B, L, C], got [${pe.shape}]`);
    }
    const [B, L] = shape;
    const maskOf = async (name: string) => {
      const t = f.tensors.get(name);
      if (!t) return undefined;
      if (t.shape.reduce((a, b) => a * b, 1) !== B * L) {
        throw new UsageError(`${path}: ${name} must be [${B}, ${L}], got [${t.shape}]`);
      }
      return await f.readF32(name);
    };
    const out: CaptionEmbeds = {
      embeds: await f.readF32("prompt_embeds"),
      mask: await maskOf("prompt_attention_mask"),
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
        embeds: await f.readF32("negative_prompt_embeds"),
        mask: await maskOf("negative_prompt_attention_mask"),
      };
    }
    if (f.tensors.has("pooled_prompt_embeds")) await readPooledInto(f, path, out);
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
  out.pooled = await f.readF32("pooled_prompt_embeds");
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
    out.negative.pooled = await f.readF32("negative_pooled_prompt_embeds");
  }
}

/** Reads pooled_prompt_embeds (+ negative) from a separate file into `out`. */
export async function readPooled(path: string, out: CaptionEmbeds): Promise<void> {
  const f = await openSafetensors(path);
  try {
    await readPooledInto(f, path, out);
  } finally {
    f.close();
  }
}

/** Reads tensor "latents" [B, C, H, W]. */
export async function readLatents(path: string): Promise<{ data: Float32Array; shape: number[] }> {
  const f = await openSafetensors(path);
  try {
    const t = f.tensors.get("latents");
    if (!t) throw new UsageError(`${path}: missing tensor "latents"`);
    if (t.shape.length !== 4) {
      throw new UsageError(`${path}: latents must be [B, C, H, W], got [${t.shape}]`);
    }
    return { data: await f.readF32("latents"), shape: [...t.shape] };
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
  const embeds = await readCaptionEmbeds(path);
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
