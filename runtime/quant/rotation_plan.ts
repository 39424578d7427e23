/**
 * Rotation plans: the API the quantize command calls (issue 6 → issue 5).
 *
 * ```ts
 * const stats = await calibrate(rt, { path });                       // runtime/quant/calibrate.ts
 * const plans = planRotations(stats, weights, { rotation: "adaptive" }); // Map<layer, LayerRotation>
 * for (const [name, r] of plans) {
 *   const w2 = r.transformWeight(weights.get(name)!); // W·diag(m)·R: quantize this weight
 *   const t = r.tensors();                            // store as `${name}.rot.${key}` (+ r.kind in the plan)
 *   const online = r.gpu(rt);                         // ActivationTransform: applyQuant(rec, x, bits)
 * }
 * // artifact loader: loadLayerRotation(kind, tensors, cols) → LayerRotation → .gpu(rt)
 * console.error(formatRotationReport(rotationReport(plans, stats, weights, { bits: 8 })));
 * // or, from the quantize command with the plans it made (statistics come from the cache):
 * console.error((await buildRotationReport(rt, { model, plans, bits: 8 })).text);
 * ```
 *
 * `weights` holds the layers to quantize (the caller leaves the FP layers out); every one
 * gets a plan, and needs calibration statistics unless the rotation is "none".
 * (X·T)(W·diag(m)·R)ᵀ = X·Wᵀ for each plan, with T = diag(m)⁻¹·R online.
 *
 * @module
 */
import {
  adaptiveRotationPlugin,
  overrideFor,
  planBranch,
} from "../../plugins/rotations/adaptive.ts";
import { hadamardRotationPlugin } from "../../plugins/rotations/hadamard.ts";
import { identityRotationPlugin } from "../../plugins/rotations/identity.ts";
import { outlierRotationPlugin } from "../../plugins/rotations/outlier_aware.ts";
import type { HostMatrix, RotationPlugin } from "../../plugins/types.ts";
import { openCheckpoint, transformerDir } from "../io/safetensors_index.ts";
import { DEFAULT_MODEL_DIR } from "../pipeline.ts";
import { centredStats } from "./centred_stats.ts";
import { rotationErrors } from "./rotation_error.ts";
import type { Runtime } from "../gpu/device.ts";
import type { CalibrationStats, LayerStats } from "./calibrate.ts";
import { calibrate, layerJ } from "./calibrate.ts";
import type {
  LayerRotation,
  RotationChoice,
  RotationKind,
  RotationPlanOptions,
} from "./rotation.ts";

export { loadLayerRotation } from "./rotation.ts";
export type {
  LayerRotation,
  RotationChoice,
  RotationKind,
  RotationPlanOptions,
} from "./rotation.ts";

/** A rotation plugin that plans layers. */
export type PlanningRotationPlugin = RotationPlugin & Required<Pick<RotationPlugin, "planLayer">>;

/** The rotation plugins by name (also registered in runtime/builtins.ts). */
export const ROTATION_PLUGINS: Readonly<Record<RotationChoice, PlanningRotationPlugin>> = {
  none: identityRotationPlugin,
  hadamard: hadamardRotationPlugin,
  outlier: outlierRotationPlugin,
  adaptive: adaptiveRotationPlugin,
};

/**
 * Plans every layer of `weights`: the chosen plugin, or the override for that layer.
 * @throws {RangeError} for an unknown rotation, or a layer without statistics that needs them.
 */
export function planRotations(
  stats: CalibrationStats | undefined,
  weights: ReadonlyMap<string, HostMatrix>,
  opts: RotationPlanOptions,
): Map<string, LayerRotation> {
  const plugin = ROTATION_PLUGINS[opts.rotation];
  if (!plugin) {
    throw new RangeError(
      `Unknown rotation "${opts.rotation}"; expected none, hadamard, outlier or adaptive`,
    );
  }
  const out = new Map<string, LayerRotation>();
  for (const [name, weight] of weights) {
    const s = stats?.layers.get(name);
    if (s && s.cols !== weight.cols) {
      throw new RangeError(
        `${name}: statistics have ${s.cols} channels, the weight ${weight.cols}`,
      );
    }
    const forced = overrideFor(opts.overrides, name);
    const branch = forced ?? opts.rotation;
    const needsStats = branch === "outlier" || branch === "adaptive" ||
      (branch === "hadamard" && opts.smooth !== false);
    if (!s && needsStats) {
      throw new RangeError(
        `No calibration statistics for layer ${name} (the ${branch} rotation needs them)`,
      );
    }
    const input = { name, weight, stats: s, options: opts };
    const plan = forced ? planBranch(forced, input) : plugin.planLayer(input);
    if (forced) plan.report.reason = "override";
    out.set(name, plan);
  }
  return out;
}

/** Reads the weights W [N, K] (f32) of the named linear layers of a model folder. */
export async function readLinearWeights(
  path: string,
  names: readonly string[],
): Promise<Map<string, HostMatrix>> {
  const dir = await transformerDir(path);
  const src = await openCheckpoint(dir);
  try {
    const out = new Map<string, HostMatrix>();
    for (const name of names) {
      const info = src.tensors.get(`${name}.weight`);
      if (!info) throw new RangeError(`${dir}: no tensor ${name}.weight`);
      const rows = info.shape[0];
      const cols = info.shape.slice(1).reduce((a, b) => a * b, 1);
      out.set(name, { data: await src.readF32(`${name}.weight`), rows, cols });
    }
    return out;
  } finally {
    src.close();
  }
}

/** Reads the biases b [N] of the named linear layers (layers without one are left out). */
export async function readLinearBiases(
  path: string,
  names: readonly string[],
): Promise<Map<string, Float32Array>> {
  const dir = await transformerDir(path);
  const src = await openCheckpoint(dir);
  try {
    const out = new Map<string, Float32Array>();
    for (const name of names) {
      if (src.tensors.has(`${name}.bias`)) out.set(name, await src.readF32(`${name}.bias`));
    }
    return out;
  } finally {
    src.close();
  }
}

/** One row of the rotation report. */
export interface RotationReportRow {
  /** Layer name. */
  layer: string;
  /** Branch taken. */
  kind: RotationKind;
  /** RMS J of the calibration input. */
  J: number;
  /** Rotation block. */
  block: number;
  /** Max/median of the per-channel absmax (salient channels show as a large ratio). */
  channelRatio: number;
  /** Activation bits the errors are measured at. */
  bits: number;
  /** Channels an activation scale (0: one a token). */
  group: number;
  /** Whether the groups are asymmetric. */
  asym: boolean;
  /**
   * Relative output error of the activation quantizer alone (weights exact):
   * ‖(Q(X̃) − X̃)·Wᵀ‖_F / ‖X·Wᵀ + b‖_F on the calibration sample rows (b when given), X̃ the
   * rows as the quantizer sees them (runtime/quant/rotation_error.ts).
   */
  errBefore: number;
  /** The same with the plan: ‖(Q(X̃·T) − X̃·T)·W'ᵀ‖_F / ‖X·Wᵀ + b‖_F. */
  errAfter: number;
  /** Sample rows the errors were measured on. */
  rows: number;
  /** Why this branch, and the greedy steps kept (outlier). */
  note: string;
}

/** max/median of a layer's per-channel absmax. */
export function channelRatio(s: LayerStats): number {
  const a = Float32Array.from(s.absmax).sort();
  const med = a.length % 2 ? a[a.length >> 1] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
  return med > 0 ? a[a.length - 1] / med : Infinity;
}

/** Options of {@linkcode rotationReport}. */
export interface RotationReportOptions {
  /** Activation bits; default 8. */
  bits?: number;
  /** Per-layer activation bits where they differ from `bits` (16: weight-only, no error). */
  layerBits?: ReadonlyMap<string, number>;
  /** Channels an activation scale (quantize --act-group); default 0, one a token. */
  group?: number;
  /** With `group`: asymmetric groups (quantize --act-asym). */
  asym?: boolean;
  /**
   * The plan centres inputs (quantize --center): the statistics are taken centred, as the
   * plans were made on them (runtime/quant/centred_stats.ts: the run-wide midpoint stands in
   * for each sample's centre where the statistics lack the quantizer's own input rows).
   */
  center?: boolean;
  /** Sample rows per layer; default ERROR_ROWS (256). */
  maxRows?: number;
  /** The layers' biases (the denominator's X·Wᵀ + b). */
  biases?: ReadonlyMap<string, Float32Array>;
}

/**
 * The activation-quantization error of every planned layer before and after its
 * transform, on the calibration sample rows (at most `maxRows` per layer), in the output
 * domain, relative to the layer's output X·Wᵀ + b (pass `biases`: a large input offset
 * cancelled by the bias would otherwise inflate the denominator), with the plan's
 * activation quantizer (bits, groups). Layers without a sample get NaN.
 */
export function rotationReport(
  plans: ReadonlyMap<string, LayerRotation>,
  stats: CalibrationStats | undefined,
  weights: ReadonlyMap<string, HostMatrix>,
  o: RotationReportOptions = {},
): RotationReportRow[] {
  const defaultBits = o.bits ?? 8;
  const [group, asym] = [o.group ?? 0, o.asym ?? false];
  const rows: RotationReportRow[] = [];
  for (const [layer, plan] of plans) {
    const bits = o.layerBits?.get(layer) ?? defaultBits;
    const raw = stats?.layers.get(layer);
    const s = raw && o.center ? centredStats(raw) : raw;
    const w = weights.get(layer);
    const rep = plan.report;
    const steps = rep.greedySteps ? `; greedy steps ${rep.greedySteps.join("+")}` : "";
    const row: RotationReportRow = {
      layer,
      kind: plan.kind,
      J: s ? layerJ(s) : NaN,
      block: plan.block,
      channelRatio: s ? channelRatio(s) : NaN,
      bits,
      group,
      asym,
      errBefore: NaN,
      errAfter: NaN,
      rows: 0,
      note: `${rep.reason ?? plan.kind}${steps}`,
    };
    if (s && w && bits < 16) { // a weight-only layer's activations are not quantized
      const e = rotationErrors(plan, s, w, { bits, group, asym }, {
        maxRows: o.maxRows,
        bias: o.biases?.get(layer),
      });
      [row.errBefore, row.errAfter, row.rows] = [e.before, e.after, e.rows];
    }
    rows.push(row);
  }
  return rows;
}

/** "A8", "A4 g16 asym": the quantizer the report's errors are of (its first quantized row's). */
function actLabel(rows: readonly RotationReportRow[]): string {
  const r = rows.find((x) => x.bits < 16);
  if (!r) return "(weight-only)";
  return `A${r.bits}${r.group ? ` g${r.group}${r.asym ? " asym" : ""}` : ""}`;
}

/** The report as a text table (for stderr), with a count of layers per branch. */
export function formatRotationReport(rows: readonly RotationReportRow[]): string {
  const f = (v: number, d = 3) => (Number.isFinite(v) ? v.toPrecision(d) : "-");
  const head = [
    "layer",
    "branch",
    "J",
    "block",
    "max/med",
    `err ${actLabel(rows)} before`,
    "after",
    "note",
  ];
  const body = rows.map((r) => [
    r.layer,
    r.kind,
    f(r.J),
    String(r.block),
    f(r.channelRatio),
    f(r.errBefore),
    f(r.errAfter),
    r.note,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.kind, (counts.get(r.kind) ?? 0) + 1);
  const summary = [...counts].map(([k, n]) => `${k}: ${n}`).join(", ");
  return [line(head), ...body.map(line), `${rows.length} layers (${summary})`].join("\n");
}

/** Options of {@linkcode buildRotationReport}. */
export interface BuildRotationReportOptions extends Omit<RotationReportOptions, "biases" | "bits"> {
  /** Model folder the plans were made for (default the bundled model). */
  model?: string;
  /** The plans (e.g. QuantizeResult.rotations). */
  plans: ReadonlyMap<string, LayerRotation>;
  /** Activation bits. */
  bits: number;
  /** The statistics the plans were made on (QuantizeResult.stats); else `calibration`'s. */
  stats?: CalibrationStats;
  /** The calibration settings the plans used (the statistics then come from the cache). */
  calibration?: { prompts?: readonly string[]; steps?: number; cacheDir?: string | false };
}

/**
 * `quantize --report`'s rotation table in one call: the calibration statistics (given, or
 * from {@linkcode calibrate}'s cache), the layers' weights and biases, and every plan's
 * activation-quantization error before and after (see {@linkcode rotationReport}).
 */
export async function buildRotationReport(
  rt: Runtime | undefined,
  o: BuildRotationReportOptions,
): Promise<{ rows: RotationReportRow[]; text: string }> {
  let stats = o.stats;
  if (!stats) {
    if (!rt) throw new TypeError("buildRotationReport: pass stats or a runtime to calibrate on");
    stats = await calibrate(rt, {
      path: o.model,
      prompts: o.calibration?.prompts,
      steps: o.calibration?.steps,
      cacheDir: o.calibration?.cacheDir,
    });
  }
  const names = [...o.plans.keys()];
  const path = o.model ?? DEFAULT_MODEL_DIR;
  const weights = await readLinearWeights(path, names);
  const biases = await readLinearBiases(path, names);
  const { bits, layerBits, group, asym, center, maxRows } = o;
  const rows = rotationReport(o.plans, stats, weights, {
    bits,
    layerBits,
    group,
    asym,
    center,
    maxRows,
    biases,
  });
  return { rows, text: formatRotationReport(rows) };
}
