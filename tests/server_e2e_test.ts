/**
 * End to end: `deno task serve` in a child process on a free loopback port, called with
 * the official `openai` npm client (images.generate plain and streaming, errors as the
 * client's typed errors), client-side cancellation of plain and streaming requests.
 */
import OpenAI from "openai";
import { Buffer } from "node:buffer";
import { assert, assertEquals } from "./assert.ts";
import { decodePng } from "../runtime/io/png.ts";
import { CLI, denoRun } from "./cli_helpers.ts";
import { PIXEL_MODEL, pixelPrompts } from "./server_helpers.ts";

const KEY = "e2e-test-key";

/** Starts the server; resolves with its URL once it listens. */
async function startServer(extra: string[] = []) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...denoRun(),
      "-A",
      CLI,
      "serve",
      "--model",
      `pixel=${PIXEL_MODEL}`,
      "--port",
      "0",
      ...extra,
    ],
    env: { WEBDIT_API_KEY: KEY, XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let url: string | undefined;
  const pump = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        const m = /listening on (http:\/\/\S+?)\/?(\s|$)/.exec(line);
        if (m) url = m[1];
      }
    }
  })();
  const t0 = Date.now();
  while (!url) {
    if (Date.now() - t0 > 30_000) throw new Error(`server did not start:\n${lines.join("\n")}`);
    const st = await Promise.race([child.status, new Promise((r) => setTimeout(r, 50))]);
    if (st) throw new Error(`server exited:\n${lines.join("\n")}`);
  }
  return {
    url,
    lines,
    async stop() {
      child.kill("SIGTERM");
      const st = await child.status;
      await pump;
      return st.code;
    },
  };
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, {
    headers: { authorization: `Bearer ${KEY}` },
  })).text();
  const esc = name.replace(/[{}"+.]/g, (c) => `\\${c}`);
  const m = new RegExp(`^${esc} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

Deno.test("server e2e: the openai client against deno task serve", {
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const [prompt] = await pixelPrompts();
  const srv = await startServer(["--steps", "3", "--guidance", "2"]);
  const client = new OpenAI({ apiKey: KEY, baseURL: `${srv.url}/v1`, maxRetries: 0 });
  // Our extensions ride along in the body; the client sends the object as it is.
  type Params = OpenAI.Images.ImageGenerateParamsNonStreaming;
  type StreamParams = OpenAI.Images.ImageGenerateParamsStreaming;
  try {
    await t.step("it warmed the model up before it listened", () => {
      const warm = srv.lines.findIndex((l) => /^warmed up pixel in [0-9.]+ s$/.test(l));
      const listen = srv.lines.findIndex((l) => l.startsWith("listening on "));
      assert(warm >= 0 && warm < listen, srv.lines.join("\n"));
    });
    await t.step("serve --steps and --guidance are what a request without them gets", async () => {
      const m = await (await fetch(`${srv.url}/v1/models`, {
        headers: { Authorization: `Bearer ${KEY}` },
      })).json();
      assertEquals([m.data[0].default_steps, m.data[0].default_guidance], [3, 2]);
      const r = await client.images.generate({ prompt, model: "pixel", seed: 1 } as Params);
      const body = r as unknown as { steps: number; guidance: number };
      assertEquals([body.steps, body.guidance], [3, 2]);
    });
    await t.step("images.generate: b64 PNG of the requested size", async () => {
      const r = await client.images.generate({
        prompt,
        model: "pixel",
        size: "16x16",
        response_format: "b64_json",
        seed: 11,
        steps: 3,
      } as Params);
      assertEquals(r.data?.length, 1);
      const img = decodePng(new Uint8Array(Buffer.from(r.data![0].b64_json!, "base64")));
      assertEquals([img.width, img.height], [16, 16]);
      assertEquals(r.output_format, "png");
      assert(typeof r.created === "number", "created");
      assertEquals((r as unknown as { seed: number }).seed, 11);
    });

    await t.step(
      "images.generate stream: partial images then completed, read unchanged",
      async () => {
        const stream = await client.images.generate({
          prompt,
          stream: true,
          partial_images: 2,
          steps: 3,
          seed: 11,
        } as StreamParams);
        const seen: OpenAI.Images.ImageGenStreamEvent[] = [];
        for await (const ev of stream) seen.push(ev);
        assertEquals(seen.map((e) => e.type), [
          "image_generation.partial_image",
          "image_generation.partial_image",
          "image_generation.completed",
        ]);
        const p = seen[1] as OpenAI.Images.ImageGenPartialImageEvent & { step: number };
        assertEquals([p.partial_image_index, p.step], [1, 2]);
        const done = seen[2] as OpenAI.Images.ImageGenCompletedEvent;
        assertEquals(done.size, "16x16");
        assert(done.b64_json.length > 50, "image");
      },
    );

    await t.step("a bad request is the client's BadRequestError with the param", async () => {
      try {
        await client.images.generate({ prompt, n: 99 });
        throw new Error("no error");
      } catch (e) {
        assert(e instanceof OpenAI.BadRequestError, `got ${e}`);
        assertEquals(e.status, 400);
        assertEquals(e.param, "n");
        assert(e.requestID, "request id");
      }
      try {
        await client.images.generate({ prompt, response_format: "url" });
        throw new Error("no error");
      } catch (e) {
        assert(e instanceof OpenAI.BadRequestError, `got ${e}`);
        assertEquals(e.param, "response_format");
      }
    });

    await t.step("a wrong key is the client's AuthenticationError", async () => {
      const bad = new OpenAI({ apiKey: "wrong", baseURL: `${srv.url}/v1`, maxRetries: 0 });
      try {
        await bad.images.generate({ prompt });
        throw new Error("no error");
      } catch (e) {
        assert(e instanceof OpenAI.AuthenticationError, `got ${e}`);
      }
    });

    await t.step("a plain client that goes away cancels its GPU work", async () => {
      const before = await metric(srv.url, "webdit_step_seconds_count");
      const ctl = new AbortController();
      const p = client.images.generate({ prompt, steps: 50 } as Params, { signal: ctl.signal });
      await new Promise((r) => setTimeout(r, 400));
      ctl.abort();
      await p.then(() => {
        throw new Error("not aborted");
      }, () => {});
      let cancelled = 0;
      const t0 = Date.now();
      while (Date.now() - t0 < 10_000) {
        cancelled = await metric(srv.url, 'webdit_requests_rejected_total{reason="cancelled"}');
        if (cancelled >= 1 && (await metric(srv.url, "webdit_queue_running")) === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assertEquals(cancelled, 1);
      const ran = (await metric(srv.url, "webdit_step_seconds_count")) - before;
      assert(ran < 50, `ran ${ran} of 50 steps`);
    });

    await t.step("an SSE client that disconnects cancels its GPU work", async () => {
      const before = await metric(srv.url, "webdit_step_seconds_count");
      const stream = await client.images.generate({
        prompt,
        stream: true,
        partial_images: 49,
        steps: 50,
      } as StreamParams);
      for await (const ev of stream) {
        assertEquals(ev.type, "image_generation.partial_image");
        break; // closes the connection
      }
      let cancelled = 0;
      const t0 = Date.now();
      while (Date.now() - t0 < 10_000) {
        cancelled = await metric(srv.url, 'webdit_requests_rejected_total{reason="cancelled"}');
        if (cancelled >= 2 && (await metric(srv.url, "webdit_queue_running")) === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assertEquals(cancelled, 2);
      const ran = (await metric(srv.url, "webdit_step_seconds_count")) - before;
      assert(ran < 50, `ran ${ran} of 50 steps`);
    });
  } finally {
    assertEquals(await srv.stop(), 0, "clean shutdown on SIGTERM");
  }
});
