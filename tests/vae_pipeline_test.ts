/**
 * A latent model folder with a VAE (the pixart_tiny_sq transformer + the vae_tiny decoder):
 * generate writes the decoded image, the same pixels the decoder gives the saved latents;
 * --vae names another decoder; a missing or mismatched one is an error naming it.
 */
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { gpuTest, runAndRead, withRuntime } from "./gpu.ts";
import { FIXTURES } from "./fixture_helpers.ts";
import { runCli } from "./cli_helpers.ts";
import { latentEmojiModel, latentModel } from "./latent_models.ts";
import { pixelPrompts } from "./server_helpers.ts";
import { evaluate } from "../runtime/eval/eval.ts";
import { decodeLatents } from "../runtime/vae_decode.ts";
import { CheckpointError } from "../runtime/errors.ts";
import { uploadTensor } from "../runtime/gpu/tensor.ts";
import { readPng, tensorToImage } from "../runtime/io/png.ts";
import { openSafetensors, writeSafetensors } from "../runtime/io/safetensors.ts";
import { loadPipeline } from "../runtime/pipeline.ts";
import { createRuntime } from "../runtime/gpu/device.ts";
import { loadVaeDecoder } from "../plugins/models/vae.ts";
import { parseVaeConfig } from "../plugins/models/vae_config.ts";

Deno.test("generate decodes a latent model's output with its vae/: the decoder's pixels", async () => {
  const dir = await latentModel(true);
  try {
    const emb = join(dir, "emb.safetensors");
    const data = Float32Array.from({ length: 5 * 32 }, (_, i) => Math.sin(i));
    await writeSafetensors(emb, { prompt_embeds: { dtype: "F32", shape: [1, 5, 32], data } });
    const [png, lat] = [join(dir, "x.png"), join(dir, "x.safetensors")];
    const r = await runCli([
      ...["generate", "--model", dir, "--caption-embeds", emb, "--steps", "2", "--guidance", "1"],
      ...["--out", png, "--save-latents", lat],
    ]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stderr.includes("VAE decode"), r.stderr);
    const tpng = join(dir, "t.png");
    const t = await runCli([
      ...["generate", "--model", dir, "--caption-embeds", emb, "--steps", "2", "--guidance", "1"],
      ...["--out", tpng, "--vae-tiling"],
    ]);
    assertEquals(t.code, 0, t.stderr);
    const img = await readPng(png);
    assertEquals([img.width, img.height], [32, 32]); // an 8 × 8 latent, 4 pixels a cell
    // The same pixels from the saved latents through the decoder alone.
    await withRuntime(async (rt) => {
      const cfg = parseVaeConfig(JSON.parse(await Deno.readTextFile(join(dir, "vae/config.json"))));
      const w = await openSafetensors(join(dir, "vae/diffusion_pytorch_model.safetensors"));
      const vae = await loadVaeDecoder(rt, w, cfg);
      w.close();
      const f = await openSafetensors(lat);
      const zs = await f.readF32("latents");
      const shape = f.info("latents").shape as [number, number, number, number];
      const z = uploadTensor(rt, zs, shape);
      f.close();
      const y = await runAndRead(rt, (rec) => vae.decode(rec, z));
      assertEquals(tensorToImage(y, 3, 32, 32).data, img.data);
      // --vae-tiling: the same latents decoded in blended tiles of 4 cells (sample_size 16).
      const tiled = await decodeLatents(rt, vae, zs, shape, { tiling: true });
      assertEquals(tensorToImage(tiled.images, 3, 32, 32).data, (await readPng(tpng)).data);
      assert(tiled.images.some((v, i) => v !== y[i]));
      z.release();
      vae.release();
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generate without a VAE: --out is a usage error naming --vae", async () => {
  const dir = await latentModel(false);
  try {
    const r = await runCli([
      "generate",
      "--model",
      dir,
      "--prompt",
      "x",
      "--out",
      join(dir, "x.png"),
    ]);
    assertEquals(r.code, 2, r.stderr);
    assert(r.stderr.includes("--vae PATH names one"), r.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "loadPipeline's vae: another folder's decoder, none, or one that does not fit",
  gpuTest,
  async () => {
    const dir = await latentModel(false);
    try {
      await withRuntime(async (rt) => {
        const p = await loadPipeline(rt, { path: dir, vae: `${FIXTURES}vae_tiny` });
        assertEquals([p.vae?.scale, p.pixelsPerLatent, p.makesImages], [4, 4, true]);
        p.release();
        const none = await loadPipeline(rt, { path: dir });
        assertEquals([none.vae, none.pixelsPerLatent, none.makesImages], [undefined, 8, false]);
        none.release();
        await assertRejects(
          () => loadPipeline(rt, { path: dir, vae: `${FIXTURES}vae_flux_legacy` }),
          CheckpointError,
          "has 16 latent channels, the transformer works on 4",
        );
        await assertRejects(
          () => loadPipeline(rt, { path: dir, vae: `${FIXTURES}pixart_tiny_sq` }),
          CheckpointError,
          "has no vae/config.json",
        );
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "eval scores a latent model's decoded images (PSNR, SSIM) against its reference",
  gpuTest,
  async () => {
    const dir = await latentEmojiModel(true);
    try {
      await withRuntime(async (rt) => {
        const [prompt] = await pixelPrompts();
        const r = await evaluate({
          model: dir,
          reference: dir,
          prompts: [prompt],
          seeds: [0, 1],
          steps: 1,
          runtime: rt,
          fidelity: false,
        });
        assertEquals(r.samples.samples.map((s) => [s.image?.width, s.image?.height]), [[32, 32], [
          32,
          32,
        ]]);
        assertEquals(r.comparison?.identical, 2);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "Pipeline.vaeProblem: the decoder's widest activation against the binding limit",
  gpuTest,
  async () => {
    const dir = await latentModel(true);
    // vae_tiny at an 8 × 8 latent holds a [32², 32] f32 tensor (128 KiB): over a 64 KiB cap.
    const rt = await createRuntime({ maxBindingBytes: 65536 });
    try {
      const p = await loadPipeline(rt, { path: dir });
      try {
        const why = p.vaeProblem();
        assert(why?.includes("a 32×32 image needs a 128 KiB tensor"), why);
        assertEquals(p.vaeProblem(4, 4), undefined); // [16², 32] f32: 32 KiB
        assertEquals(p.vaeProblem(undefined, undefined, { tiling: true }), undefined); // tiles of 4
      } finally {
        p.release();
      }
    } finally {
      rt.destroy();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "concurrent generate and decode calls on one runtime give the sequential results",
  gpuTest,
  async () => {
    const dir = await latentModel(true);
    try {
      await withRuntime(async (rt) => {
        const p = await loadPipeline(rt, { path: dir });
        try {
          const data = Float32Array.from({ length: 5 * 32 }, (_, i) => Math.cos(i));
          const req = (seed: number) => ({
            captionEmbeds: { embeds: data, shape: [1, 5, 32] as [number, number, number] },
            seed,
            steps: 3,
            guidance: 1,
          });
          const run = async (seed: number) => {
            const g = await p.generate(req(seed));
            return (await p.decode(g.latents, g.shape)).images;
          };
          const one = await run(1);
          const two = await run(2);
          // Three at once: each request's recordings must not share buffers with another's.
          const [a, b, c] = await Promise.all([run(1), run(2), run(1)]);
          assertEquals([a, b, c], [one, two, one]);
        } finally {
          p.release();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
