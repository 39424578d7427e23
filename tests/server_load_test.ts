/**
 * A bounded loopback load test on the tiny real model: 100 requests at concurrency 16
 * with no 5xx, 429s only when the backlog is smaller than the load, cancelled requests
 * freeing their slots, and GPU and host memory back to bounds afterwards.
 */
import { assert, assertEquals } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import { runLoad, serveLoopback } from "../bench/serve_load.ts";
import { pixelEntry, pixelPrompts, until } from "./server_helpers.ts";

Deno.test("server load: 100 requests at concurrency 16 on loopback", gpuTest, async (t) => {
  await withRuntime(async (rt) => {
    const entry = await pixelEntry(rt);
    const prompts = await pixelPrompts();
    const body = (i: number) => ({ prompt: prompts[i % prompts.length], seed: i, steps: 2 });
    // One warm generation first: the model caches a few tensors on first use.
    await entry.pipeline.generate({ prompt: prompts[0], steps: 1 });
    const baseGpu = rt.pool.liveBytes;
    const rss0 = Deno.memoryUsage().rss;

    await t.step("backlog ≥ load: all 200, batched, no 429", async () => {
      const srv = serveLoopback(rt, [entry], { queue: { maxQueue: 16, maxBatchImages: 16 } });
      try {
        const r = await runLoad({ url: srv.url, requests: 100, concurrency: 16, body });
        assertEquals(r.statuses, { 200: 100 });
        assert(r.meanBatchImages > 2, `mean batch ${r.meanBatchImages}: micro-batching works`);
        assertEquals(srv.queue.depth, 0);
      } finally {
        await srv.stop();
      }
    });

    await t.step("backlog < load: 429s with Retry-After, never a 5xx", async () => {
      const srv = serveLoopback(rt, [entry], { queue: { maxQueue: 2, maxBatchImages: 2 } });
      try {
        const r = await runLoad({ url: srv.url, requests: 100, concurrency: 16, body });
        const codes = Object.keys(r.statuses).map(Number).sort();
        assertEquals(codes, [200, 429], `statuses ${JSON.stringify(r.statuses)}`);
        assert(r.retryAfter.every((s) => Number.isInteger(s) && s >= 1), "Retry-After");
        assertEquals(
          srv.metrics.rejected.get({ reason: "queue_full" }),
          r.statuses[429],
          "every 429 was a full backlog",
        );
      } finally {
        await srv.stop();
      }
    });

    await t.step("cancelled requests free their slots", async () => {
      const srv = serveLoopback(rt, [entry], { queue: { maxQueue: 4, maxBatchImages: 1 } });
      const post = (b: Record<string, unknown>, signal?: AbortSignal) =>
        fetch(`${srv.url}/v1/images/generations`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(b),
          signal,
        });
      try {
        const long = post({ prompt: prompts[0], steps: 30 });
        await until(() => srv.queue.running === 1, 10_000, "the long request to run");
        const ctl = new AbortController();
        const waiting = Array.from(
          { length: 4 },
          (_, i) => post(body(i), ctl.signal).catch(() => null),
        );
        await until(() => srv.queue.depth === 4, 10_000, "a full backlog");
        const full = await post(body(9));
        assertEquals(full.status, 429);
        await full.body?.cancel();
        ctl.abort();
        await Promise.all(waiting);
        await until(() => srv.queue.depth === 0, 10_000, "the cancelled requests to leave");
        const again = await Promise.all(Array.from({ length: 4 }, (_, i) => post(body(i))));
        assertEquals(again.map((r) => r.status), [200, 200, 200, 200]);
        await Promise.all(again.map((r) => r.body?.cancel()));
        assertEquals((await long).status, 200);
        assertEquals(srv.metrics.rejected.get({ reason: "cancelled" }), 4);
      } finally {
        await srv.stop();
      }
    });

    await t.step("memory is bounded", () => {
      const gpu = rt.pool.liveBytes;
      assertEquals(gpu, baseGpu, "GPU buffers in use return to the model's");
      assert(rt.pool.peakBytes < 64 * 2 ** 20, `GPU peak ${rt.pool.peakBytes} bytes`);
      const grew = Deno.memoryUsage().rss - rss0;
      assert(grew < 512 * 2 ** 20, `RSS grew by ${(grew / 2 ** 20).toFixed(0)} MiB`);
    });
    entry.pipeline.release();
  });
});
