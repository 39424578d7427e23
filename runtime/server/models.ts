/**
 * The server's catalog of loaded models and artifacts. Requests name a model (never a
 * path) and may select an artifact by plan name or by plugin options; a request that no
 * loaded artifact matches is a 400 naming the field that ruled the last candidates out.
 *
 * @module
 */
import type { TextWeights } from "../../plugins/models/text_weights.ts";
import { basename } from "node:path";
import type { Runtime } from "../gpu/device.ts";
import { loadPipeline, type Pipeline } from "../pipeline.ts";
import { FluxModel } from "../../plugins/models/flux.ts";
import { badRequest } from "./errors.ts";
import { defaultLowRankFit, type QuantSettings } from "../quant/plan.ts";
import { DEFAULT_ALPHA } from "../quant/smooth.ts";
import { DEFAULT_TAU } from "../../plugins/rotations/adaptive.ts";

/** The quantization plan of a loaded artifact, as /v1/models lists it. */
export interface PlanInfo {
  /** Plan (artifact) name, unique per model, e.g. "f32" or "w4a8-tlq-ars". */
  name: string;
  /** Weight quantizer plugin, "none" for dense weights. */
  quantizer: string;
  /** Weight bits (32 or 16 for dense). */
  bits: number;
  /** Activation bits, or null when activations are not quantized. */
  abits: number | null;
  /** Rotation plugin, "none" when off. */
  rotation: string;
  /** Attention plugin, "dense" by default. */
  attention: string;
  /** Attention density, or null for dense attention. */
  density: number | null;
}

/** One loaded model + artifact, ready to generate. */
export interface ModelEntry {
  /** Unique id, `<model>` for the first plan of a model, else `<model>:<plan>`. */
  id: string;
  /** The model's name (its folder's name unless configured). */
  model: string;
  /** Its plan. */
  plan: PlanInfo;
  /** The loaded pipeline. */
  pipeline: Pipeline;
  /** Seconds since the epoch when it was loaded. */
  created: number;
  /** A latent model's VAE decodes in tiles (serve --vae-tiling; diffusers' enable_tiling). */
  vaeTiling?: boolean;
}

/** The plan of a dense model in `dtype`. */
export function densePlan(dtype: "f32" | "f16"): PlanInfo {
  return {
    name: dtype,
    quantizer: "none",
    bits: dtype === "f16" ? 16 : 32,
    abits: null,
    rotation: "none",
    attention: "dense",
    density: null,
  };
}

/** What a request selects by. */
export interface Selection {
  /** An entry id or model name. */
  model?: string;
  /** A plan (artifact) name. */
  plan?: string;
  /** The weight quantizer plugin ("none" for dense weights). */
  quantizer?: string;
  /** Weight bits. */
  bits?: number;
  /** The rotation plugin ("none" when off). */
  rotation?: string;
  /** The attention plugin. */
  attention?: string;
  /** The attention density. */
  density?: number;
}

const PLAN_FIELDS = ["quantizer", "bits", "rotation", "attention", "density"] as const;

function list(xs: Iterable<unknown>): string {
  return [...new Set([...xs].map((x) => `'${x}'`))].join(", ") || "none";
}

/**
 * Builds a catalog; ids must be unique and every model must encode prompts (its own caption
 * encoder, or a real checkpoint's T5 / CLIP + T5) and make images (pixels or a VAE).
 */
export class ModelCatalog {
  /** The entries in preference order (the first is the default). */
  readonly entries: readonly ModelEntry[];

  /** `entries` in preference order: the first one is the default. */
  constructor(entries: readonly ModelEntry[]) {
    if (!entries.length) throw new RangeError("The server needs at least one model");
    const ids = new Set<string>();
    for (const e of entries) {
      if (ids.has(e.id)) throw new RangeError(`Two models have the id "${e.id}"`);
      ids.add(e.id);
      if (!e.pipeline.encoder && !e.pipeline.prompts) {
        const what = e.pipeline.model instanceof FluxModel
          ? "FLUX text encoders (text_encoder/ + tokenizer/, text_encoder_2/ + tokenizer_2/)"
          : "caption encoder (text_encoder/ + tokenizer/)";
        throw new RangeError(
          `${e.id}: has no ${what}, so it cannot encode prompts; serve needs them (a quantized ` +
            "artifact carries none: serve --text-encoder names the folder holding them)",
        );
      }
      if (!e.pipeline.makesImages) {
        throw new RangeError(
          `${e.id}: works in a latent space and has no VAE decoder (a vae/ folder beside its ` +
            `transformer/); the server needs images`,
        );
      }
    }
    this.entries = entries;
  }

  /** The default entry. */
  get default(): ModelEntry {
    return this.entries[0];
  }

  /** The entry a request selects. @throws {ApiError} 400 naming the field. */
  select(s: Selection): ModelEntry {
    let c = [...this.entries];
    if (s.model !== undefined) {
      const m = s.model;
      c = c.filter((e) => e.id === m || e.model === m);
      if (!c.length) {
        throw badRequest(
          `Invalid value for 'model': no model named '${m}' is loaded; loaded: ${
            list(this.entries.flatMap((e) => [e.model, e.id]))
          }.`,
          "model",
          "model_not_found",
        );
      }
    }
    if (s.plan !== undefined) {
      const before = c;
      c = c.filter((e) => e.plan.name === s.plan);
      if (!c.length) {
        throw badRequest(
          `Invalid value for 'plan': no loaded artifact${
            s.model ? ` of '${s.model}'` : ""
          } has the plan '${s.plan}'; loaded plans: ${list(before.map((e) => e.plan.name))}.`,
          "plan",
          "plan_not_found",
        );
      }
    }
    for (const f of PLAN_FIELDS) {
      const want = s[f];
      if (want === undefined) continue;
      const before = c;
      c = c.filter((e) => e.plan[f] === want);
      if (!c.length) {
        throw badRequest(
          `Invalid value for '${f}': no loaded artifact matching the request has ${f} ${want}; ` +
            `they have ${list(before.map((e) => e.plan[f]))}.`,
          f,
          "plan_not_found",
        );
      }
    }
    return c[0];
  }
}

/** Options of {@linkcode loadEntry}. */
export interface EntryOptions {
  /** Model folder (diffusers layout), or a quantized artifact (.safetensors). */
  path: string;
  /** Name clients use; default the folder's name (an artifact: its source model's). */
  name?: string;
  /** Storage type of the transformer (and an artifact's activations); default f32. */
  dtype?: "f32" | "f16";
  /** Plan name; default the dtype (dense) or one made from the artifact's settings. */
  plan?: string;
  /** Id; default the name. */
  id?: string;
  /**
   * For an artifact (which carries none): the folder holding its model's prompt encoders
   * (loadPipeline's `textEncoder`), e.g. the source model folder. A folder uses its own.
   */
  textEncoder?: string;
  /** For an artifact of a latent model: the folder holding its VAE (loadPipeline's `vae`). */
  vae?: string;
  /** T5's tokens per prompt; default the diffusers pipeline's (PixArt-α 120, Σ 300, FLUX 512). */
  maxSequenceLength?: number;
  /** Storage of the prompt encoders' weights (plugins/models/text_weights.ts); default "auto". */
  textEncoderDtype?: TextWeights;
}

/** Whether a --model path names a quantized artifact (a .safetensors file), not a model folder. */
export function isArtifactPath(path: string): boolean {
  return path.replace(/\/+$/, "").endsWith(".safetensors");
}

/** The default plan name of quantization settings, e.g. "w4a8-tlq-gptq-adaptive-paro0.3". */
export function planName(
  s:
    & Pick<QuantSettings, "quantizer" | "wbits" | "abits" | "rotation" | "attention" | "density">
    & Partial<
      Pick<
        QuantSettings,
        | "gptq"
        | "groupSize"
        | "tlqFit"
        | "tlqAssign"
        | "abitsOverride"
        | "center"
        | "actGroup"
        | "actAsym"
        | "cfgDelta"
        | "lowRank"
        | "lowRankOverride"
        | "lowRankFit"
      >
    >,
  rotationOptions?: {
    alpha?: unknown;
    smooth?: unknown;
    tau?: unknown;
    select?: unknown;
    seed?: unknown;
  },
): string {
  let n = `w${s.wbits}a${s.abits}-${s.quantizer}`;
  if (s.groupSize) n += `-wg${s.groupSize}`; // weights in groups, not per row
  if (s.tlqFit) n += `-${s.tlqFit}`; // a grid fitted otherwise than METHODS.md's
  if (s.tlqAssign) n += `-${s.tlqAssign}`; // its codes rounded otherwise
  if (s.gptq) n += "-gptq"; // else a GPTQ artifact's id would clash with its plain twin's
  if (s.abitsOverride?.length) n += "-mixed"; // some layers at other activation bits
  if (s.center) n += `-centred-${s.center}`; // likewise the activation quantizer's variants
  if (s.actGroup) n += `-g${s.actGroup}${s.actAsym ? "asym" : ""}`;
  if (s.cfgDelta) n += "-cfgd";
  if (s.lowRank) n += `-lr${s.lowRank}`; // a float low-rank branch a layer
  if (s.lowRankOverride?.length) n += "-lrmixed"; // some layers with another rank
  if (s.lowRank || s.lowRankOverride?.length) { // a branch fitted otherwise than by default
    const fit = s.lowRankFit ?? "svd"; // artifacts from before the option: SVDQuant's split
    if (fit !== defaultLowRankFit(s.gptq ?? false)) n += `-${fit}`;
  }
  if (s.rotation !== "none") {
    // The rotation's knobs (quantize --no-smooth, --alpha, --tau, --ars-select) when not the defaults.
    const o = rotationOptions ?? {};
    if (o.smooth === false) n += "-unsmoothed";
    else if (typeof o.alpha === "number" && o.alpha !== DEFAULT_ALPHA) n += `-alpha${o.alpha}`;
    const tau = o.tau;
    if (s.rotation === "adaptive" && typeof tau === "number" && tau !== DEFAULT_TAU) {
      n += `-tau${tau}`;
    }
    if (s.rotation === "adaptive" && o.select === "error") n += "-byerror";
    if (s.rotation === "adaptive" && o.select === "act-error") n += "-byacterror";
    if (typeof o.seed === "number" && o.seed !== 0) n += `-rseed${o.seed}`;
    n += `-${s.rotation}`;
  }
  if (s.attention !== "dense") n += `-${s.attention}${s.density ?? ""}`;
  return n;
}

/** The rotation options a plan's calibration section records (quantize's knobs), if any. */
function rotationOptionsOf(c: Record<string, unknown> | null): Record<string, unknown> | undefined {
  const o = c?.rotationOptions;
  return o && typeof o === "object" ? o as Record<string, unknown> : undefined;
}

/** The default plan name of the quantized artifact at `path` (its metadata's settings). */
export async function artifactPlanName(path: string): Promise<string> {
  const { openArtifact } = await import("../quant/artifact.ts");
  const a = await openArtifact(path);
  try {
    return planName(a.plan.settings, rotationOptionsOf(a.plan.calibration));
  } finally {
    a.close();
  }
}

/** Loads a model folder or a quantized artifact as a catalog entry. */
export async function loadEntry(rt: Runtime, o: EntryOptions): Promise<ModelEntry> {
  const dtype = o.dtype ?? "f32";
  const clean = o.path.replace(/\/+$/, "");
  let name = o.name ?? basename(clean);
  let plan = densePlan(dtype);
  const artifact = isArtifactPath(clean);
  if (artifact) {
    // A quantized artifact: its plan comes from its metadata.
    const { openArtifact } = await import("../quant/artifact.ts");
    const a = await openArtifact(clean);
    try {
      const s = a.plan.settings;
      plan = {
        name: planName(s, rotationOptionsOf(a.plan.calibration)),
        quantizer: s.quantizer,
        bits: s.wbits,
        abits: s.abits >= 16 ? null : s.abits,
        rotation: s.rotation,
        attention: s.attention,
        density: s.density,
      };
      name = o.name ?? basename(a.plan.source.path.replace(/\/+$/, ""));
    } finally {
      a.close();
    }
  }
  if (o.plan !== undefined) plan = { ...plan, name: o.plan };
  const pipeline = await loadPipeline(rt, {
    path: clean,
    dtype,
    textEncoder: artifact ? o.textEncoder : undefined,
    vae: artifact ? o.vae : undefined,
    maxSequenceLength: o.maxSequenceLength,
    textEncoderDtype: o.textEncoderDtype,
  });
  return {
    id: o.id ?? name,
    model: name,
    plan,
    pipeline,
    created: Math.floor(Date.now() / 1000),
  };
}

/** Loads a dense model folder as a catalog entry (see {@linkcode loadEntry}). */
export async function loadDenseEntry(rt: Runtime, o: EntryOptions): Promise<ModelEntry> {
  return await loadEntry(rt, o);
}
