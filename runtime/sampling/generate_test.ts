import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { fixtureRequest, FIXTURES, openFixture } from "../../tests/fixture_helpers.ts";
import type { Runtime } from "../gpu/device.ts";
import { type GenerateRequest, loadPipeline, type Pipeline } from "../pipeline.ts";
import { readTensor, uploadTensor } from "../gpu/tensor.ts";
import { elementwise } from "../ops/elementwise.ts";
import {
  checkInFlight,
  DEFAULT_IN_FLIGHT,
  type Denoiser,
  sampleLoop,
  type SampleLoopOptions,
  stepTimeEstimate,
} from "./generate.ts";
import { createGpuSampler } from "./guidance.ts";
import { byKernel } from "../gpu/launch_times.ts";

const NAME = "pixart_tiny_sq";
const STEPS = 5;

/** The fixture's guided request (its own embeddings, noise and guidance), `STEPS` steps. */
async function request(): Promise<GenerateRequest> {
  const f = await openFixture(NAME);
  try {
    return { ...await fixtureRequest(f), steps: STEPS };
  } finally {
    f.close();
  }
}

/** Runs `f` with the fixture's pipeline, released after. */
async function withPipeline<T>(rt: Runtime, f: (pipe: Pipeline) => Promise<T>): Promise<T> {
  const pipe = await loadPipeline(rt, { path: `${FIXTURES}${NAME}` });
  try {
    return await f(pipe);
  } finally {
    pipe.release();
  }
}

/** Generates with `inFlight`, reading every step's latents back as it is reported. */
function run(rt: Runtime, inFlight: number) {
  return withPipeline(rt, async (pipe) => {
    const steps: number[] = [];
    const previews: Float32Array[] = [];
    const res = await pipe.generate({
      ...await request(),
      inFlight,
      onStep: async (s) => {
        steps.push(s.step);
        previews.push(await s.latents());
      },
    });
    return { res, steps, previews };
  });
}

Deno.test(
  "sampleLoop: steps in flight give the same latents at every step as waiting for each",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const one = await run(rt, 1);
      const many = await run(rt, 4);
      assertEquals(one.steps, [1, 2, 3, 4, 5]);
      assertEquals(many.steps, [1, 2, 3, 4, 5]);
      for (let i = 0; i < STEPS; i++) {
        assertEquals(many.previews[i], one.previews[i], `step ${i + 1}`);
      }
      assertEquals(many.res.latents, one.res.latents);
      assertEquals(many.previews[STEPS - 1], many.res.latents);
      // Successive steps differ, so a preview that read a later step's buffer would show.
      assert(many.previews[1].some((v, j) => v !== many.previews[2][j]));
      const sum = many.res.timings.stepMs.reduce((a, b) => a + b, 0);
      assertEquals(many.res.timings.stepMs.length, STEPS);
      assert(sum <= many.res.timings.totalMs);
    });
  },
);

Deno.test(
  "sampleLoop: a cancel with steps in flight stops the loop and frees its buffers",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      await withPipeline(rt, async (pipe) => {
        const req = await request();
        await pipe.generate(req); // the first call builds what the model caches (position embeddings)
        const before = rt.pool.liveBytes;
        const ctl = new AbortController();
        const seen: number[] = [];
        await assertRejects(
          () =>
            pipe.generate({
              ...req,
              inFlight: 4,
              signal: ctl.signal,
              onStep: (s) => {
                seen.push(s.step);
                if (s.step === 1) ctl.abort();
              },
            }),
          DOMException,
        );
        // Step 1 is reported (later steps may already be submitted); none is reported after.
        assertEquals(seen, [1]);
        assertEquals(rt.pool.liveBytes, before);
      });
    });
  },
);

Deno.test("checkInFlight: 1 to 16, default 4", () => {
  assertEquals(checkInFlight(undefined), DEFAULT_IN_FLIGHT);
  assertEquals(checkInFlight(1), 1);
  assertEquals(checkInFlight(16), 16);
  for (const bad of [0, 17, 1.5, NaN]) {
    assertThrows(() => checkInFlight(bad), RangeError, "inFlight");
  }
});

/** A stand-in model for the loop's own mechanics: eps = 0.5·x (one elementwise kernel). */
const halfModel: Denoiser = {
  inChannels: 4,
  outChannels: 4,
  dtype: "f32",
  forward: (rec, x) => elementwise(rec, "axpby", x, { y: x, alpha: 0.25, beta: 0.25 }),
};

async function loopLatents(
  rt: Runtime,
  o: Partial<SampleLoopOptions>,
  model = halfModel,
): Promise<Float32Array> {
  const x0 = uploadTensor(rt, Float32Array.from({ length: 2 * 4 * 8 * 8 }, (_, i) => i % 7), [
    2,
    4,
    8,
    8,
  ]);
  try {
    const r = await sampleLoop(rt, model, x0, {
      sampler: createGpuSampler("dpm++2m", 4),
      guidance: 1,
      ...o,
    });
    const out = await readTensor(rt, r.latents);
    r.latents.release();
    return out;
  } finally {
    x0.release();
  }
}

Deno.test(
  "sampleLoop: sleeping before each completion wait changes no result; a cancel wakes it",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const plain = await loopLatents(rt, {});
      // A 50 ms step estimate makes the loop sleep ~47 ms before asking for each completion.
      const times = (ms: number) => new Map([["2x4x8x8", ms]]); // [B, C, H, W], no guidance
      assertEquals(await loopLatents(rt, { stepTimes: times(50), inFlight: 2 }), plain);
      assertEquals(await loopLatents(rt, { stepTimes: times(50), inFlight: 1 }), plain);
      // With a one-minute estimate it sleeps before the second submit until the abort wakes it;
      // that step is dropped, and every buffer of the loop is freed.
      const before = rt.pool.liveBytes;
      const ctl = new AbortController();
      const t0 = performance.now();
      setTimeout(() => ctl.abort(), 50);
      await assertRejects(
        () => loopLatents(rt, { stepTimes: times(60_000), inFlight: 2, signal: ctl.signal }),
        DOMException,
      );
      assert(performance.now() - t0 < 30_000, "the abort did not wake the loop");
      assertEquals(rt.pool.liveBytes, before);
    });
  },
);

Deno.test(
  "sampleLoop: an f16 model's latents are f16 values after every step, as diffusers casts them",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      if (!rt.info.f16) return;
      const f16Values = (xs: Float32Array) => xs.every((v) => Math.f16round(v) === v);
      const f32 = await loopLatents(rt, {});
      assert(!f16Values(f32), "the f32 model's latents keep f32 precision");
      const f16 = await loopLatents(rt, {}, { ...halfModel, dtype: "f16" });
      assert(f16Values(f16), "the f16 model's latents are rounded to f16");
      assert(f16.some((v, i) => v !== Math.f16round(f32[i])), "rounded every step, not once");
    });
  },
);

Deno.test(
  "sampleLoop: a forward that throws mid-run frees every buffer of the loop, guided too",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const failing: Denoiser = {
        ...halfModel,
        forward: (rec, x, t, step) => {
          if (step.index === 1) throw new RangeError("the model failed"); // after step 0 ran
          return halfModel.forward(rec, x, t, step);
        },
      };
      const before = rt.pool.liveBytes;
      for (const guidance of [1, 2]) {
        await assertRejects(
          () => loopLatents(rt, { guidance }, failing),
          RangeError,
          "the model failed",
        );
        assertEquals(rt.pool.liveBytes, before, `guidance ${guidance}`);
      }
    });
  },
);

Deno.test(
  "pipeline: latents of the wrong length are refused before any upload, leaving no buffer",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      await withPipeline(rt, async (pipe) => {
        const req = await request();
        await pipe.generate({ ...req, steps: 1 }); // warm: the pool's own buffers exist
        const before = rt.pool.liveBytes;
        await assertRejects(
          () => pipe.generate({ ...req, latents: req.latents!.subarray(1) }),
          RangeError,
          "latents must hold",
        );
        assertEquals(rt.pool.liveBytes, before);
      });
    });
  },
);

Deno.test(
  "sampleLoop: onSubmitted hears each step as it is submitted, before its report",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const events: string[] = [];
      await loopLatents(rt, {
        inFlight: 2,
        onSubmitted: (i) => events.push(`submit ${i}`),
        onStep: (s) => void events.push(`report ${s.step - 1}`),
      });
      for (let i = 0; i < 4; i++) {
        const sub = events.indexOf(`submit ${i}`);
        assert(sub >= 0 && sub < events.indexOf(`report ${i}`), events.join(", "));
      }
      assertEquals(events.filter((e) => e.startsWith("submit")).length, 4);
    });
  },
);

Deno.test("stepTimeEstimate: own entry, else the nearest batch size's as a lower bound", () => {
  const t = new Map([["2x4x8x8", 100], ["8x4x8x8", 300], ["4x4x16x16", 999]]);
  assertEquals(stepTimeEstimate(t, "2x4x8x8"), 100); // its own
  assertEquals(stepTimeEstimate(t, "1x4x8x8"), 50); // fewer rows: scaled down
  assertEquals(stepTimeEstimate(t, "32x4x8x8"), 300); // more rows: kept, not scaled up
  assertEquals(stepTimeEstimate(t, "4x4x8x8"), 150); // 2 and 8 equally near: the bigger
  assertEquals(stepTimeEstimate(t, "6x4x8x8"), 225); // nearer to 8
  assertEquals(stepTimeEstimate(t, "2x4x16x8"), 0); // no entry of that C×H×W
  assertEquals(stepTimeEstimate(undefined, "2x4x8x8"), 0);
});

Deno.test(
  "sampleLoop: a batch size not yet timed paces from another one's step time",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Only rows 8 are known (800 ms): the 2-row loop starts from 200 ms, so it sleeps ~190 ms
      // before its first completion wait (the whole loop takes ~70 ms without), then halves
      // that at each overshoot.
      const times = new Map([["8x4x8x8", 800]]);
      const t0 = performance.now();
      await loopLatents(rt, { stepTimes: times, inFlight: 2 });
      const ms = performance.now() - t0;
      assert(ms >= 190, `the loop took ${ms} ms: it did not sleep`);
      assert(times.get("2x4x8x8")! <= 40, `estimate after 4 steps: ${times.get("2x4x8x8")}`);
      assertEquals(times.get("8x4x8x8"), 800);
    });
  },
);

Deno.test(
  "sampleLoop: an over-estimated step time halves at every step that was already done",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Steps of this model take milliseconds: a 400 ms estimate oversleeps every wait, and
      // each overshoot halves it (4 steps: 25 ms; the 0.9 decay it replaced left 262 ms) —
      // unless a step outlasts the halved estimate (a loaded host), when it takes that
      // step's measured time instead: never more than the slowest step's.
      const times = new Map([["2x4x8x8", 400]]);
      const x0 = uploadTensor(rt, new Float32Array(2 * 4 * 8 * 8).fill(0.5), [2, 4, 8, 8]);
      const r = await sampleLoop(rt, halfModel, x0, {
        sampler: createGpuSampler("dpm++2m", 4),
        guidance: 1,
        stepTimes: times,
        inFlight: 2,
      });
      r.latents.release();
      x0.release();
      const left = times.get("2x4x8x8")!;
      const slowest = Math.max(...r.stepMs);
      assert(
        left <= 25 || left <= slowest,
        `estimate after 4 steps: ${left} ms (slowest step ${slowest} ms)`,
      );
    });
  },
);

Deno.test(
  "sampleLoop profileStep: that step's launches and GPU times; the result unchanged",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      if (!rt.info.timestamps) return;
      const x0 = uploadTensor(rt, new Float32Array(2 * 4 * 8 * 8).fill(0.5), [2, 4, 8, 8]);
      const run = (profileStep?: number) =>
        sampleLoop(rt, halfModel, x0, {
          sampler: createGpuSampler("dpm++2m", 4),
          guidance: 1,
          profileStep,
        });
      try {
        const plain = await run();
        const prof = await run(2);
        assertEquals(plain.profile, undefined);
        assertEquals(await readTensor(rt, prof.latents), await readTensor(rt, plain.latents));
        // The model's one elementwise launch is among the step's, each with a time.
        const names = prof.profile!.map((t) => t.name);
        assert(names.includes("elementwise_f32"), names.join(", "));
        assert(prof.profile!.every((t) => t.ms >= 0 && Number.isFinite(t.ms)));
        const sum = byKernel(prof.profile!).reduce((s, k) => s + k.launches, 0);
        assertEquals(sum, prof.profile!.length);
        for (const r of [plain, prof]) r.latents.release();
        for (const bad of [4, -1, 1.5]) {
          await assertRejects(
            () => run(bad),
            RangeError,
            "profileStep must be an integer from 0 to 3",
          );
        }
      } finally {
        x0.release();
      }
    });
  },
);
