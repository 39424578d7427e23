/**
 * `deno task serve`: the HTTP API and playground on Deno.serve (runtime/server/app.ts).
 *
 * @module
 */
import { TEXT_WEIGHTS } from "../../plugins/models/text_weights.ts";
import { existsSync } from "node:fs";
import { ADAPTER_CHOICES, type AdapterChoice, createRuntime } from "../gpu/device.ts";
import { createDefaultRegistry } from "../builtins.ts";
import { DEFAULT_MODEL_DIR, type SamplerName, SAMPLERS } from "../pipeline.ts";
import { createApp } from "../server/app.ts";
import { DEFAULT_LIMITS } from "../server/schemas.ts";
import { modelSamplers } from "../server/checks.ts";
import { isArtifactPath, loadEntry, ModelCatalog, type ModelEntry } from "../server/models.ts";
import { warmUp } from "../server/warmup.ts";
import { WebditError } from "../errors.ts";
import { choiceOption, info, numberOption, parseCli, UsageError } from "./common.ts";

/** Usage text of serve. */
export const SERVE_USAGE = `deno task serve [options]
  --host H                address to bind (default 127.0.0.1)
  --port P                port (default 8787; 0 picks a free one)
  --model [NAME=]PATH     a model folder or a quantized artifact (.safetensors from
                          deno task quantize) to serve; repeatable, the first is the default;
                          NAME defaults to the folder's (an artifact's source model's) name,
                          so artifacts of one model are selected by plan or plugin options;
                          default the bundled model
  --text-encoder [NAME=]PATH
                          for the quantized artifacts served (which carry none): the folder
                          holding their model's prompt encoders (PixArt: T5 in text_encoder/ +
                          tokenizer/; FLUX: CLIP there, T5 in text_encoder_2/ + tokenizer_2/),
                          e.g. the source model folder; a model folder uses its own. Repeatable:
                          NAME= gives the artifacts of --model NAME=… theirs, one without a NAME
                          the others'
  --vae [NAME=]PATH       for the quantized artifacts of latent models: the folder holding
                          their VAE (vae/), e.g. the source model folder; repeatable, as
                          --text-encoder
  --text-encoder-dtype D  the prompt encoders' weights on the GPU: auto (default: f16 where the
                          checkpoint stores f16/bf16, exact; else f32), f32, or f16 (half the
                          bytes of an f32 T5, rounded); their activations are f32 always
  --max-sequence-length N T5's tokens per prompt (default the diffusers pipeline's: PixArt-α
                          120, PixArt-Σ 300, FLUX 512)
  --dtype T               f32 (default) or f16 transformers
  --adapter A             auto (default), gpu or cpu
  --api-key-env VAR       require "Authorization: Bearer <key>" with the key read from the
                          environment variable VAR (default WEBDIT_API_KEY, when set)
  --cors ORIGINS          comma-separated origins allowed by CORS (default: CORS off)
  --max-queue N           requests that may wait for the GPU before 429s (default 16)
  --max-batch N           images per micro-batch; 1 turns batching off (default 16)
  --timeout S             per-request time limit in seconds (default 300)
  --steps N               default sampler steps (default: each model's; the bundled model 20)
  --sampler S             default sampler, one every served model takes: dpm++2m or ddim
                          (PixArt), flow-euler (FLUX) (default: each model's)
  --guidance F            default guidance scale (default: each model's; the bundled model 3.5)
  --max-steps N           limit on steps (default 50)
  --max-n N               limit on images per request (default 4)
  --max-side N            limit on width and height in pixels (default: twice the largest
                          served model's own size, 128 for the bundled model); a sampler step
                          cannot be interrupted (not by --timeout either) and its time grows
                          with the square of the pixels, so larger sizes can hold the server
                          for minutes on the CPU adapter
  --vae-tiling            latent models' VAEs decode in tiles of their sample_size, blended,
                          as diffusers' vae.enable_tiling() (larger images on a small adapter)
  --no-warmup             listen at once, without first generating one 2-step image per
                          model (the warm-up compiles the kernels and times a step, so the
                          first request does not pay for it)
  Clients name models, never paths; see README "HTTP API".`;

/** The longest serve waits, at shutdown, for the answers to go out and for the running step. */
const DRAIN_MS = 5000;

function defaultModel(): string {
  if (existsSync(DEFAULT_MODEL_DIR)) return DEFAULT_MODEL_DIR;
  return new URL("../../models/emoji-s-a", import.meta.url).pathname;
}

/**
 * Checks that --host and --port can be listened on by listening and closing at once.
 * @throws {UsageError} for an address that does not resolve
 * @throws {WebditError} for one that cannot be bound (in use, not on this machine…)
 */
function checkListen(hostname: string, port: number): void {
  try {
    Deno.listen({ hostname, port }).close();
  } catch (e) {
    const msg = (e as Error).message;
    if (msg.startsWith("failed to lookup address information")) {
      throw new UsageError(`--host ${hostname}: ${msg}`);
    }
    throw new WebditError(`cannot listen on --host ${hostname} --port ${port}: ${msg}`, {
      cause: e,
    });
  }
}

/**
 * Checks a --sampler default against every served model's own samplers (modelSamplers: its
 * architecture's, less what its scheduler config refuses), so that a request without
 * `sampler` is never refused over a field the client did not send.
 * @throws {UsageError} naming --sampler and the first model that cannot run it
 */
export function checkServeSampler(
  entries: readonly ModelEntry[],
  sampler: SamplerName | undefined,
): void {
  if (sampler === undefined) return;
  for (const e of entries) {
    const own = modelSamplers(e);
    if (!own.includes(sampler)) {
      throw new UsageError(
        `--sampler ${sampler}: model ${e.id} samples with ${own.join(" or ") || "no sampler"}; ` +
          "give one every served model takes, or leave --sampler out (each model's own)",
      );
    }
  }
}

/** A --model given on the command line: its NAME (when given) and path. */
interface ModelSpec {
  name?: string;
  path: string;
}

/**
 * The folder `--flag [NAME=]PATH` (repeatable) gives each served artifact: the one named by
 * its --model NAME, else the one given without a NAME.
 * @throws {UsageError} for a NAME no artifact has, two folders for one NAME (or two without
 *   one), or the flag without an artifact served
 */
export function artifactFolders(
  specs: readonly ModelSpec[],
  given: readonly string[] | undefined,
  flag: string,
): (s: ModelSpec) => string | undefined {
  const named = new Map<string, string>();
  let any: string | undefined;
  for (const g of given ?? []) {
    const eq = g.indexOf("=");
    const [name, path] = eq > 0 ? [g.slice(0, eq), g.slice(eq + 1)] : [undefined, g];
    if (name === undefined) {
      if (any !== undefined) throw new UsageError(`--${flag} is given twice without a NAME`);
      any = path;
      continue;
    }
    if (named.has(name)) throw new UsageError(`--${flag} ${name}= is given twice`);
    if (!specs.some((s) => s.name === name && isArtifactPath(s.path))) {
      throw new UsageError(`--${flag} ${name}=${path}: no --model ${name}=… is an artifact`);
    }
    named.set(name, path);
  }
  if ((given?.length ?? 0) > 0 && !specs.some((s) => isArtifactPath(s.path))) {
    throw new UsageError(
      `--${flag} applies to the quantized artifacts served (model folders use their own); ` +
        "no --model is an artifact",
    );
  }
  return (s) => isArtifactPath(s.path) ? (s.name && named.get(s.name)) ?? any : undefined;
}

/** Runs serve until SIGINT/SIGTERM; returns the exit code. */
export async function serve(args: string[]): Promise<number> {
  const { values: v } = parseCli(args, {
    host: { type: "string" },
    port: { type: "string" },
    model: { type: "string", multiple: true },
    dtype: { type: "string" },
    adapter: { type: "string" },
    "api-key-env": { type: "string" },
    cors: { type: "string" },
    "max-queue": { type: "string" },
    "max-batch": { type: "string" },
    timeout: { type: "string" },
    steps: { type: "string" },
    sampler: { type: "string" },
    guidance: { type: "string" },
    "max-steps": { type: "string" },
    "max-n": { type: "string" },
    "max-side": { type: "string" },
    "no-warmup": { type: "boolean" },
    "vae-tiling": { type: "boolean" },
    "text-encoder": { type: "string", multiple: true },
    vae: { type: "string", multiple: true },
    "max-sequence-length": { type: "string" },
    "text-encoder-dtype": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (v.help) {
    info(SERVE_USAGE);
    return 0;
  }
  const hostname = v.host ?? "127.0.0.1";
  const port = numberOption("port", v.port, 8787, { min: 0, max: 65535, integer: true });
  const dtype = choiceOption("dtype", v.dtype, ["f32", "f16"] as const, "f32");
  const adapter = choiceOption<AdapterChoice>("adapter", v.adapter, ADAPTER_CHOICES, "auto");
  const maxSteps = numberOption("max-steps", v["max-steps"], 50, {
    min: 1,
    max: 1000,
    integer: true,
  });
  // Absent: each model's own defaults (model_index.json), as generate.
  const steps = v.steps === undefined
    ? undefined
    : numberOption("steps", v.steps, 0, { min: 1, max: maxSteps, integer: true });
  const sampler = v.sampler === undefined
    ? undefined
    : choiceOption<SamplerName>("sampler", v.sampler, SAMPLERS, "dpm++2m");
  const guidance = v.guidance === undefined
    ? undefined
    : numberOption("guidance", v.guidance, 0, { min: 0, max: DEFAULT_LIMITS.maxGuidance });
  const maxQueue = numberOption("max-queue", v["max-queue"], 16, {
    min: 0,
    max: 10000,
    integer: true,
  });
  const maxBatch = numberOption("max-batch", v["max-batch"], 16, {
    min: 1,
    max: 256,
    integer: true,
  });
  const timeout = numberOption("timeout", v.timeout, 300, { min: 0.1, max: 86400 });
  const maxN = numberOption("max-n", v["max-n"], 4, { min: 1, max: 64, integer: true });
  // Absent: twice the largest served model's own size (createApp's default).
  const maxSide = v["max-side"] === undefined
    ? undefined
    : numberOption("max-side", v["max-side"], 0, { min: 8, max: 8192, integer: true });
  const maxSequenceLength = v["max-sequence-length"] === undefined
    ? undefined
    : numberOption("max-sequence-length", v["max-sequence-length"], 0, {
      min: 1,
      max: 4096,
      integer: true,
    });
  const textEncoderDtype = choiceOption(
    "text-encoder-dtype",
    v["text-encoder-dtype"],
    TEXT_WEIGHTS,
    "auto",
  );
  const keyVar = v["api-key-env"] ?? "WEBDIT_API_KEY";
  const apiKey = Deno.env.get(keyVar) || undefined;
  if (v["api-key-env"] && !apiKey) {
    throw new UsageError(`--api-key-env ${keyVar}: the environment variable is empty or unset`);
  }
  const corsOrigins = v.cors?.split(",").map((s) => s.trim()).filter(Boolean);
  const specs = ((v.model as unknown as string[] | undefined) ?? [defaultModel()]).map((m) => {
    const eq = m.indexOf("=");
    return eq > 0 ? { name: m.slice(0, eq), path: m.slice(eq + 1) } : { path: m };
  });

  const list = (x: unknown) => x as string[] | undefined; // `multiple` options (as --model)
  const textEncoders = artifactFolders(specs, list(v["text-encoder"]), "text-encoder");
  const vaes = artifactFolders(specs, list(v.vae), "vae");
  checkListen(hostname, port); // before loading the models: a busy port fails at once

  const rt = await createRuntime({ adapter, f16: dtype === "f16" ? true : "auto" });
  const entries: ModelEntry[] = [];
  try {
    info(`adapter: ${rt.info.description}${rt.info.fallback ? " (CPU)" : ""}`);
    for (const s of specs) {
      const e = await loadEntry(rt, {
        ...s,
        dtype,
        textEncoder: textEncoders(s),
        vae: vaes(s),
        maxSequenceLength,
        textEncoderDtype,
      });
      if (v["vae-tiling"]) e.vaeTiling = true;
      // The first artifact of a model is named by the model, later ones by model:plan.
      if (entries.some((x) => x.model === e.model)) e.id = `${e.model}:${e.plan.name}`;
      entries.push(e);
      info(`loaded ${e.id} (${e.plan.name}) from ${s.path}`);
    }
    const catalog = new ModelCatalog(entries); // refuses a model the server cannot serve first
    checkServeSampler(entries, sampler);
    if (!v["no-warmup"]) await warmUp(entries, { sampler, guidance, log: info });
    const server = createApp({
      runtime: rt,
      catalog,
      registry: createDefaultRegistry(),
      apiKey,
      corsOrigins,
      limits: { maxSteps, maxN, maxSide },
      defaults: { steps, sampler, guidance },
      timeoutMs: timeout * 1000,
      queue: { maxQueue, maxBatchImages: maxBatch },
    });
    const ac = new AbortController();
    const httpServer = Deno.serve({
      hostname,
      port,
      signal: ac.signal,
      onListen: ({ hostname: h, port: p }) => {
        info(
          `listening on http://${h.includes(":") ? `[${h}]` : h}:${p}/` +
            (apiKey ? ` (bearer auth from $${keyVar})` : ""),
        );
      },
    }, server.app.fetch);
    let stopping = false;
    const stop = () => {
      if (stopping) { // a second signal: stop at once
        ac.abort();
        return;
      }
      stopping = true;
      info("shutting down");
      // Waiting and running requests are answered 503 (streams: an `error` event) now; the
      // listener closes once those answers are out, or after DRAIN_MS at the latest.
      server.close();
      const cut = setTimeout(() => ac.abort(), DRAIN_MS);
      httpServer.shutdown().finally(() => clearTimeout(cut));
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
    await httpServer.finished;
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
    // A sampler step cannot be interrupted: let the running one end before the models go.
    let wait: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      server.queue.idle(),
      new Promise((r) => wait = setTimeout(r, DRAIN_MS)),
    ]);
    clearTimeout(wait);
    return 0;
  } finally {
    for (const e of entries) e.pipeline.release();
    rt.destroy();
  }
}
