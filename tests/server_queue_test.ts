/**
 * The GPU queue with a stub pipeline (timed steps, no GPU): micro-batching of compatible
 * jobs only, per-job noise from its own seed, the bounded backlog, cancellation that
 * frees a slot or stops the batch, and previews sliced per job.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { Prng } from "../runtime/io/prng.ts";
import {
  GpuQueue,
  type ImageJob,
  QueueFullError,
  ShuttingDownError,
} from "../runtime/server/queue.ts";
import { delay, stubEntry, type StubLog, stubPipeline, until } from "./server_helpers.ts";

function job(entry: ImageJob["entry"], o: Partial<ImageJob> = {}): ImageJob {
  return {
    entry,
    prompt: "red apple",
    n: 1,
    seed: 1,
    steps: 3,
    guidance: 4.5,
    sampler: "dpm++2m",
    height: 4,
    width: 4,
    ...o,
  };
}

Deno.test("queue: compatible waiting jobs share one batch; others wait for their own", async () => {
  const log: StubLog = { calls: [], steps: 0 };
  const e = stubEntry("m", stubPipeline(5, log));
  const q = new GpuQueue({ maxQueue: 8, maxBatchImages: 8 });
  const first = q.enqueue(job(e, { seed: 9 }));
  // These arrive while the first batch runs: three compatible, one with other steps.
  const a = q.enqueue(job(e, { seed: 1, prompt: "a" }));
  const b = q.enqueue(job(e, { seed: 2, prompt: "b", n: 2 }));
  const other = q.enqueue(job(e, { seed: 3, steps: 2 }));
  const c = q.enqueue(job(e, { seed: 4, prompt: "c" }));
  const rs = await Promise.all([first, a, b, other, c]);
  assertEquals(log.calls.length, 3, "batches");
  assertEquals([...log.calls[1].prompts], ["a", "b", "b", "c"]);
  assertEquals(rs[1].timings.batchRequests, 3);
  assertEquals(rs[1].timings.batchImages, 4);
  assertEquals(rs[3].timings.batchRequests, 1);
  // Each job's noise (here returned as its result) is exactly its own seed's.
  const plane = 3 * 4 * 4;
  assertEquals([...rs[2].latents], [...new Prng(2).normals(2 * plane)]);
  assertEquals([...rs[4].latents], [...new Prng(4).normals(plane)]);
  assertEquals(rs[2].shape, [2, 3, 4, 4]);
});

Deno.test("queue: maxBatchImages 1 turns batching off", async () => {
  const log: StubLog = { calls: [], steps: 0 };
  const e = stubEntry("m", stubPipeline(2, log));
  const q = new GpuQueue({ maxQueue: 8, maxBatchImages: 1 });
  await Promise.all([1, 2, 3, 4].map((s) => q.enqueue(job(e, { seed: s }))));
  assertEquals(log.calls.length, 4);
});

Deno.test("queue: batches respect the image cap", async () => {
  const log: StubLog = { calls: [], steps: 0 };
  const e = stubEntry("m", stubPipeline(2, log));
  const q = new GpuQueue({ maxQueue: 8, maxBatchImages: 3 });
  const ps = [q.enqueue(job(e))];
  for (const n of [2, 2, 1, 1]) ps.push(q.enqueue(job(e, { n })));
  await Promise.all(ps);
  // After the first: [2, 1] (the second 2 does not fit), then [2, 1]... in arrival order.
  assertEquals(log.calls.map((c) => c.prompts.length), [1, 3, 3]);
});

Deno.test("queue: a full backlog throws QueueFullError with a Retry-After", async () => {
  const e = stubEntry("m", stubPipeline(5));
  const q = new GpuQueue({ maxQueue: 2, maxBatchImages: 1 });
  const ps = [q.enqueue(job(e)), q.enqueue(job(e)), q.enqueue(job(e))];
  assertEquals(q.depth, 2);
  const err = assertThrows(() => q.enqueue(job(e)), QueueFullError) as QueueFullError;
  assert(Number.isInteger(err.retryAfter) && err.retryAfter >= 1, `retryAfter ${err.retryAfter}`);
  await Promise.all(ps);
  assertEquals(q.depth, 0);
  await q.enqueue(job(e)); // room again
});

Deno.test("queue: cancelling a waiting job frees its slot at once", async () => {
  const log: StubLog = { calls: [], steps: 0 };
  const e = stubEntry("m", stubPipeline(5, log));
  const q = new GpuQueue({ maxQueue: 1, maxBatchImages: 1 });
  const running = q.enqueue(job(e));
  const ctl = new AbortController();
  const waiting = q.enqueue(job(e, { signal: ctl.signal }));
  assertThrows(() => q.enqueue(job(e)), QueueFullError);
  ctl.abort(new Error("gone"));
  await assertRejects(() => waiting, Error, "gone");
  assertEquals(q.depth, 0);
  const next = q.enqueue(job(e)); // the freed slot
  await Promise.all([running, next]);
  assertEquals(log.calls.length, 2, "the cancelled job never ran");
});

Deno.test("queue: a batch whose every job is cancelled stops between steps", async () => {
  const log: StubLog = { calls: [], steps: 0 };
  const e = stubEntry("m", stubPipeline(10, log));
  const q = new GpuQueue();
  const ctl = new AbortController();
  const p = q.enqueue(job(e, { steps: 100, signal: ctl.signal }));
  await until(() => log.steps >= 2, 5000, "two steps");
  ctl.abort(new Error("timeout"));
  await assertRejects(() => p, Error, "timeout");
  await q.idle();
  assert(log.steps < 10, `the batch went on for ${log.steps} steps`);
  assertEquals(q.running, 0);
});

Deno.test("queue: one cancelled job of a batch does not stop the others", async () => {
  const log: StubLog = { calls: [], steps: 0 };
  const e = stubEntry("m", stubPipeline(5, log));
  const q = new GpuQueue();
  const head = q.enqueue(job(e));
  const ctl = new AbortController();
  const a = q.enqueue(job(e, { steps: 6, signal: ctl.signal }));
  const b = q.enqueue(job(e, { steps: 6, seed: 5 }));
  await until(() => log.calls.length === 2 && log.steps >= 4, 5000, "the second batch");
  ctl.abort(new Error("gone"));
  await assertRejects(() => a, Error, "gone");
  const r = await b;
  assertEquals(r.timings.stepMs.length, 6);
  await head;
});

Deno.test("queue: previews come at the asked steps with the job's own images", async () => {
  const e = stubEntry("m", stubPipeline(1));
  const q = new GpuQueue();
  const seen: [number, number][] = [];
  const head = q.enqueue(job(e));
  const p = q.enqueue(job(e, {
    seed: 7,
    n: 2,
    steps: 5,
    previewSteps: [2, 4],
    onPreview: (pv) => {
      seen.push([pv.step, pv.latents.length]);
      assertEquals(pv.latents[0], new Prng(7).normals(1)[0]);
    },
  }));
  const other = q.enqueue(job(e, { seed: 8, steps: 5 }));
  await Promise.all([head, p, other]);
  assertEquals(seen, [[2, 96], [4, 96]]);
});

Deno.test("queue: close rejects the waiting jobs", async () => {
  const e = stubEntry("m", stubPipeline(5));
  const q = new GpuQueue();
  const a = q.enqueue(job(e, { steps: 50 }));
  const b = q.enqueue(job(e));
  q.close();
  await assertRejects(() => a, ShuttingDownError, "shutting down");
  await assertRejects(() => b, ShuttingDownError, "shutting down");
  assertThrows(() => q.enqueue(job(e)), ShuttingDownError, "shutting down");
  await delay(20);
});
