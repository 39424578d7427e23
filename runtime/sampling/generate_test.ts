import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { fixtureRequest, FIXTURES, openFixture } from "../../tests/fixture_helpers.ts";
import type { Runtime } from "../gpu/device.ts";
import { type GenerateRequest, loadPipeline } from "../pipeline.ts";
import { checkInFlight, DEFAULT_IN_FLIGHT } from "./generate.ts";

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

/** Generates with `inFlight`, reading every step's latents back as it is reported. */
async function run(rt: Runtime, inFlight: number) {
  const pipe = await loadPipeline(rt, { path: `${FIXTURES}${NAME}` });
  try {
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
  } finally {
    pipe.release();
  }
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
      const pipe = await loadPipeline(rt, { path: `${FIXTURES}${NAME}` });
      try {
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
      } finally {
        pipe.release();
      }
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
