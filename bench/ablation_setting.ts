/**
 * One row of an ablation matrix (bench/ablation_matrix.ts): the setting's fields (BENCHMARKS.md's
 * names, each `quantize` flag of the same name), the key that identifies it, its human label, and
 * the parser that validates a row and fills its defaults.
 *
 * @module
 */
import {
  type AbitsOverride,
  defaultLowRankFit,
  isActGroup,
  LOW_RANK_FITS,
  type LowRankFit,
  type LowRankOverride,
} from "../runtime/quant/plan.ts";
import { CENTER_MODES, type CenterMode } from "../runtime/reference/act_center.ts";
import { DEFAULT_OBJECTIVE } from "../plugins/rotations/outlier_aware.ts";

/** PARO's order-score α when none is given (runtime/quant/paro_plan.ts). */
const DEFAULT_PARO_ALPHA = 0.5;
/** Defaults written out (rows stored before parseSetting dropped them) count as left out. */
const ownGreedy = (s: AblationSetting) =>
  s.greedy_objective !== DEFAULT_OBJECTIVE ? s.greedy_objective : undefined;
const ownParoAlpha = (s: AblationSetting) =>
  s.paro_alpha !== DEFAULT_PARO_ALPHA ? s.paro_alpha : undefined;

/** One setting of the matrix (the key of an ablation row, BENCHMARKS.md's names). */
export interface AblationSetting {
  /** "fp32" (no weight quantization) or a quantizer plugin. */
  quantizer: string;
  wbits: number | null;
  abits: number | null;
  /** "none" or a rotation plugin. */
  rotation: string;
  /** "dense" or "paro". */
  attention: string;
  density: number | null;
  attn_bits: number | null;
  /** Weight groups of this many input channels (quantize --group-size); absent: per row. */
  group_size?: number;
  /** "mse": TLQ's row grids fitted by least squares (quantize --tlq-fit mse); absent: METHODS.md's. */
  tlq_fit?: "mse";
  /** "nearest": TLQ's codes on the nearest level (quantize --tlq-assign nearest); absent: log. */
  tlq_assign?: "nearest";
  /** Codes chosen by GPTQ (quantize --gptq); absent or false: plain rounding. */
  gptq?: boolean;
  /** With gptq: where it runs (quantize --gptq-device); absent: auto (the GPU if there is one). */
  gptq_device?: "cpu" | "gpu";
  /** With gptq: its dampening (quantize --gptq-damp); absent: the default 0.01. */
  gptq_damp?: number;
  /** With gptq: the levels refitted to GPTQ's codes (quantize --gptq-refit; kmeans). */
  gptq_refit?: boolean;
  /** Per-layer activation bits (quantize --abits-override), first match wins; absent: none. */
  abits_override?: AbitsOverride[];
  /** Activation centring (quantize --center); absent: none. */
  center?: CenterMode;
  /** SmoothQuant α of the rotations (quantize --alpha); absent: the default 0.5. */
  alpha?: number;
  /** false: rotate without smoothing (quantize --no-smooth); absent: smoothed. */
  smooth?: false;
  /** Seed of the rotation's random signs and permutations (quantize --rotation-seed); absent: 0. */
  rotation_seed?: number;
  /** Outlier-aware greedy objective (quantize --greedy-objective); absent: rowmax. */
  greedy_objective?: "rowmax" | "range" | "absmax";
  /** PARO's order-score α (quantize --paro-alpha); absent: 0.5. */
  paro_alpha?: number;
  /** ARS threshold τ of the adaptive rotation (quantize --tau); absent: the default 1. */
  tau?: number;
  /** "error": ARS picks each layer's branch by measured error (quantize --ars-select error). */
  ars_select?: "error" | "act-error";
  /** Channels an activation scale (quantize --act-group); absent: one a token. */
  act_group?: number;
  /** With act_group: asymmetric groups (quantize --act-asym); absent: symmetric. */
  act_asym?: boolean;
  /** true: quantize by CFG delta (quantize --cfg-delta); absent: off. */
  cfg_delta?: boolean;
  /** Rank of each layer's float low-rank branch (quantize --low-rank); absent: none. */
  low_rank?: number;
  /** Per-layer ranks (quantize --low-rank-override), first match wins, 0 none; absent: none. */
  low_rank_override?: LowRankOverride[];
  /**
   * How the branches are fitted (quantize --low-rank-fit); absent: the tool's default
   * (hessian with gptq, refit without).
   */
  low_rank_fit?: LowRankFit;
}

/** The FP32 dense reference setting. */
export const REFERENCE: AblationSetting = {
  quantizer: "fp32",
  wbits: null,
  abits: null,
  rotation: "none",
  attention: "dense",
  density: null,
  attn_bits: null,
};

const KEYS = Object.keys(REFERENCE) as (keyof AblationSetting)[];

/**
 * A string that identifies a setting (rows with equal keys replace each other). GPTQ is
 * appended only when on, so the keys of rows from before it existed stay the same.
 */
export function settingKey(s: AblationSetting): string {
  return KEYS.map((k) => String(s[k] ?? null)).join("|") +
    (s.group_size ? `|wgroup-${s.group_size}` : "") +
    (s.tlq_fit ? `|fit-${s.tlq_fit}` : "") + (s.tlq_assign ? `|assign-${s.tlq_assign}` : "") +
    (s.gptq ? "|gptq" : "") +
    (s.gptq_device ? `-${s.gptq_device}` : "") +
    (s.gptq_damp !== undefined ? `-damp-${s.gptq_damp}` : "") +
    (s.gptq_refit ? "-refit" : "") +
    (s.abits_override
      ? `|${s.abits_override.map((o) => `${o.pattern}=${o.abits}`).join(",")}`
      : "") +
    (s.center ? `|center-${s.center}` : "") +
    (s.alpha !== undefined ? `|alpha-${s.alpha}` : "") +
    (s.smooth === false ? "|nosmooth" : "") +
    (s.tau !== undefined ? `|tau-${s.tau}` : "") +
    (s.rotation_seed !== undefined ? `|rseed-${s.rotation_seed}` : "") +
    (ownGreedy(s) ? `|greedy-${ownGreedy(s)}` : "") +
    (ownParoAlpha(s) !== undefined ? `|paroalpha-${ownParoAlpha(s)}` : "") +
    (s.ars_select ? `|ars-${s.ars_select}` : "") +
    (s.act_group ? `|actgroup-${s.act_group}` : "") +
    (s.act_asym ? "-asym" : "") +
    (s.cfg_delta ? "|cfgd" : "") +
    (s.low_rank ? `|lowrank-${s.low_rank}` : "") +
    (s.low_rank_override
      ? `|lowrank:${s.low_rank_override.map((o) => `${o.pattern}=${o.rank}`).join(",")}`
      : "") +
    (s.low_rank_fit ? `|lrfit-${s.low_rank_fit}` : "");
}

/** The fit a setting's branches get: its own, else quantize's default (for layers up to K 8192). */
export function lowRankFitOf(s: AblationSetting): LowRankFit {
  return s.low_rank_fit ?? defaultLowRankFit(s.gptq ?? false);
}

/** A short human label: "tlq W4A8 adaptive paro 0.3 int8". */
export function settingLabel(s: AblationSetting): string {
  const parts = [s.quantizer === "fp32" ? "fp32" : `${s.quantizer} W${s.wbits}A${s.abits}`];
  if (s.group_size) parts[0] += ` g${s.group_size}`;
  if (s.tlq_fit) parts[0] += ` ${s.tlq_fit}-fit`;
  if (s.tlq_assign) parts[0] += ` ${s.tlq_assign}-rounded`;
  if (s.gptq) parts[0] += s.gptq_device ? ` gptq (${s.gptq_device})` : " gptq";
  if (s.gptq_damp !== undefined) parts[0] += ` damp ${s.gptq_damp}`;
  if (s.gptq_refit) parts[0] += " refit";
  if (s.abits_override) {
    parts[0] += ` (${s.abits_override.map((o) => `${o.pattern} A${o.abits}`).join(", ")})`;
  }
  if (s.center) parts[0] += ` centred (${s.center})`;
  if (s.alpha !== undefined) parts[0] += ` α ${s.alpha}`;
  if (s.smooth === false) parts[0] += " unsmoothed";
  if (s.tau !== undefined) parts[0] += ` τ ${s.tau}`;
  if (s.rotation_seed !== undefined) parts[0] += ` rotation seed ${s.rotation_seed}`;
  if (ownGreedy(s)) parts[0] += ` greedy ${ownGreedy(s)}`;
  if (s.ars_select) parts[0] += ` ARS by ${s.ars_select}`;
  if (s.act_group) parts[0] += ` act groups ${s.act_group}${s.act_asym ? " asym" : ""}`;
  if (s.cfg_delta) parts[0] += " CFG delta";
  if (s.low_rank) parts[0] += ` low-rank ${s.low_rank}`;
  if (s.low_rank_override) {
    parts[0] += ` (${s.low_rank_override.map((o) => `${o.pattern} R ${o.rank}`).join(", ")})`;
  }
  if (s.low_rank || s.low_rank_override) parts[0] += ` (${lowRankFitOf(s)} fit)`;
  if (s.rotation !== "none") parts.push(s.rotation);
  if (s.attention !== "dense") {
    const bits = s.attn_bits === 16 ? "float" : `int${s.attn_bits}`;
    const a = ownParoAlpha(s);
    parts.push(`${s.attention} ${s.density} ${bits}${a !== undefined ? ` α ${a}` : ""}`);
  }
  return parts.join(" ");
}

/** Row fields beside KEYS, each absent from older rows (their keys stay the same). */
const EXTRA_KEYS: string[] = [
  "group_size",
  "tlq_fit",
  "tlq_assign",
  "gptq",
  "gptq_device",
  "gptq_damp",
  "gptq_refit",
  "abits_override",
  "center",
  "alpha",
  "smooth",
  "tau",
  "rotation_seed",
  "greedy_objective",
  "paro_alpha",
  "ars_select",
  "act_group",
  "act_asym",
  "cfg_delta",
  "low_rank",
  "low_rank_override",
  "low_rank_fit",
];

/** Throws a RangeError naming the matrix file and the field. */
export function fail(file: string, field: string, msg: string): never {
  throw new RangeError(`${file}: ${field} ${msg}`);
}

/** A non-empty list of { pattern, [key]: integer in [min, max] } as [pattern, value] pairs. */
function patternList(
  file: string,
  field: string,
  list: unknown,
  key: string,
  min: number,
  max: number,
): [string, number][] {
  if (!Array.isArray(list) || !list.length) {
    fail(file, field, `must be a non-empty list of { pattern, ${key} }`);
  }
  return list.map((o, i) => {
    const f = `${field}[${i}]`;
    if (typeof o?.pattern !== "string" || !o.pattern) fail(file, f, "needs a pattern");
    return [o.pattern, intField(file, `${f}.${key}`, o[key], min, max)];
  });
}

/** `v` as an integer in [min, max], or a RangeError naming the field. */
export function intField(
  file: string,
  field: string,
  v: unknown,
  min: number,
  max: number,
): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    fail(file, field, `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Validates one setting object and fills its defaults. */
export function parseSetting(file: string, field: string, raw: unknown): AblationSetting {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    fail(file, field, "must be an object");
  }
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (!(KEYS as string[]).includes(k) && !EXTRA_KEYS.includes(k)) {
      fail(
        file,
        `${field}.${k}`,
        `is not a setting (known: ${[...KEYS, ...EXTRA_KEYS].join(", ")})`,
      );
    }
  }
  const s: AblationSetting = { ...REFERENCE };
  if (r.gptq !== undefined) {
    if (typeof r.gptq !== "boolean") fail(file, `${field}.gptq`, "must be true or false");
    if (r.gptq) s.gptq = true;
  }
  if (r.gptq_device !== undefined) {
    if (r.gptq_device !== "cpu" && r.gptq_device !== "gpu") {
      fail(
        file,
        `${field}.gptq_device`,
        `must be "cpu" or "gpu", got ${JSON.stringify(r.gptq_device)}`,
      );
    }
    if (!s.gptq) fail(file, `${field}.gptq_device`, "needs gptq: true");
    s.gptq_device = r.gptq_device;
  }
  if (r.gptq_damp !== undefined) {
    const d = r.gptq_damp;
    if (typeof d !== "number" || !(d >= 0) || !Number.isFinite(d)) {
      fail(file, `${field}.gptq_damp`, `must be a number ≥ 0, got ${JSON.stringify(d)}`);
    }
    if (!s.gptq) fail(file, `${field}.gptq_damp`, "needs gptq: true");
    s.gptq_damp = d;
  }
  if (r.gptq_refit !== undefined) {
    if (r.gptq_refit !== true) fail(file, `${field}.gptq_refit`, "must be true or absent");
    if (!s.gptq) fail(file, `${field}.gptq_refit`, "needs gptq: true");
    s.gptq_refit = true;
  }
  if (r.group_size !== undefined) {
    const g = r.group_size;
    if (typeof g !== "number" || !Number.isInteger(g) || g < 16 || g % 16 !== 0) {
      fail(file, `${field}.group_size`, `must be a multiple of 16, got ${JSON.stringify(g)}`);
    }
    if (!["uniform", "tlq", "kmeans"].includes(String(r.quantizer))) {
      fail(file, `${field}.group_size`, "is uniform's, tlq's and kmeans'");
    }
    s.group_size = g;
  }
  if (r.tlq_fit !== undefined) {
    if (r.tlq_fit !== "mse") {
      fail(
        file,
        `${field}.tlq_fit`,
        `must be "mse" (percentile is the default), got ${JSON.stringify(r.tlq_fit)}`,
      );
    }
    s.tlq_fit = "mse";
  }
  if (r.tlq_assign !== undefined) {
    if (r.tlq_assign !== "nearest") {
      fail(
        file,
        `${field}.tlq_assign`,
        `must be "nearest" (log is the default), got ${JSON.stringify(r.tlq_assign)}`,
      );
    }
    s.tlq_assign = "nearest";
  }
  if (r.center !== undefined) {
    if (!CENTER_MODES.includes(r.center as CenterMode)) {
      fail(file, `${field}.center`, `must be ${CENTER_MODES.map((m) => `"${m}"`).join(" or ")}`);
    }
    s.center = r.center as CenterMode;
  }
  if (r.act_group !== undefined) {
    const g = r.act_group;
    if (!isActGroup(g)) {
      fail(file, `${field}.act_group`, `must be a multiple of 16, got ${JSON.stringify(g)}`);
    }
    s.act_group = g as number;
  }
  if (r.act_asym !== undefined) {
    if (r.act_asym !== true || !s.act_group) {
      fail(file, `${field}.act_asym`, "must be true, beside an act_group");
    }
    s.act_asym = true;
  }
  if (r.cfg_delta !== undefined) {
    if (r.cfg_delta !== true) fail(file, `${field}.cfg_delta`, "must be true");
    s.cfg_delta = true;
  }
  if (r.low_rank !== undefined) {
    s.low_rank = intField(file, `${field}.low_rank`, r.low_rank, 1, 4096);
  }
  if (r.low_rank_override !== undefined) {
    s.low_rank_override = patternList(
      file,
      `${field}.low_rank_override`,
      r.low_rank_override,
      "rank",
      0,
      4096,
    )
      .map(([pattern, rank]) => ({ pattern, rank }));
  }
  if (r.low_rank_fit !== undefined) {
    if (!LOW_RANK_FITS.includes(r.low_rank_fit as LowRankFit)) {
      fail(
        file,
        `${field}.low_rank_fit`,
        `must be ${LOW_RANK_FITS.map((f) => `"${f}"`).join(", ")}`,
      );
    }
    if (!s.low_rank && !s.low_rank_override) fail(file, `${field}.low_rank_fit`, "needs low_rank");
    if (r.low_rank_fit === "hessian" && !s.gptq) {
      fail(file, `${field}.low_rank_fit`, '"hessian" needs gptq');
    }
    s.low_rank_fit = r.low_rank_fit as LowRankFit;
  }
  if (r.alpha !== undefined) {
    if (typeof r.alpha !== "number" || !(r.alpha >= 0 && r.alpha <= 1)) {
      fail(file, `${field}.alpha`, `must be in [0, 1], got ${JSON.stringify(r.alpha)}`);
    }
    s.alpha = r.alpha;
  }
  if (r.smooth !== undefined) {
    if (r.smooth !== false) {
      fail(file, `${field}.smooth`, "must be false (smoothing is the default)");
    }
    s.smooth = false;
  }
  if (r.rotation_seed !== undefined) {
    const v = r.rotation_seed;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      fail(file, `${field}.rotation_seed`, `must be an integer ≥ 0, got ${JSON.stringify(v)}`);
    }
    s.rotation_seed = v;
  }
  if (r.paro_alpha !== undefined) {
    const v = r.paro_alpha;
    if (typeof v !== "number" || !(v >= 0 && v <= 1)) {
      fail(file, `${field}.paro_alpha`, `must be in [0, 1], got ${JSON.stringify(v)}`);
    }
    s.paro_alpha = v;
  }
  if (r.greedy_objective !== undefined) {
    const v = r.greedy_objective;
    if (v !== "rowmax" && v !== "range" && v !== "absmax") {
      fail(
        file,
        `${field}.greedy_objective`,
        `must be rowmax, range or absmax, got ${JSON.stringify(v)}`,
      );
    }
    s.greedy_objective = v;
  }
  if (r.tau !== undefined) {
    if (typeof r.tau !== "number" || !(r.tau > 0) || !Number.isFinite(r.tau)) {
      fail(file, `${field}.tau`, `must be a positive number, got ${JSON.stringify(r.tau)}`);
    }
    s.tau = r.tau;
  }
  if (r.ars_select !== undefined) {
    if (r.ars_select !== "error" && r.ars_select !== "act-error") {
      fail(
        file,
        `${field}.ars_select`,
        `must be "error" or "act-error" (rms is the default), got ${JSON.stringify(r.ars_select)}`,
      );
    }
    s.ars_select = r.ars_select;
  }
  if (r.abits_override !== undefined) {
    s.abits_override = patternList(
      file,
      `${field}.abits_override`,
      r.abits_override,
      "abits",
      2,
      16,
    )
      .map(([pattern, abits]) => ({ pattern, abits }));
  }
  for (const k of ["quantizer", "rotation", "attention"] as const) {
    if (r[k] === undefined) continue;
    if (typeof r[k] !== "string" || !r[k]) fail(file, `${field}.${k}`, "must be a name");
    s[k] = r[k] as string;
  }
  for (const k of ["wbits", "abits", "attn_bits"] as const) {
    if (r[k] === undefined || r[k] === null) continue;
    s[k] = intField(file, `${field}.${k}`, r[k], 2, 16);
  }
  if (r.density !== undefined && r.density !== null) {
    const d = r.density;
    if (typeof d !== "number" || !(d > 0 && d <= 1)) {
      fail(file, `${field}.density`, `must be in (0, 1], got ${JSON.stringify(d)}`);
    }
    s.density = d;
  }
  if (s.quantizer === "fp32") {
    if (
      s.wbits !== null || s.abits !== null || s.rotation !== "none" || s.gptq ||
      s.abits_override || s.center || s.alpha !== undefined || s.act_group || s.cfg_delta ||
      s.low_rank || s.low_rank_override || s.rotation_seed !== undefined
    ) {
      fail(
        file,
        field,
        "fp32 takes no wbits, abits, rotation, gptq, abits_override, center, alpha, act_group, " +
          "cfg_delta, low_rank, low_rank_override or rotation_seed",
      );
    }
  } else if (s.tlq_fit && s.quantizer !== "tlq") {
    fail(file, `${field}.tlq_fit`, 'is the "tlq" quantizer\'s');
  } else if (s.tlq_assign && (s.quantizer !== "tlq" || s.tlq_fit)) {
    fail(
      file,
      `${field}.tlq_assign`,
      'is the "tlq" quantizer\'s, without tlq_fit (mse is nearest)',
    );
  } else if (s.wbits === null || s.abits === null) {
    fail(file, field, `quantizer "${s.quantizer}" needs wbits and abits`);
  } else if (s.cfg_delta && s.abits === 16) {
    fail(file, `${field}.cfg_delta`, "needs abits 4, 6 or 8");
  } else if (s.alpha !== undefined && s.rotation === "none") {
    fail(file, `${field}.alpha`, "needs a rotation (it is the rotations' smoothing)");
  } else if (s.smooth === false && s.rotation === "none") {
    fail(file, `${field}.smooth`, "needs a rotation (it is the rotations' smoothing)");
  } else if (s.smooth === false && s.alpha !== undefined) {
    fail(file, `${field}.alpha`, "is the smoothing's, and smooth is false");
  } else if (s.rotation_seed !== undefined && s.rotation === "none") {
    fail(file, `${field}.rotation_seed`, "needs a rotation (it seeds the rotations' signs)");
  } else if (s.greedy_objective && s.rotation !== "outlier" && s.rotation !== "adaptive") {
    fail(file, `${field}.greedy_objective`, "needs rotation outlier or adaptive");
  } else if (s.tau !== undefined && s.rotation !== "adaptive") {
    fail(file, `${field}.tau`, "is the adaptive rotation's threshold (rotation: adaptive)");
  } else if (s.ars_select && s.rotation !== "adaptive") {
    fail(file, `${field}.ars_select`, "is the adaptive rotation's (rotation: adaptive)");
  } else if (s.ars_select && s.tau !== undefined) {
    fail(
      file,
      `${field}.tau`,
      `is the rms selection's threshold, and ars_select is ${s.ars_select}`,
    );
  }
  if (s.attention === "dense") {
    if (s.density !== null || s.attn_bits !== null || s.paro_alpha !== undefined) {
      fail(file, field, "dense attention takes no density, attn_bits or paro_alpha");
    }
  } else {
    s.density ??= 0.3;
    s.attn_bits ??= 8;
  }
  // Checked as given; written out, a default is the run that leaves it out.
  if (s.greedy_objective === DEFAULT_OBJECTIVE) delete s.greedy_objective;
  if (s.paro_alpha === DEFAULT_PARO_ALPHA) delete s.paro_alpha;
  return s;
}
