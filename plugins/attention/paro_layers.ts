/**
 * A PARO plan's layers on the GPU, shared by the PixArt form (plugins/attention/paro.ts,
 * the plan's orders and masks over the h×w image grid) and the FLUX joint form
 * (plugins/attention/paro_flux.ts, the same over [text; image] tokens): upload, the
 * block-sparse launch with the step's mask group, release.
 *
 * @module
 */
import type { AttentionContext } from "../models/pixart.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import { type Tensor, uploadTensor } from "../../runtime/gpu/tensor.ts";
import type { AttentionInput } from "../../runtime/ops/attention.ts";
import { attnSparse, type AttnSparseTuning } from "../../runtime/ops/attn_sparse.ts";
import { blocksOf, maskWords, type ParoPlan, stepGroup } from "../../runtime/quant/paro_plan.ts";

/** One layer's plan on the GPU: token orders [H, T] and block masks [H, G, nb, words]. */
export interface ParoLayerTensors {
  /** perm[h, i] = token at position i of head h's order (u32). */
  perm: Tensor;
  /** Block bitsets per head and step group (u32). */
  masks: Tensor;
}

/**
 * Uploads one layer's order [H, T] and masks [H, G, nb, mw] over T tokens; through the
 * recording when `rec` is given (safe while recorded work may still reuse pooled buffers).
 */
export function uploadParoLayer(
  rt: Runtime,
  l: { perm: Uint32Array; masks: Uint32Array },
  heads: number,
  groups: number,
  tokens: number,
  rec?: Recorder,
): ParoLayerTensors {
  const nb = blocksOf(tokens);
  const up = (data: Uint32Array, shape: number[]) =>
    rec ? rec.upload(data, shape, "u32") : uploadTensor(rt, data, shape, "u32");
  return {
    perm: up(l.perm, [heads, tokens]),
    masks: up(l.masks, [heads, groups, nb, maskWords(nb)]),
  };
}

/**
 * Records the block-sparse attention of one layer's uploaded plan, with the mask group of
 * the context's sampler step (shared by the PixArt and the FLUX forms).
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
