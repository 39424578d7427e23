/**
 * Shutdown: waiting and running requests are answered 503 with Retry-After (streams: an SSE
 * `error` event) before the listener closes, in the app and in `deno task serve` on SIGTERM.
 */
import { assert, assertEquals } from "./assert.ts";
import { CLI, denoRun } from "./cli_helpers.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import { createDefaultRegistry } from "../runtime/builtins.ts";
import { createApp } from "../runtime/server/app.ts";
import { ModelCatalog } from "../runtime/server/models.ts";
import {
  parseSse,
  PIXEL_MODEL,
  pixelPrompts,
  post,
  stubEntry,
  type StubLog,
  stubPipeline,
  until,
} from "./server_helpers.ts";

async function expect503(res: Response): Promise<void> {
  const text = await res.text();
  assertEquals(res.status, 503, text);
  assert(Number(res.headers.get("retry-after")) >= 1, "Retry-After");
  const e = JSON.parse(text).error;
  assertEquals(e.code, "server_shutting_down");
  assert(e.message.startsWith("The server is shutting down"), e.message);
}

Deno.test("server shutdown: close answers every request 503", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const log: StubLog = { calls: [], steps: 0 };
    const s = createApp({
      runtime: rt,
      catalog: new ModelCatalog([stubEntry("stub", stubPipeline(20, log))]),
      registry: createDefaultRegistry(),
      log: () => {},
      queue: { maxBatchImages: 1 },
    });
    const body = { prompt: "x", steps: 50 };
    const running = s.app.request(post(body));
    await until(() => log.calls.length === 1, 5000, "the first batch");
    const waiting = s.app.request(post(body));
    const stream = await s.app.request(post({ ...body, stream: true }));
    await until(() => s.queue.depth === 2, 5000, "two waiting requests");
    s.close();
    await expect503(await running);
    await expect503(await waiting);
    const ev = parseSse(await stream.text());
    assertEquals(ev.map((x) => x.event), ["error"]);
    assertEquals(JSON.parse(ev[0].data).error.code, "server_shutting_down");
    await expect503(await s.app.request(post(body)));
    assertEquals(s.metrics.rejected.get({ reason: "shutdown" }), 4);
    await s.queue.idle();
    assert(log.steps < 50, `the running batch went on for ${log.steps} steps`);
  });
});

Deno.test("server shutdown: serve answers in-flight requests on SIGTERM", {
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const [prompt] = await pixelPrompts();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...[...denoRun(), "-A", CLI, "serve", "--model", `pixel=${PIXEL_MODEL}`, "--port", "0"],
      ...["--no-warmup", "--max-steps", "1000", "--max-batch", "1"],
    ],
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let url: string | undefined;
  const pump = (async () => {
    let buf = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        url ??= /listening on (http:\/\/\S+?)\/?(\s|$)/.exec(line)?.[1];
      }
    }
  })();
  try {
    await until(() => url !== undefined, 60_000, "the server to listen");
    const gen = (stream: boolean) =>
      fetch(`${url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt, steps: 1000, stream }),
      });
    const plain = gen(false);
    const queued = gen(false);
    const stream = await gen(true);
    const health = async () => (await (await fetch(`${url}/healthz`)).json()).queue;
    for (let q = await health(); q.running + q.depth < 3; q = await health()) {
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill("SIGTERM");
    await expect503(await plain);
    await expect503(await queued);
    const ev = parseSse(await stream.text());
    assertEquals(ev.at(-1)?.event, "error", ev.map((x) => x.event).join(", "));
    assertEquals(JSON.parse(ev.at(-1)!.data).error.code, "server_shutting_down");
    assertEquals((await child.status).code, 0, lines.join("\n"));
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await pump;
  }
});
