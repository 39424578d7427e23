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
 * [H, T] and `attention.paro.<i>.masks` [H, G, nb, mw], u32) plus `plan.meta` (JSON);
 * {@linkcode paroFromArtifact} rebuilds the self-attention from them.
 *
 * @module
 */
import type { AttentionContext } from "../models/pixart.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import { type Tensor, uploadTensor } from "../../runtime/gpu/tensor.ts";
import type { AttentionInput } from "../../runtime/ops/attention.ts";
import { attnSparse, type AttnSparseTuning } from "../../runtime/ops/attn_sparse.ts";
import { calibrateParo, type ParoCalibrationOptions } from "../../runtime/quant/paro_calibrate.ts";
import {
  blocksOf,
  maskWords,
  ParoPlan,
  type ParoPlanOptions,
  planParo,
  stepGroup,
} from "../../runtime/quant/paro_plan.ts";
import type { AttentionImpl, AttentionPlanData, AttentionPlugin } from "../types.ts";

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
    const nb = blocksOf(m.tokens);
    this.plan = plan;
    this.tuning = tuning;
    this.#layers = plan.layers.map((l) => ({
      perm: uploadTensor(rt, l.perm, [m.heads, m.tokens], "u32"),
      masks: uploadTensor(rt, l.masks, [m.heads, m.groups, nb, maskWords(nb)], "u32"),
    }));
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

/** One layer's plan on the GPU: token orders [H, T] and block masks [H, G, nb, words]. */
export interface ParoLayerTensors {
  perm: Tensor;
  masks: Tensor;
}

/**
 * Records the block-sparse attention of one layer's uploaded plan, with the mask group of
 * the context's sampler step (shared by the PixArt and the FLUX adapters).
 */
export function runParoLayer(
  rec: Recorder,
  l: ParoLayerTensors,
  meta: ParoPlan["meta"],
  q: AttentionInput,
  k: AttentionInput,
  v: AttentionInput,
  ctx: AttentionContext,
  tuning?: AttnSparseTuning,
): Tensor {
  return attnSparse(rec, q, k, v, {
    heads: ctx.heads,
    perm: l.perm,
    masks: l.masks,
    group: stepGroup(ctx.step, ctx.steps, meta.steps),
    bits: meta.bits,
    pScale: meta.pScale,
    tuning,
  });
}

/** Frees uploaded plan layers. */
export function releaseParoLayers(layers: readonly ParoLayerTensors[]): void {
  for (const l of layers) {
    l.perm.release();
    l.masks.release();
  }
}

/** Options of {@linkcode planParoForModel}: calibration and plan settings. */
export interface ParoModelPlanOptions
  extends Omit<ParoCalibrationOptions, "prompts">, ParoPlanOptions {
  /** Calibration prompts; default {@linkcode PARO_CALIBRATION_PROMPTS}. */
  prompts?: readonly string[];
}

/** Calibrates the FP32 model on the prompts and makes the plan. */
export async function planParoForModel(rt: Runtime, o: ParoModelPlanOptions): Promise<ParoPlan> {
  const stats = await calibrateParo(rt, { ...o, prompts: o.prompts ?? PARO_CALIBRATION_PROMPTS });
  return planParo(stats, o);
}

/** The artifact form of a plan: metadata and tensors. */
export function paroPlanData(plan: ParoPlan): AttentionPlanData {
  return { meta: plan.meta, tensors: plan.tensors() };
}

/**
 * Rebuilds PARO self-attention from an artifact's stored plan: `meta` (the JSON of
 * `plan.meta`) and a getter of its u32 tensors by name.
 */
export function paroFromArtifact(
  rt: Runtime,
  meta: unknown,
  get: (name: string) => Uint32Array,
): ParoSelfAttention {
  return new ParoSelfAttention(rt, ParoPlan.fromTensors(meta, get));
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
    "PAROAttention: per-head token reordering, block-sparse masks per step group, INT8/INT4 Q·K and P·V",
  bits: [8, 4, 16],
  plan: async (rt, o) => {
    const bits = (o.bits ?? 8) as 8 | 4 | 16;
    const plan = await planParoForModel(rt, {
      path: o.path,
      prompts: o.prompts,
      steps: o.steps,
      density: o.density ?? 0.3,
      bits,
      onProgress: o.onProgress,
    });
    return paroPlanData(plan);
  },
  create: (rt, data) => {
    if (!data) throw new TypeError("PARO attention needs a plan (quantize --attention paro)");
    return paroFromArtifact(rt, data.meta, tensorGetter(data));
  },
};
