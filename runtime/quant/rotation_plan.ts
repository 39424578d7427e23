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
import { dequantizeRows, quantizeRows } from "../reference/rotq.ts";
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
  /**
   * Relative output error of per-token activation quantization alone (weights exact):
   * ‖(Q(X) − X)·Wᵀ‖_F / ‖X·Wᵀ + b‖_F on the calibration sample rows (b when given).
   */
  errBefore: number;
  /** The same with the plan: ‖(Q(X·T) − X·T)·W'ᵀ‖_F / ‖X·Wᵀ + b‖_F. */
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

/** ‖E·Wᵀ + b‖_F² for E [S, K], W [N, K], b [N] (or none). */
function projectedNorm2(e: Float64Array, S: number, w: HostMatrix, b?: Float32Array): number {
  const K = w.cols;
  let t = 0;
  for (let r = 0; r < S; r++) {
    for (let n = 0; n < w.rows; n++) {
      let acc = b ? b[n] : 0;
      const o = n * K;
      for (let k = 0; k < K; k++) acc += e[r * K + k] * w.data[o + k];
      t += acc * acc;
    }
  }
  return t;
}

/**
 * The activation-quantization error of every planned layer before and after its
 * transform, on the calibration sample rows (at most `maxRows` per layer), in the output
 * domain, relative to the layer's output X·Wᵀ + b (pass `biases`: a large input offset
 * cancelled by the bias would otherwise inflate the denominator). Layers without a
 * sample get NaN.
 */
export function rotationReport(
  plans: ReadonlyMap<string, LayerRotation>,
  stats: CalibrationStats | undefined,
  weights: ReadonlyMap<string, HostMatrix>,
  o: { bits?: number; maxRows?: number; biases?: ReadonlyMap<string, Float32Array> } = {},
): RotationReportRow[] {
  const bits = o.bits ?? 8;
  const maxRows = o.maxRows ?? 128;
  const rows: RotationReportRow[] = [];
  for (const [layer, plan] of plans) {
    const s = stats?.layers.get(layer);
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
      errBefore: NaN,
      errAfter: NaN,
      rows: 0,
      note: `${rep.reason ?? plan.kind}${steps}`,
    };
    if (s && w && s.sampleRows > 0) {
      const S = Math.min(maxRows, s.sampleRows);
      const K = s.cols;
      const x = s.sample.subarray(0, S * K);
      const ref = projectedNorm2(Float64Array.from(x), S, w, o.biases?.get(layer));
      const q0 = quantizeRows(x, S, K, bits);
      const e0 = Float64Array.from(dequantizeRows(q0.codes, q0.scales, S, K), (v, i) => v - x[i]);
      const xt = plan.transformActivations(x, S);
      const q1 = quantizeRows(xt, S, K, bits);
      const e1 = Float64Array.from(dequantizeRows(q1.codes, q1.scales, S, K), (v, i) => v - xt[i]);
      const denom = Math.sqrt(ref);
      row.errBefore = Math.sqrt(projectedNorm2(e0, S, w)) / denom;
      row.errAfter = Math.sqrt(projectedNorm2(e1, S, plan.transformWeight(w))) / denom;
      row.rows = S;
    }
    rows.push(row);
  }
  return rows;
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
    `err A${rows[0]?.bits ?? 8} before`,
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
export interface BuildRotationReportOptions {
  /** Model folder the plans were made for (default the bundled model). */
  model?: string;
  /** The plans (e.g. QuantizeResult.rotations). */
  plans: ReadonlyMap<string, LayerRotation>;
  /** Activation bits. */
  bits: number;
  /** The calibration settings the plans used (the statistics then come from the cache). */
  calibration?: { prompts?: readonly string[]; steps?: number; cacheDir?: string | false };
  /** Sample rows per layer; default 128. */
  maxRows?: number;
}

/**
 * `quantize --report`'s rotation table in one call: loads the calibration statistics
 * (cached by {@linkcode calibrate}), the layers' weights and biases, and measures every
 * plan's activation-quantization error before and after (see {@linkcode rotationReport}).
 */
export async function buildRotationReport(
  rt: Runtime,
  o: BuildRotationReportOptions,
): Promise<{ rows: RotationReportRow[]; text: string }> {
  const stats = await calibrate(rt, {
    path: o.model,
    prompts: o.calibration?.prompts,
    steps: o.calibration?.steps,
    cacheDir: o.calibration?.cacheDir,
  });
  const names = [...o.plans.keys()];
  const path = o.model ?? DEFAULT_MODEL_DIR;
  const weights = await readLinearWeights(path, names);
  const biases = await readLinearBiases(path, names);
  const rows = rotationReport(o.plans, stats, weights, {
    bits: o.bits,
    maxRows: o.maxRows,
    biases,
  });
  return { rows, text: formatRotationReport(rows) };
}
