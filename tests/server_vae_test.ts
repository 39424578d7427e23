/**
 * The server with a latent model and its VAE: the images are the decoder's (the size of
 * the request, not of the latents), streamed ones too (without previews); a latent model
 * without a VAE is refused at start.
 */
import { Buffer } from "node:buffer";
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import { makeApp, parseSse, pixelPrompts, post } from "./server_helpers.ts";
import { latentEmojiModel } from "./latent_models.ts";
import { decodePng, tensorToImage } from "../runtime/io/png.ts";
import { Prng } from "../runtime/io/prng.ts";
import { loadDenseEntry, ModelCatalog } from "../runtime/server/models.ts";

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
          // The pixels of the same request run through the pipeline and its decoder here.
          const p = entry.pipeline;
          const gen = await p.generate({
            prompts: [prompt],
            latents: new Prng(3).normals(4 * 8 * 8), // the queue's noise for seed 3
            steps: 2,
            guidance: p.defaults.guidance,
            sampler: p.defaults.sampler,
          });
          const dec = await p.decode(gen.latents, gen.shape);
          assertEquals(png.data, tensorToImage(dec.images, 3, 32, 32).data);
          // serve --vae-tiling: vae_tiny's tiles of 4 cells, blended (the seams differ).
          entry.vaeTiling = true;
          const tiledRes = await s.app.request(post({ prompt, steps: 2, seed: 3 }));
          const tiledPng = decodePng(
            Buffer.from((await tiledRes.json()).data[0].b64_json, "base64"),
          );
          const tiled = await p.decode(gen.latents, gen.shape, { tiling: true });
          assertEquals(tiledPng.data, tensorToImage(tiled.images, 3, 32, 32).data);
          assert(tiledPng.data.some((v, i) => v !== png.data[i]));
          entry.vaeTiling = false;
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
