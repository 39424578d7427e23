/**
 * The request schema of `POST /v1/images/generations` (OpenAI's Images API fields plus
 * our extensions), validated with zod into a typed request or a 400 naming the field
 * and the rule it broke.
 *
 * @module
 */
import { z } from "zod";
import { type ApiError, badRequest } from "./errors.ts";

/** Limits on what one request may ask for. */
export interface ServerLimits {
  /** Characters in a prompt; default 1000. */
  maxPromptChars: number;
  /** Images per request; default 4. */
  maxN: number;
  /** Sampler steps; default 50. */
  maxSteps: number;
  /** Pixels on a side; default 512 here, the server's is twice its largest model's size. */
  maxSide: number;
  /** Classifier-free guidance scale; default 20. */
  maxGuidance: number;
}

/** The default limits. */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  maxPromptChars: 1000,
  maxN: 4,
  maxSteps: 50,
  maxSide: 512,
  maxGuidance: 20,
};

/** A validated image-generation request (sizes still unchecked against the model). */
export interface ImageRequest {
  /** The prompt. */
  prompt: string;
  /** Extension: diffusers' negative_prompt; undefined → the model's default (""). */
  negativePrompt: string | undefined;
  /** Images. */
  n: number;
  /** Width and height in pixels, or undefined for the model's own size. */
  size: { width: number; height: number } | undefined;
  /** Answer as server-sent events. */
  stream: boolean;
  /** Previews to stream before the final image. */
  partialImages: number;
  /** OpenAI's quality, echoed in the answer (the model has one quality); default "auto". */
  quality: string;
  /** Model name (id or base name), or undefined for the default. */
  model: string | undefined;
  /** Seed of the initial noise; undefined → random. */
  seed: number | undefined;
  /** Sampler steps; undefined → the server's default. */
  steps: number | undefined;
  /** Guidance scale; undefined → the server's default. */
  guidance: number | undefined;
  /** Extension: FLUX's true-CFG scale (with negative_prompt); undefined → off. */
  trueCfg: number | undefined;
  /** Sampler name (unchecked: the model decides); undefined → the server's default. */
  sampler: string | undefined;
  /** Plan (artifact) name. */
  plan: string | undefined;
  /** Plugin options selecting among loaded artifacts. */
  quantizer: string | undefined;
  bits: number | undefined;
  rotation: string | undefined;
  attention: string | undefined;
  density: number | undefined;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:+-]*$/;

/** The zod schema for `limits` (strict: unknown fields are a 400 naming the field). */
export function imageRequestSchema(limits: ServerLimits = DEFAULT_LIMITS) {
  const name = (what: string) =>
    z.string().max(100).regex(NAME, {
      error: `must be a ${what} name (letters, digits, . _ : + -)`,
    })
      .nullish();
  return z.strictObject({
    prompt: z.string({ error: "must be a string" }).trim().min(1, { error: "must not be empty" })
      .max(limits.maxPromptChars, {
        error: `must be at most ${limits.maxPromptChars} characters`,
      }),
    n: z.number().int({ error: "must be an integer" }).min(1, { error: "must be at least 1" })
      .max(limits.maxN, { error: `must be at most ${limits.maxN}` }).nullish(),
    size: z.string().regex(/^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$/, {
      error: "must be 'auto' or 'WIDTHxHEIGHT', e.g. '64x64'",
    }).nullish(),
    response_format: z.enum(["b64_json", "url"]).nullish(),
    output_format: z.enum(["png", "jpeg", "webp", "gif", "svg"]).nullish(),
    output_compression: z.number().int().min(0).max(100).nullish(),
    quality: z.enum(["auto", "low", "medium", "high", "xhigh", "max", "standard", "hd"]).nullish(),
    background: z.enum(["auto", "opaque", "transparent"]).nullish(),
    moderation: z.enum(["auto", "low"]).nullish(),
    style: z.enum(["vivid", "natural"]).nullish(),
    user: z.string().max(256).nullish(),
    safety_identifier: z.string().max(256).nullish(),
    stream: z.boolean().nullish(),
    partial_images: z.number().int({ error: "must be an integer" }).min(0, {
      error: "must be at least 0",
    }).max(limits.maxSteps, { error: `must be at most ${limits.maxSteps}` }).nullish(),
    model: name("model"),
    // Extensions.
    negative_prompt: z.string({ error: "must be a string" }).max(limits.maxPromptChars, {
      error: `must be at most ${limits.maxPromptChars} characters`,
    }).nullish(),
    seed: z.number().int({ error: "must be an integer" }).min(0, { error: "must be ≥ 0" })
      .max(2 ** 32 - 1, { error: "must be < 2^32" }).nullish(),
    steps: z.number().int({ error: "must be an integer" }).min(1, { error: "must be at least 1" })
      .max(limits.maxSteps, { error: `must be at most ${limits.maxSteps}` }).nullish(),
    guidance: z.number().min(0, { error: "must be ≥ 0" }).max(limits.maxGuidance, {
      error: `must be at most ${limits.maxGuidance}`,
    }).nullish(),
    true_cfg: z.number().min(0, { error: "must be ≥ 0" }).max(limits.maxGuidance, {
      error: `must be at most ${limits.maxGuidance}`,
    }).nullish(),
    // Checked against the selected model's own samplers (checks.ts: checkSampler).
    sampler: name("sampler"),
    plan: name("plan"),
    quantizer: name("quantizer"),
    bits: z.number().int({ error: "must be an integer" }).min(1, { error: "must be at least 1" })
      .max(32, { error: "must be at most 32" }).nullish(),
    rotation: name("rotation"),
    attention: name("attention"),
    density: z.number().gt(0, { error: "must be > 0" }).max(1, { error: "must be ≤ 1" })
      .nullish(),
  });
}

/** One zod issue as a 400 naming the field. */
function issueError(issue: z.core.$ZodIssue, body: object): ApiError {
  if (issue.code === "unrecognized_keys") {
    const k = issue.keys[0];
    return badRequest(`Unknown parameter: '${k}'.`, k, "unknown_parameter");
  }
  const param = issue.path.map(String).join(".") || null;
  if (issue.code === "invalid_type" && issue.path.length === 1 && !(issue.path[0] in body)) {
    return badRequest(
      `Missing required parameter: '${param}'.`,
      param,
      "missing_required_parameter",
    );
  }
  let rule = issue.message;
  if (issue.code === "invalid_value") {
    rule = `must be one of ${issue.values.map((v) => `'${String(v)}'`).join(", ")}`;
  } else if (issue.code === "invalid_type") {
    rule = `must be ${issue.expected === "int" ? "an integer" : `a ${issue.expected}`}`;
  }
  return badRequest(`Invalid value for '${param}': ${rule}.`, param);
}

/** Validates a parsed JSON body into an {@linkcode ImageRequest}. @throws {ApiError} 400. */
export function parseImageRequest(
  body: unknown,
  limits: ServerLimits = DEFAULT_LIMITS,
): ImageRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw badRequest("The request body must be a JSON object.", null, "invalid_body");
  }
  const r = imageRequestSchema(limits).safeParse(body);
  if (!r.success) throw issueError(r.error.issues[0], body);
  const v = r.data;
  if (v.response_format === "url") {
    throw badRequest(
      "response_format 'url' is not supported: this server does not host files; use 'b64_json'.",
      "response_format",
      "unsupported_value",
    );
  }
  if (v.output_format && v.output_format !== "png") {
    throw badRequest(
      `output_format '${v.output_format}' is not supported; use 'png'.`,
      "output_format",
      "unsupported_value",
    );
  }
  if (v.output_compression != null) {
    throw badRequest(
      "output_compression applies to jpeg and webp only; this server writes png.",
      "output_compression",
      "unsupported_value",
    );
  }
  if (v.background === "transparent") {
    throw badRequest(
      "background 'transparent' is not supported; use 'opaque' or 'auto'.",
      "background",
      "unsupported_value",
    );
  }
  if (v.partial_images && !v.stream) {
    throw badRequest("partial_images needs stream: true.", "partial_images", "invalid_value");
  }
  let size: ImageRequest["size"];
  if (v.size && v.size !== "auto") {
    const [width, height] = v.size.split("x").map(Number);
    for (const [k, s] of [["width", width], ["height", height]] as const) {
      if (s > limits.maxSide) {
        throw badRequest(
          `Invalid value for 'size': the ${k} ${s} is over the limit of ${limits.maxSide} pixels.`,
          "size",
        );
      }
    }
    size = { width, height };
  }
  return {
    prompt: v.prompt,
    negativePrompt: v.negative_prompt ?? undefined,
    n: v.n ?? 1,
    size,
    stream: v.stream ?? false,
    partialImages: v.partial_images ?? 0,
    quality: v.quality ?? "auto",
    model: v.model ?? undefined,
    seed: v.seed ?? undefined,
    steps: v.steps ?? undefined,
    guidance: v.guidance ?? undefined,
    trueCfg: v.true_cfg ?? undefined,
    sampler: v.sampler ?? undefined,
    plan: v.plan ?? undefined,
    quantizer: v.quantizer ?? undefined,
    bits: v.bits ?? undefined,
    rotation: v.rotation ?? undefined,
    attention: v.attention ?? undefined,
    density: v.density ?? undefined,
  };
}
