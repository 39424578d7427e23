import { assert, assertEquals, assertRejects } from "../tests/assert.ts";
import { gpuTest, withRuntime } from "../tests/gpu.ts";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { loadPipeline } from "./pipeline.ts";
import { PIXART_SAMPLING, type SamplingDefaults } from "./model_defaults.ts";
import type { Runtime } from "./gpu/device.ts";
import { CheckpointError } from "./errors.ts";
import { META } from "./quant/artifact.ts";
import { quantizeModel, writeArtifact } from "./quant/quantize.ts";

const FIXTURE = new URL("../tests/fixtures/pixart_pixel", import.meta.url).pathname;

/** The defaults of the pipeline at `path` (loaded, read, released). */
async function defaultsAt(rt: Runtime, path: string): Promise<SamplingDefaults> {
  const pipe = await loadPipeline(rt, { path });
  try {
    return pipe.defaults;
  } finally {
    pipe.release();
  }
}

Deno.test(
  "pipeline: a request without steps, guidance or sampler gets the model's own defaults",
  gpuTest,
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      cpSync(FIXTURE, dir, { recursive: true });
      await withRuntime(async (rt) => {
        assertEquals(await defaultsAt(rt, dir), PIXART_SAMPLING); // no model_index.json
        await Deno.writeTextFile(
          join(dir, "model_index.json"),
          JSON.stringify({
            webdit: { default_steps: 2, default_guidance: 2, default_sampler: "ddim" },
          }),
        );
        const pipe = await loadPipeline(rt, { path: dir });
        try {
          assertEquals(pipe.defaults, { steps: 2, guidance: 2, sampler: "ddim" });
          const req = { prompt: "red apple", seed: 3 };
          const own = await pipe.generate(req);
          assertEquals(own.timings.stepMs.length, 2);
          const explicit = await pipe.generate({ ...req, steps: 2, guidance: 2, sampler: "ddim" });
          assertEquals(own.latents, explicit.latents);
          const other = await pipe.generate({ ...req, guidance: 4.5 });
          assert(other.latents.some((x, i) => x !== own.latents[i]), "guidance 4.5 differs");
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
  "pipeline: a quantized artifact carries its model's defaults; a bad one names the field",
  gpuTest,
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const model = join(dir, "model");
      cpSync(FIXTURE, model, { recursive: true });
      const index = { webdit: { default_steps: 3, default_guidance: 2.5 } };
      await Deno.writeTextFile(join(model, "model_index.json"), JSON.stringify(index));
      const r = await quantizeModel({ model, quantizer: "uniform", wbits: 8, abits: 16 });
      assertEquals(JSON.parse(r.metadata[META.modelIndex]), index);
      const path = join(dir, "q.safetensors");
      await writeArtifact(path, r);
      await withRuntime(async (rt) => {
        assertEquals(await defaultsAt(rt, path), { steps: 3, guidance: 2.5, sampler: "dpm++2m" });
        // Made before artifacts carried it: the architecture's defaults.
        const { [META.modelIndex]: _, ...older } = r.metadata;
        const olderPath = join(dir, "older.safetensors");
        await writeArtifact(olderPath, { ...r, metadata: older });
        assertEquals(await defaultsAt(rt, olderPath), PIXART_SAMPLING);
        const bad = { webdit: { default_steps: -1 } };
        const badPath = join(dir, "bad.safetensors");
        await writeArtifact(badPath, {
          ...r,
          metadata: { ...r.metadata, [META.modelIndex]: JSON.stringify(bad) },
        });
        await assertRejects(
          () => loadPipeline(rt, { path: badPath }),
          CheckpointError,
          "__metadata__.webdit.model_index): webdit.default_steps: must be an integer",
        );
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
