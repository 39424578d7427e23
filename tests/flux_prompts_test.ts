/**
 * FLUX from text prompts beyond generate: quantize calibrates a rotation on prompts encoded by
 * the folder's CLIP + T5 (no --calib-embeds), eval scores a FLUX artifact against its FP32
 * folder (the artifact takes the reference's encoders and VAE), and calibration caches are
 * keyed by the encoders that made the embeddings.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import { runCli } from "./cli_helpers.ts";
import { FIXTURES } from "./fixture_helpers.ts";
import { textEncoderModel } from "./latent_models.ts";
import { evaluate } from "../runtime/eval/eval.ts";
import { loadPipeline } from "../runtime/pipeline.ts";
import { calibrate } from "../runtime/quant/calibrate.ts";
import { CAPTION_CALIBRATION_PROMPTS } from "../runtime/quant/calibration_run.ts";

function lastJson(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

Deno.test(
  "quantize + eval a FLUX folder from prompts: rotation and PARO calibrated by its own encoders, at a chosen size",
  gpuTest,
  async () => {
    const dir = await textEncoderModel("flux", true);
    const tmp = await Deno.makeTempDir({ prefix: "webdit_flux_prompts_" });
    const out = `${tmp}/flux_w4a8_hadamard.safetensors`;
    try {
      const q = await runCli([
        "quantize",
        ...["--model", dir, "--quantizer", "tlq", "--wbits", "4", "--abits", "8"],
        ...["--rotation", "hadamard", "--calib-prompts", "2", "--calib-steps", "2"],
        // PARO plans one image grid: calibrated at 8×8 latent cells (8 pixels a cell without a
        // VAE), the size eval samples below (32 pixels through the tiny VAE's 4 a cell).
        ...[
          "--attention",
          "paro",
          "--density",
          "0.5",
          "--calib-height",
          "64",
          "--calib-width",
          "64",
        ],
        ...["--out", out, "--json"],
      ]);
      assertEquals(q.code, 0, q.stderr);
      await Deno.writeTextFile(`${tmp}/prompts.txt`, "a red apple\na blue cup on a table\n");
      const e = await runCli([
        "eval",
        ...["--model", out, "--reference", dir, "--prompts", `${tmp}/prompts.txt`],
        ...["--steps", "2", "--height", "32", "--width", "32", "--fidelity", "off", "--json"],
      ]);
      assertEquals(e.code, 0, e.stderr);
      const j = lastJson(e.stdout);
      assertEquals([j.images, j.sampler, j.latent_shape], [2, "flow-euler", [4, 8, 8]]);
      // A 4-bit model differs from FP32, but it is the same picture.
      assert(typeof j.psnr === "number" && j.psnr > 15 && j.identical === 0, JSON.stringify(j));
      assert((j.cosine as number) > 0.9, JSON.stringify(j));
      const bad = await runCli([
        "eval",
        ...["--model", out, "--height", "30", "--prompts", `${tmp}/prompts.txt`],
        ...["--text-encoder", dir, "--steps", "1", "--fidelity", "off"],
      ]);
      assertEquals(bad.code, 1, bad.stderr);
      assert(bad.stderr.includes("height must be a positive multiple of 16 pixels"), bad.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

Deno.test(
  "eval: a FLUX folder against itself is identical; without encoders it is refused",
  gpuTest,
  async () => {
    const dir = await textEncoderModel("flux", true);
    try {
      await withRuntime(async (rt) => {
        const r = await evaluate({
          model: dir,
          reference: dir,
          prompts: ["a red apple", "a blue cup"],
          steps: 2,
          height: 32,
          width: 16,
          fidelity: false,
          runtime: rt,
        });
        assertEquals(r.comparison?.identical, 2);
        assertEquals(r.samples.shape, [4, 8, 4]); // the tiny VAE: 4 pixels a cell
        const bare = await loadPipeline(rt, { path: `${FIXTURES}flux_dev` });
        try {
          await assertRejects(
            () => evaluate({ model: bare, prompts: ["a cup"], steps: 1, runtime: rt }),
            TypeError,
            "--text-encoder",
          );
        } finally {
          bare.release();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test(
  "calibrate: FLUX prompts through --text-encoder; the cache is keyed by the encoders",
  gpuTest,
  async () => {
    const dir = await textEncoderModel("flux");
    const cacheDir = await Deno.makeTempDir({ prefix: "webdit_flux_calib_" });
    try {
      await withRuntime(async (rt) => {
        const base = { path: `${FIXTURES}flux_dev`, prompts: ["a red apple"], steps: 1, cacheDir };
        await assertRejects(() => calibrate(rt, base), RangeError, "--text-encoder PATH");
        const a = await calibrate(rt, { ...base, textEncoder: dir });
        assertEquals(a.settings.textEncoder?.length, 512);
        assert(/^[0-9a-f]{64}$/.test(a.settings.textEncoder!.sha256));
        assert(a.layers.size > 0);
        const b = await calibrate(rt, { ...base, textEncoder: dir, maxSequenceLength: 16 });
        assertEquals(b.settings.textEncoder?.length, 16);
        // Forced-f16 encoder weights key their own statistics ("auto" adds nothing to the key).
        const c = await calibrate(rt, { ...base, textEncoder: dir, textEncoderDtype: "f16" });
        assertEquals([a.settings.textEncoder?.weights, c.settings.textEncoder?.weights], [
          undefined,
          "f16",
        ]);
        // Without prompts: the built-in captions (a real checkpoint's encoders), not emoji names.
        const own = await calibrate(rt, {
          ...base,
          prompts: undefined,
          textEncoder: dir,
          height: 16,
          width: 16,
        });
        assertEquals(own.settings.prompts, [...CAPTION_CALIBRATION_PROMPTS]);
        const files = [];
        for await (const f of Deno.readDir(cacheDir)) files.push(f.name);
        assertEquals(files.length, 4, files.join());
        // The same run again comes from the cache.
        const again = await calibrate(rt, { ...base, textEncoder: dir, maxSequenceLength: 16 });
        assertEquals(again.settings, b.settings);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(cacheDir, { recursive: true });
    }
  },
);
