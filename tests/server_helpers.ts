/**
 * Helpers of the server tests: the tiny real model as catalog entries, a stub pipeline
 * (timed steps, no GPU) for scheduling tests, and an SSE parser.
 *
 * @module
 */
import type { Runtime } from "../runtime/gpu/device.ts";
import { openSafetensors } from "../runtime/io/safetensors.ts";
import type { GenerateRequest, GenerateResult, Pipeline } from "../runtime/pipeline.ts";
import { PIXART_SAMPLING } from "../runtime/model_defaults.ts";
import {
  densePlan,
  loadDenseEntry,
  ModelCatalog,
  type ModelEntry,
} from "../runtime/server/models.ts";
import { createApp, type ServerOptions } from "../runtime/server/app.ts";
import { createDefaultRegistry } from "../runtime/builtins.ts";
import { PIXEL_MODEL } from "./fixture_helpers.ts";

/** The generations route, as the app sees it. */
export const GEN = "http://localhost/v1/images/generations";

/** A JSON POST to the generations route (a string body is sent as is). */
export function post(
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Request {
  return new Request(GEN, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal,
  });
}

/** The app over `entries` with the default plugins, a silent log and `steps` by default. */
export function makeApp(
  rt: Runtime,
  entries: ModelEntry[],
  o: Partial<ServerOptions> & { steps?: number } = {},
) {
  const { steps = 1, ...rest } = o;
  return createApp({
    runtime: rt,
    catalog: new ModelCatalog(entries),
    registry: createDefaultRegistry(),
    log: () => {},
    defaults: { steps },
    ...rest,
  });
}

export { PIXEL_MODEL } from "./fixture_helpers.ts";

/** The prompts stored with the tiny model (its vocabulary knows their words). */
export async function pixelPrompts(): Promise<string[]> {
  const f = await openSafetensors(`${PIXEL_MODEL}/io.safetensors`);
  try {
    return JSON.parse(f.metadata.prompts) as string[];
  } finally {
    f.close();
  }
}

/** The tiny model as the entry "pixel" (plan f32). */
export async function pixelEntry(rt: Runtime): Promise<ModelEntry> {
  return await loadDenseEntry(rt, { path: PIXEL_MODEL, name: "pixel" });
}

/** What the stub pipeline saw. */
export interface StubLog {
  /** Each generate call's prompts and initial noise. */
  calls: { prompts: readonly string[]; latents: Float32Array; steps: number }[];
  /** Steps run in all. */
  steps: number;
}

/**
 * A pipeline stand-in: each step waits `stepMs`, checks the signal between steps like
 * the real loop, and returns the initial noise as the result.
 */
export function stubPipeline(stepMs: number, log: StubLog = { calls: [], steps: 0 }): Pipeline {
  const config = { sampleSize: 16, patchSize: 2, inChannels: 3 };
  const transformer = { config, dtype: "f32" };
  const stub = {
    pixelsPerLatent: 1,
    makesImages: true,
    vae: undefined,
    // Pixel space: the images are the latents.
    decode: (latents: Float32Array, shape: readonly [number, number, number, number]) =>
      Promise.resolve({ images: latents, shape: [...shape] }),
    model: transformer,
    transformer,
    tokenizer: undefined,
    encoder: {}, // stands for a caption encoder: the stub takes any prompt
    defaults: PIXART_SAMPLING,
    async generate(req: GenerateRequest): Promise<GenerateResult> {
      const prompts = req.prompts ?? [req.prompt ?? ""];
      const latents = req.latents!;
      const steps = req.steps ?? PIXART_SAMPLING.steps;
      log.calls.push({ prompts, latents, steps });
      const stepTimes: number[] = [];
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) {
        req.signal?.throwIfAborted();
        req.onSubmitted?.(i);
        await new Promise((r) => setTimeout(r, stepMs));
        log.steps++;
        stepTimes.push(stepMs);
        await req.onStep?.({
          step: i + 1,
          total: steps,
          elapsedMs: performance.now() - t0,
          stepMs,
          latents: () => Promise.resolve(latents),
        });
      }
      const H = req.height ?? 16, W = req.width ?? 16;
      return {
        latents,
        shape: [prompts.length, 3, H, W],
        unknownWords: [],
        timings: { encodeMs: 0, stepMs: stepTimes, totalMs: performance.now() - t0 },
      };
    },
  };
  return stub as unknown as Pipeline;
}

/** A catalog entry over the stub pipeline. */
export function stubEntry(id: string, pipeline: Pipeline): ModelEntry {
  return { id, model: id, plan: densePlan("f32"), pipeline, created: 0 };
}

/** One server-sent event. */
export interface SseEvent {
  /** The event name ("message" when none). */
  event: string;
  /** The data lines joined. */
  data: string;
}

/** Parses a whole text/event-stream body. */
export function parseSse(text: string): SseEvent[] {
  const out: SseEvent[] = [];
  for (const block of text.replace(/\r\n?/g, "\n").split("\n\n")) {
    if (!block.trim()) continue;
    let event = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    out.push({ event, data: data.join("\n") });
  }
  return out;
}

/** Resolves after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` every 5 ms until true, failing after `ms`. */
export async function until(cond: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await delay(5);
  }
}
