/**
 * The quantization plan: what `deno task quantize` decided, stored as JSON in the
 * artifact's `__metadata__["webdit.plan"]` — per layer the quantizer, bits, activation
 * bits and rotation (or why it stays FP), the settings it was made with, and the source
 * model (path, sha-256 of its transformer weights, config). Loading validates every field
 * and names the file and field on error.
 *
 * @module
 */
import { CheckpointError } from "../errors.ts";
import { CENTER_MODES, type CenterMode } from "../reference/act_center.ts";

/** Artifact format version written into `webdit.artifact`. */
export const ARTIFACT_VERSION = 1;

/** How a low-rank branch is fitted ({@linkcode QuantSettings.lowRankFit}). */
export const LOW_RANK_FITS = ["svd", "refit", "hessian"] as const;

/** One of {@linkcode LOW_RANK_FITS}. */
export type LowRankFit = typeof LOW_RANK_FITS[number];

/**
 * quantize's fit when none is asked for: hessian with GPTQ (its norm is GPTQ's Gram matrix),
 * refit without (quantizeModel also takes refit for layers too wide for hessian).
 */
export function defaultLowRankFit(gptq: boolean): LowRankFit {
  return gptq ? "hessian" : "refit";
}

/** The layers METHODS.md keeps in full precision for PixArt (and the default here). */
export const DEFAULT_KEEP_FP: readonly string[] = [
  "pos_embed.proj",
  "adaln_single.*",
  "caption_projection.*",
  "proj_out",
];

/**
 * The layers FLUX keeps in full precision: the embedders, the timestep / guidance /
 * pooled-text conditioning and the final layer (AdaLayerNormContinuous's linear and
 * proj_out); every double- and single-block linear is quantized.
 */
export const FLUX_KEEP_FP: readonly string[] = [
  "x_embedder",
  "context_embedder",
  "time_text_embed.*",
  "norm_out.linear",
  "proj_out",
];

/** The default keep-FP list of a transformer class (diffusers' `_class_name`). */
export function defaultKeepFp(className: string | undefined): readonly string[] {
  return className === "FluxTransformer2DModel" ? FLUX_KEEP_FP : DEFAULT_KEEP_FP;
}

/** What a plan is made from (the quantize command's options). */
export interface QuantSettings {
  /** Weight quantizer plugin ("uniform", "tlq", "kmeans"). */
  quantizer: string;
  /** Weight bits. */
  wbits: number;
  /** Activation bits; 16 = weight-only. */
  abits: number;
  /** Rotation plugin ("none", "hadamard", "outlier", "adaptive"). */
  rotation: string;
  /** Attention plugin ("dense", "paro"). */
  attention: string;
  /** PARO density, or null. */
  density: number | null;
  /** PARO attention bits, or null. */
  attnBits: number | null;
  /** Uniform: group size along K (0 = per row). */
  groupSize: number;
  /** Uniform: symmetric. */
  symmetric: boolean;
  /**
   * TLQ: "mse" when each row's grid was fitted to least squared error (plugins/quantizers/
   * tlq_fit.ts); absent: METHODS.md's percentile grid.
   */
  tlqFit?: "mse";
  /**
   * TLQ: "nearest" when each weight took its nearest level on METHODS.md's grid instead of
   * the log-domain rounding; absent: the fit's own (log for percentile, nearest for mse).
   */
  tlqAssign?: "nearest";
  /** Codes chosen by GPTQ on calibration inputs (runtime/quant/gptq.ts) instead of rounding. */
  gptq: boolean;
  /**
   * Activation bits of the layers matching a pattern (first match wins) instead of `abits`:
   * a mixed-precision plan, e.g. the most sensitive inputs at 16 bits. Absent: none.
   */
  abitsOverride?: AbitsOverride[];
  /**
   * Activation centring of the layers that quantize their input: each sample's channels
   * shifted by their mean or midrange over its tokens first, the centre's product with the
   * weight added back in float (runtime/ops/act_center.ts). Absent: none.
   */
  center?: CenterMode;
  /**
   * Channels an activation scale (a multiple of 16): each token's runs of `actGroup` input
   * channels quantized on their own Δ (runtime/ops/act_quant.ts). Absent: one a token.
   */
  actGroup?: number;
  /** With `actGroup`: asymmetric groups, levels from each group's min to its max. */
  actAsym?: boolean;
  /**
   * Under classifier-free guidance the layers that quantize their input quantize
   * [uncond; cond − uncond] and add the uncond half's product back in float
   * (runtime/ops/cfg_delta.ts): PixArt's CFG, FLUX's true CFG. Absent: off.
   */
  cfgDelta?: boolean;
  /**
   * Rank of each quantized layer's low-rank branch (SVDQuant's): the weight's top singular
   * directions kept in float and run on the unquantized input, the rest quantized
   * (runtime/quant/low_rank.ts). Absent: none.
   */
  lowRank?: number;
  /**
   * The branch's rank of the layers matching a pattern (first match wins; 0: no branch)
   * instead of `lowRank`. Absent: none.
   */
  lowRankOverride?: LowRankOverride[];
  /**
   * How the branches were fitted (runtime/quant/low_rank.ts), present with any branch:
   * "svd" (SVDQuant's: W''s top R directions, the rest quantized), "refit" (then the down
   * factor refitted to the quantized rest), "hessian" (the branch the best rank R of W' − Ê in
   * the calibration inputs' norm, the rest re-quantized, twice over). Absent: "svd".
   */
  lowRankFit?: LowRankFit;
  /** Layer-name patterns kept in FP (`*` matches any run of characters). */
  keepFp: string[];
}

/**
 * Whether `g` is a valid {@linkcode QuantSettings.actGroup}: a positive multiple of 16 (the
 * integer GEMM's K tile on GPUs, which a group must not split).
 */
export function isActGroup(g: unknown): boolean {
  return typeof g === "number" && Number.isInteger(g) && g >= 16 && g % 16 === 0;
}

/** One layer of a plan. */
export interface LayerPlan {
  /** N. */
  out: number;
  /** K. */
  in: number;
  /** Quantizer, or "fp" for a layer kept in full precision. */
  quantizer: string;
  /** Weight bits (0 for fp). */
  wbits: number;
  /** Activation bits (16 = weight-only; 0 for fp). */
  abits: number;
  /** Rotation of the input ("none" …). */
  rotation: string;
  /** The weight's shape in the checkpoint when it is not [out, in] (a conv's 4-D one). */
  shape?: number[];
  /** Why the layer stays FP (a keep pattern, or a shape the kernels do not take). */
  reason?: string;
  /** Rank of the layer's low-rank branch (tensors `lowrank.a` [R, in], `lowrank.b` [out, R]). */
  lowRank?: number;
  /** What calibration found (η, p±, clip ratio, group size…). */
  meta?: Record<string, number | string | boolean>;
}

/** The plan stored in an artifact. */
export interface QuantPlan {
  /** Always "webdit-quant". */
  format: "webdit-quant";
  /** {@linkcode ARTIFACT_VERSION}. */
  version: number;
  /** The settings. */
  settings: QuantSettings;
  /** The source model. */
  source: { path: string; sha256: string; className: string };
  /** Calibration data settings (null: data-free weights, dynamic activations). */
  calibration: Record<string, unknown> | null;
  /** Per layer, by checkpoint name (without `.weight`). */
  layers: Record<string, LayerPlan>;
}

/** True when `name` matches `pattern` (`*` = any characters, the rest literal). */
export function matchPattern(name: string, pattern: string): boolean {
  const re = new RegExp(
    "^" + pattern.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$",
  );
  return re.test(name);
}

/** One `--abits-override` entry: the layers matching `pattern` get `abits`. */
export interface AbitsOverride {
  /** Layer-name pattern (`*` matches any run of characters). */
  pattern: string;
  /** Their activation bits (4, 6, 8 or 16). */
  abits: number;
}

/** One `--low-rank-override` entry: the layers matching `pattern` get a branch of `rank`. */
export interface LowRankOverride {
  /** Layer-name pattern (`*` matches any run of characters). */
  pattern: string;
  /** Their branch's rank (0: none). */
  rank: number;
}

/** A layer's low-rank branch: the first matching override's rank, else the plan's (0: none). */
export function layerLowRank(
  name: string,
  s: Pick<QuantSettings, "lowRank" | "lowRankOverride">,
): number {
  return s.lowRankOverride?.find((o) => matchPattern(name, o.pattern))?.rank ?? s.lowRank ?? 0;
}

/** A layer's activation bits: the first matching override's, else the plan's `abits`. */
export function layerAbits(
  name: string,
  s: Pick<QuantSettings, "abits" | "abitsOverride">,
): number {
  return s.abitsOverride?.find((o) => matchPattern(name, o.pattern))?.abits ?? s.abits;
}

/** The first keep-FP pattern `name` matches, or undefined. */
export function keepPattern(name: string, patterns: readonly string[]): string | undefined {
  return patterns.find((p) => matchPattern(name, p));
}

/** Why the linear layer `name` with K inputs stays in full precision, or undefined if it does not. */
export function fpReason(name: string, K: number, keepFp: readonly string[]): string | undefined {
  const pattern = keepPattern(name, keepFp);
  return pattern ? `keep-fp "${pattern}"` : K % 4 ? `K = ${K} is not a multiple of 4` : undefined;
}

function fail(file: string, field: string, msg: string): never {
  throw new CheckpointError(file, msg, field);
}

/** Whether `r` is a valid {@linkcode QuantSettings.lowRank}: a positive integer. */
export function isLowRank(r: unknown): r is number {
  return typeof r === "number" && Number.isInteger(r) && r > 0;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function num(o: Record<string, unknown>, k: string, file: string, field: string): number {
  const v = o[k];
  if (typeof v !== "number" || !Number.isFinite(v)) fail(file, `${field}.${k}`, "must be a number");
  return v;
}

function str(o: Record<string, unknown>, k: string, file: string, field: string): string {
  const v = o[k];
  if (typeof v !== "string") fail(file, `${field}.${k}`, "must be a string");
  return v;
}

/**
 * Parses and validates a plan's JSON text from `file`.
 * @throws {CheckpointError} naming the file and the field that is wrong.
 */
export function parsePlan(text: string | undefined, file: string): QuantPlan {
  const F = "__metadata__.webdit.plan";
  if (text === undefined) fail(file, F, "missing: this is not a webdit quantized artifact");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    fail(file, F, `invalid JSON: ${(e as Error).message}`);
  }
  if (!isObj(raw)) fail(file, F, "must be a JSON object");
  if (raw.format !== "webdit-quant") fail(file, `${F}.format`, 'must be "webdit-quant"');
  const version = num(raw, "version", file, F);
  if (version !== ARTIFACT_VERSION) {
    fail(file, `${F}.version`, `is ${version}; this build reads version ${ARTIFACT_VERSION}`);
  }
  if (!isObj(raw.settings)) fail(file, `${F}.settings`, "must be an object");
  const s = raw.settings;
  const settings: QuantSettings = {
    quantizer: str(s, "quantizer", file, `${F}.settings`),
    wbits: num(s, "wbits", file, `${F}.settings`),
    abits: num(s, "abits", file, `${F}.settings`),
    rotation: str(s, "rotation", file, `${F}.settings`),
    attention: str(s, "attention", file, `${F}.settings`),
    density: s.density === null ? null : num(s, "density", file, `${F}.settings`),
    attnBits: s.attnBits === null ? null : num(s, "attnBits", file, `${F}.settings`),
    groupSize: num(s, "groupSize", file, `${F}.settings`),
    symmetric: s.symmetric === true,
    gptq: s.gptq === true,
    ...(Array.isArray(s.abitsOverride) && s.abitsOverride.length
      ? {
        abitsOverride: s.abitsOverride.map((o, i) => {
          const f = `${F}.settings.abitsOverride[${i}]`;
          if (!isObj(o)) fail(file, f, "must be an object");
          return { pattern: str(o, "pattern", file, f), abits: num(o, "abits", file, f) };
        }),
      }
      : {}),
    keepFp: Array.isArray(s.keepFp) ? s.keepFp.map(String) : [],
  };
  if (s.center !== undefined) {
    if (!CENTER_MODES.includes(s.center as CenterMode)) {
      fail(file, `${F}.settings.center`, `must be ${CENTER_MODES.join(" or ")}`);
    }
    settings.center = s.center as CenterMode;
  }
  if (s.actGroup !== undefined) {
    if (!isActGroup(s.actGroup)) fail(file, `${F}.settings.actGroup`, "must be a multiple of 16");
    settings.actGroup = s.actGroup as number;
  }
  if (s.tlqFit !== undefined) {
    if (s.tlqFit !== "mse" || settings.quantizer !== "tlq") {
      fail(file, `${F}.settings.tlqFit`, 'must be "mse", beside quantizer "tlq"');
    }
    settings.tlqFit = "mse";
  }
  if (s.tlqAssign !== undefined) {
    if (s.tlqAssign !== "nearest" || settings.quantizer !== "tlq" || settings.tlqFit) {
      fail(file, `${F}.settings.tlqAssign`, 'must be "nearest", beside quantizer "tlq", no tlqFit');
    }
    settings.tlqAssign = "nearest";
  }
  if (s.actAsym !== undefined) {
    if (s.actAsym !== true || !settings.actGroup) {
      fail(file, `${F}.settings.actAsym`, "must be true, beside an actGroup");
    }
    settings.actAsym = true;
  }
  if (s.cfgDelta !== undefined) {
    if (s.cfgDelta !== true) fail(file, `${F}.settings.cfgDelta`, "must be true");
    settings.cfgDelta = true;
  }
  if (s.lowRank !== undefined) {
    if (!isLowRank(s.lowRank)) fail(file, `${F}.settings.lowRank`, "must be a positive integer");
    settings.lowRank = s.lowRank as number;
  }
  if (Array.isArray(s.lowRankOverride) && s.lowRankOverride.length) {
    settings.lowRankOverride = s.lowRankOverride.map((o, i) => {
      const f = `${F}.settings.lowRankOverride[${i}]`;
      if (!isObj(o)) fail(file, f, "must be an object");
      const rank = num(o, "rank", file, f);
      if (rank !== 0 && !isLowRank(rank)) fail(file, `${f}.rank`, "must be an integer ≥ 0");
      return { pattern: str(o, "pattern", file, f), rank };
    });
  }
  if (s.lowRankFit !== undefined) {
    if (!LOW_RANK_FITS.includes(s.lowRankFit as LowRankFit)) {
      fail(file, `${F}.settings.lowRankFit`, `must be ${LOW_RANK_FITS.join(", ")}`);
    }
    settings.lowRankFit = s.lowRankFit as LowRankFit;
  }
  if (!isObj(raw.source)) fail(file, `${F}.source`, "must be an object");
  const sha256 = str(raw.source, "sha256", file, `${F}.source`);
  if (!/^[0-9a-f]{64}$/.test(sha256)) fail(file, `${F}.source.sha256`, "must be 64 hex digits");
  const source = {
    path: str(raw.source, "path", file, `${F}.source`),
    sha256,
    className: str(raw.source, "className", file, `${F}.source`),
  };
  if (!isObj(raw.layers)) fail(file, `${F}.layers`, "must be an object");
  const layers: Record<string, LayerPlan> = {};
  for (const [name, l] of Object.entries(raw.layers)) {
    const f = `${F}.layers["${name}"]`;
    if (!isObj(l)) fail(file, f, "must be an object");
    const lp: LayerPlan = {
      out: num(l, "out", file, f),
      in: num(l, "in", file, f),
      quantizer: str(l, "quantizer", file, f),
      wbits: num(l, "wbits", file, f),
      abits: num(l, "abits", file, f),
      rotation: str(l, "rotation", file, f),
    };
    if (typeof l.reason === "string") lp.reason = l.reason;
    if (Array.isArray(l.shape)) lp.shape = l.shape.map(Number);
    if (isObj(l.meta)) lp.meta = l.meta as LayerPlan["meta"];
    if (l.lowRank !== undefined) {
      if (!isLowRank(l.lowRank) || l.lowRank > Math.min(lp.out, lp.in)) {
        fail(file, `${f}.lowRank`, `must be a positive integer ≤ min(out, in)`);
      }
      lp.lowRank = l.lowRank as number;
    }
    if (lp.quantizer !== "fp" && ![4, 6, 8, 16].includes(lp.abits)) {
      fail(file, `${f}.abits`, `must be 4, 6, 8 or 16, got ${lp.abits}`);
    }
    layers[name] = lp;
  }
  const calibration = isObj(raw.calibration) ? raw.calibration : null;
  return { format: "webdit-quant", version, settings, source, calibration, layers };
}
