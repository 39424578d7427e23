/**
 * The server's warm-up (runtime/server/warmup.ts): one short generation per model, on the
 * tiny real model and on stub pipelines (what it asks for; a failing model is named).
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { createRuntime } from "../runtime/gpu/device.ts";
import type { GenerateRequest, Pipeline } from "../runtime/pipeline.ts";
import { warmUp } from "../runtime/server/warmup.ts";
import { pixelEntry, stubEntry, type StubLog, stubPipeline } from "./server_helpers.ts";

Deno.test("warmUp: the tiny real model generates once and is logged", async () => {
  const rt = await createRuntime({ adapter: "auto" });
  const e = await pixelEntry(rt);
  try {
    const lines: string[] = [];
    const r = await warmUp([e], { log: (l) => lines.push(l) });
    assertEquals(r.map((x) => x.id), ["pixel"]);
    assert(r[0].ms > 0);
    assertEquals(lines[0], "warming up pixel (2 steps at 16×16)…");
    assert(/^warmed up pixel in [0-9.]+ s$/.test(lines[1]), lines[1]);
  } finally {
    e.pipeline.release();
    rt.destroy();
  }
});

Deno.test("warmUp: each model in order, with the steps and sampler asked for", async () => {
  const a: StubLog = { calls: [], steps: 0 };
  const b: StubLog = { calls: [], steps: 0 };
  const seen: GenerateRequest[] = [];
  const spy = (p: Pipeline): Pipeline => {
    const gen = p.generate.bind(p);
    return Object.assign(p, {
      generate: (req: GenerateRequest) => {
        seen.push(req);
        return gen(req);
      },
    });
  };
  const r = await warmUp(
    [stubEntry("a", spy(stubPipeline(1, a))), stubEntry("b", spy(stubPipeline(1, b)))],
    { steps: 3, sampler: "ddim", log: () => {} },
  );
  assertEquals(r.map((x) => x.id), ["a", "b"]);
  assertEquals([a.steps, b.steps], [3, 3]);
  assertEquals(seen.map((q) => [q.sampler, q.guidance, q.n ?? 1]), [
    ["ddim", 4.5, 1],
    ["ddim", 4.5, 1],
  ]);
});

Deno.test("warmUp: without a sampler or guidance, each model's own defaults", async () => {
  const seen: GenerateRequest[] = [];
  const own = (p: Pipeline, defaults: Pipeline["defaults"]): Pipeline => {
    const gen = p.generate.bind(p);
    return Object.assign(p, {
      defaults,
      generate: (req: GenerateRequest) => {
        seen.push(req);
        return gen(req);
      },
    });
  };
  await warmUp([
    stubEntry("a", own(stubPipeline(1), { steps: 20, guidance: 3.5, sampler: "dpm++2m" })),
    stubEntry("b", own(stubPipeline(1), { steps: 20, guidance: 1, sampler: "ddim" })),
  ], { log: () => {} });
  assertEquals(seen.map((q) => [q.sampler, q.guidance, q.steps]), [
    ["dpm++2m", 3.5, 2],
    ["ddim", 1, 2],
  ]);
});

Deno.test("warmUp: a model that cannot generate is named", async () => {
  const bad = Object.assign(stubPipeline(1), {
    generate: () => Promise.reject(new Error("out of memory")),
  });
  await assertRejects(
    () => warmUp([stubEntry("big", bad)], { log: () => {} }),
    Error,
    "warm-up of big failed: out of memory",
  );
});
