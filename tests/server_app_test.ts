/**
 * The Hono app through `app.request`: every route and every error answer, on the tiny
 * real model (16×16 pixels, own caption encoder) plus stub models for scheduling.
 */
import { assert, assertEquals } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import { decodePng } from "../runtime/io/png.ts";
import { tokenMatches } from "../runtime/server/app.ts";
import { loadEntry, planName } from "../runtime/server/models.ts";
import { quantizeModel, writeArtifact } from "../runtime/quant/quantize.ts";
import {
  delay,
  GEN,
  makeApp,
  parseSse,
  PIXEL_MODEL,
  pixelEntry,
  pixelPrompts,
  post,
  stubEntry,
  type StubLog,
  stubPipeline,
  until,
} from "./server_helpers.ts";
import { Buffer } from "node:buffer";

type ErrorJson = { error: { message: string; type: string; param: string | null; code: string } };

/** Checks an OpenAI-style error answer and returns its body. */
async function expectError(res: Response, status: number, param?: string | null) {
  const text = await res.text();
  assertEquals(res.status, status, `status (body ${text})`);
  assert(res.headers.get("x-request-id"), "x-request-id on an error");
  assert(res.headers.get("content-type")?.startsWith("application/json"), "JSON error");
  const b = JSON.parse(text) as ErrorJson;
  assertEquals(Object.keys(b.error).sort(), ["code", "message", "param", "type"]);
  assert(typeof b.error.message === "string" && b.error.message.length > 0, "message");
  assert(!/\n\s+at /.test(b.error.message), "no stack trace");
  if (param !== undefined) assertEquals(b.error.param, param, `param (${b.error.message})`);
  return b.error;
}

function png(b64: string) {
  return decodePng(new Uint8Array(Buffer.from(b64, "base64")));
}

Deno.test("server app: routes and errors", gpuTest, async (t) => {
  await withRuntime(async (rt) => {
    const pixel = await pixelEntry(rt);
    const [prompt] = await pixelPrompts();
    // A second artifact of the same model: weight-only 8-bit uniform (deno task quantize).
    const dir = await Deno.makeTempDir({ prefix: "webdit-server-" });
    const artifact = `${dir}/pixel_w8.safetensors`;
    await writeArtifact(
      artifact,
      await quantizeModel({ model: PIXEL_MODEL, quantizer: "uniform", wbits: 8, abits: 16 }),
    );
    const w8 = await loadEntry(rt, { path: artifact, name: "pixel", id: "pixel:w8" });
    assertEquals(w8.plan, {
      name: "w8a16-uniform",
      quantizer: "uniform",
      bits: 8,
      abits: null,
      rotation: "none",
      attention: "dense",
      density: null,
    });
    const broken = stubEntry("broken", stubPipeline(1));
    broken.pipeline.generate = () => {
      throw new Error("secret detail /home/x/file.ts");
    };
    const s = makeApp(rt, [pixel, w8, broken], { steps: 3, maxBodyBytes: 4096 });
    const app = s.app;

    await t.step("GET /healthz: adapter, models, request id, secure headers", async () => {
      const res = await app.request("/healthz", { headers: { "x-request-id": "abc-123" } });
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("x-request-id"), "abc-123");
      assertEquals(res.headers.get("x-content-type-options"), "nosniff");
      assert(res.headers.get("content-security-policy")?.includes("default-src 'self'"), "CSP");
      assertEquals(res.headers.get("access-control-allow-origin"), null, "CORS off");
      const b = await res.json();
      assertEquals(b.status, "ok");
      assertEquals(b.adapter, rt.info.description);
      assertEquals(b.models.map((m: { id: string }) => m.id), ["pixel", "pixel:w8", "broken"]);
    });

    await t.step("GET /v1/models and /v1/plugins", async () => {
      const m = await (await app.request("/v1/models")).json();
      assertEquals(m.object, "list");
      const p0 = m.data[0];
      assertEquals([p0.id, p0.object, p0.model, p0.default_size, p0.size_multiple], [
        "pixel",
        "model",
        "pixel",
        "16x16",
        2,
      ]);
      assertEquals(m.data[1].plan.quantizer, "uniform");
      // What a request without them gets: the server's --steps (3 here) over the model's own.
      assertEquals(
        [p0.default_steps, p0.default_guidance, p0.default_sampler],
        [3, pixel.pipeline.defaults.guidance, pixel.pipeline.defaults.sampler],
      );
      const p = await (await app.request("/v1/plugins")).json();
      const names = p.data.map((x: { kind: string; name: string }) => `${x.kind}:${x.name}`);
      assert(names.includes("model:pixart"), `plugins ${names}`);
      for (const x of p.data) assert(typeof x.description === "string", "descriptions");
    });

    await t.step("GET / serves the playground; its script and style", async () => {
      const res = await app.request("/");
      assert(res.headers.get("content-type")?.startsWith("text/html"), "html");
      const html = await res.text();
      for (const id of ["prompt", "generate", "preview", "result", "sampler", "quantizer"]) {
        assert(html.includes(`id="${id}"`), `playground has #${id}`);
      }
      const js = await app.request("/playground.js");
      assert(js.headers.get("content-type")?.startsWith("text/javascript"), "js type");
      assert((await js.text()).includes("image_generation.partial_image"), "js handles previews");
      assertEquals((await app.request("/playground.css")).status, 200);
    });

    let first = "";
    await t.step(
      "POST generations: a 16×16 PNG, timings, seed; same seed → same image",
      async () => {
        const res = await app.request(post({ prompt, seed: 5, steps: 3 }));
        assertEquals(res.status, 200, await res.clone().text());
        const b = await res.json();
        assertEquals(b.data.length, 1);
        const img = png(b.data[0].b64_json);
        assertEquals([img.width, img.height, img.channels], [16, 16, 3]);
        assertEquals([b.model, b.plan, b.seed, b.steps, b.size, b.output_format], [
          "pixel",
          "f32",
          5,
          3,
          "16x16",
          "png",
        ]);
        assertEquals(b.timings.step_ms.length, 3);
        assert(b.timings.total_ms > 0 && typeof b.created === "number", "timings, created");
        first = b.data[0].b64_json;
        const again = await (await app.request(post({ prompt, seed: 5, steps: 3 }))).json();
        assertEquals(again.data[0].b64_json, first);
        const other = await (await app.request(post({ prompt, seed: 6, steps: 3 }))).json();
        assert(other.data[0].b64_json !== first, "another seed, another image");
      },
    );

    await t.step("POST generations: n = 2, ddim, guidance off, 8x8", async () => {
      const b = await (await app.request(post({
        prompt,
        n: 2,
        sampler: "ddim",
        guidance: 1,
        size: "8x8",
        steps: 2,
      }))).json();
      assertEquals(b.data.length, 2);
      assertEquals(png(b.data[1].b64_json).width, 8);
    });

    await t.step("POST generations: plan selection by plugin options", async () => {
      const b = await (await app.request(post({ prompt, quantizer: "uniform", steps: 1 }))).json();
      assertEquals([b.model, b.plan], ["pixel:w8", "w8a16-uniform"]);
      const c =
        await (await app.request(post({ prompt, plan: "w8a16-uniform", bits: 8, steps: 1 })))
          .json();
      assertEquals(c.model, "pixel:w8");
      // The 8-bit weights draw nearly the same image as the f32 ones (same seed).
      const q = await (await app.request(post({ prompt, seed: 5, steps: 3, model: "pixel:w8" })))
        .json();
      const fp = png(first).data, qd = png(q.data[0].b64_json).data;
      const mean = fp.reduce((m, v, i) => m + Math.abs(v - qd[i]), 0) / fp.length;
      // Another image path (diff > 0), yet close: DPM amplifies the random model's rounding.
      assert(mean > 0 && mean <= 2, `w8 vs f32: mean |pixel difference| ${mean}`);
      await expectError(await app.request(post({ prompt, quantizer: "tlq" })), 400, "quantizer");
      await expectError(
        await app.request(post({ prompt, quantizer: "uniform", bits: 4 })),
        400,
        "bits",
      );
      await expectError(await app.request(post({ prompt, plan: "w3" })), 400, "plan");
      await expectError(await app.request(post({ prompt, rotation: "hadamard" })), 400, "rotation");
      await expectError(await app.request(post({ prompt, attention: "paro" })), 400, "attention");
      await expectError(await app.request(post({ prompt, density: 0.3 })), 400, "density");
    });

    await t.step("POST generations stream: partial images, then completed", async () => {
      const res = await app.request(
        post({ prompt, seed: 5, steps: 3, stream: true, partial_images: 2 }),
      );
      assertEquals(res.status, 200);
      assert(res.headers.get("content-type")?.startsWith("text/event-stream"), "SSE");
      const ev = parseSse(await res.text());
      assertEquals(ev.map((e) => e.event), [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
      ]);
      const parts = ev.slice(0, 2).map((e) => JSON.parse(e.data));
      assertEquals(parts.map((p) => [p.type, p.partial_image_index, p.step, p.total]), [
        ["image_generation.partial_image", 0, 1, 3],
        ["image_generation.partial_image", 1, 2, 3],
      ]);
      assert(parts[0].elapsed_ms > 0, "elapsed_ms");
      assertEquals(png(parts[0].b64_json).width, 16);
      const done = JSON.parse(ev[2].data);
      assertEquals(done.type, "image_generation.completed");
      assertEquals(done.b64_json, first, "the streamed image is the plain one");
      assertEquals(done.size, "16x16");
    });

    await t.step("400s name the field and the rule", async () => {
      const cases: [unknown, string | null, string][] = [
        [{}, "prompt", "missing_required_parameter"],
        [{ prompt: "" }, "prompt", "invalid_value"],
        [{ prompt: "x".repeat(1001) }, "prompt", "invalid_value"],
        [{ prompt, n: 5 }, "n", "invalid_value"],
        [{ prompt, n: 1.5 }, "n", "invalid_value"],
        [{ prompt, n: "2" }, "n", "invalid_value"],
        [{ prompt, steps: 0 }, "steps", "invalid_value"],
        [{ prompt, steps: 51 }, "steps", "invalid_value"],
        [{ prompt, size: "big" }, "size", "invalid_value"],
        [{ prompt, size: "15x15" }, "size", "invalid_value"],
        [{ prompt, size: "1024x1024" }, "size", "invalid_value"],
        [{ prompt, guidance: -1 }, "guidance", "invalid_value"],
        [{ prompt, sampler: "euler" }, "sampler", "invalid_value"],
        [{ prompt, seed: -1 }, "seed", "invalid_value"],
        [{ prompt, response_format: "url" }, "response_format", "unsupported_value"],
        [{ prompt, output_format: "jpeg" }, "output_format", "unsupported_value"],
        [{ prompt, background: "transparent" }, "background", "unsupported_value"],
        [{ prompt, partial_images: 2 }, "partial_images", "invalid_value"],
        [{ prompt, model: "nope" }, "model", "model_not_found"],
        [{ prompt, model: "../../etc/passwd" }, "model", "invalid_value"],
        [{ prompt, model: "/work/main/models/emoji-s-a" }, "model", "invalid_value"],
        [{ prompt, path: "/tmp/x" }, "path", "unknown_parameter"],
        [[1, 2], null, "invalid_body"],
      ];
      for (const [body, param, code] of cases) {
        const e = await expectError(await app.request(post(body)), 400, param);
        assertEquals(e.code, code, `${JSON.stringify(body).slice(0, 60)}: ${e.message}`);
        assertEquals(e.type, "invalid_request_error");
      }
      const e = await expectError(await app.request(post({ prompt, n: 9 })), 400, "n");
      assert(e.message.includes("at most 4"), `the rule: ${e.message}`);
    });

    await t.step("400 bad JSON, 413 too large, 415 not JSON", async () => {
      const bad = await expectError(await app.request(post("{nope")), 400, null);
      assertEquals(bad.code, "invalid_json");
      await expectError(await app.request(post({ prompt: "y".repeat(5000) })), 413);
      const form = await app.request(GEN, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "prompt=red+apple",
      });
      assertEquals((await expectError(form, 415)).code, "unsupported_media_type");
      await expectError(await app.request(GEN, { method: "POST", body: "{}" }), 415);
    });

    await t.step("JSON 404 and 405 (with Allow)", async () => {
      assertEquals((await expectError(await app.request("/nope"), 404)).code, "not_found");
      await expectError(await app.request("/v1/images/edits", { method: "POST" }), 404);
      const g = await app.request(GEN);
      await expectError(g, 405);
      assertEquals(g.headers.get("allow"), "POST");
      const d = await app.request("/v1/models", { method: "DELETE" });
      await expectError(d, 405);
      assertEquals(d.headers.get("allow"), "GET, HEAD");
    });

    await t.step("500: no details to the client, the request id instead", async () => {
      const orig = console.error;
      console.error = () => {}; // the server logs the details; keep the test output clean
      try {
        const res = await app.request(post({ prompt, model: "broken" }));
        const e = await expectError(res, 500, null);
        assert(!e.message.includes("secret"), `leaked: ${e.message}`);
        assert(e.message.includes(res.headers.get("x-request-id")!), "names the request id");
        assertEquals(e.type, "server_error");
      } finally {
        console.error = orig;
      }
    });

    await t.step("GET /metrics: requests, queue, histograms, images, GPU memory", async () => {
      const res = await app.request("/metrics");
      assert(res.headers.get("content-type")?.startsWith("text/plain; version=0.0.4"), "type");
      const m = await res.text();
      const has = (re: RegExp) => assert(re.test(m), `metrics lack ${re}`);
      has(
        /^webdit_http_requests_total\{route="\/v1\/images\/generations",method="POST",status="200"\} \d+/m,
      );
      has(
        /^webdit_http_requests_total\{route="\/v1\/images\/generations",method="POST",status="400"\} \d+/m,
      );
      has(/^webdit_http_requests_total\{route="unmatched",method="GET",status="404"\} 1$/m);
      has(/^webdit_queue_depth 0$/m);
      has(/^webdit_queue_wait_seconds_bucket\{le="\+Inf"\} \d+$/m);
      has(/^webdit_step_seconds_count \d+$/m);
      has(/^webdit_images_generated_total \d+$/m);
      const gpu = Number(/^webdit_gpu_memory_bytes (\d+)$/m.exec(m)?.[1]);
      assert(gpu > 0 && gpu === rt.pool.liveBytes, `gpu bytes ${gpu}`);
      has(/^# TYPE webdit_step_seconds histogram$/m);
    });

    await t.step("timeout stops the GPU work between steps (504)", async () => {
      const short = makeApp(rt, [pixel], { steps: 3, timeoutMs: 150 });
      const res = await short.app.request(post({ prompt, steps: 50 }));
      const e = await expectError(res, 504, null);
      assertEquals(e.code, "timeout");
      assertEquals(res.headers.get("x-should-retry"), "false");
      await short.queue.idle();
      const steps = short.metrics.stepSeconds.count();
      assert(steps < 50, `ran ${steps} of 50 steps after the timeout`);
      assertEquals(short.metrics.rejected.get({ reason: "timeout" }), 1);
      // The queue is free again.
      assertEquals([short.queue.depth, short.queue.running], [0, 0]);
      // Streaming: the timeout after the stream started is an `error` event.
      const sres = await short.app.request(post({ prompt, steps: 50, stream: true }));
      assertEquals(sres.status, 200);
      const ev = parseSse(await sres.text());
      assertEquals(ev.map((x) => x.event), ["error"]);
      assertEquals(JSON.parse(ev[0].data).error.code, "timeout");
    });
    s.close();
    w8.pipeline.release();
    await Deno.remove(dir, { recursive: true });
  });
});

Deno.test("server models: plan names", () => {
  const base = { quantizer: "tlq", wbits: 4, abits: 8, rotation: "none", attention: "dense" };
  assertEquals(planName({ ...base, density: null }), "w4a8-tlq");
  assertEquals(
    planName({ ...base, rotation: "adaptive", attention: "paro", density: 0.3 }),
    "w4a8-tlq-adaptive-paro0.3",
  );
  assertEquals(
    planName({ ...base, density: null, gptq: true, rotation: "adaptive" }),
    "w4a8-tlq-gptq-adaptive",
  );
  assertEquals(
    planName({ ...base, density: null, abitsOverride: [{ pattern: "*", abits: 16 }] }),
    "w4a8-tlq-mixed",
  );
  assertEquals(
    planName({ ...base, density: null, center: "mean", actGroup: 16, actAsym: true }),
    "w4a8-tlq-centred-mean-g16asym",
  );
  assertEquals(planName({ ...base, density: null, tlqFit: "mse" }), "w4a8-tlq-mse");
  assertEquals(planName({ ...base, density: null, tlqAssign: "nearest" }), "w4a8-tlq-nearest");
  assertEquals(planName({ ...base, density: null, actGroup: 32 }), "w4a8-tlq-g32");
  assertEquals(planName({ ...base, density: null, cfgDelta: true }), "w4a8-tlq-cfgd");
  // The branch's fit is named when not quantize's default (hessian with GPTQ, refit without);
  // artifacts from before --low-rank-fit have SVDQuant's split.
  const lr = { ...base, density: null, lowRank: 16 };
  assertEquals(planName({ ...lr, lowRankFit: "refit" }), "w4a8-tlq-lr16");
  assertEquals(planName(lr), "w4a8-tlq-lr16-svd");
  assertEquals(planName({ ...lr, gptq: true, lowRankFit: "hessian" }), "w4a8-tlq-gptq-lr16");
  assertEquals(planName({ ...lr, gptq: true, lowRankFit: "refit" }), "w4a8-tlq-gptq-lr16-refit");
  assertEquals(
    planName({
      ...lr,
      lowRankOverride: [{ pattern: "*.attn2.*", rank: 0 }],
      lowRankFit: "refit",
    }),
    "w4a8-tlq-lr16-lrmixed",
  );
  assertEquals(
    planName({ ...base, quantizer: "uniform", density: null, groupSize: 64, gptq: true }),
    "w4a8-uniform-wg64-gptq",
  );
  const ars = { ...base, density: null, rotation: "adaptive" };
  assertEquals(planName(ars, { smooth: false, tau: 2 }), "w4a8-tlq-unsmoothed-tau2-adaptive");
  assertEquals(planName(ars, { alpha: 0.25 }), "w4a8-tlq-alpha0.25-adaptive");
  assertEquals(planName(ars, { select: "error" }), "w4a8-tlq-byerror-adaptive");
  assertEquals(planName(ars, { select: "act-error" }), "w4a8-tlq-byacterror-adaptive");
  assertEquals(planName(ars, { select: "rms" }), "w4a8-tlq-adaptive");
  assertEquals(planName(ars, { seed: 3 }), "w4a8-tlq-rseed3-adaptive");
  // Defaults, and knobs of no rotation, leave the name alone.
  assertEquals(planName(ars, { alpha: 0.5, tau: 1, seed: 0 }), "w4a8-tlq-adaptive");
  assertEquals(planName({ ...base, density: null }, { smooth: false }), "w4a8-tlq");
});

Deno.test("server app: bearer auth, CORS", gpuTest, async (t) => {
  await withRuntime(async (rt) => {
    const e = stubEntry("stub", stubPipeline(1));
    const { app } = makeApp(rt, [e], {
      steps: 3,
      apiKey: "s3cret-key",
      corsOrigins: ["http://ok.test"],
    });
    await t.step("401 without or with a wrong token; 200 with the right one", async () => {
      const none = await app.request("/v1/models");
      assertEquals((await expectError(none, 401, null)).code, "invalid_api_key");
      assert(none.headers.get("www-authenticate")?.startsWith("Bearer"), "WWW-Authenticate");
      const bad = { headers: { authorization: "Bearer s3cret-kez" } };
      await expectError(await app.request("/v1/models", bad), 401);
      await expectError(await app.request("/metrics", bad), 401);
      await expectError(await app.request(post({ prompt: "x" }, bad.headers)), 401);
      const ok = { headers: { authorization: "Bearer s3cret-key" } };
      assertEquals((await app.request("/v1/models", ok)).status, 200);
      assertEquals((await app.request("/metrics", ok)).status, 200);
      assertEquals((await app.request("/healthz")).status, 200, "health stays open");
    });
    await t.step("tokenMatches compares in constant time over digests", async () => {
      assert(await tokenMatches("a", "a"), "equal");
      assert(!(await tokenMatches("a", "ab")), "different length");
    });
    await t.step("CORS only for configured origins", async () => {
      const ok = await app.request("/healthz", { headers: { origin: "http://ok.test" } });
      assertEquals(ok.headers.get("access-control-allow-origin"), "http://ok.test");
      const no = await app.request("/healthz", { headers: { origin: "http://evil.test" } });
      assertEquals(no.headers.get("access-control-allow-origin"), null);
    });
  });
});

Deno.test(
  "server app: 429 when the backlog is full; a cancelled request frees its slot",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const log: StubLog = { calls: [], steps: 0 };
      const s = makeApp(rt, [stubEntry("stub", stubPipeline(10, log))], {
        steps: 3,
        queue: { maxQueue: 1, maxBatchImages: 1 },
      });
      const body = { prompt: "x", steps: 20 };
      const running = s.app.request(post(body));
      await until(() => log.calls.length === 1, 5000, "the first batch");
      const ctl = new AbortController();
      const waiting = s.app.request(post(body, {}, ctl.signal));
      await until(() => s.queue.depth === 1, 5000, "a waiting request");
      const full = await s.app.request(post(body));
      const e = await expectError(full, 429, null);
      assertEquals(e.code, "queue_full");
      assert(Number(full.headers.get("retry-after")) >= 1, "Retry-After in seconds");
      ctl.abort(); // the client goes away
      assertEquals((await waiting).status, 499);
      assertEquals(s.queue.depth, 0, "slot freed");
      const next = s.app.request(post({ prompt: "x", steps: 1 }));
      assertEquals((await running).status, 200);
      assertEquals((await next).status, 200);
      assertEquals(log.calls.length, 2, "the cancelled request never ran");
      assertEquals(s.metrics.rejected.get({ reason: "queue_full" }), 1);
      assertEquals(s.metrics.rejected.get({ reason: "cancelled" }), 1);
      await delay(1);
    });
  },
);
