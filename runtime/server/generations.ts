/**
 * `POST /v1/images/generations`: validation, model selection, the GPU queue, and the
 * answer as JSON or as OpenAI's image-generation server-sent events.
 *
 * @module
 */
import type { Context } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import { latentGeometry } from "../latent_geometry.ts";
import type { SamplerName, SamplingDefaults } from "../pipeline.ts";
import { ApiError, badRequest } from "./errors.ts";
import { imagePngBase64, previewPngBase64, previewSteps } from "./images.ts";
import type { ModelCatalog, ModelEntry } from "./models.ts";
import {
  type GpuQueue,
  type ImageJob,
  type JobResult,
  QueueFullError,
  ShuttingDownError,
} from "./queue.ts";
import { type ImageRequest, parseImageRequest, type ServerLimits } from "./schemas.ts";
import {
  checkFits,
  checkNegativePrompt,
  checkPrompt,
  checkSampler,
  maxImagesThatFit,
} from "./checks.ts";
import type { ServerMetrics } from "./metrics.ts";

/** Server-wide defaults of the generation extensions (serve --steps, --sampler); each model's
 *  own (`Pipeline.defaults`) fill what these leave out. */
export interface GenerationDefaults {
  /** Sampler steps. */
  steps?: number;
  /** Guidance scale. */
  guidance?: number;
  /** Sampler. */
  sampler?: SamplerName;
}

/**
 * What a request to a model that leaves steps, guidance or sampler out gets: the server's
 * defaults over the model's own, steps within the server's limit (/v1/models lists them).
 */
export function requestDefaults(
  server: GenerationDefaults,
  own: SamplingDefaults,
  maxSteps: number,
): SamplingDefaults {
  return {
    steps: Math.min(server.steps ?? own.steps, maxSteps),
    guidance: server.guidance ?? own.guidance,
    sampler: server.sampler ?? own.sampler,
  };
}

/** What the handler needs. */
export interface GenerationContext {
  catalog: ModelCatalog;
  queue: GpuQueue;
  metrics: ServerMetrics;
  limits: ServerLimits;
  defaults: GenerationDefaults;
  /** Per-request limit on the time to the last image, ms. */
  timeoutMs: number;
}

/** Why a job was aborted: the client went away. */
export class ClientGoneError extends Error {
  /** Creates the reason. */
  constructor() {
    super("The client went away");
    this.name = "ClientGoneError";
  }
}

/** Why a job was aborted: the per-request timeout. */
export class RequestTimeoutError extends Error {
  /** Creates the reason. */
  constructor(ms: number) {
    super(`The request took longer than the server's limit of ${ms / 1000} s and was stopped.`);
    this.name = "RequestTimeoutError";
  }
}

/** A fresh random u32 seed. */
function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** Turns a job failure into the answer's error. */
export function jobError(e: unknown, metrics: ServerMetrics): ApiError {
  if (e instanceof QueueFullError) {
    metrics.rejected.inc({ reason: "queue_full" });
    return new ApiError(429, e.message, {
      code: "queue_full",
      headers: { "Retry-After": String(e.retryAfter) },
    });
  }
  if (e instanceof ShuttingDownError) {
    metrics.rejected.inc({ reason: "shutdown" });
    return new ApiError(503, e.message, {
      code: "server_shutting_down",
      headers: { "Retry-After": String(e.retryAfter) },
    });
  }
  if (e instanceof RequestTimeoutError) {
    metrics.rejected.inc({ reason: "timeout" });
    return new ApiError(504, e.message, {
      code: "timeout",
      headers: { "x-should-retry": "false" },
    });
  }
  if (e instanceof ClientGoneError) {
    metrics.rejected.inc({ reason: "cancelled" });
    return new ApiError(499, e.message, { code: "client_closed_request" });
  }
  if (e instanceof ApiError) return e;
  throw e; // a 500, answered by the app's error handler
}

/** Checks the size against the model and returns [height, width] in model cells. */
function cells(req: ImageRequest, entry: ModelEntry): [number, number] {
  const g = latentGeometry(entry.pipeline);
  const ppl = g.pixelsPerCell;
  const def = g.size * ppl;
  const w = req.size?.width ?? def, h = req.size?.height ?? def;
  const step = g.multiple * ppl;
  if (w % step || h % step) {
    throw badRequest(
      `Invalid value for 'size': ${w}x${h} is not a multiple of ${step} pixels (${entry.id}'s patch), e.g. '${def}x${def}'.`,
      "size",
    );
  }
  return [h / ppl, w / ppl];
}

/** The handler of POST /v1/images/generations (body already checked as JSON). */
export async function handleGenerations(
  c: Context,
  g: GenerationContext,
  body: unknown,
  clientSignal: AbortSignal,
): Promise<Response> {
  const req = parseImageRequest(body, g.limits);
  const entry = g.catalog.select(req);
  const [H, W] = cells(req, entry);
  checkPrompt(entry, req.prompt); // a prompt the model cannot encode is the client's 400
  checkNegativePrompt(entry, req.negativePrompt, req.trueCfg);
  const d = requestDefaults(g.defaults, entry.pipeline.defaults, g.limits.maxSteps);
  const sampler = checkSampler(entry, req.sampler ?? d.sampler);
  const steps = req.steps ?? d.steps;
  const seed = req.seed ?? randomSeed();
  const guidance = req.guidance ?? d.guidance;
  const size = `${W * entry.pipeline.pixelsPerLatent}x${H * entry.pipeline.pixelsPerLatent}`;
  // One step must fit the adapter: a 400 on size or n, never a 500 after queueing.
  const shape = { height: H, width: W, guidance, trueCfg: req.trueCfg };
  checkFits(entry, { ...shape, images: req.n }, size);
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new RequestTimeoutError(g.timeoutMs)), g.timeoutMs);
  const onGone = () => ctl.abort(new ClientGoneError());
  if (clientSignal.aborted) onGone();
  clientSignal.addEventListener("abort", onGone, { once: true });
  const cleanup = () => {
    clearTimeout(timer);
    clientSignal.removeEventListener("abort", onGone);
  };
  const job: ImageJob = {
    entry,
    prompt: req.prompt,
    negativePrompt: req.negativePrompt,
    n: req.n,
    seed,
    steps,
    guidance,
    trueCfg: req.trueCfg,
    sampler,
    height: H,
    width: W,
    maxBatchImages: maxImagesThatFit(entry, shape),
    signal: ctl.signal,
  };
  const common = {
    background: "opaque",
    output_format: "png",
    size,
    quality: req.quality, // echoed: every quality is the same sampling here
  } as const;
  const extras = (r: JobResult) => ({
    model: entry.id,
    plan: entry.plan.name,
    seed,
    steps,
    guidance: job.guidance,
    true_cfg: job.trueCfg ?? null,
    sampler: job.sampler,
    unknown_words: r.unknownWords,
    prompt_truncated: r.promptTruncated, // cut to the text encoder's length, as diffusers does
    timings: {
      queue_ms: r.timings.queueMs,
      encode_ms: r.timings.encodeMs,
      step_ms: r.timings.stepMs,
      mean_step_ms: r.timings.stepMs.reduce((a, b) => a + b, 0) / r.timings.stepMs.length,
      total_ms: r.timings.totalMs,
      batch_images: r.timings.batchImages,
      batch_requests: r.timings.batchRequests,
    },
  });
  const usage = () => {
    // Tokens of the caption encoder: the bundled one's, or a real checkpoint's T5.
    const p = entry.pipeline;
    const t = p.tokenizer?.encode(req.prompt).mask.reduce((a, b) => a + b, 0) ??
      p.prompts?.tokens(req.prompt) ?? 0;
    return {
      input_tokens: t,
      input_tokens_details: { image_tokens: 0, text_tokens: t },
      output_tokens: 0,
      total_tokens: t,
    };
  };
  // The queue decoded a latent model's images with its VAE (pixel-space ones are the latents).
  const images = (r: JobResult) => {
    const [n, C, h, w] = r.imageShape;
    return Array.from({ length: n }, (_, i) => imagePngBase64(r.images, i, C, h, w));
  };

  if (!req.stream) {
    let result: JobResult;
    try {
      result = await g.queue.enqueue(job); // throws QueueFullError synchronously
    } catch (e) {
      throw jobError(e, g.metrics);
    } finally {
      cleanup();
    }
    g.metrics.images.inc(undefined, req.n);
    return c.json({
      created: Math.floor(Date.now() / 1000),
      data: images(result).map((b64_json) => ({ b64_json })),
      ...common,
      usage: usage(),
      ...extras(result),
    });
  }

  // Streaming: previews are written without blocking the GPU batch; one preview at a
  // time in flight per client (a slow reader misses previews, not the image).
  let sse: SSEStreamingApi | undefined;
  let chain: Promise<void> = Promise.resolve();
  let inFlight = 0;
  let partialIndex = 0;
  const write = (event: string, data: unknown) => {
    chain = chain.then(() => sse?.writeSSE({ event, data: JSON.stringify(data) }));
    return chain;
  };
  // Previews are the latents box-filtered: only a pixel-space model's are images.
  job.previewSteps = entry.pipeline.vae ? [] : previewSteps(req.partialImages, steps);
  job.onPreview = (p) => {
    if (!sse || inFlight > 0) return;
    inFlight++;
    const [C, h, w] = [latentGeometry(entry.pipeline).channels, H, W];
    for (let i = 0; i < req.n; i++) {
      const pv = previewPngBase64(p.latents, i, C, h, w);
      write("image_generation.partial_image", {
        type: "image_generation.partial_image",
        b64_json: pv.b64,
        created_at: Math.floor(Date.now() / 1000),
        ...common,
        partial_image_index: partialIndex++,
        image_index: i,
        preview_size: `${pv.width}x${pv.height}`,
        step: p.step,
        total: p.total,
        elapsed_ms: p.elapsedMs,
      });
    }
    chain = chain.finally(() => inFlight--);
  };
  let pending: Promise<JobResult>;
  try {
    pending = g.queue.enqueue(job);
    pending.catch(() => {}); // awaited in the stream below
  } catch (e) {
    cleanup();
    throw jobError(e, g.metrics);
  }
  return streamSSE(c, async (stream) => {
    sse = stream;
    stream.onAbort(onGone);
    try {
      const r = await pending;
      g.metrics.images.inc(undefined, req.n);
      const b64 = images(r);
      const ex = extras(r);
      for (let i = 0; i < b64.length; i++) {
        await write("image_generation.completed", {
          type: "image_generation.completed",
          b64_json: b64[i],
          created_at: Math.floor(Date.now() / 1000),
          ...common,
          usage: usage(),
          image_index: i,
          ...ex,
        });
      }
    } catch (e) {
      let err: ApiError;
      try {
        err = jobError(e, g.metrics);
      } catch (e2) {
        // As the app's 500: details in the log, the request id to the client.
        const id = c.get("requestId");
        console.error(`webdit serve: request ${id} failed:`, e2);
        err = new ApiError(500, `The server failed on this request (id ${id}).`, {
          code: "internal_error",
        });
      }
      if (!(e instanceof ClientGoneError)) await write("error", err.body());
    } finally {
      cleanup();
      await chain.catch(() => {});
    }
  });
}
