import { assertAlmostEquals, assertEquals, assertThrows } from "../../tests/assert.ts";
import { CheckpointError } from "../errors.ts";
import { parseJson } from "../io/json.ts";
import { createCpuSampler } from "./guidance.ts";
import {
  DEFAULT_VP_SCHEDULERS,
  parseVpSchedulerConfig,
  vpSamplerOptions,
} from "./vp_scheduler_config.ts";

const BUNDLED = new URL("../../models/emoji-s/scheduler/scheduler_config.json", import.meta.url);

/** The timesteps a sampler of `kind` gets from config `raw` for `steps` steps. */
function timesteps(raw: unknown, kind: "dpm++2m" | "ddim", steps: number): readonly number[] {
  const c = parseVpSchedulerConfig(raw, "scheduler_config.json");
  return createCpuSampler(kind, steps, vpSamplerOptions(c, kind)).timesteps;
}

Deno.test("vp scheduler config: the bundled DPM-Solver config gives DDIM its spacing and clipping", async () => {
  const file = BUNDLED.pathname;
  const raw = parseJson(await Deno.readTextFile(file), file); // holds -Infinity (Python's JSON)
  const c = parseVpSchedulerConfig(raw, file);
  assertEquals(c.sampler, "dpm++2m");
  // DDIMScheduler.from_config(config).set_timesteps(20): np.linspace(0, 999, 20).round()[::-1]
  // (numpy), where DDIM's own default ("leading") would give 950, 900, …, 0.
  assertEquals(timesteps(raw, "ddim", 20), [
    999,
    946,
    894,
    841,
    789,
    736,
    684,
    631,
    578,
    526,
    473,
    421,
    368,
    315,
    263,
    210,
    158,
    105,
    53,
    0,
  ]);
  // The file turns DDIM's x₀ clipping off (a DPM-Solver config keeps DDIM's own fields).
  assertEquals(vpSamplerOptions(c, "ddim").ddim?.clipSample, false);
  assertEquals(timesteps(raw, "dpm++2m", 4), [999, 749, 500, 250]);
});

Deno.test("vp scheduler config: each class's own default where the file has no field", () => {
  const dpmFile = { _class_name: "DPMSolverMultistepScheduler" };
  assertEquals(timesteps(dpmFile, "dpm++2m", 4), [999, 749, 500, 250]); // linspace
  assertEquals(
    vpSamplerOptions(parseVpSchedulerConfig(dpmFile, "f.json"), "ddim").ddim?.clipSample,
    true,
  );
  assertEquals(timesteps(dpmFile, "ddim", 4), [750, 500, 250, 0]); // leading
  const ddimFile = { _class_name: "DDIMScheduler", timestep_spacing: "trailing" };
  const c = parseVpSchedulerConfig(ddimFile, "f.json");
  assertEquals(c.sampler, "ddim");
  assertEquals(timesteps(ddimFile, "ddim", 4), [999, 749, 499, 249]);
  assertEquals(DEFAULT_VP_SCHEDULERS.sampler, "dpm++2m");
  assertEquals(vpSamplerOptions(DEFAULT_VP_SCHEDULERS, "ddim"), { ddim: {} });
});

Deno.test("vp scheduler config: scaled_linear betas reach the sigmas", () => {
  const raw = { beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 };
  const c = parseVpSchedulerConfig(raw, "f.json");
  const s = createCpuSampler("dpm++2m", 20, vpSamplerOptions(c, "dpm++2m"));
  // numpy: betas = linspace(√0.00085, √0.012, 1000, f32)², ᾱ = cumprod(1 − β) → √((1−ᾱ)/ᾱ) at 999.
  assertAlmostEquals(s.sigmas[0], 14.614649, 1e-4);
  assertEquals(s.timesteps.slice(0, 3), [999, 949, 899]);
});

Deno.test("vp scheduler config: lambda_min_clipped shortens the schedule as diffusers does", () => {
  const raw = {
    beta_schedule: "scaled_linear",
    beta_start: 0.00085,
    beta_end: 0.012,
    lambda_min_clipped: -2,
  };
  // numpy: λ_t = log √ᾱ − log √(1−ᾱ) (f32); searchsorted(flip(λ), −2) = 123 → last_timestep 877.
  assertEquals(timesteps(raw, "dpm++2m", 10), [876, 788, 701, 613, 526, 438, 350, 263, 175, 88]);
  // DDIM does not know the field.
  assertEquals(timesteps(raw, "ddim", 2), [500, 0]);
  // Trailing spacing below the clipped λ gives fewer steps; diffusers runs them (numpy:
  // np.arange(877, 0, -100).round() - 1).
  const trailing = { ...raw, timestep_spacing: "trailing" };
  assertEquals(timesteps(trailing, "dpm++2m", 10), [876, 776, 676, 576, 476, 376, 276, 176, 76]);
});

Deno.test("vp scheduler config: errors name the file and the field", () => {
  const bad = (raw: Record<string, unknown>, field: string) => {
    const e = assertThrows(
      () => parseVpSchedulerConfig(raw, "s.json"),
      CheckpointError,
    ) as CheckpointError;
    assertEquals([e.file, e.field], ["s.json", field]);
  };
  bad({ _class_name: "EulerDiscreteScheduler" }, "_class_name");
  bad({ thresholding: true }, "thresholding");
  bad({ beta_schedule: "squaredcos_cap_v2" }, "beta_schedule");
  bad({ trained_betas: [0.1, 0.2] }, "trained_betas");
  bad({ prediction_type: "flow_prediction" }, "prediction_type");
  bad({ timestep_spacing: "even" }, "timestep_spacing");
  bad({ steps_offset: -1 }, "steps_offset");
  assertThrows(() => parseVpSchedulerConfig([], "s.json"), CheckpointError, "s.json");

  // A DPM-only feature: DDIM still runs, DPM-Solver names the field when asked for.
  for (
    const [k, v] of [
      ["use_karras_sigmas", true],
      ["algorithm_type", "sde-dpmsolver++"],
      [
        "solver_order",
        3,
      ],
      ["variance_type", "learned_range"],
      ["lambda_min_clipped", "x"],
    ] as const
  ) {
    const c = parseVpSchedulerConfig({ [k]: v }, "s.json");
    const e = assertThrows(
      () => vpSamplerOptions(c, "dpm++2m"),
      CheckpointError,
    ) as CheckpointError;
    assertEquals(e.field, k);
    vpSamplerOptions(c, "ddim");
  }
  const c = parseVpSchedulerConfig({ clip_sample_range: 0 }, "s.json");
  vpSamplerOptions(c, "dpm++2m");
  assertThrows(() => vpSamplerOptions(c, "ddim"), CheckpointError, "clip_sample_range");
});
