import { assert, assertEquals, assertRejects } from "../tests/assert.ts";
import { gpuTest, withRuntime } from "../tests/gpu.ts";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { loadPipeline, type Pipeline } from "./pipeline.ts";
import type { Runtime } from "./gpu/device.ts";
import { CheckpointError } from "./errors.ts";
import { quantizeModel, writeArtifact } from "./quant/quantize.ts";

const FIXTURE = new URL("../tests/fixtures/pixart_pixel", import.meta.url).pathname;
const REQ = { prompt: "red apple", seed: 1, steps: 2, guidance: 2 };

/** Runs `f` on the fixture copied into a temporary folder with `config` as its scheduler config. */
async function withSchedulerConfig(
  rt: Runtime,
  config: Record<string, unknown> | undefined,
  f: (pipe: Pipeline, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    cpSync(FIXTURE, dir, { recursive: true });
    if (config) {
      await Deno.mkdir(join(dir, "scheduler"));
      await Deno.writeTextFile(
        join(dir, "scheduler", "scheduler_config.json"),
        JSON.stringify(config),
      );
    }
    const pipe = await loadPipeline(rt, { path: dir });
    try {
      await f(pipe, dir);
    } finally {
      pipe.release();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The latents of REQ (+ `extra`) from a folder with scheduler config `config`. */
async function latentsWith(
  rt: Runtime,
  config: Record<string, unknown> | undefined,
  extra: Record<string, unknown> = {},
): Promise<Float32Array> {
  let out: Float32Array = new Float32Array();
  await withSchedulerConfig(rt, config, async (pipe) => {
    out = (await pipe.generate({ ...REQ, ...extra })).latents;
  });
  return out;
}

Deno.test(
  "pipeline: PixArt samples with its folder's scheduler config, as diffusers' pipeline does",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const none = await latentsWith(rt, undefined, { sampler: "ddim" });
      // DDIM's own defaults written out: the same run as no config.
      const ddimDefaults = { _class_name: "DDIMScheduler", timestep_spacing: "leading" };
      assertEquals(await latentsWith(rt, ddimDefaults, { sampler: "ddim" }), none);
      // The class picks the default sampler; the file's spacing reaches DDIM.
      await withSchedulerConfig(
        rt,
        { ...ddimDefaults, timestep_spacing: "linspace" },
        async (p) => {
          assertEquals(p.defaults.sampler, "ddim");
          const own = (await p.generate(REQ)).latents;
          assert(own.some((x, i) => x !== none[i]), "linspace DDIM differs from leading");
        },
      );
      // DPM-Solver++ from a DPM config with scaled_linear betas differs from the default betas.
      const dpm = await latentsWith(rt, undefined);
      assertEquals(await latentsWith(rt, { _class_name: "DPMSolverMultistepScheduler" }), dpm);
      const scaled = await latentsWith(rt, {
        beta_schedule: "scaled_linear",
        beta_start: 0.00085,
        beta_end: 0.012,
      });
      assert(scaled.some((x, i) => x !== dpm[i]), "scaled_linear betas change the run");
    });
  },
);

Deno.test(
  "pipeline: a scheduler feature webdit lacks is refused by name when that sampler is used",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // The default sampler (DPM-Solver++) cannot run: refused at load.
      await assertRejects(
        () => latentsWith(rt, { use_karras_sigmas: true }),
        CheckpointError,
        "use_karras_sigmas",
      );
      // A DDIM folder whose file also holds a DPM-only flag: DDIM runs, DPM-Solver++ is refused.
      const cfg = { _class_name: "DDIMScheduler", use_karras_sigmas: true };
      await withSchedulerConfig(rt, cfg, async (pipe) => {
        await pipe.generate(REQ);
        await assertRejects(
          () => pipe.generate({ ...REQ, sampler: "dpm++2m" }),
          CheckpointError,
          "use_karras_sigmas",
        );
      });
    });
  },
);

Deno.test(
  "pipeline: a quantized PixArt artifact carries its scheduler config",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const cfg = { _class_name: "DDIMScheduler", timestep_spacing: "trailing" };
      await withSchedulerConfig(rt, cfg, async (folder, dir) => {
        const r = await quantizeModel({ model: dir, quantizer: "uniform", wbits: 8, abits: 16 });
        const path = join(dir, "q.safetensors");
        await writeArtifact(path, r);
        const q = await loadPipeline(rt, { path });
        try {
          assertEquals(q.defaults.sampler, "ddim");
          assertEquals(q.vpSchedulers.ddim, folder.vpSchedulers.ddim);
        } finally {
          q.release();
        }
      });
    });
  },
);

Deno.test(
  "pipeline: caption embeddings without negatives get the model's own null caption",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      await withSchedulerConfig(rt, undefined, async (pipe) => {
        const { embeds } = await pipe.encodePrompts(["red apple"]);
        const fromPrompt = (await pipe.generate(REQ)).latents;
        const { negative: _, ...positiveOnly } = embeds;
        const req = { ...REQ, prompt: undefined, captionEmbeds: positiveOnly };
        assertEquals((await pipe.generate(req)).latents, fromPrompt);
        // Embeddings of another width than the encoder's: nothing to encode, say what to add.
        const [B, L, C] = embeds.shape;
        const wide = { embeds: new Float32Array(B * L * (C + 1)), shape: [B, L, C + 1] as const };
        await assertRejects(
          () => pipe.generate({ ...req, captionEmbeds: { ...wide, shape: [...wide.shape] } }),
          TypeError,
          "negative_prompt_embeds",
        );
      });
    });
  },
);
