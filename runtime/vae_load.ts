/**
 * Finds and loads a pipeline's VAE decoder: the model folder's vae/ (diffusers' layout), or a
 * folder named by `loadPipeline`'s `vae` option (a model folder, or the vae folder itself:
 * e.g. for a quantized artifact, which carries no VAE).
 *
 * @module
 */
import { join } from "node:path";
import { FluxModel } from "../plugins/models/flux.ts";
import { loadVaeDecoder, type VaeDecoder } from "../plugins/models/vae.ts";
import { parseVaeConfig } from "../plugins/models/vae_config.ts";
import { CheckpointError } from "./errors.ts";
import type { Runtime } from "./gpu/device.ts";
import { exists } from "./io/fs.ts";
import { readJsonFile } from "./io/json.ts";
import { openCheckpoint } from "./io/safetensors_index.ts";
import type { Pipeline } from "./pipeline.ts";

/** The vae folder under `path` (path/vae, or path itself), or undefined when neither has one. */
export async function vaeDir(path: string): Promise<string | undefined> {
  for (const d of [join(path, "vae"), path]) {
    const cfg = join(d, "config.json");
    if (!(await exists(cfg))) continue;
    const raw = await readJsonFile(cfg) as Record<string, unknown> | null;
    if (raw?.["_class_name"] === "AutoencoderKL" || d !== path) return d;
  }
  return undefined;
}

/**
 * Loads the decoder from the folder `where` (see {@linkcode vaeDir}) for `pipe`'s latents.
 * @throws {CheckpointError} naming the file: no VAE there, a config webdit cannot run, latent
 * channels that are not the transformer's, a missing or misshapen tensor.
 */
export async function loadVaeFor(rt: Runtime, pipe: Pipeline, where: string): Promise<VaeDecoder> {
  const dir = await vaeDir(where);
  if (!dir) throw new CheckpointError(where, "has no vae/config.json (an AutoencoderKL)", "vae");
  const cfgPath = join(dir, "config.json");
  const config = parseVaeConfig(await readJsonFile(cfgPath), cfgPath);
  const m = pipe.model;
  const latent = m instanceof FluxModel ? m.config.latentChannels : m.config.inChannels;
  if (config.latentChannels !== latent) {
    throw new CheckpointError(
      cfgPath,
      `has ${config.latentChannels} latent channels, the transformer works on ${latent}`,
      "latent_channels",
    );
  }
  const src = await openCheckpoint(dir);
  try {
    return await loadVaeDecoder(rt, src, config);
  } finally {
    src.close();
  }
}

/** Gives `pipe` the VAE `where` names (default: its folder's, if any); frees it on failure. */
export async function attachVae(
  rt: Runtime,
  pipe: Pipeline,
  where: string | false | undefined,
  modelDir: string | undefined,
): Promise<Pipeline> {
  if (where === false) return pipe;
  const from = where ?? (modelDir && (await vaeDir(modelDir)) ? modelDir : undefined);
  if (from === undefined) return pipe;
  try {
    pipe.vae = await loadVaeFor(rt, pipe, from);
  } catch (e) {
    pipe.release();
    throw e;
  }
  return pipe;
}
