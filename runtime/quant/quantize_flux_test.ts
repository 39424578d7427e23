/**
 * FLUX through quantize → artifact → generate (issue 10, item 4) on the tiny fixture
 * tests/fixtures/flux_dev (2 double + 2 single blocks, a 3×5 image grid = 15 tokens, 7
 * text tokens): the family's keep-FP default, calibration on precomputed embeddings with
 * flow-euler (ARS rotations and PARO), the artifact's metadata, and a generation from it
 * checked against the FP32 run of the fixture (and refused by eval, which needs prompts).
 *
 * PARO on 15 image tokens is one 64-token block: the plan is made (one order per head,
 * the single block kept); the sparse path with several blocks and the text rows is
 * tested in plugins/attention/paro_flux_test.ts.
 */
import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { FluxParoAttention } from "../../plugins/attention/paro_flux.ts";
import { FluxModel } from "../../plugins/models/flux.ts";
import { generateSamples } from "../eval/eval.ts";
import { cosine } from "../eval/metrics.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { loadPipeline, type Pipeline } from "../pipeline.ts";
import { META, openArtifact } from "./artifact.ts";
import type { CalibrationEmbeds } from "./calibration_run.ts";
import { FLUX_KEEP_FP, keepPattern } from "./plan.ts";
import { quantizeModel, writeArtifact } from "./quantize.ts";

const FIXTURE = new URL("../../tests/fixtures/flux_dev", import.meta.url).pathname;
const IO = `${FIXTURE}/io.safetensors`;

/** The fixture's flow-run inputs (2 prompts) and its FP32 final latents (4 steps). */
async function fixtureRun(): Promise<
  { cal: CalibrationEmbeds; ref: Float32Array; guidance: number }
> {
  const f = await openSafetensors(IO);
  try {
    const shape = f.info("prompt_embeds").shape as [number, number, number];
    const lat = f.info("latents").shape;
    return {
      cal: {
        embeds: {
          embeds: await f.readF32("prompt_embeds"),
          shape,
          pooled: await f.readF32("pooled_prompt_embeds"),
        },
        latents: { data: await f.readF32("latents"), shape: [...lat] },
      },
      ref: await f.readF32("flow_latents"),
      guidance: (await f.readF32("guidance_scale"))[0],
    };
  } finally {
    f.close();
  }
}

/** The fixture's 4-step flow run from `pipe` (its noise, embeddings and size). */
async function fixtureGenerate(pipe: Pipeline, cal: CalibrationEmbeds, guidance: number) {
  const [, , H, W] = cal.latents!.shape;
  return await pipe.generate({
    captionEmbeds: cal.embeds,
    latents: cal.latents!.data,
    height: H,
    width: W,
    steps: 4,
    guidance,
  });
}

Deno.test("FLUX quantize without --calib-embeds: a rotation, PARO or GPTQ names the flag", async () => {
  const cases = [
    [{ rotation: "adaptive" }, "--rotation adaptive"],
    [{ attention: "paro", density: 0.5 }, "--attention paro"],
    [{ gptq: true }, "--gptq"],
  ] as const;
  for (const [o, what] of cases) {
    const e = await assertRejects(
      () => quantizeModel({ model: FIXTURE, quantizer: "tlq", wbits: 4, abits: 8, ...o }),
      RangeError,
      "--calib-embeds",
    );
    assert(e.message.startsWith(what), e.message);
  }
});

Deno.test("FLUX quantize data-free: the family's keep-FP default, every block linear quantized", async () => {
  const r = await quantizeModel({ model: FIXTURE, quantizer: "tlq", wbits: 4, abits: 8 });
  assertEquals(r.plan.settings.keepFp, [...FLUX_KEEP_FP]);
  assertEquals(r.plan.source.className, "FluxTransformer2DModel");
  assertEquals(r.metadata[META.family], "flux");
  const fp = r.layers.filter((l) => l.quantizer === "fp").map((l) => l.name);
  // 8 embedder / conditioning linears (guidance embedder included), norm_out.linear, proj_out.
  assertEquals(fp.length, 10, fp.join());
  for (const n of fp) assert(keepPattern(n, FLUX_KEEP_FP), n);
  for (const l of r.layers) {
    const block = /^(single_)?transformer_blocks\./.test(l.name);
    assertEquals(l.quantizer === "tlq", block, l.name);
  }
});

Deno.test(
  "FLUX W4A8 TLQ + ARS + PARO: calibrated on embeddings, the artifact generates close to FP32",
  gpuTest,
  async () => {
    const { cal, ref, guidance } = await fixtureRun();
    const dir = await Deno.makeTempDir({ prefix: "webdit_fluxq_" });
    const out = `${dir}/flux_w4a8.safetensors`;
    await withRuntime(async (rt) => {
      let calls = 0;
      const r = await quantizeModel({
        model: FIXTURE,
        quantizer: "tlq",
        wbits: 4,
        abits: 8,
        rotation: "adaptive",
        attention: "paro",
        density: 0.5,
        runtime: rt,
        calibration: { embeds: cal, steps: 2, cacheDir: false },
        onCalibration: () => calls++,
      });
      // 2 prompts (batch rows) × 2 steps, for the rotation statistics and for PARO.
      assertEquals(calls, 2 * 2 * 2);
      const c = r.plan.calibration!;
      assertEquals(c.sampler, "flow-euler");
      assertEquals(c.prompts, []);
      assert(/^[0-9a-f]{64}$/.test(String(c.embeds)), "the embeddings' hash keys the cache");
      const rotated = Object.values(r.plan.layers).filter((l) => l.rotation !== "none");
      assert(rotated.length > 0, "ARS rotated no layer");
      await writeArtifact(out, r);

      const a = await openArtifact(out);
      try {
        const m = a.file.metadata;
        assertEquals(m[META.family], "flux");
        assertEquals(a.plan.settings.keepFp, [...FLUX_KEEP_FP]);
        assert(m[META.schedulerConfig]?.includes("use_dynamic_shifting"), "scheduler config");
        const attn = JSON.parse(m[META.attention]);
        assertEquals(attn.plugin, "paro");
        assertEquals(attn.meta.form, "flux-joint");
        assertEquals([attn.meta.h, attn.meta.w, attn.meta.layers], [3, 5, 4]);
      } finally {
        a.close();
      }

      const pipe = await loadPipeline(rt, { path: out });
      try {
        assert(pipe.model instanceof FluxModel, "a FLUX pipeline");
        assert(pipe.model.selfAttention instanceof FluxParoAttention, "PARO's joint form");
        const res = await fixtureGenerate(pipe, cal, guidance);
        assert(res.latents.every(Number.isFinite), "non-finite latents");
        const noise = cal.latents!.data;
        const cos = cosine(res.latents, ref);
        // The change from the noise is what the model computed: compare it too.
        const d = (x: Float32Array) => x.map((v, i) => v - noise[i]);
        const cosD = cosine(d(res.latents), d(ref));
        assert(cos > 0.999, `W4A8 + PARO final latents vs FP32: cosine ${cos}`);
        assert(cosD > 0.99, `W4A8 + PARO latent change vs FP32: cosine ${cosD}`);
        // eval scores text prompts: a FLUX artifact is refused with a reason, not a crash.
        await assertRejects(
          () => generateSamples(pipe, { prompts: ["red apple"], steps: 1 }),
          TypeError,
          "has no text encoder",
        );
      } finally {
        pipe.release();
      }
    });
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test(
  "FLUX W4A8 TLQ + GPTQ: Gram matrices from the embeddings' run, lower output error, generates",
  gpuTest,
  async () => {
    const { cal, ref, guidance } = await fixtureRun();
    const dir = await Deno.makeTempDir({ prefix: "webdit_fluxg_" });
    const out = `${dir}/flux_w4a8_gptq.safetensors`;
    await withRuntime(async (rt) => {
      const r = await quantizeModel({
        model: FIXTURE,
        quantizer: "tlq",
        wbits: 4,
        abits: 8,
        gptq: true,
        runtime: rt,
        calibration: { embeds: cal, steps: 2, cacheDir: false },
      });
      assertEquals(r.plan.settings.gptq, true);
      const q = r.layers.filter((l) => l.quantizer !== "fp");
      const gain = q.reduce((s, l) => s + l.outSqnrDb! - l.outSqnrRtnDb!, 0) / q.length;
      assert(gain > 1, `mean output SQNR gain ${gain} dB over ${q.length} layers`);
      await writeArtifact(out, r);
      const pipe = await loadPipeline(rt, { path: out });
      try {
        const res = await fixtureGenerate(pipe, cal, guidance);
        const cos = cosine(res.latents, ref);
        assert(cos > 0.999, `W4A8 + GPTQ final latents vs FP32: cosine ${cos}`);
      } finally {
        pipe.release();
      }
    });
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test(
  "FLUX with centred inputs: image and text rows centred per sample, generates",
  gpuTest,
  async () => {
    const { cal, ref, guidance } = await fixtureRun();
    const dir = await Deno.makeTempDir({ prefix: "webdit_fluxc_" });
    await withRuntime(async (rt) => {
      const noise = cal.latents!.data;
      const change = async (center?: "mean") => {
        const r = await quantizeModel({
          model: FIXTURE,
          quantizer: "uniform",
          wbits: 8,
          abits: 4,
          center,
        });
        const out = `${dir}/${center ?? "plain"}.safetensors`;
        await writeArtifact(out, r);
        const pipe = await loadPipeline(rt, { path: out });
        try {
          const res = await fixtureGenerate(pipe, cal, guidance);
          assert(res.latents.every(Number.isFinite), "non-finite latents");
          return cosine(res.latents.map((v, i) => v - noise[i]), ref.map((v, i) => v - noise[i]));
        } finally {
          pipe.release();
        }
      };
      const plain = await change();
      const centred = await change("mean");
      // FLUX's adaLN shifts are per sample too (measured: 1 − cosine 1.5e-3 plain, 0.93e-3 centred).
      assert(1 - centred < 1 - plain, `latent change vs FP32: centred ${centred}, plain ${plain}`);
    });
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test(
  "FLUX with CFG delta: acts only under true CFG, where it changes the run",
  gpuTest,
  async () => {
    const { cal } = await fixtureRun();
    const [, L, J] = cal.embeds.shape;
    const P = cal.embeds.pooled!.length / 2;
    const [, C, H, W] = cal.latents!.shape;
    // One image: the fixture's first prompt, its second as the negative one.
    const embeds = {
      embeds: cal.embeds.embeds.slice(0, L * J),
      shape: [1, L, J] as [number, number, number],
      pooled: cal.embeds.pooled!.slice(0, P),
      negative: { embeds: cal.embeds.embeds.slice(L * J), pooled: cal.embeds.pooled!.slice(P) },
    };
    const dir = await Deno.makeTempDir({ prefix: "webdit_fluxcfgd_" });
    await withRuntime(async (rt) => {
      const run = async (cfgDelta: boolean) => {
        const r = await quantizeModel({
          model: FIXTURE,
          quantizer: "uniform",
          wbits: 8,
          abits: 4,
          cfgDelta,
        });
        assertEquals(r.plan.settings.cfgDelta, cfgDelta || undefined);
        const out = `${dir}/${cfgDelta}.safetensors`;
        await writeArtifact(out, r);
        const pipe = await loadPipeline(rt, { path: out });
        try {
          const gen = async (trueCfg: number) =>
            (await pipe.generate({
              captionEmbeds: embeds,
              latents: cal.latents!.data.slice(0, C * H * W),
              height: H,
              width: W,
              steps: 2,
              guidance: 3.5,
              trueCfg,
            })).latents;
          return [await gen(1), await gen(4)];
        } finally {
          pipe.release();
        }
      };
      const [plain1, plain4] = await run(false);
      const [delta1, delta4] = await run(true);
      assertEquals(Array.from(delta1), Array.from(plain1));
      assert(delta4.every(Number.isFinite), "non-finite latents");
      assert(delta4.some((v, i) => v !== plain4[i]), "CFG delta changed nothing under true CFG");
    });
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test(
  "FLUX with a low-rank branch (refit; hessian with GPTQ): generates, nearer FP32 than without (W3A8)",
  gpuTest,
  async () => {
    const { cal, ref, guidance } = await fixtureRun();
    const dir = await Deno.makeTempDir({ prefix: "webdit_flux_lr_" });
    await withRuntime(async (rt) => {
      const noise = cal.latents!.data;
      const d = (x: Float32Array) => x.map((v, i) => v - noise[i]);
      const cos: number[] = [];
      // No branch; a refitted rank-8 one; with GPTQ, one fitted in the inputs' norm (hessian).
      for (const [lowRank, gptq] of [[0, false], [8, false], [8, true]] as const) {
        const r = await quantizeModel({
          model: FIXTURE,
          quantizer: "uniform",
          wbits: 3,
          abits: 8,
          lowRank,
          gptq,
          runtime: rt,
          ...(gptq ? { calibration: { embeds: cal, steps: 2, cacheDir: false as const } } : {}),
        });
        assertEquals(
          r.plan.settings.lowRankFit,
          lowRank ? (gptq ? "hessian" : "refit") : undefined,
        );
        const out = `${dir}/r${lowRank}${gptq ? "g" : ""}.safetensors`;
        await writeArtifact(out, r);
        const pipe = await loadPipeline(rt, { path: out });
        try {
          const res = await fixtureGenerate(pipe, cal, guidance);
          assert(res.latents.every(Number.isFinite), "non-finite latents");
          cos.push(cosine(d(res.latents), d(ref)));
        } finally {
          pipe.release();
        }
      }
      assert(
        cos[1] > cos[0] && cos[2] > cos[0],
        `latent change vs FP32: cosine ${cos[0]} without, R 8 ${cos[1]}, R 8 + GPTQ ${cos[2]}`,
      );
    });
    await Deno.remove(dir, { recursive: true });
  },
);
