/**
 * The HTTP API (Hono): OpenAI-compatible image generation with streaming, models,
 * plugins, health, Prometheus metrics and the web playground.
 *
 * Every answer carries `x-request-id`; every 4xx/5xx is OpenAI's error body; the GPU
 * work of all requests goes through one {@linkcode GpuQueue}.
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import type { Runtime } from "../gpu/device.ts";
import { latentGeometry } from "../latent_geometry.ts";
import type { PluginRegistry } from "../registry.ts";
import { ApiError } from "./errors.ts";
import { type GenerationDefaults, handleGenerations, requestDefaults } from "./generations.ts";
import { modelSamplers } from "./checks.ts";
import { createServerMetrics, type ServerMetrics } from "./metrics.ts";
import type { ModelCatalog, ModelEntry } from "./models.ts";
import { GpuQueue, type GpuQueueOptions } from "./queue.ts";
import { DEFAULT_LIMITS, type ServerLimits } from "./schemas.ts";
import { PLAYGROUND_FILES } from "./playground/files.ts";

/** Options of {@linkcode createApp}. */
export interface ServerOptions {
  /** The runtime the models are loaded on. */
  runtime: Runtime;
  /** The loaded models and artifacts (the first is the default). */
  catalog: ModelCatalog;
  /** Plugins listed by /v1/plugins. */
  registry: PluginRegistry;
  /** Bearer token required on /v1/* and /metrics; undefined = no auth. */
  apiKey?: string;
  /** Origins allowed by CORS; undefined or empty = CORS off. */
  corsOrigins?: string[];
  /** Request limits (merged over the defaults; maxSide's is {@linkcode defaultMaxSide}). */
  limits?: Partial<ServerLimits>;
  /** Defaults of steps, guidance and sampler. */
  defaults?: Partial<GenerationDefaults>;
  /** Per-request time limit in ms; default 300 000. */
  timeoutMs?: number;
  /** Largest request body in bytes; default 64 KiB. */
  maxBodyBytes?: number;
  /** The GPU queue's backlog and batching. */
  queue?: GpuQueueOptions;
  /** Where one line per request goes; default stderr. Pass `() => {}` to silence. */
  log?: (line: string) => void;
}

/** The app and what it owns. */
export interface WebditServer {
  /** The Hono app (`app.fetch` for Deno.serve, `app.request` in tests). */
  app: Hono<Env>;
  /** The GPU queue. */
  queue: GpuQueue;
  /** The metrics registry. */
  metrics: ServerMetrics;
  /**
   * Answers waiting and running requests 503 "The server is shutting down" (with Retry-After;
   * streams get an `error` event), refuses new ones alike, and aborts the running batch.
   */
  close(): void;
}

/** Hono variables the middleware sets. */
export type Env = { Variables: { requestId: string; clientSignal: AbortSignal } };

/** The routes and their methods (anything else on these paths is a 405). */
const ROUTES: Record<string, string[]> = {
  "/": ["GET", "HEAD"],
  "/healthz": ["GET", "HEAD"],
  "/metrics": ["GET", "HEAD"],
  "/v1/models": ["GET", "HEAD"],
  "/v1/models/:id": ["GET", "HEAD"],
  "/v1/plugins": ["GET", "HEAD"],
  "/v1/images/generations": ["POST"],
  ...Object.fromEntries(Object.keys(PLAYGROUND_FILES).map((p) => [p, ["GET", "HEAD"]])),
};

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

async function sha256(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
}

/** Constant-time comparison of a presented token with the key (via equal-length digests). */
export async function tokenMatches(presented: string, key: string): Promise<boolean> {
  const [a, b] = await Promise.all([sha256(presented), sha256(key)]);
  return timingSafeEqual(a, b);
}

function errorResponse(c: Context, e: ApiError): Response {
  for (const [k, v] of Object.entries(e.headers)) c.header(k, v);
  return c.json(e.body(), e.status as 400);
}

/** Plugin descriptors as JSON: their scalar and list fields (functions left out). */
function pluginJson(p: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) {
    if (typeof v === "function") continue;
    if (v === null || ["string", "number", "boolean"].includes(typeof v) || Array.isArray(v)) {
      out[k] = v;
    }
  }
  return out;
}

/**
 * The default limit on a side in pixels: twice the largest served model's own size. A
 * sampler step cannot be interrupted and its time grows with the square of the tokens, so
 * a larger size can hold the server for minutes on a slow adapter.
 */
export function defaultMaxSide(catalog: ModelCatalog): number {
  return 2 * Math.max(
    ...catalog.entries.map((e) => {
      const g = latentGeometry(e.pipeline);
      return g.size * g.pixelsPerCell;
    }),
  );
}

/** Creates the app over loaded models. */
export function createApp(o: ServerOptions): WebditServer {
  const rt = o.runtime;
  const limits: ServerLimits = {
    ...DEFAULT_LIMITS,
    maxSide: defaultMaxSide(o.catalog),
    ...Object.fromEntries(Object.entries(o.limits ?? {}).filter(([, v]) => v !== undefined)),
  };
  const defaults: GenerationDefaults = { ...o.defaults };
  const log = o.log ?? ((l: string) => console.error(l));
  const metrics = createServerMetrics({
    queueDepth: () => queue.depth, // read when scraped, after `queue` exists
    running: () => queue.running,
    gpuBytes: () => rt.pool.liveBytes,
    gpuPeakBytes: () => rt.pool.peakBytes,
  });
  const queue = new GpuQueue({
    ...o.queue,
    observer: {
      onDequeue: (ms) => metrics.queueWait.observe(ms / 1000),
      onStep: (ms) => metrics.stepSeconds.observe(ms / 1000),
      onBatch: (images) => metrics.batchImages.observe(images),
    },
  });
  let lost: string | undefined;
  rt.lost.then((e) => (lost = e.message));
  const started = Date.now();
  const gen = {
    catalog: o.catalog,
    queue,
    metrics,
    limits,
    defaults,
    timeoutMs: o.timeoutMs ?? 300_000,
  };

  const app = new Hono<Env>();

  // Request id first, so every answer (errors included) carries it.
  app.use("*", async (c, next) => {
    const incoming = c.req.header("x-request-id");
    const id = incoming && REQUEST_ID.test(incoming) ? incoming : crypto.randomUUID();
    c.set("requestId", id);
    c.set("clientSignal", c.req.raw.signal);
    const t0 = performance.now();
    await next();
    c.res.headers.set("x-request-id", id);
    const route = Object.hasOwn(ROUTES, c.req.path)
      ? c.req.path
      : /^\/v1\/models\/[^/]+$/.test(c.req.path)
      ? "/v1/models/:id"
      : "unmatched";
    const status = String(c.res.status);
    metrics.requests.inc({ route, method: c.req.method, status });
    metrics.requestSeconds.observe((performance.now() - t0) / 1000, { route });
    log(`${c.req.method} ${c.req.path} ${status} ${(performance.now() - t0).toFixed(0)}ms ${id}`);
  });
  app.use(
    "*",
    secureHeaders({
      contentSecurityPolicy: {
        defaultSrc: ["'self'"],
        imgSrc: ["'self'", "data:", "blob:"],
        connectSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'none'"],
      },
      crossOriginResourcePolicy: o.corsOrigins?.length ? "cross-origin" : "same-origin",
    }),
  );
  if (o.corsOrigins?.length) {
    app.use(
      "*",
      cors({
        origin: o.corsOrigins,
        allowMethods: ["GET", "POST", "OPTIONS"],
        allowHeaders: ["Authorization", "Content-Type", "X-Request-Id"],
        exposeHeaders: ["X-Request-Id", "Retry-After"],
        maxAge: 600,
      }),
    );
  }
  if (o.apiKey !== undefined) {
    const key = o.apiKey;
    const auth = async (c: Context, next: () => Promise<void>) => {
      const h = c.req.header("authorization") ?? "";
      const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
      if (!m || !(await tokenMatches(m[1], key))) {
        throw new ApiError(401, m ? "Incorrect API key provided." : "Missing bearer token.", {
          code: "invalid_api_key",
          headers: { "WWW-Authenticate": 'Bearer realm="webdit"' },
        });
      }
      await next();
    };
    app.use("/v1/*", auth);
    app.use("/metrics", auth);
  }

  app.get("/healthz", (c) => {
    const body = {
      status: lost ? "device_lost" : "ok",
      adapter: rt.info.description,
      fallback: rt.info.fallback,
      f16: rt.info.f16,
      models: o.catalog.entries.map((e) => ({ id: e.id, model: e.model, plan: e.plan.name })),
      queue: { depth: queue.depth, running: queue.running, max_queue: queue.maxQueue },
      gpu_memory_bytes: rt.pool.liveBytes,
      uptime_s: (Date.now() - started) / 1000,
      ...(lost ? { error: lost } : {}),
    };
    return c.json(body, lost ? 503 : 200);
  });

  app.get("/metrics", (c) => {
    c.header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return c.body(metrics.registry.render());
  });

  const modelJson = (e: ModelEntry) => {
    const g = latentGeometry(e.pipeline);
    const px = g.size * g.pixelsPerCell;
    const d = requestDefaults(defaults, e.pipeline.defaults, limits.maxSteps);
    return {
      id: e.id,
      object: "model",
      created: e.created,
      owned_by: "webdit",
      model: e.model,
      plan: e.plan,
      default_size: `${px}x${px}`,
      size_multiple: g.multiple * g.pixelsPerCell,
      dtype: g.dtype,
      caption_encoder: e.pipeline.encoder !== undefined || e.pipeline.prompts !== undefined,
      default_steps: d.steps, // what a request that leaves them out gets
      default_guidance: d.guidance,
      default_sampler: d.sampler,
      samplers: modelSamplers(e), // what `sampler` may name for this model
    };
  };
  app.get("/v1/models", (c) => c.json({ object: "list", data: o.catalog.entries.map(modelJson) }));
  // OpenAI's models.retrieve: one entry by id.
  app.get("/v1/models/:id", (c) => {
    const id = c.req.param("id");
    const e = o.catalog.entries.find((x) => x.id === id);
    if (!e) {
      throw new ApiError(404, `The model '${id}' does not exist.`, {
        param: "model",
        code: "model_not_found",
      });
    }
    return c.json(modelJson(e));
  });

  app.get(
    "/v1/plugins",
    (c) => c.json({ object: "list", data: o.registry.list().map((p) => pluginJson(p)) }),
  );

  app.post(
    "/v1/images/generations",
    bodyLimit({
      maxSize: o.maxBodyBytes ?? 64 * 1024,
      onError: () => {
        throw new ApiError(413, `The request body is over ${o.maxBodyBytes ?? 64 * 1024} bytes.`, {
          code: "payload_too_large",
        });
      },
    }),
    async (c) => {
      const type = (c.req.header("content-type") ?? "").split(";")[0].trim().toLowerCase();
      if (type !== "application/json") {
        throw new ApiError(
          415,
          `Content-Type must be application/json, got '${type || "none"}'.`,
          { code: "unsupported_media_type" },
        );
      }
      let body: unknown;
      try {
        body = JSON.parse(await c.req.text());
      } catch {
        throw new ApiError(400, "The request body is not valid JSON.", { code: "invalid_json" });
      }
      return await handleGenerations(c, gen, body, c.get("clientSignal"));
    },
  );

  for (const [path, file] of Object.entries(PLAYGROUND_FILES)) {
    app.get(path, (c) => {
      c.header("Content-Type", file.type);
      c.header("Cache-Control", "no-cache");
      return c.body(file.body);
    });
  }

  // 405 for known paths with another method.
  for (const [path, methods] of Object.entries(ROUTES)) {
    app.all(path, () => {
      throw new ApiError(405, `Method not allowed; ${path} accepts ${methods.join(", ")}.`, {
        code: "method_not_allowed",
        headers: { Allow: methods.join(", ") },
      });
    });
  }

  app.notFound((c) =>
    errorResponse(
      c,
      new ApiError(404, `No route for ${c.req.method} ${c.req.path}.`, { code: "not_found" }),
    )
  );

  app.onError((e, c) => {
    if (e instanceof ApiError) return errorResponse(c, e);
    if (e instanceof HTTPException) {
      return errorResponse(c, new ApiError(e.status, e.message || "Bad request."));
    }
    // Details stay in the server's log; the client gets the request id.
    console.error(`webdit serve: request ${c.get("requestId")} failed:`, e);
    return errorResponse(
      c,
      new ApiError(500, `The server failed on this request (id ${c.get("requestId")}).`, {
        code: "internal_error",
      }),
    );
  });

  return { app, queue, metrics, close: () => queue.close() };
}
