/**
 * Loopback load on the HTTP server: N requests at concurrency C against
 * `POST /v1/images/generations`, with micro-batching on and off, and with a small
 * backlog (429s). Bounded in count and time; traffic goes to 127.0.0.1 only.
 *
 *   deno run -A bench/serve_load.ts [--model PATH] [--requests 100] [--concurrency 16]
 *                                   [--steps 4] [--rounds 3] [--write]
 *
 * With --write the figures go to bench/results/<device>/<date>_serve_load.{json,md}.
 * The load test (tests/server_load_test.ts) uses {@linkcode runLoad} too.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createDefaultRegistry } from "../runtime/builtins.ts";
import { createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import { createApp, type ServerOptions } from "../runtime/server/app.ts";
import { loadDenseEntry, ModelCatalog, type ModelEntry } from "../runtime/server/models.ts";
import { deviceSlug, gitCommit, median, resultsHeader, writeResults } from "./harness.ts";

/** Options of {@linkcode runLoad}. */
export interface LoadOptions {
  /** Base URL, e.g. http://127.0.0.1:8787. */
  url: string;
  /** Requests in all. */
  requests: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** The JSON body of request i. */
  body: (i: number) => Record<string, unknown>;
  /** Gives up on a request after this many ms (counted as status 0). */
  timeoutMs?: number;
}

/** What a load run measured. */
export interface LoadResult {
  /** Responses by status (0 = no response). */
  statuses: Record<number, number>;
  /** Latencies of the 200s, ms, ascending. */
  latencies: number[];
  /** Wall time of the run, ms. */
  wallMs: number;
  /** Images returned per second. */
  imagesPerSecond: number;
  /** Retry-After values of the 429s (seconds). */
  retryAfter: number[];
  /** Mean images per GPU batch, from the answers' timings. */
  meanBatchImages: number;
}

/** The p-quantile (0..1) of ascending values (nearest rank). */
export function quantile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** Sends `requests` requests, `concurrency` at a time; never retries. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const statuses: Record<number, number> = {};
  const latencies: number[] = [];
  const retryAfter: number[] = [];
  let images = 0, batchSum = 0;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < o.requests) {
      const i = next++;
      const t = performance.now();
      let status = 0;
      try {
        const res = await fetch(`${o.url}/v1/images/generations`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(o.body(i)),
          signal: AbortSignal.timeout(o.timeoutMs ?? 120_000),
        });
        status = res.status;
        const body = await res.json();
        if (status === 200) {
          latencies.push(performance.now() - t);
          images += body.data.length;
          batchSum += body.timings.batch_images;
        } else if (status === 429) {
          retryAfter.push(Number(res.headers.get("retry-after")));
        }
      } catch {
        status = 0;
      }
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  const wallMs = performance.now() - t0;
  latencies.sort((a, b) => a - b);
  return {
    statuses,
    latencies,
    wallMs,
    imagesPerSecond: images / (wallMs / 1000),
    retryAfter,
    meanBatchImages: latencies.length ? batchSum / latencies.length : 0,
  };
}

/** A server on a free loopback port over `entries`; `stop()` ends it. */
export function serveLoopback(
  rt: Runtime,
  entries: ModelEntry[],
  o: Partial<ServerOptions> = {},
) {
  const s = createApp({
    runtime: rt,
    catalog: new ModelCatalog(entries),
    registry: createDefaultRegistry(),
    log: () => {},
    ...o,
  });
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    s.app.fetch,
  );
  return {
    ...s,
    url: `http://127.0.0.1:${server.addr.port}`,
    async stop() {
      s.close();
      ac.abort();
      await server.finished;
    },
  };
}

async function main() {
  const { values: v } = parseArgs({
    options: {
      model: { type: "string" },
      requests: { type: "string" },
      concurrency: { type: "string" },
      steps: { type: "string" },
      rounds: { type: "string" },
      write: { type: "boolean" },
    },
  });
  const model = v.model ?? new URL("../tests/fixtures/pixart_pixel", import.meta.url).pathname;
  const requests = Number(v.requests ?? 100);
  const concurrency = Number(v.concurrency ?? 16);
  const steps = Number(v.steps ?? 4);
  const rounds = Number(v.rounds ?? 3);
  const rt = await createRuntime({ adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as "auto" });
  const entry = await loadDenseEntry(rt, { path: model, name: "m" });
  const prompts = ["red apple", "a big blue car with yellow eyes", "happy sun", "green tree"];
  const body = (i: number) => ({ prompt: prompts[i % prompts.length], seed: i, steps });
  const rows = [];
  const extra: Record<string, unknown> = {
    model: model.replace(/.*\/(tests|models)\//, "$1/"),
    requests,
    concurrency,
    steps,
    rounds,
    host_load_average: Deno.loadavg(),
  };
  const configs = [
    { name: "batched", maxBatch: 16, maxQueue: 16 },
    { name: "unbatched", maxBatch: 1, maxQueue: 16 },
    { name: "batched_backlog4", maxBatch: 16, maxQueue: 4 },
  ];
  // Rounds alternate the configurations, so a change in the host's load hits all alike;
  // each figure is the median over rounds, the gain the median of per-round ratios.
  const runs: Record<string, LoadResult[]> = {};
  for (let round = 0; round < rounds; round++) {
    for (const c of configs) {
      const srv = serveLoopback(rt, [entry], {
        queue: { maxQueue: c.maxQueue, maxBatchImages: c.maxBatch },
      });
      // Warm-up: compile the pipelines at the batch sizes the run will use.
      await runLoad({ url: srv.url, requests: concurrency, concurrency, body });
      const r = await runLoad({ url: srv.url, requests, concurrency, body });
      await srv.stop();
      (runs[c.name] ??= []).push(r);
      console.error(
        `round ${round + 1} ${c.name}: ${r.imagesPerSecond.toFixed(2)} images/s, p50 ${
          quantile(r.latencies, 0.5).toFixed(0)
        } ms, p95 ${quantile(r.latencies, 0.95).toFixed(0)} ms, statuses ${
          JSON.stringify(r.statuses)
        }, mean batch ${r.meanBatchImages.toFixed(1)}`,
      );
    }
  }
  for (const c of configs) {
    const rs = runs[c.name];
    const tput = median(rs.map((r) => r.imagesPerSecond));
    const p50 = median(rs.map((r) => quantile(r.latencies, 0.5)));
    const p95 = median(rs.map((r) => quantile(r.latencies, 0.95)));
    const n429 = median(rs.map((r) => r.statuses[429] ?? 0));
    const fastest = Math.min(...rs.map((r) => r.latencies[0] ?? NaN));
    const note =
      `max_batch ${c.maxBatch}, max_queue ${c.maxQueue}; statuses per round ${
        rs.map((r) => JSON.stringify(r.statuses)).join(" ")
      }; mean batch ${median(rs.map((r) => r.meanBatchImages)).toFixed(1)} images` +
      (c.maxQueue < concurrency ? "; clients do not retry a 429" : "");
    const row = (name: string, value: number, unit: string, extraNote?: string) => ({
      name: `serve_${c.name}_${name}`,
      value,
      unit,
      median_ms: p50,
      min_ms: fastest,
      ...(extraNote ? { note: extraNote } : {}),
    });
    rows.push(
      row("throughput", tput, "images/s", note),
      row("latency_p50", p50, "ms"),
      row("latency_p95", p95, "ms"),
      row("429", n429, "responses"),
    );
  }
  const ratios = runs.batched.map((r, i) => r.imagesPerSecond / runs.unbatched[i].imagesPerSecond);
  const gain = median(ratios);
  rows.push({
    name: "serve_batching_gain",
    value: gain,
    unit: "x",
    median_ms: median(runs.batched.map((r) => quantile(r.latencies, 0.5))),
    min_ms: Math.min(...runs.batched.map((r) => r.latencies[0] ?? NaN)),
    note: `throughput batched / unbatched, median of per-round ratios ${
      ratios.map((x) => x.toFixed(2)).join(", ")
    }`,
  });
  console.error(
    `micro-batching gain: ${gain.toFixed(2)}x (rounds: ${ratios.map((x) => x.toFixed(2))})`,
  );
  extra.host_load_average_end = Deno.loadavg();
  const file = {
    ...resultsHeader(
      rt.info.description,
      await gitCommit(),
      `deno run -A bench/serve_load.ts ${Deno.args.join(" ")}`.trim(),
    ),
    results: rows,
    extra,
  };
  if (v.write) {
    const out = await writeResults(
      deviceSlug(rt.info.description, rt.info.fallback),
      "serve_load",
      file,
    );
    console.error(`wrote ${out.json}`);
  } else {
    console.log(JSON.stringify(file, null, 2));
  }
  entry.pipeline.release();
  rt.destroy();
}

if (import.meta.main) await main();
