/**
 * Does the server answer while it generates? One image request on a loopback server, with
 * `GET /healthz` polled every 250 ms until the image is back. Deno's GPU completion calls
 * block the JS thread until the GPU is idle, so a sampling loop that asked for a completion
 * with a step still running would hold every other request for that long; the loop sleeps
 * through most of a step first (runtime/sampling/generate.ts).
 *
 *   deno run -A bench/serve_responsive.ts [--model models/emoji-s] [--steps 8] [--write]
 *
 * Rows: `serve_healthz_during_generation_{p50,max}` (ms) and `serve_generation_during_probe`
 * (ms, the image request itself). With --write: bench/results/<device>/<date>_serve_responsive.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createRuntime } from "../runtime/gpu/device.ts";
import { loadDenseEntry } from "../runtime/server/models.ts";
import { deviceSlug, gitCommit, median, resultsHeader, writeResults } from "./harness.ts";
import { serveLoopback } from "./serve_load.ts";

const POLL_MS = 250;

async function main() {
  const { values: v } = parseArgs({
    options: {
      model: { type: "string" },
      steps: { type: "string" },
      write: { type: "boolean" },
    },
  });
  const model = v.model ?? new URL("../models/emoji-s", import.meta.url).pathname;
  const steps = Number(v.steps ?? 8);
  const rt = await createRuntime({ adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as "auto" });
  const entry = await loadDenseEntry(rt, { path: model, name: "m" });
  const srv = serveLoopback(rt, [entry]);
  const generate = () =>
    fetch(`${srv.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "red apple", steps }),
    }).then(async (r) => {
      await r.body?.cancel();
      if (r.status !== 200) throw new Error(`generation: HTTP ${r.status}`);
    });
  await generate(); // warm-up: compiles the pipelines
  const health: number[] = [];
  let running = true;
  const t0 = performance.now();
  const image = generate().finally(() => running = false);
  while (running) {
    const t = performance.now();
    const r = await fetch(`${srv.url}/healthz`);
    await r.body?.cancel();
    if (r.status !== 200) throw new Error(`healthz: HTTP ${r.status}`);
    health.push(performance.now() - t);
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
  await image;
  const genMs = performance.now() - t0;
  await srv.stop();
  entry.pipeline.release();
  const max = Math.max(...health);
  const note =
    `${health.length} polls of GET /healthz every ${POLL_MS} ms during one ${steps}-step ` +
    `image of ${model.replace(/.*\/(tests|models)\//, "$1/")}`;
  const rows = [
    {
      name: "serve_healthz_during_generation_p50",
      value: median(health),
      unit: "ms",
      median_ms: median(health),
      min_ms: Math.min(...health),
      note,
    },
    {
      name: "serve_healthz_during_generation_max",
      value: max,
      unit: "ms",
      median_ms: median(health),
      min_ms: Math.min(...health),
      note,
    },
    {
      name: "serve_generation_during_probe",
      value: genMs,
      unit: "ms",
      median_ms: genMs,
      min_ms: genMs,
      note: `the image request itself, ${steps} steps`,
    },
  ];
  const file = {
    ...resultsHeader(
      rt.info.description,
      await gitCommit(),
      `deno run -A bench/serve_responsive.ts ${Deno.args.join(" ")}`.trim(),
    ),
    results: rows,
    extra: {
      health_ms: health.map((x) => Number(x.toFixed(2))),
      host_load_average: Deno.loadavg(),
    },
  };
  console.log(
    rows.map((r) => `${r.name}: ${r.value.toFixed(1)} ${r.unit}`).join("\n"),
  );
  if (v.write) {
    const out = await writeResults(
      deviceSlug(rt.info.description, rt.info.fallback),
      "serve_responsive",
      file,
    );
    console.error(`wrote ${out.json}`);
  }
  rt.destroy();
}

if (import.meta.main) await main();
