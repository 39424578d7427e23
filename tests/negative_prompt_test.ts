/**
 * Negative prompts (diffusers' `negative_prompt`): PixArt's negative caption instead of ""
 * (a real T5 and the bundled encoder), FLUX's only with true CFG, and the API's
 * `negative_prompt` (a 400 naming it where the model cannot take it).
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import { assertWithin } from "./fixture_helpers.ts";
import { textEncoderModel } from "./latent_models.ts";
import { makeApp, pixelEntry, pixelPrompts, post } from "./server_helpers.ts";
import { loadPipeline } from "../runtime/pipeline.ts";
import { generateSamples } from "../runtime/eval/samples.ts";
import { loadEntry } from "../runtime/server/models.ts";

function differ(a: Float32Array, b: Float32Array): boolean {
  return a.some((v, i) => Math.abs(v - b[i]) > 1e-3);
}

Deno.test("negative prompt: PixArt's T5 encodes it as the negative caption", gpuTest, async () => {
  const dir = await textEncoderModel("pixart");
  try {
    await withRuntime(async (rt) => {
      const pipe = await loadPipeline(rt, { path: dir });
      try {
        const base = { prompt: "a red apple", seed: 1, steps: 2, guidance: 4.5 };
        const plain = await pipe.generate(base);
        const empty = await pipe.generate({ ...base, negativePrompt: "" });
        assertWithin(empty.latents, plain.latents, 1e-6, '"" is the default');
        const neg = await pipe.generate({ ...base, negativePrompt: "A Blue Cup " });
        assert(differ(neg.latents, plain.latents), "the negative prompt changed nothing");
        // eval's samples take it too.
        const set = await generateSamples(pipe, {
          prompts: [base.prompt],
          seeds: [base.seed],
          steps: 2,
          guidance: 4.5,
          negativePrompt: "a blue cup",
          batch: 1,
        });
        assertWithin(set.samples[0].latents, neg.latents, 1e-5, "eval's samples");
        // The same as the prompt's embeddings with the negative's as negative_prompt_embeds.
        const p = await pipe.encodePrompts([base.prompt]);
        const n = await pipe.encodePrompts(["a blue cup"]); // T5 input: lower().strip()
        const embeds = { ...p.embeds, negative: { embeds: n.embeds.embeds, mask: n.embeds.mask } };
        const viaEmbeds = await pipe.generate({
          ...base,
          prompt: undefined,
          captionEmbeds: embeds,
        });
        assertWithin(neg.latents, viaEmbeds.latents, 1e-5, "negative prompt vs embeddings");
        await assertRejects(
          () =>
            pipe.generate({
              ...base,
              prompt: undefined,
              captionEmbeds: embeds,
              negativePrompt: "x",
            }),
          TypeError,
          "not both",
        );
      } finally {
        pipe.release();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("negative prompt: FLUX takes it only with true CFG", gpuTest, async () => {
  const dir = await textEncoderModel("flux");
  try {
    await withRuntime(async (rt) => {
      const pipe = await loadPipeline(rt, { path: dir });
      try {
        const base = { prompt: "a red apple", seed: 2, steps: 2, height: 8, width: 8 };
        const plain = await pipe.generate(base);
        // true_cfg_scale 1: FluxPipeline ignores the negative prompt.
        const ignored = await pipe.generate({ ...base, negativePrompt: "a blue cup" });
        assertWithin(ignored.latents, plain.latents, 1e-6, "ignored without true CFG");
        const cfg = await pipe.generate({ ...base, negativePrompt: "a blue cup", trueCfg: 3 });
        assert(differ(cfg.latents, plain.latents), "true CFG with a negative changed nothing");
      } finally {
        pipe.release();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "negative_prompt and true_cfg in the API: the bundled encoder's words, FLUX's true CFG; 400s",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const pixel = await pixelEntry(rt);
      const dir = await textEncoderModel("flux", true);
      const flux = await loadEntry(rt, { path: dir, name: "flux" });
      try {
        const s = makeApp(rt, [pixel, flux], { steps: 2 });
        const [prompt, other] = await pixelPrompts();
        const body = { prompt, seed: 4, model: "pixel" };
        const plain = await (await s.app.request(post(body))).json();
        const res = await s.app.request(post({ ...body, negative_prompt: other }));
        const neg = await res.json();
        assertEquals(res.status, 200, JSON.stringify(neg));
        assert(neg.data[0].b64_json !== plain.data[0].b64_json, "the negative changed nothing");
        for (
          const [req, why] of [
            [{ ...body, negative_prompt: "zzqx" }, "vocabulary"],
            [{ prompt: "a cup", model: "flux", negative_prompt: "x" }, "add 'true_cfg' > 1"],
            [{ ...body, negative_prompt: 3 }, "must be a string"],
          ] as const
        ) {
          const r = await s.app.request(post(req));
          const e = (await r.json()).error;
          assertEquals([r.status, e.param], [400, "negative_prompt"], e.message);
          assert(e.message.includes(why), e.message);
        }
        for (
          const [req, why] of [
            [{ ...body, true_cfg: 2 }, "not a FLUX model"],
            [{ prompt: "a cup", model: "flux", true_cfg: 2 }, "needs a 'negative_prompt'"],
          ] as const
        ) {
          const r = await s.app.request(post(req));
          const e = (await r.json()).error;
          assertEquals([r.status, e.param], [400, "true_cfg"], e.message);
          assert(e.message.includes(why), e.message);
        }
        // FLUX's true CFG: the negative prompt's image differs from the plain one.
        const fbody = { prompt: "a red apple", model: "flux", size: "16x16", seed: 5 };
        const fplain = await (await s.app.request(post(fbody))).json();
        const fres = await s.app.request(post({ ...fbody, negative_prompt: "a cup", true_cfg: 3 }));
        const fneg = await fres.json();
        assertEquals([fres.status, fneg.true_cfg], [200, 3], JSON.stringify(fneg));
        assert(fneg.data[0].b64_json !== fplain.data[0].b64_json, "true CFG changed nothing");
        s.close();
      } finally {
        pixel.pipeline.release();
        flux.pipeline.release();
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
);
