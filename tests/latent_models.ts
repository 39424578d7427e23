/**
 * Latent-space model folders for tests, built from the fixtures: pixart_tiny_sq's transformer,
 * or pixart_pixel's config at 4 latent channels with the emoji caption encoder; with the
 * vae_tiny decoder in vae/ where asked.
 *
 * @module
 */
import { join } from "node:path";
import { FIXTURES, PIXEL_MODEL } from "./fixture_helpers.ts";
import { Prng } from "../runtime/io/prng.ts";
import { type TensorToWrite, writeSafetensors } from "../runtime/io/safetensors.ts";
import { parsePixArtConfig, pixartWeightShapes } from "../plugins/models/pixart_config.ts";

/** Copies a folder tree. */
export async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    const [a, b] = [join(from, e.name), join(to, e.name)];
    if (e.isDirectory) await copyDir(a, b);
    else await Deno.copyFile(a, b);
  }
}

/** A temp model folder: pixart_tiny_sq's transformer (+ vae_tiny's vae/ when `vae`). */
export async function latentModel(vae: boolean): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webdit_vae_model_" });
  await copyDir(`${FIXTURES}pixart_tiny_sq/transformer`, join(dir, "transformer"));
  if (vae) await copyDir(`${FIXTURES}vae_tiny/vae`, join(dir, "vae"));
  return dir;
}

/**
 * A latent PixArt with the emoji caption encoder: pixart_pixel's config at 4 latent channels
 * (8 × 8), random weights, its text encoder and tokenizer, and (with `vae`) vae_tiny's decoder.
 */
export async function latentEmojiModel(vae: boolean): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webdit_latent_emoji_" });
  const raw = JSON.parse(await Deno.readTextFile(`${PIXEL_MODEL}/transformer/config.json`));
  const cfg = { ...raw, in_channels: 4, out_channels: 4, sample_size: 8 };
  await Deno.mkdir(join(dir, "transformer"));
  await Deno.writeTextFile(join(dir, "transformer/config.json"), JSON.stringify(cfg));
  const g = new Prng(9);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, shape] of pixartWeightShapes(parsePixArtConfig(cfg))) {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors[name] = { dtype: "F32", shape, data: g.normals(n).map((v) => 0.05 * v) };
  }
  await writeSafetensors(join(dir, "transformer/diffusion_pytorch_model.safetensors"), tensors);
  for (const d of ["text_encoder", "tokenizer"]) await copyDir(join(PIXEL_MODEL, d), join(dir, d));
  if (vae) await copyDir(`${FIXTURES}vae_tiny/vae`, join(dir, "vae"));
  return dir;
}

/**
 * A real-checkpoint-shaped folder with text encoders: pixart_tiny_sq's transformer with
 * text_pixart's T5 (text_encoder/ + tokenizer/), or flux_dev's transformer and scheduler with
 * text_flux's CLIP + T5 (+ text_encoder_2/, tokenizer_2/); vae_tiny's decoder when `vae` (PixArt).
 */
export async function textEncoderModel(kind: "pixart" | "flux", vae = false): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: `webdit_text_${kind}_` });
  const [model, text, parts] = kind === "pixart"
    ? ["pixart_tiny_sq", "text_pixart", ["transformer"]]
    : ["flux_dev", "text_flux", ["transformer", "scheduler"]];
  for (const p of parts) await copyDir(`${FIXTURES}${model}/${p}`, join(dir, p));
  for await (const e of Deno.readDir(`${FIXTURES}${text}`)) {
    if (e.isDirectory) await copyDir(`${FIXTURES}${text}/${e.name}`, join(dir, e.name));
  }
  if (vae) await copyDir(`${FIXTURES}vae_tiny/vae`, join(dir, "vae"));
  return dir;
}
