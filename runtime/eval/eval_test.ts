import { join } from "node:path";
import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { openSafetensors, writeSafetensors } from "../io/safetensors.ts";
import { Prng } from "../io/prng.ts";
import { loadPipeline } from "../pipeline.ts";
import { compareSamples, evaluate, generateSamples, parsePromptList } from "./eval.ts";
import { psnr, ssim } from "./metrics.ts";
import { runCli } from "../../tests/cli_helpers.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;
const PROMPTS = ["red apple", "happy face with smiling eyes"];

/** A copy of the fixture model whose transformer weights are scaled by (1 + scale·N(0, 1)). */
async function perturbedCopy(scale: number, seed: number): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webdit-eval-" });
  for (const sub of ["text_encoder", "tokenizer", "transformer"]) {
    await Deno.mkdir(join(dir, sub));
    for await (const e of Deno.readDir(join(FIXTURE, sub))) {
      await Deno.copyFile(join(FIXTURE, sub, e.name), join(dir, sub, e.name));
    }
  }
  const path = join(dir, "transformer", "diffusion_pytorch_model.safetensors");
  const f = await openSafetensors(path);
  const out: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  const rng = new Prng(seed);
  for (const [name, t] of f.tensors) {
    const w = await f.readF32(name);
    const n = rng.normals(w.length);
    for (let i = 0; i < w.length; i++) w[i] *= 1 + scale * n[i];
    out[name] = { dtype: "F32", shape: [...t.shape], data: w };
  }
  f.close();
  await writeSafetensors(path, out);
  return dir;
}

Deno.test("parsePromptList: lines, blanks and comments", () => {
  assertEquals(parsePromptList("a b\n\n# note\n  c  \r\nd"), ["a b", "c", "d"]);
});

Deno.test(
  "evaluate: the fixture against itself is identical (PSNR ∞, SSIM 1, cosine 1)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const r = await evaluate({
        model: FIXTURE,
        reference: FIXTURE,
        prompts: PROMPTS,
        seeds: [0, 1],
        steps: 3,
        runtime: rt,
      });
      const c = r.comparison!;
      assertEquals(r.samples.samples.length, 4);
      assertEquals(c.psnr, Infinity);
      assertEquals(c.psnrMin, Infinity);
      assertEquals(c.identical, 4);
      assertAlmostEquals(c.ssim, 1, 1e-12);
      assertAlmostEquals(c.cosine, 1, 1e-6);
      assert(r.fidelity === undefined && /16×16/.test(r.fidelitySkipped ?? ""), r.fidelitySkipped);
      // Different seeds give different images (the comparison is not trivially equal).
      const [a, b] = r.samples.samples;
      assert(psnr(a.image!.data, b.image!.data, 255) < 30, "seeds 0 and 1 should differ");
      if (rt.info.f16) {
        // dtype applies to the model only: the reference stays f32 (the FP32 model).
        const h = await evaluate({
          model: FIXTURE,
          reference: r.referenceSamples,
          dtype: "f16",
          prompts: PROMPTS,
          seeds: [0, 1],
          steps: 3,
          runtime: rt,
        });
        const c16 = h.comparison!;
        assert(c16.identical < 4 && c16.psnr > 40, `f16 vs f32: PSNR ${c16.psnr}`);
      }
    });
  },
);

Deno.test(
  "evaluate: fidelity required on a model that does not draw 64×64 emoji",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      let err: unknown;
      try {
        await evaluate({ model: FIXTURE, prompts: PROMPTS, steps: 1, runtime: rt, fidelity: true });
      } catch (e) {
        err = e;
      }
      assert(err instanceof RangeError && /64×64/.test(err.message), String(err));
    });
  },
);

Deno.test(
  "evaluate: a perturbed reference scores below ∞, more noise scores lower",
  gpuTest,
  async () => {
    const small = await perturbedCopy(0.002, 1);
    const large = await perturbedCopy(0.05, 2);
    try {
      await withRuntime(async (rt) => {
        const base = await evaluate({ model: FIXTURE, prompts: PROMPTS, steps: 3, runtime: rt });
        const rs = await evaluate({
          model: FIXTURE,
          reference: small,
          prompts: PROMPTS,
          steps: 3,
          runtime: rt,
        });
        // A reference given as samples of an earlier run is reused, not regenerated.
        const rl = await evaluate({
          model: large,
          reference: base.samples,
          prompts: PROMPTS,
          steps: 3,
          runtime: rt,
        });
        const cs = rs.comparison!, cl = rl.comparison!;
        assert(Number.isFinite(cs.psnr) && cs.psnr > 30, `small noise: PSNR ${cs.psnr}`);
        assert(cl.psnr < cs.psnr, `PSNR large ${cl.psnr} should be < small ${cs.psnr}`);
        assert(cl.ssim < cs.ssim && cs.ssim < 1, `SSIM ${cl.ssim} < ${cs.ssim} < 1`);
        assert(cl.cosine < cs.cosine && cs.cosine < 1, `cosine ${cl.cosine} < ${cs.cosine} < 1`);
        assertEquals(cs.identical, 0);
        // The figures are the metrics of the images themselves.
        const m = rs.samples.samples[1], r = rs.referenceSamples!.samples[1];
        assertAlmostEquals(cs.images[1].psnr, psnr(m.image!.data, r.image!.data, 255), 1e-12);
        assertAlmostEquals(cs.images[1].ssim, ssim(m.image!, r.image!), 1e-12);
        assertAlmostEquals(cs.psnr, (cs.images[0].psnr + cs.images[1].psnr) / 2, 1e-12);
        // Samples of other settings are refused.
        assertThrows(
          () => compareSamples(rs.samples, { ...base.samples, steps: 4 }),
          RangeError,
          "steps",
        );
      });
    } finally {
      await Deno.remove(small, { recursive: true });
      await Deno.remove(large, { recursive: true });
    }
  },
);

Deno.test(
  "generateSamples: the image of (prompt, seed) is generate's; other batches agree",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const pipe = await loadPipeline(rt, { path: FIXTURE });
      try {
        const o = { prompts: PROMPTS, seeds: [3, 7], steps: 2 };
        const b1 = await generateSamples(pipe, { ...o, batch: 1 });
        const b3 = await generateSamples(pipe, { ...o, batch: 3 });
        const one = await pipe.generate({ prompt: PROMPTS[1], seed: 7, steps: 2 });
        assertEquals(b1.samples.map((s) => [s.prompt, s.seed]), [
          [PROMPTS[0], 3],
          [PROMPTS[0], 7],
          [PROMPTS[1], 3],
          [PROMPTS[1], 7],
        ]);
        assertEquals(Array.from(b1.samples[3].latents), Array.from(one.latents));
        // Steady-state step time: steps after each batch's first, 4 and 2 batches of 2 steps.
        assert(b1.steadyStepMs > 0 && b1.steadyStepMs < b1.ms / 4, `${b1.steadyStepMs}`);
        assert(b3.steadyStepMs > 0 && b3.steadyStepMs < b3.ms / 2, `${b3.steadyStepMs}`);
        for (let i = 0; i < 4; i++) {
          const d = b1.samples[i].latents.reduce(
            (m, v, k) => Math.max(m, Math.abs(v - b3.samples[i].latents[k])),
            0,
          );
          // Other batches change the GEMM shapes, so f32 sums round differently (seen: 1.2e-4).
          assert(d <= 1e-3, `sample ${i}: batch 1 vs 3 differ by ${d}`);
        }
      } finally {
        pipe.release();
      }
    });
  },
);

Deno.test("eval command: --json last line on the fixture", gpuTest, async () => {
  const prompts = await Deno.makeTempFile({ suffix: ".txt" });
  await Deno.writeTextFile(prompts, "red apple\n");
  try {
    const out = await runCli([
      ...["eval", "--model", FIXTURE, "--reference", FIXTURE],
      ...["--prompts", prompts, "--steps", "2", "--json"],
    ]);
    const err = out.stderr;
    assertEquals(out.code, 0, err);
    const lines = out.stdout.trim().split("\n");
    const j = JSON.parse(lines[lines.length - 1]);
    assertEquals([j.images, j.steps, j.psnr, j.ssim, j.identical], [1, 2, null, 1, 1]);
    assert(j.fidelity === null && typeof j.fidelity_skipped === "string", err);
    const bad = await runCli(["eval", "--seeds", "0"]);
    assertEquals(bad.code, 2);
  } finally {
    await Deno.remove(prompts);
  }
});

Deno.test(
  "evaluate: both models sample at the model's defaults; a reference with other defaults is noted",
  gpuTest,
  async () => {
    const dir = await perturbedCopy(0, 0); // the fixture's weights, its own folder
    try {
      await Deno.writeTextFile(
        join(dir, "model_index.json"),
        JSON.stringify({ webdit: { default_steps: 2, default_guidance: 2 } }),
      );
      await withRuntime(async (rt) => {
        const o = { model: dir, reference: FIXTURE, prompts: PROMPTS.slice(0, 1), runtime: rt };
        const r = await evaluate(o);
        assertEquals([r.settings.steps, r.settings.guidance], [2, 2]);
        assertEquals(r.referenceSamples!.guidance, 2);
        assertEquals(r.notes, [
          "both models sampled with the model's steps 2; the reference's own default is 20 (give --steps to choose)",
          "both models sampled with the model's guidance 2; the reference's own default is 4.5 (give --guidance to choose)",
        ]);
        const given = await evaluate({ ...o, steps: 2, guidance: 2 });
        assertEquals(given.notes, []);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
