/**
 * The server with a latent model and its VAE: the images are the decoder's (the size of
 * the request, not of the latents), streamed ones too (without previews); a latent model
 * without a VAE is refused at start.
 */
import { join } from "node:path";
import { Buffer } from "node:buffer";
import { assertEquals, assertThrows } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import { FIXTURES } from "./fixture_helpers.ts";
import { makeApp, parseSse, PIXEL_MODEL, pixelPrompts, post } from "./server_helpers.ts";
import { decodePng } from "../runtime/io/png.ts";
import { Prng } from "../runtime/io/prng.ts";
import { type TensorToWrite, writeSafetensors } from "../runtime/io/safetensors.ts";
import { loadDenseEntry, ModelCatalog } from "../runtime/server/models.ts";
import { parsePixArtConfig, pixartWeightShapes } from "../plugins/models/pixart_config.ts";

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    const [a, b] = [join(from, e.name), join(to, e.name)];
    if (e.isDirectory) await copyDir(a, b);
    else await Deno.copyFile(a, b);
  }
}

/**
 * A latent PixArt with the emoji caption encoder: pixart_pixel's config at 4 latent channels
 * (8 × 8), random weights, its text encoder and tokenizer, and (with `vae`) vae_tiny's decoder.
 */
async function latentEmojiModel(vae: boolean): Promise<string> {
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

Deno.test(
  "server: a latent model's images come out of its VAE, streamed or not",
  gpuTest,
  async () => {
    const dir = await latentEmojiModel(true);
    try {
      await withRuntime(async (rt) => {
        const entry = await loadDenseEntry(rt, { path: dir, name: "latent" });
        try {
          assertEquals(entry.pipeline.pixelsPerLatent, 4);
          const s = makeApp(rt, [entry]);
          const [prompt] = await pixelPrompts();
          const res = await s.app.request(post({ prompt, steps: 2, seed: 3 }));
          assertEquals(res.status, 200, await res.clone().text());
          const body = await res.json();
          const png = decodePng(Buffer.from(body.data[0].b64_json, "base64"));
          assertEquals([png.width, png.height], [32, 32]); // 8 × 8 latents, 4 pixels a cell
          const sse = await s.app.request(
            post({ prompt, steps: 2, seed: 3, stream: true, partial_images: 2 }),
          );
          const events = parseSse(await sse.text());
          assertEquals(events.map((e) => e.event), ["image_generation.completed"]);
          const done = JSON.parse(events[0].data);
          assertEquals(done.b64_json, body.data[0].b64_json); // the same seed, the same image
          s.close();
        } finally {
          entry.pipeline.release();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("server: a latent model without a VAE is refused at start", gpuTest, async () => {
  const dir = await latentEmojiModel(false);
  try {
    await withRuntime(async (rt) => {
      const entry = await loadDenseEntry(rt, { path: dir, name: "latent" });
      try {
        assertThrows(() => new ModelCatalog([entry]), RangeError, "has no VAE decoder");
      } finally {
        entry.pipeline.release();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
