/**
 * Requests the selected model cannot run are the client's 400 naming the field, checked
 * before they are queued, and one job's bad input never fails the jobs batched with it.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import type { GenerateRequest, Pipeline } from "../runtime/pipeline.ts";
import { EmojiTokenizer } from "../plugins/models/emoji_tokenizer.ts";
import { ApiError } from "../runtime/server/errors.ts";
import { CheckpointError } from "../runtime/errors.ts";
import type { ModelEntry } from "../runtime/server/models.ts";
import { GpuQueue, type ImageJob } from "../runtime/server/queue.ts";
import {
  GEN,
  makeApp,
  parseSse,
  pixelEntry,
  pixelPrompts,
  post,
  stubEntry,
  type StubLog,
  stubPipeline,
} from "./server_helpers.ts";

type ErrorJson = { error: { message: string; param: string | null; code: string } };

async function expect400(res: Response, param: string): Promise<ErrorJson["error"]> {
  const text = await res.text();
  assertEquals(res.status, 400, `status (body ${text})`);
  const e = (JSON.parse(text) as ErrorJson).error;
  assertEquals(e.param, param, e.message);
  return e;
}

/** A stub model whose tokenizer knows "red" and "apple". */
function wordsStub(log: StubLog): ModelEntry {
  const pipe = stubPipeline(2, log);
  (pipe as { tokenizer: unknown }).tokenizer = new EmojiTokenizer([
    "<pad>",
    "<null>",
    "<unk>",
    "red",
    "apple",
  ]);
  return stubEntry("words", pipe);
}

function job(entry: ModelEntry, o: Partial<ImageJob> = {}): ImageJob {
  return {
    entry,
    prompt: "red apple",
    n: 1,
    seed: 1,
    steps: 2,
    guidance: 4.5,
    sampler: "dpm++2m",
    height: 4,
    width: 4,
    ...o,
  };
}

Deno.test("server checks: a prompt with no known word is a 400 on prompt", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const pixel = await pixelEntry(rt);
    try {
      const s = makeApp(rt, [pixel]);
      for (const prompt of ["xyzzy", "!!!"]) {
        const e = await expect400(await s.app.request(post({ prompt })), "prompt");
        assert(/vocabulary|no words/.test(e.message), e.message);
        assertEquals(e.code, "invalid_value");
      }
      assertEquals(s.queue.depth + s.queue.running, 0, "nothing was queued");
      const [prompt] = await pixelPrompts();
      const ok = await s.app.request(post({ prompt, steps: 1 }));
      assertEquals(ok.status, 200, await ok.text());
      s.close();
    } finally {
      pixel.pipeline.release();
    }
  });
});

Deno.test("server checks: a job with a bad prompt fails alone, not its batch", async () => {
  const log: StubLog = { calls: [], steps: 0 };
  const e = wordsStub(log);
  const q = new GpuQueue({ maxQueue: 8, maxBatchImages: 8 });
  const first = q.enqueue(job(e, { seed: 9 }));
  // Queued straight to the queue (the app checks first): batched with the valid ones.
  const a = q.enqueue(job(e, { seed: 1 }));
  const bad = q.enqueue(job(e, { seed: 2, prompt: "xyzzy" }));
  const b = q.enqueue(job(e, { seed: 3, prompt: "apple" }));
  const err = await assertRejects(() => bad, ApiError);
  assertEquals([(err as ApiError).status, (err as ApiError).param], [400, "prompt"]);
  const rs = await Promise.all([first, a, b]);
  assertEquals(rs[1].timings.batchRequests, 2, "the valid jobs still shared a batch");
  assertEquals([...log.calls[1].prompts], ["red apple", "apple"]);
});

Deno.test("server checks: a batch failing before its first step runs each job alone", async () => {
  const log: StubLog = { calls: [], steps: 0 };
  const pipe: Pipeline = stubPipeline(2, log);
  const run = pipe.generate.bind(pipe);
  pipe.generate = (req: GenerateRequest) => {
    if (req.prompts?.includes("poison")) {
      return Promise.reject(new RangeError("cannot run poison"));
    }
    return run(req);
  };
  const e = stubEntry("m", pipe);
  const q = new GpuQueue({ maxQueue: 8, maxBatchImages: 8 });
  const first = q.enqueue(job(e, { seed: 9 }));
  const a = q.enqueue(job(e, { seed: 1, prompt: "a" }));
  const bad = q.enqueue(job(e, { seed: 2, prompt: "poison" }));
  const b = q.enqueue(job(e, { seed: 3, prompt: "b" }));
  await assertRejects(() => bad, RangeError, "poison");
  const rs = await Promise.all([first, a, b]);
  assertEquals(rs[1].timings.batchRequests, 1);
  assertEquals(rs[2].timings.batchRequests, 1);
});

Deno.test("server checks: a batch failing after a step was reported fails its jobs, once", async () => {
  const log: StubLog = { calls: [], steps: 0 };
  const pipe: Pipeline = stubPipeline(2, log);
  const run = pipe.generate.bind(pipe);
  pipe.generate = (req: GenerateRequest) => {
    if (req.prompts?.length === 1) return run(req);
    return run({
      ...req,
      onStep: async (s) => {
        await req.onStep?.(s);
        throw new RangeError("the GPU failed after step 1");
      },
    });
  };
  const e = stubEntry("m", pipe);
  const q = new GpuQueue({ maxQueue: 8, maxBatchImages: 8 });
  const first = q.enqueue(job(e, { seed: 9 }));
  const jobs = [1, 2, 3].map((seed) => q.enqueue(job(e, { seed })));
  await first;
  for (const j of jobs) await assertRejects(() => j, RangeError, "after step 1");
  assertEquals(log.calls.length, 2, "the batch was not run again job by job");
  assertEquals(log.calls[1].prompts.length, 3);
});

Deno.test("server checks: a batch failing once a step reached the GPU is not run again", async () => {
  const log: StubLog = { calls: [], steps: 0 };
  const pipe: Pipeline = stubPipeline(2, log);
  const run = pipe.generate.bind(pipe);
  let batchCalls = 0;
  pipe.generate = (req: GenerateRequest) => {
    if (req.prompts?.length === 1) return run(req);
    batchCalls++;
    req.onSubmitted?.(0); // submitted, then failed before any step was reported
    return Promise.reject(new RangeError("the GPU failed after the first submit"));
  };
  const e = stubEntry("m", pipe);
  const q = new GpuQueue({ maxQueue: 8, maxBatchImages: 8 });
  const first = q.enqueue(job(e, { seed: 9 }));
  const jobs = [1, 2, 3].map((seed) => q.enqueue(job(e, { seed })));
  await first;
  for (const j of jobs) await assertRejects(() => j, RangeError, "after the first submit");
  assertEquals(batchCalls, 1, "the batch was not run again job by job");
});

Deno.test("server checks: the sampler is checked against the model's own", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const pixel = await pixelEntry(rt);
    try {
      const s = makeApp(rt, [pixel]);
      const [prompt] = await pixelPrompts();
      for (const sampler of ["flow-euler", "euler"]) {
        const e = await expect400(await s.app.request(post({ prompt, sampler })), "sampler");
        assert(e.message.includes("'dpm++2m', 'ddim'"), e.message);
        assert(!e.message.includes("'flow-euler',"), `lists flow-euler: ${e.message}`);
      }
      const m = await (await s.app.request("/v1/models")).json();
      assertEquals(m.data[0].samplers, ["dpm++2m", "ddim"]);
      // A scheduler config that refuses DDIM (Pipeline.generate would throw its
      // CheckpointError): a 400 with its reason, without the server's path.
      const vp = pixel.pipeline.vpSchedulers;
      const file = "/secret/path/scheduler/scheduler_config.json";
      (pixel.pipeline as { vpSchedulers: unknown }).vpSchedulers = {
        ...vp,
        ddim: new CheckpointError(file, "must be false for DDIM, got true", "thresholding"),
      };
      const e = await expect400(
        await s.app.request(post({ prompt, sampler: "ddim", steps: 1 })),
        "sampler",
      );
      assert(e.message.includes("thresholding: must be false"), e.message);
      assert(!e.message.includes("/secret"), `leaks the path: ${e.message}`);
      assertEquals(e.code, "unsupported_value");
      const m2 = await (await s.app.request("/v1/models")).json();
      assertEquals(m2.data[0].samplers, ["dpm++2m"]);
      const ok = await s.app.request(post({ prompt, sampler: "dpm++2m", steps: 1 }));
      assertEquals(ok.status, 200, await ok.text());
      (pixel.pipeline as { vpSchedulers: unknown }).vpSchedulers = vp;
      s.close();
    } finally {
      pixel.pipeline.release();
    }
  });
});

Deno.test("server checks: a failed stream names the request id", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const broken = stubEntry("broken", stubPipeline(1));
    broken.pipeline.generate = () => Promise.reject(new Error("secret detail"));
    const s = makeApp(rt, [broken]);
    const logged: string[] = [];
    const orig = console.error;
    console.error = (...a: unknown[]) => logged.push(a.map(String).join(" "));
    try {
      const res = await s.app.request(
        new Request(GEN, {
          method: "POST",
          headers: { "content-type": "application/json", "x-request-id": "req-42" },
          body: JSON.stringify({ prompt: "x", stream: true }),
        }),
      );
      const ev = parseSse(await res.text());
      assertEquals(ev.map((x) => x.event), ["error"]);
      const e = JSON.parse(ev[0].data).error;
      assert(e.message.includes("req-42") && !e.message.includes("secret"), e.message);
      assertEquals(e.code, "internal_error");
      assert(logged.some((l) => l.includes("req-42") && l.includes("secret")), logged.join("\n"));
    } finally {
      console.error = orig;
    }
    s.close();
  });
});

Deno.test("server checks: GET /v1/models/{id}; quality is echoed", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const s = makeApp(rt, [
      stubEntry("stub", stubPipeline(1)),
      stubEntry("stub:w8", stubPipeline(1)),
    ]);
    const list = await (await s.app.request("/v1/models")).json();
    for (const [i, id] of ["stub", "stub:w8"].entries()) {
      const res = await s.app.request(`/v1/models/${encodeURIComponent(id)}`);
      assertEquals(res.status, 200);
      assertEquals(await res.json(), list.data[i]);
    }
    const nope = await s.app.request("/v1/models/nope");
    assertEquals(nope.status, 404);
    assertEquals((await nope.json()).error.code, "model_not_found");
    const del = await s.app.request("/v1/models/stub", { method: "DELETE" });
    assertEquals([del.status, del.headers.get("allow")], [405, "GET, HEAD"]);
    const hd = await (await s.app.request(post({ prompt: "x", quality: "hd", steps: 1 }))).json();
    assertEquals(hd.quality, "hd");
    const auto = await (await s.app.request(post({ prompt: "x", steps: 1 }))).json();
    assertEquals(auto.quality, "auto");
    s.close();
  });
});
