/**
 * The PAROAttention plugin (METHODS.md §3): per-head token reordering, block-sparse
 * self-attention with masks per step group, Q/K/P/V in INT8 or INT4 (or float), from a
 * plan calibrated offline on 1–2 prompts. Cross-attention to the text stays dense (the
 * model's own call; this plugin only replaces self-attention).
 *
 *     const plan = await planParoForModel(rt, { density: 0.3, bits: 8 });
 *     const attn = new ParoSelfAttention(rt, plan);
 *     pipeline.transformer.selfAttention = attn;
 *
 * In a quantized artifact the plan is `ParoPlan.tensors()` (per layer `attention.paro.<i>.perm`
 * [H, T] and `attention.paro.<i>.masks` [H, G, nb, mw], u32) plus `plan.meta` (JSON) and
 * its `form`: "image" (PixArt: the sequence is the h×w grid) or "flux-joint" (FLUX: the
 * plan is made over the image tokens and runs over [text; image], text dense —
 * plugins/attention/paro_flux.ts); {@linkcode paroFromArtifact} rebuilds the attention.
 *
 * @module
 */
import type { AttentionContext } from "../models/pixart.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { AttentionInput } from "../../runtime/ops/attention.ts";
import type { AttnSparseTuning } from "../../runtime/ops/attn_sparse.ts";
import {
  CAPTION_CALIBRATION_PROMPTS,
  modelFamily,
  usesCaptionEncoder,
} from "../../runtime/quant/calibration_run.ts";
import { DEFAULT_MODEL_DIR } from "../../runtime/pipeline.ts";
import { calibrateParo, type ParoCalibrationOptions } from "../../runtime/quant/paro_calibrate.ts";
import { ParoPlan, type ParoPlanOptions, planParo } from "../../runtime/quant/paro_plan.ts";
import type { AttentionImpl, AttentionPlanData, AttentionPlugin } from "../types.ts";
import { FluxParoAttention, observeImageTokens } from "./paro_flux.ts";
import {
  type ParoLayerTensors,
  releaseParoLayers,
  runParoLayer,
  uploadParoLayer,
} from "./paro_layers.ts";

export { type ParoLayerTensors, releaseParoLayers, runParoLayer, uploadParoLayer };

/** Default calibration prompts: two emoji of different categories. */
export const PARO_CALIBRATION_PROMPTS: readonly string[] = ["grinning face", "red apple"];

/** PARO self-attention: the plan's orders and masks on the GPU, the sparse kernels. */
export class ParoSelfAttention implements AttentionImpl {
  /** The plan. */
  readonly plan: ParoPlan;
  /** Kernel launch shape (benchmarks, tests). */
  tuning: AttnSparseTuning | undefined;
  readonly #layers: ParoLayerTensors[];

  /** Uploads the plan's tensors to `rt`. */
  constructor(rt: Runtime, plan: ParoPlan, tuning?: AttnSparseTuning) {
    const m = plan.meta;
    this.plan = plan;
    this.tuning = tuning;
    this.#layers = plan.layers.map((l) => uploadParoLayer(rt, l, m.heads, m.groups, m.tokens));
  }

  /** Records PARO self-attention of layer `layer` (q/k/v [B, T, H·D] raster order). */
  run(
    rec: Recorder,
    layer: number,
    q: AttentionInput,
    k: AttentionInput,
    v: AttentionInput,
    ctx: AttentionContext,
  ): Tensor {
    const m = this.plan.meta;
    const l = this.#layers[layer];
    if (!l) throw new RangeError(`PARO plan has ${m.layers} layers, asked for layer ${layer}`);
    if (ctx.h !== m.h || ctx.w !== m.w || ctx.heads !== m.heads) {
      throw new RangeError(
        `PARO plan is for a ${m.h}×${m.w} grid with ${m.heads} heads, got ${ctx.h}×${ctx.w} ` +
          `with ${ctx.heads}: re-plan for this size`,
      );
    }
    return runParoLayer(rec, l, m, q, k, v, ctx, this.tuning);
  }

  /** Frees the plan's GPU tensors. */
  release(): void {
    releaseParoLayers(this.#layers);
  }
}

/** Options of {@linkcode planParoForModel}: calibration and plan settings. */
export interface ParoModelPlanOptions
  extends Omit<ParoCalibrationOptions, "prompts">, ParoPlanOptions {
  /** Calibration prompts; default {@linkcode PARO_CALIBRATION_PROMPTS}. */
  prompts?: readonly string[];
}

/** The form of a PARO plan: over the whole sequence, or FLUX's joint [text; image]. */
export type ParoForm = "image" | "flux-joint";

/**
 * Calibrates the FP32 model (FLUX: on the image tokens) and
 * makes the plan (over the h×w image grid in both families).
 */
export async function planParoForModel(rt: Runtime, o: ParoModelPlanOptions): Promise<ParoPlan> {
  // Through a real checkpoint's text encoders: two of the caption list, as two emoji here.
  const captions = await usesCaptionEncoder(o.path ?? DEFAULT_MODEL_DIR, o);
  const stats = await calibrateParo(rt, {
    ...o,
    prompts: o.prompts ??
      (captions ? CAPTION_CALIBRATION_PROMPTS.slice(0, 2) : PARO_CALIBRATION_PROMPTS),
    wrap: (obs, inner, family) =>
      family === "flux" ? observeImageTokens(obs, inner) : obs.wrap(inner),
  });
  return planParo(stats, o);
}

/** The artifact form of a plan: metadata (with its form) and tensors. */
export function paroPlanData(plan: ParoPlan, form: ParoForm = "image"): AttentionPlanData {
  return { meta: { ...plan.meta, form }, tensors: plan.tensors() };
}

/**
 * Rebuilds PARO attention from an artifact's stored plan: `meta` (the JSON of `plan.meta`
 * with its `form`) and a getter of its u32 tensors by name. A "flux-joint" plan gives
 * {@linkcode FluxParoAttention}, any other the image form.
 */
export function paroFromArtifact(
  rt: Runtime,
  meta: unknown,
  get: (name: string) => Uint32Array,
): ParoSelfAttention | FluxParoAttention {
  const form = (meta as { form?: unknown } | null)?.form ?? "image";
  if (form !== "image" && form !== "flux-joint") {
    throw new TypeError(`PARO plan metadata: form must be "image" or "flux-joint", got ${form}`);
  }
  const plan = ParoPlan.fromTensors(meta, get);
  return form === "flux-joint" ? new FluxParoAttention(rt, plan) : new ParoSelfAttention(rt, plan);
}

function tensorGetter(data: AttentionPlanData): (name: string) => Uint32Array {
  return (name) => {
    const t = data.tensors[name];
    if (!t) throw new TypeError(`PARO plan: the artifact has no tensor ${name}`);
    return t.data;
  };
}

/** The PARO attention plugin's descriptor. */
export const paroPlugin: AttentionPlugin = {
  kind: "attention",
  name: "paro",
  description:
    "PAROAttention: per-head token reordering, block-sparse masks per step group, INT8/INT4 Q·K and P·V (FLUX: image tokens, text dense)",
  bits: [8, 4, 16],
  plan: async (rt, o) => {
    const bits = (o.bits ?? 8) as 8 | 4 | 16;
    const plan = await planParoForModel(rt, {
      path: o.path,
      prompts: o.prompts,
      embeds: o.embeds,
      textEncoder: o.textEncoder,
      maxSequenceLength: o.maxSequenceLength,
      textEncoderDtype: o.textEncoderDtype,
      height: o.height,
      width: o.width,
      steps: o.steps,
      guidance: o.guidance,
      density: o.density ?? 0.3,
      bits,
      ...(o.orderAlpha !== undefined ? { alpha: o.orderAlpha } : {}),
      onProgress: o.onProgress,
    });
    const form = await modelFamily(o.path) === "flux" ? "flux-joint" : "image";
    return paroPlanData(plan, form);
  },
  create: (rt, data) => {
    if (!data) throw new TypeError("PARO attention needs a plan (quantize --attention paro)");
    return paroFromArtifact(rt, data.meta, tensorGetter(data));
  },
};
