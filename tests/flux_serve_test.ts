/**
 * FLUX over HTTP: a FLUX folder with its CLIP + T5 (and a VAE) is served like a PixArt one,
 * with FLUX's geometry (sizes a multiple of the 2×2 packing, its default 1024-pixel-class
 * size), its one sampler, and its guidance embedded rather than a CFG pair; its image is the
 * pipeline's own. A FLUX model that cannot encode prompts (no encoders, or an artifact
 * without --text-encoder) is refused at start, naming what to add.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import { textEncoderModel } from "./latent_models.ts";
import { FIXTURES } from "./fixture_helpers.ts";
import { makeApp, post } from "./server_helpers.ts";
import { decodePng } from "../runtime/io/png.ts";
import { imagePngBase64 } from "../runtime/server/images.ts";
import { loadEntry, ModelCatalog } from "../runtime/server/models.ts";
import { largestTensorBytes } from "../runtime/server/checks.ts";
import { quantizeModel, writeArtifact } from "../runtime/quant/quantize.ts";

function b64Bytes(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

Deno.test(
  "serve: a FLUX folder with its text encoders generates the pipeline's image",
  gpuTest,
  async () => {
    const dir = await textEncoderModel("flux", true);
    try {
      await withRuntime(async (rt) => {
        const e = await loadEntry(rt, { path: dir, name: "flux" });
        try {
          const s = makeApp(rt, [e], { steps: 2 });
          const m = (await (await s.app.request("http://localhost/v1/models")).json()).data[0];
          // The tiny VAE's 4 pixels a cell: 128 cells (diffusers' default) are 512 pixels.
          assertEquals(
            [m.default_size, m.size_multiple, m.samplers, m.default_sampler, m.caption_encoder],
            ["512x512", 8, ["flow-euler"], "flow-euler", true],
          );
          assertEquals(m.default_guidance, 3.5);

          const prompt = "a red apple on a table";
          const res = await s.app.request(post({ prompt, size: "32x24", seed: 5 }));
          const body = await res.json();
          assertEquals(res.status, 200, JSON.stringify(body));
          assertEquals([body.size, body.sampler, body.guidance], ["32x24", "flow-euler", 3.5]);
          // usage counts T5's tokens of the prompt (6 words and the end of sequence).
          const used = body.usage.input_tokens;
          assert(
            used > 6 && used < 30 && body.usage.total_tokens === used,
            JSON.stringify(body.usage),
          );
          const png = decodePng(b64Bytes(body.data[0].b64_json));
          assertEquals([png.width, png.height], [32, 24]);
          // The same request through the pipeline: the same bytes.
          const r = await e.pipeline.generate({ prompt, seed: 5, steps: 2, height: 6, width: 8 });
          const d = await e.pipeline.decode(r.latents, r.shape);
          assertEquals(body.data[0].b64_json, imagePngBase64(d.images, 0, 3, 24, 32));

          assertEquals(body.prompt_truncated, false);
          const two = await s.app.request(post({ prompt, size: "16x16", n: 2 }));
          assertEquals([two.status, (await two.json()).data.length], [200, 2]);
          // Past CLIP's 77 tokens the prompt is cut, as diffusers does, and the answer says so.
          const long = await s.app.request(
            post({ prompt: "a red apple on a table ".repeat(20), size: "16x16" }),
          );
          assertEquals((await long.json()).prompt_truncated, true);
          for (
            const [req, param] of [
              [{ prompt, sampler: "ddim" }, "sampler"],
              [{ prompt, size: "36x36" }, "size"], // not a multiple of 8 pixels
            ] as const
          ) {
            const bad = await s.app.request(post(req));
            const err = (await bad.json()).error;
            assertEquals([bad.status, err.param], [400, param], err.message);
          }
          s.close();
        } finally {
          e.pipeline.release();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "serve: FLUX guidance is embedded, not a CFG pair (true CFG is); its text tokens count",
  gpuTest,
  async () => {
    const dir = await textEncoderModel("flux"); // no VAE: the hidden states are the widest
    try {
      await withRuntime(async (rt) => {
        const e = await loadEntry(rt, { path: dir, name: "flux", maxSequenceLength: 16 });
        try {
          // D = 48: hidden [(4·4 image + 16 text) tokens, 48] f32, whatever the guidance.
          const b = { images: 1, height: 8, width: 8 };
          assertEquals(largestTensorBytes(e, { ...b, guidance: 1 }), (16 + 16) * 48 * 4);
          assertEquals(
            largestTensorBytes(e, { ...b, guidance: 7 }),
            largestTensorBytes(e, { ...b, guidance: 1 }),
          );
          // True CFG (true_cfg > 1 with a negative prompt) is a CFG pair: twice the rows.
          assertEquals(
            largestTensorBytes(e, { ...b, guidance: 1, trueCfg: 3 }),
            2 * largestTensorBytes(e, { ...b, guidance: 1 }),
          );
        } finally {
          e.pipeline.release();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "serve: a FLUX model that cannot encode prompts is refused, naming --text-encoder",
  gpuTest,
  async () => {
    const dir = await textEncoderModel("flux", true);
    const tmp = await Deno.makeTempDir({ prefix: "webdit_flux_serve_" });
    const artifact = `${tmp}/flux_w8.safetensors`;
    try {
      await writeArtifact(
        artifact,
        await quantizeModel({ model: dir, quantizer: "uniform", wbits: 8, abits: 16 }),
      );
      await withRuntime(async (rt) => {
        for (const o of [{ path: `${FIXTURES}flux_dev` }, { path: artifact }]) {
          const e = await loadEntry(rt, o);
          try {
            const err = assertThrows(() => new ModelCatalog([e]), RangeError);
            assert(err.message.includes("no FLUX text encoders"), err.message);
            assert(err.message.includes("--text-encoder"), err.message);
          } finally {
            e.pipeline.release();
          }
        }
        // serve --text-encoder / --vae: the artifact takes its source folder's.
        const e = await loadEntry(rt, { path: artifact, textEncoder: dir, vae: dir });
        try {
          const s = makeApp(rt, [e], { steps: 1 });
          const res = await s.app.request(post({ prompt: "a cup", size: "16x16" }));
          assertEquals(res.status, 200, await res.text());
          s.close();
        } finally {
          e.pipeline.release();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(tmp, { recursive: true });
    }
  },
);
