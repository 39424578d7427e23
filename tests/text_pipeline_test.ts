import { assert, assertEquals, assertRejects } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import { assertWithin, FIXTURES } from "./fixture_helpers.ts";
import { textEncoderModel } from "./latent_models.ts";
import { join } from "node:path";
import { CheckpointError } from "../runtime/errors.ts";
import { Prng } from "../runtime/io/prng.ts";
import { openSafetensors } from "../runtime/io/safetensors.ts";
import { loadPipeline } from "../runtime/pipeline.ts";
import { artifactMetadata } from "../runtime/quant/artifact_write.ts";

/** Row b of a [B, ...] fixture tensor. */
async function row(file: string, name: string, b: number): Promise<Float32Array> {
  const io = await openSafetensors(file);
  const all = await io.readF32(name);
  const B = io.info(name).shape[0]!;
  io.close();
  const n = all.length / B;
  return all.slice(b * n, (b + 1) * n);
}

Deno.test(
  "a PixArt folder with T5 samples from a prompt as from diffusers' encode_prompt embeddings",
  gpuTest,
  async () => {
    const dir = await textEncoderModel("pixart");
    const io = `${FIXTURES}text_pixart/io.safetensors`;
    const prompt = JSON.parse((await openSafetensors(io)).metadata["prompts"]!)[1];
    try {
      await withRuntime(async (rt) => {
        const pipe = await loadPipeline(rt, { path: dir });
        try {
          assertEquals([pipe.prompts?.kind, pipe.prompts?.length], ["t5", 120]);
          const base = { seed: 3, steps: 2, guidance: 4.5 };
          const fromPrompt = await pipe.generate({ ...base, prompt });
          const fromEmbeds = await pipe.generate({
            ...base,
            captionEmbeds: {
              embeds: await row(io, "prompt_embeds", 1),
              mask: await row(io, "prompt_attention_mask", 1),
              shape: [1, 120, 32],
              negative: {
                embeds: await row(io, "negative_prompt_embeds", 1),
                mask: await row(io, "negative_prompt_attention_mask", 1),
              },
            },
          });
          assertWithin(fromPrompt.latents, fromEmbeds.latents, 1e-4, "latents");
          // Guided without negatives: the T5's "" is the negative, as diffusers encodes it.
          const ownNegative = await pipe.generate({
            ...base,
            captionEmbeds: {
              embeds: await row(io, "prompt_embeds", 1),
              mask: await row(io, "prompt_attention_mask", 1),
              shape: [1, 120, 32],
            },
          });
          assertWithin(ownNegative.latents, fromEmbeds.latents, 1e-4, "own negative");
          // Two images: the first is the one above (the batch's noise starts with it); one "" negative.
          const two = await pipe.generate({ ...base, prompts: [prompt, "a blue cup"] });
          const n = fromPrompt.latents.length;
          assertWithin(two.latents.subarray(0, n), fromPrompt.latents, 1e-4, "first of a batch");
          const noise = new Prng(base.seed).normals(2 * n);
          const cup = await pipe.generate({
            ...base,
            prompt: "a blue cup",
            latents: noise.slice(n),
          });
          assertWithin(two.latents.subarray(n), cup.latents, 1e-4, "second of a batch");
          const long = await pipe.generate({
            ...base,
            prompt: "a red apple ".repeat(80),
            guidance: 1,
          });
          assertEquals(long.truncatedPrompts, [0]);
          // Embeddings of another length have no "" negative of theirs: the error says why.
          const short = {
            embeds: new Float32Array(100 * 32),
            shape: [1, 100, 32] as [number, number, number],
          };
          await assertRejects(
            () => pipe.generate({ ...base, captionEmbeds: short }),
            TypeError,
            "gives [120, 32], not [100, 32]",
          );
        } finally {
          pipe.release();
        }
        // PixArt-Σ's pipeline takes 300 tokens.
        await Deno.writeTextFile(
          join(dir, "model_index.json"),
          '{"_class_name": "PixArtSigmaPipeline"}',
        );
        const sigma = await loadPipeline(rt, { path: dir });
        assertEquals(sigma.prompts?.length, 300);
        sigma.release();
        const none = await loadPipeline(rt, { path: dir, textEncoder: false });
        assertEquals(none.prompts, undefined);
        await assertRejects(() => none.generate({ prompt: "x", steps: 1 }), TypeError, "caption");
        none.release();
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "a FLUX folder with CLIP + T5 samples from a prompt as from diffusers' encode_prompt embeddings",
  gpuTest,
  async () => {
    const dir = await textEncoderModel("flux");
    const io = `${FIXTURES}text_flux/io.safetensors`;
    const prompt = JSON.parse((await openSafetensors(io)).metadata["prompts"]!)[0];
    try {
      await withRuntime(async (rt) => {
        const pipe = await loadPipeline(rt, { path: dir, maxSequenceLength: 512 });
        try {
          assertEquals([pipe.prompts?.kind, pipe.prompts?.length], ["clip+t5", 512]);
          const base = { seed: 5, steps: 2, height: 4, width: 4 };
          const a = await pipe.generate({ ...base, prompt });
          const b = await pipe.generate({
            ...base,
            captionEmbeds: {
              embeds: await row(io, "prompt_embeds", 0),
              shape: [1, 512, 24],
              pooled: await row(io, "pooled_prompt_embeds", 0),
            },
          });
          assertWithin(a.latents, b.latents, 1e-4, "latents");
          assert(a.timings.encodeMs > 0);
        } finally {
          pipe.release();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "text encoders: a folder without them, or of the wrong width, is a CheckpointError",
  gpuTest,
  async () => {
    const dir = await textEncoderModel("pixart");
    try {
      await withRuntime(async (rt) => {
        await assertRejects(
          () =>
            loadPipeline(rt, {
              path: `${FIXTURES}pixart_tiny_rect`,
              textEncoder: `${FIXTURES}vae_tiny`,
            }),
          CheckpointError,
          "no T5 text encoder",
        );
        // text_pixart's T5 is 32 wide; pixart_tiny_rect takes 20-wide captions.
        await assertRejects(
          () => loadPipeline(rt, { path: `${FIXTURES}pixart_tiny_rect`, textEncoder: dir }),
          CheckpointError,
          "d_model 32",
        );
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("an artifact of a T5 folder carries no caption encoder (T5 stays in its folder)", async () => {
  const dir = await textEncoderModel("pixart");
  try {
    const tensors = {};
    const meta = await artifactMetadata(dir, "{}", tensors, undefined, undefined);
    assertEquals(Object.keys(tensors), []);
    assert(!Object.values(meta).some((v) => v.includes("T5")), "no encoder config in the metadata");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
