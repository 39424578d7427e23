/**
 * Quantizes a model folder into an artifact (runtime/quant/artifact.ts): the library
 * behind `deno task quantize`. Weights are quantized offline by the chosen quantizer plugin,
 * plainly or by GPTQ, with an optional float low-rank branch (runtime/quant/low_rank_fit.ts);
 * activations are quantized dynamically at run time, so A4/A6/A8 only change the plan.
 * Rotations and GPTQ need calibration statistics of every linear input, PARO attention maps:
 * both run the FP32 model on a GPU runtime.
 *
 * The linear layers are the checkpoint's `*.weight` tensors of rank ≥ 2; those matching
 * a keep-FP pattern or whose K is not a multiple of 4 stay in full precision. The default
 * patterns follow the model's family (config `_class_name`): PixArt keeps METHODS.md's
 * patch embed, adaLN-single, caption projection and final layer; FLUX its embedders,
 * time_text_embed, norm_out.linear and proj_out (runtime/quant/plan.ts).
 *
 * FLUX has no text encoder here: its calibration (any rotation, PARO) runs on precomputed
 * embeddings (`calibration.embeds`, `quantize --calib-embeds`) with flow-euler and the
 * model's scheduler, which the artifact stores for `generate`.
 *
 * @module
 */
import { join } from "node:path";
import type { HostMatrix } from "../../plugins/types.ts";
import { createDefaultRegistry } from "../builtins.ts";
import { parseJson } from "../io/json.ts";
import { openCheckpoint, transformerDir } from "../io/safetensors_index.ts";
import type { TensorToWrite } from "../io/safetensors.ts";
import { DEFAULT_MODEL_DIR } from "../pipeline.ts";
import { checkIntWeightGroups, int8LutError } from "../reference/qgemm.ts";
import type { PluginRegistry } from "../registry.ts";
import { createRuntime, type Runtime } from "../gpu/device.ts";
import {
  calibrate,
  type CalibrationStats,
  type LayerStats,
  transformerWeightsHash,
} from "./calibrate.ts";
import { checkFluxPrompts, encoderAndSize } from "./calibration_run.ts";
import {
  codesName,
  lowRankName,
  META,
  paramName,
  PREFIX,
  rotationName,
  storedParams,
} from "./artifact.ts";
import { type LowRankSplit, lowRankSplit } from "./low_rank.ts";
import { fitForShapes, type Quantized, quantizeWithBranch } from "./low_rank_fit.ts";
import type { LayerRotation, RotationPlanOptions } from "./rotation.ts";
import {
  ARTIFACT_VERSION,
  fpReason,
  layerAbits,
  layerLowRank,
  type LayerPlan,
  type QuantPlan,
  type QuantSettings,
} from "./plan.ts";
import { GPTQ_GRAM_ROWS, gptqHessian } from "./gptq.ts";
import { GPTQ_GPU_MIN_WORK, GptqPool } from "./gptq_pool.ts";
import { levelSqnrDb } from "./gptq_refit.ts";
import { CalibratePool } from "./calibrate_pool.ts";
import { LowRankPool } from "./low_rank_pool.ts";
import { artifactMetadata, copyStoredTensors, readText } from "./artifact_write.ts";
import { resolveSettings } from "./settings.ts";
import { checkCheckpoint } from "./checkpoint_check.ts";
import { centredStats } from "./centred_stats.ts";
import type { ActQuantSpec } from "./rotation_error.ts";
import { type LayerReport, quantizedBytes } from "./report.ts";
import type { QuantizeOptions, QuantizeResult } from "./quantize_types.ts";
export { type LayerReport, quantizedBytes } from "./report.ts";
export { writeArtifact } from "./artifact_write.ts";

/** The activation quantizer of a layer under `settings` (none for a weight-only layer). */
function actSpec(name: string, settings: QuantSettings): ActQuantSpec | undefined {
  const bits = layerAbits(name, settings);
  return bits < 16 ? { bits, group: settings.actGroup, asym: settings.actAsym } : undefined;
}

/** A layer's statistics as its rotation plans on them: centred when the plan centres inputs. */
function planStats(s: LayerStats | undefined, settings: QuantSettings): LayerStats | undefined {
  return s && settings.center ? centredStats(s) : s;
}

/**
 * Plans the attention plugin when it has a plan (PARO: calibrates attention maps on the
 * FP32 model): its tensors go in as `attention.<name>`, its metadata JSON is returned.
 */
async function planAttention(
  o: QuantizeOptions,
  settings: QuantSettings,
  registry: PluginRegistry,
  dir: string,
  tensors: Record<string, TensorToWrite>,
): Promise<string | undefined> {
  const ap = registry.get("attention", settings.attention);
  if (!ap.plan) return undefined;
  const rt = o.runtime ?? await createRuntime({ adapter: "auto" });
  try {
    const data = await ap.plan(rt, {
      path: dir,
      density: settings.density ?? undefined,
      bits: settings.attnBits ?? undefined,
      ...(o.paroAlpha !== undefined ? { orderAlpha: o.paroAlpha } : {}),
      prompts: o.calibration?.prompts,
      embeds: o.calibration?.embeds,
      ...encoderAndSize(o.calibration ?? {}),
      steps: o.calibration?.steps,
      guidance: o.calibration?.guidance,
      onProgress: o.onCalibration,
    });
    for (const [name, t] of Object.entries(data.tensors)) {
      tensors[PREFIX.attention + name] = { dtype: "U32", shape: t.shape, data: t.data };
    }
    return JSON.stringify({ plugin: ap.name, meta: data.meta });
  } finally {
    if (!o.runtime) rt.destroy();
  }
}

/**
 * Quantizes the linear layers of a model folder and assembles the artifact's tensors and
 * metadata (FP tensors copied as stored, the caption encoder and vocabulary included).
 */
export async function quantizeModel(o: QuantizeOptions): Promise<QuantizeResult> {
  const registry = o.registry ?? createDefaultRegistry();
  const dir = o.model ?? DEFAULT_MODEL_DIR;
  const tdir = await transformerDir(dir);
  const cfgText = await readText(join(tdir, "config.json"));
  const cfg = parseJson(cfgText, join(tdir, "config.json")) as Record<string, unknown>;
  const className = String(cfg._class_name ?? "unknown");
  const settings = resolveSettings(o, registry, className);
  const plugin = registry.get("quantizer", settings.quantizer);
  const family = registry.list("model").find((m) => m.className === className)?.name;
  await checkCheckpoint(tdir, cfg, join(tdir, "config.json"), family);
  // FLUX calibrates on prompts only with its text encoders: before any work, name the flag.
  const needs = settings.rotation !== "none"
    ? `--rotation ${settings.rotation}`
    : settings.gptq
    ? "--gptq"
    : registry.get("attention", settings.attention).plan
    ? `--attention ${settings.attention}`
    : undefined;
  if (needs && family === "flux") await checkFluxPrompts(dir, "flux", o.calibration ?? {}, needs);
  const sha256 = await transformerWeightsHash(dir);
  const rotPlugin = settings.rotation === "none"
    ? undefined
    : registry.get("rotation", settings.rotation);
  let stats: CalibrationStats | undefined;
  let gptqRt: Runtime | undefined; // GPTQ's GPU: the calibration's runtime, kept
  if (rotPlugin || settings.gptq) { // linear-input statistics (cached by model hash, settings)
    const rt = o.runtime ?? await createRuntime({ adapter: "auto" });
    const dev = o.gptqDevice ?? "auto";
    if (settings.gptq && (dev === "gpu" || (dev === "auto" && !rt.info.fallback))) gptqRt = rt;
    try {
      stats = await calibrate(rt, {
        path: dir,
        prompts: o.calibration?.prompts,
        embeds: o.calibration?.embeds,
        ...encoderAndSize(o.calibration ?? {}),
        steps: o.calibration?.steps,
        guidance: o.calibration?.guidance,
        cacheDir: o.calibration?.cacheDir,
        gramRows: settings.gptq ? GPTQ_GRAM_ROWS : undefined,
        // A rotation plans and measures (ARS by error, --report) on what it quantizes.
        quantInput: rotPlugin
          ? { center: settings.center, cfgDelta: settings.cfgDelta }
          : undefined,
        onProgress: o.onCalibration,
      });
    } catch (e) {
      if (!o.runtime) rt.destroy();
      throw e;
    }
    if (!o.runtime && !gptqRt) rt.destroy();
  }
  const ownGptqRt = gptqRt && !o.runtime ? gptqRt : undefined;
  const tensors: Record<string, TensorToWrite> = {};
  let attentionMeta: Awaited<ReturnType<typeof planAttention>>;
  let src: Awaited<ReturnType<typeof openCheckpoint>>;
  try {
    attentionMeta = await planAttention(o, settings, registry, dir, tensors);
    src = await openCheckpoint(tdir);
    settings.lowRankFit = fitForShapes(settings, src.tensors, o.lowRankFit !== undefined);
  } catch (e) {
    ownGptqRt?.destroy();
    throw e;
  }
  const layers: Record<string, LayerPlan> = {};
  const reports: LayerReport[] = [];
  const wopts = {
    bits: settings.wbits,
    groupSize: settings.groupSize || undefined,
    symmetric: settings.symmetric,
    ...(settings.tlqFit ? { fit: settings.tlqFit } : {}),
    ...(settings.tlqAssign ? { assign: settings.tlqAssign } : {}),
  };
  const rotations = new Map<string, LayerRotation>();
  const layerTensors: Record<string, TensorToWrite>[] = [];
  const pool = settings.gptq
    ? new GptqPool(o.workers, gptqRt, o.gptqDevice === "gpu" ? 0 : GPTQ_GPU_MIN_WORK)
    : undefined;
  let gptqGpuLayers = 0;
  const calib = new CalibratePool(o.workers);
  const fitter = settings.lowRankFit === "hessian" ? new LowRankPool(o.workers) : undefined;
  const pending: Promise<void>[] = [];
  const t0 = performance.now();
  try {
    const names = [...src.tensors.keys()].filter((n) =>
      n.endsWith(".weight") && src.tensors.get(n)!.shape.length >= 2
    );
    let done = 0;
    let finished = 0;
    const finish = () => o.onLayerDone?.(++finished, names.length);
    for (const wname of names) {
      const name = wname.slice(0, -".weight".length);
      const info = src.tensors.get(wname)!;
      const N = info.shape[0];
      const K = info.shape.slice(1).reduce((a, b) => a * b, 1);
      const shape = info.shape.length === 2 ? undefined : [...info.shape];
      const reason = fpReason(name, K, settings.keepFp);
      if (
        !reason && settings.actGroup && K % settings.actGroup && layerAbits(name, settings) < 16
      ) {
        throw new RangeError(
          `${name}: K = ${K} is not a multiple of actGroup ${settings.actGroup}`,
        );
      }
      const G = settings.groupSize;
      if (!reason && G && layerAbits(name, settings) < 16) checkIntWeightGroups(G, K, name);
      if (!reason && G && G < K && settings.quantizer !== "uniform" && K % G) {
        throw new RangeError(
          `${name}: ${settings.quantizer} groups must divide K = ${K}, got groupSize ${G}`,
        );
      }
      o.onLayer?.(done++, names.length, name);
      if (reason) {
        layers[name] = {
          out: N,
          in: K,
          quantizer: "fp",
          wbits: 0,
          abits: 0,
          rotation: "none",
          reason,
          shape,
        };
        reports.push({
          name,
          quantizer: "fp",
          wbits: 0,
          abits: 0,
          out: N,
          in: K,
          sqnrDb: null,
          int8LutError: null,
          bytesF32: 4 * N * K,
          bytes: 4 * N * K,
          ms: 0,
          reason,
        });
        finish();
        continue;
      }
      // The layer's tensors, gathered in checkpoint order whenever its job finishes.
      const layerOut: Record<string, TensorToWrite> = {};
      layerTensors.push(layerOut);
      let w: HostMatrix = { data: await src.readF32(wname), rows: N, cols: K };
      const own = w; // the layer's weight, before any rotation
      let rotation = "none";
      const meta: Record<string, number | string | boolean> = {};
      if (rotPlugin) { // W·diag(m)·R is what gets quantized; X·diag(m)⁻¹·R runs online
        const r = rotPlugin.planLayer!({
          name,
          weight: w,
          stats: planStats(stats?.layers.get(name), settings),
          options: {
            ...o.rotationOptions,
            rotation: settings.rotation as RotationPlanOptions["rotation"],
            act: actSpec(name, settings), // what ARS's error selection measures with
            weightQuant: (m: HostMatrix) => plugin.dequantize(plugin.calibrate(m, wopts)),
          },
        });
        rotation = r.kind;
        meta.rotJ = r.report.J;
        meta.rotBlock = r.block;
        if (r.report.reason) meta.rotReason = r.report.reason;
        if (r.kind !== "none") {
          rotations.set(name, r);
          w = r.transformWeight(w);
          for (const [k, t] of Object.entries(r.tensors())) {
            layerOut[rotationName(name, k)] = { dtype: t.dtype, shape: t.shape, data: t.data };
          }
        }
      }
      const wt = w; // W', what the quantizer and its branch share
      const R = layerLowRank(name, settings);
      let split: LowRankSplit | undefined;
      if (R) { // the top R directions stay in float, the quantizer gets the rest
        if (R > Math.min(N, K)) {
          throw new RangeError(`${name}: lowRank ${R} exceeds min(N, K) = ${Math.min(N, K)}`);
        }
        split = lowRankSplit(wt, own, R);
      }
      const abits = layerAbits(name, settings);
      const h = pool && gptqHessian(name, K, stats?.layers.get(name)?.gram, rotations.get(name));
      // Placeholders keep the plan's layers and the report in checkpoint order.
      const slot = reports.push(undefined as unknown as LayerReport) - 1;
      layers[name] = undefined as unknown as LayerPlan;
      /** The rest quantized: the plugin's codes, then GPTQ's on them. */
      const quantizeRest = async (rest: HostMatrix): Promise<Quantized> => {
        const { q, ms } = await calib.run(plugin, rest, wopts);
        if (!pool || !h) return { q, ms };
        const g = await pool.run({
          name,
          w: rest.data.slice(), // transferred to a worker
          rows: N,
          cols: K,
          bits: q.bits,
          codes: q.codes,
          grid: plugin.grid!(q),
          h: h.slice(),
          options: o.gptqDamp === undefined ? undefined : { damp: o.gptqDamp },
          sqnr: o.gptqSqnr ?? true,
          refit: o.gptqRefit,
        });
        const gptqMeta = { gptqDamp: g.damp, gptqActOrder: g.actOrder, gptqDevice: g.device };
        const qg = { ...q, codes: g.codes, meta: { ...q.meta, ...gptqMeta } };
        if (!g.normals) return { q: qg, ms: ms + g.ms, g };
        // --gptq-refit: the quantizer's parameters refitted to GPTQ's codes.
        const t0 = performance.now();
        const qr = plugin.refit!(qg, g.normals);
        const refitted = { ...qr, meta: { ...qr.meta, gptqRefit: true } };
        const gr = g.outSqnrDb === undefined
          ? g
          : { ...g, outSqnrDb: levelSqnrDb(g.normals, plugin.grid!(refitted).values) };
        return { q: refitted, ms: ms + g.ms + performance.now() - t0, g: gr };
      };
      const job = (async () => {
        const { r: { q, g, ms }, deq, sqnrDb, branch } = await quantizeWithBranch({
          wt,
          own,
          split,
          fit: settings.lowRankFit,
          h,
          damp: o.gptqDamp,
          rotation: rotations.get(name),
          dequantize: (q) => plugin.dequantize(q),
          quantizeRest,
          fitter,
        });
        if (branch) {
          layerOut[lowRankName(name, "a")] = { dtype: "F32", shape: [R, K], data: branch.a };
          layerOut[lowRankName(name, "b")] = { dtype: "F32", shape: [N, R], data: branch.b };
          meta.lowRankEnergy = Math.round(branch.energy * 1e4) / 1e4;
        }
        let lutErr: number | null = null;
        if (abits < 16) {
          try {
            lutErr = int8LutError(q, deq);
          } catch (e) {
            throw new RangeError(`${name}: ${(e as Error).message}`);
          }
        }
        if (g?.device === "gpu") gptqGpuLayers++;
        layerOut[codesName(name)] = { dtype: "U32", shape: [N, q.codes.length / N], data: q.codes };
        for (const [k, v] of Object.entries(storedParams(q))) { // TLQ: no lut (rebuilt on load)
          layerOut[paramName(name, k)] = { dtype: "F32", shape: [v.length], data: v };
        }
        layers[name] = {
          out: N,
          in: K,
          quantizer: q.quantizer,
          wbits: q.bits,
          abits,
          rotation,
          meta: { ...q.meta, ...meta },
          shape,
          ...(R ? { lowRank: R } : {}),
        };
        reports[slot] = {
          name,
          quantizer: q.quantizer,
          wbits: q.bits,
          abits,
          out: N,
          in: K,
          sqnrDb,
          int8LutError: lutErr,
          bytesF32: 4 * N * K,
          bytes: quantizedBytes(q, abits) + (R ? 4 * R * (N + K) : 0),
          ms,
          ...(R ? { lowRank: R, lowRankEnergy: meta.lowRankEnergy as number } : {}),
          ...(g ? { outSqnrRtnDb: g.outSqnrRtnDb, outSqnrDb: g.outSqnrDb } : {}),
        };
        finish();
      })().catch((e: Error) => {
        if (!e.message.includes(name)) e.message = `${name}: ${e.message}`;
        throw e;
      });
      job.catch(() => {}); // awaited below, where a failure is thrown
      pending.push(job);
      // Bounds memory: the jobs in flight hold their weights.
      const inFlight = 2 * Math.max(1, calib.size, pool?.size ?? 0);
      if (pending.length > inFlight) await pending.shift();
    }
    for (const job of pending) await job;
    for (const t of layerTensors) Object.assign(tensors, t);
    // Every other tensor (biases, tables, FP weights) as stored; quantized weights are codes.
    await copyStoredTensors(src, PREFIX.transformer, tensors, (name) => {
      const layer = name.endsWith(".weight") ? layers[name.slice(0, -".weight".length)] : undefined;
      return !layer || layer.quantizer === "fp";
    });
  } finally {
    src.close();
    calib.close();
    pool?.close();
    fitter?.close();
    ownGptqRt?.destroy();
  }
  const ms = performance.now() - t0;
  const metadata = await artifactMetadata(dir, cfgText, tensors, attentionMeta, family);
  const plan: QuantPlan = {
    format: "webdit-quant",
    version: ARTIFACT_VERSION,
    settings,
    source: { path: dir, sha256, className },
    calibration: stats
      ? {
        modelHash: stats.modelHash,
        ...stats.settings,
        ...(o.rotationOptions ? { rotationOptions: o.rotationOptions } : {}),
      }
      : null,
    layers,
  };
  metadata[META.plan] = JSON.stringify(plan);
  const extra = { ...(stats ? { stats } : {}), ...(settings.gptq ? { gptqGpuLayers } : {}) };
  return { plan, tensors, metadata, layers: reports, ms, rotations, ...extra };
}
