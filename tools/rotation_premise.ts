/**
 * The premise check of issue 6: do the bundled models have salient outlier channels in
 * their linear inputs (the LRQ-DiT paper found channels up to ~245× in PixArt)? For each
 * model it calibrates (runtime/quant/calibrate.ts, cached), then reports per layer and
 * per layer type: RMS J, max and median of the per-channel absmax and their ratio, the
 * channels above 10× and 100× the median, the ARS branch (τ = 1), and the activation-
 * quantization output error at A8 and A4 with none / hadamard / outlier / adaptive
 * (smoothing α = 0.5) and the two rotations without smoothing, on the calibration sample
 * rows (runtime/quant/rotation_plan.ts rotationReport).
 *
 *     deno run -A tools/rotation_premise.ts [--model DIR]... [--salient DIR] [--prompts N]
 *         [--steps N] [--out DIR] [--what NAME]
 *
 * `--model` defaults to the bundled model (models/emoji-s); `--salient DIR` also builds DIR
 * from the first model with tools/salient_model.ts and checks it the same way. Writes
 * `<out>/<date>_<what>.json` and `.md` (default bench/results/<device slug>/…_act_stats).
 *
 * @module
 */
import {
  type BenchResult,
  deviceSlug,
  figureRow,
  gitCommit,
  type ResultsFile,
  resultsHeader,
  resultsRoot,
  writeResultsAt,
} from "../bench/harness.ts";
import { createRuntime } from "../runtime/gpu/device.ts";
import { calibrate, CALIBRATION_PROMPTS, layerJ } from "../runtime/quant/calibrate.ts";
import {
  channelRatio,
  planRotations,
  readLinearBiases,
  readLinearWeights,
  rotationReport,
} from "../runtime/quant/rotation_plan.ts";
import type { RotationChoice } from "../runtime/quant/rotation.ts";
import { injectSalientChannels } from "./salient_model.ts";

/** The layer type of a linear's checkpoint name (inputs shared by q/k/v are one type). */
export function layerType(name: string): string {
  const m = name.match(/^transformer_blocks\.\d+\.(.*)$/);
  if (!m) return name.replace(/\.linear(_\d)?$/, "").replace(/\.emb\./, ".");
  const rest = m[1];
  if (/^attn1\.to_[qkv]$/.test(rest)) return "attn1 q/k/v input";
  if (rest === "attn1.to_out.0") return "attn1 out input";
  if (rest === "attn2.to_q") return "attn2 q input";
  if (/^attn2\.to_[kv]$/.test(rest)) return "attn2 k/v input (captions)";
  if (rest === "attn2.to_out.0") return "attn2 out input";
  if (rest === "ff.net.0.proj") return "ff1 input";
  if (rest === "ff.net.2") return "ff2 input";
  return rest;
}

/** A variant of the plan measured in the report. */
interface Variant {
  key: string;
  rotation: RotationChoice;
  smooth: boolean;
  greedyObjective?: "range" | "absmax";
}

const VARIANTS: Variant[] = [
  { key: "none", rotation: "none", smooth: false },
  { key: "hadamard", rotation: "hadamard", smooth: true },
  { key: "outlier", rotation: "outlier", smooth: true },
  { key: "adaptive", rotation: "adaptive", smooth: true },
  { key: "hadamard_nosmooth", rotation: "hadamard", smooth: false },
  { key: "outlier_nosmooth", rotation: "outlier", smooth: false },
  { key: "outlier_range", rotation: "outlier", smooth: true, greedyObjective: "range" },
];

/** Per-layer figures. */
export interface LayerRow {
  model: string;
  layer: string;
  type: string;
  K: number;
  J: number;
  absmax_max: number;
  absmax_median: number;
  ratio: number;
  over10x: number;
  over100x: number;
  top_channels: number[];
  branch: string;
  /** Output error per variant key and bits, e.g. err["outlier"]["a4"]. */
  err: Record<string, Record<string, number>>;
}

function median(a: Float32Array): number {
  const s = Float32Array.from(a).sort();
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Calibrates one model and measures every block linear. */
async function measure(
  rt: Awaited<ReturnType<typeof createRuntime>>,
  path: string,
  prompts: string[],
  steps: number,
): Promise<{ rows: LayerRow[]; modelHash: string; settings: unknown }> {
  const t0 = performance.now();
  const stats = await calibrate(rt, {
    path,
    prompts,
    steps,
    onProgress: (p) => {
      if (p.step === p.steps) {
        console.error(
          `${path}: prompt ${p.prompt + 1}/${p.prompts} (${
            ((performance.now() - t0) / 1e3).toFixed(0)
          } s)`,
        );
      }
    },
  });
  const names = [...stats.layers.keys()];
  const weights = await readLinearWeights(path, names);
  const biases = await readLinearBiases(path, names);
  const blockNames = names.filter((n) => n.startsWith("transformer_blocks."));
  const blockWeights = new Map(blockNames.map((n) => [n, weights.get(n)!]));
  const ars = planRotations(stats, blockWeights, { rotation: "adaptive" });
  const err = new Map<string, Record<string, Record<string, number>>>();
  for (const v of VARIANTS) {
    const plans = planRotations(stats, blockWeights, {
      rotation: v.rotation,
      smooth: v.smooth,
      greedyObjective: v.greedyObjective,
    });
    for (const bits of [8, 4]) {
      for (const r of rotationReport(plans, stats, blockWeights, { bits, biases })) {
        if (!err.has(r.layer)) err.set(r.layer, {});
        const e = err.get(r.layer)!;
        e[v.key] ??= {};
        e[v.key][`a${bits}`] = r.errAfter;
        if (v.key === "none") e[v.key][`a${bits}`] = r.errBefore;
      }
    }
  }
  const rows: LayerRow[] = [];
  for (const [name, s] of stats.layers) {
    const med = median(s.absmax);
    const order = Array.from(s.absmax.keys()).sort((a, b) => s.absmax[b] - s.absmax[a]);
    rows.push({
      model: path,
      layer: name,
      type: layerType(name),
      K: s.cols,
      J: layerJ(s),
      absmax_max: s.absmax[order[0]],
      absmax_median: med,
      ratio: channelRatio(s),
      over10x: s.absmax.filter((v) => v > 10 * med).length,
      over100x: s.absmax.filter((v) => v > 100 * med).length,
      top_channels: order.slice(0, 3),
      branch: ars.get(name)?.kind ?? "fp (kept)",
      err: err.get(name) ?? {},
    });
  }
  return { rows, modelHash: stats.modelHash, settings: stats.settings };
}

/** Per (model, type): medians and maxima over the blocks. */
export function summarise(rows: LayerRow[]): Record<string, unknown>[] {
  const groups = new Map<string, LayerRow[]>();
  for (const r of rows) {
    const k = `${r.model}\u0000${r.type}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(r);
  }
  const med = (xs: number[]) => median(Float32Array.from(xs));
  const out: Record<string, unknown>[] = [];
  for (const [k, g] of groups) {
    const [model, type] = k.split("\u0000");
    const row: Record<string, unknown> = {
      model,
      type,
      layers: g.length,
      K: g[0].K,
      J_median: med(g.map((r) => r.J)),
      J_max: Math.max(...g.map((r) => r.J)),
      ratio_median: med(g.map((r) => r.ratio)),
      ratio_max: Math.max(...g.map((r) => r.ratio)),
      over10x_max: Math.max(...g.map((r) => r.over10x)),
      over100x_max: Math.max(...g.map((r) => r.over100x)),
      branches: [...new Set(g.map((r) => r.branch))].join("/"),
    };
    for (const v of VARIANTS) {
      for (const b of ["a8", "a4"]) {
        const xs = g.map((r) => r.err[v.key]?.[b]).filter((x) => x !== undefined) as number[];
        if (xs.length) row[`err_${b}_${v.key}`] = xs.reduce((a, x) => a + x, 0) / xs.length;
      }
    }
    out.push(row);
  }
  return out;
}

/** A lower_snake_case name part: "attn1 q/k/v input" → "attn1_q_k_v_input". */
function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "");
}

/**
 * The summary as BENCHMARKS.md's named figures, per model (its folder's name) and layer type:
 * `act_j_median_…`, `act_ratio_max_…` (max/median channel absmax), `act_over100x_max_…` and
 * `act_err_a{8,4}_<variant>_…` (relative output error), e.g.
 * `act_ratio_max_emoji_s_attn2_out_input`.
 */
export function premiseResults(
  summary: readonly Record<string, unknown>[],
): BenchResult[] {
  const out: BenchResult[] = [];
  for (const r of summary) {
    const at = `${slug(String(r.model).split("/").pop()!)}_${slug(String(r.type))}`;
    const add = (metric: string, unit: string) => {
      const v = r[metric];
      if (typeof v === "number" && Number.isFinite(v)) {
        out.push(figureRow(`act_${metric}_${at}`.toLowerCase(), v, unit));
      }
    };
    add("J_median", "rms");
    add("ratio_max", "x");
    add("over100x_max", "channels");
    for (const v of VARIANTS) for (const b of ["a8", "a4"]) add(`err_${b}_${v.key}`, "rel");
  }
  return out;
}

function fmt(v: unknown): string {
  if (typeof v !== "number") return String(v ?? "");
  if (!Number.isFinite(v) || Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

function markdown(file: ResultsFile, summary: Record<string, unknown>[]): string {
  const cols = [
    "model",
    "type",
    "layers",
    "K",
    "J_median",
    "J_max",
    "ratio_median",
    "ratio_max",
    "over10x_max",
    "over100x_max",
    "branches",
    "err_a8_none",
    "err_a8_hadamard",
    "err_a8_outlier",
    "err_a8_adaptive",
    "err_a4_none",
    "err_a4_hadamard",
    "err_a4_outlier",
    "err_a4_adaptive",
    "err_a4_hadamard_nosmooth",
    "err_a4_outlier_nosmooth",
    "err_a8_outlier_range",
    "err_a4_outlier_range",
  ];
  const lines = [
    `# ${file.date} — activation statistics of linear inputs (premise check, issue 6)`,
    "",
    `device: ${file.device} · commit ${file.commit} · command: \`${file.command}\``,
    "",
    String(file.extra?.note),
    "",
    `| ${cols.join(" | ")} |`,
    `| ${cols.map(() => "---").join(" | ")} |`,
    ...summary.map((r) => `| ${cols.map((c) => fmt(r[c])).join(" | ")} |`),
  ];
  return lines.join("\n") + "\n";
}

if (import.meta.main) {
  const args = [...Deno.args];
  const models: string[] = [];
  const take = (name: string) => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    args.splice(i, 2);
    return v;
  };
  for (let m = take("--model"); m !== undefined; m = take("--model")) models.push(m);
  if (models.length === 0) models.push("models/emoji-s"); // the bundled model
  const salient = take("--salient");
  const nPrompts = Number(take("--prompts") ?? CALIBRATION_PROMPTS.length);
  const steps = Number(take("--steps") ?? 20);
  const salientPrompts = Number(take("--salient-prompts") ?? nPrompts);
  const salientSteps = Number(take("--salient-steps") ?? steps);
  const what = take("--what") ?? "act_stats";
  const rt = await createRuntime();
  const rows: LayerRow[] = [];
  const runs: Record<string, unknown>[] = [];
  for (const m of models) {
    const r = await measure(rt, m, CALIBRATION_PROMPTS.slice(0, nPrompts), steps);
    rows.push(...r.rows);
    runs.push({ model: m, model_hash: r.modelHash, settings: r.settings });
  }
  if (salient) {
    const channels = await injectSalientChannels(models[0], salient, {});
    const r = await measure(
      rt,
      salient,
      CALIBRATION_PROMPTS.slice(0, salientPrompts),
      salientSteps,
    );
    rows.push(...r.rows);
    runs.push({
      model: salient,
      from: models[0],
      injected: channels,
      model_hash: r.modelHash,
      settings: r.settings,
    });
  }
  const slug = deviceSlug(rt.info.description, rt.info.fallback);
  const summary = summarise(rows);
  const file: ResultsFile = {
    ...resultsHeader(
      rt.info.description,
      await gitCommit(),
      `deno run -A tools/rotation_premise.ts ${Deno.args.join(" ")}`.trim(),
    ),
    results: premiseResults(summary),
    extra: {
      note:
        "ratio = max / median of the per-channel absmax of a layer's input over all calibration tokens, prompts and timesteps; " +
        "over10x/over100x = channels above 10× / 100× that median; J = RMS of the input; branches = ARS (τ = 1) for block linears. " +
        "err_aN_<variant> = mean over the type's layers of ‖(Q(X·T) − X·T)·W'ᵀ‖ / ‖X·Wᵀ + b‖ with per-token AN quantization on the calibration sample rows (weights exact); " +
        "variants smooth with α = 0.5 unless _nosmooth; outlier's greedy passes minimise the default objective rowmax (the mean over the sample rows of their squared max |v|), outlier_range's max − min (METHODS.md). Statistics do not depend on the adapter.",
      runs,
      summary,
      layers: rows,
    },
  };
  const dir = `${take("--out") ?? resultsRoot().replace(/\/$/, "") + "/" + slug}`;
  await writeResultsAt(`${dir}/${file.date}_${what}`, file, (f) => markdown(f, summary));
  console.log(markdown(file, summary));
  rt.destroy();
}
