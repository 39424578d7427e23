/**
 * Writing a quantize result: the artifact's metadata beside the plan (the transformer's
 * config, the scheduler's and the caption encoder's, so that the artifact runs alone) and
 * the atomic write.
 *
 * @module
 */
import { join } from "node:path";
import { CheckpointError } from "../errors.ts";
import { exists } from "../io/fs.ts";
import { readJsonFile } from "../io/json.ts";
import { isEmojiEncoderConfig } from "../../plugins/models/emoji_encoder.ts";
import { openCheckpoint } from "../io/safetensors_index.ts";
import { readModelIndex } from "../model_defaults.ts";
import { type TensorSource, type TensorToWrite, writeSafetensors } from "../io/safetensors.ts";
import { META, PREFIX } from "./artifact.ts";
import { ARTIFACT_VERSION } from "./plan.ts";
import type { QuantizeResult } from "./quantize_types.ts";

/** A text file, or a CheckpointError naming it. */
export async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new CheckpointError(path, (e as Error).message, "path");
  }
}

/** Adds `src`'s tensors (those `keep` accepts) to `into` as stored, their names prefixed. */
export async function copyStoredTensors(
  src: TensorSource,
  prefix: string,
  into: Record<string, TensorToWrite>,
  keep: (name: string) => boolean = () => true,
): Promise<void> {
  for (const [name, info] of src.tensors) {
    if (!keep(name)) continue;
    into[prefix + name] = {
      dtype: info.dtype,
      shape: [...info.shape],
      data: await src.readRaw(name),
    };
  }
}

/**
 * The artifact's metadata but the plan: the version, the transformer's config `cfgText`,
 * the attention plan, the model family, the scheduler's config and the caption encoder's
 * config and vocabulary (the encoder's weights are added to `tensors`) when `dir` has them.
 */
export async function artifactMetadata(
  dir: string,
  cfgText: string,
  tensors: Record<string, TensorToWrite>,
  attentionMeta: string | undefined,
  family: string | undefined,
): Promise<Record<string, string>> {
  const metadata: Record<string, string> = {
    [META.version]: String(ARTIFACT_VERSION),
    [META.transformerConfig]: cfgText,
  };
  if (attentionMeta) metadata[META.attention] = attentionMeta;
  if (family) metadata[META.family] = family;
  // The scheduler's config (FLUX: flow matching; PixArt: DPM-Solver/DDIM), so the artifact
  // samples as the folder does.
  const spath = join(dir, "scheduler", "scheduler_config.json");
  if (await exists(spath)) metadata[META.schedulerConfig] = await readText(spath);
  // The model's sampling defaults (model_index.json's webdit section) travel with it.
  const index = await readModelIndex(dir);
  if (index !== undefined) metadata[META.modelIndex] = index;
  // The bundled model's caption encoder and vocabulary, so the artifact runs alone (a real
  // checkpoint's T5 / CLIP stay in their folder: generate --text-encoder names it).
  const edir = join(dir, "text_encoder");
  const ecfg = join(edir, "config.json");
  if (await exists(ecfg) && isEmojiEncoderConfig(await readJsonFile(ecfg))) {
    metadata[META.encoderConfig] = await readText(ecfg);
    metadata[META.vocab] = await readText(join(dir, "tokenizer", "vocab.json"));
    const esrc = await openCheckpoint(join(edir, "model.safetensors"));
    try {
      await copyStoredTensors(esrc, PREFIX.encoder, tensors);
    } finally {
      esrc.close();
    }
  }
  return metadata;
}

/**
 * Writes the artifact atomically; refuses to replace an existing file unless `force`.
 * Returns its size in bytes.
 */
export async function writeArtifact(
  path: string,
  r: QuantizeResult,
  opts: { force?: boolean } = {},
): Promise<number> {
  if (!path.endsWith(".safetensors")) {
    throw new RangeError(`the artifact must be a .safetensors file, got ${path}`);
  }
  if (!opts.force && await exists(path)) {
    throw new RangeError(`${path} exists; pass --force to overwrite it`);
  }
  await writeSafetensors(path, r.tensors, r.metadata);
  return (await Deno.stat(path)).size;
}
