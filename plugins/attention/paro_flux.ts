/**
 * PARO for FLUX's joint attention (issue 10): sparse over the image tokens, the text
 * tokens dense. FLUX's attention hook sees q/k/v over the joint sequence [L text tokens;
 * h·w image tokens] (plugins/models/flux.ts), while a PARO plan (runtime/quant/paro_plan.ts)
 * is made over the h×w image grid. This module:
 *
 * - calibrates on the image tokens only ({@linkcode observeImageTokens}: the image rows of
 *   q and k go to PARO's statistics observer, so the orders and masks are chosen from the
 *   image×image maps);
 * - turns the image plan into a plan over the joint sequence ({@linkcode jointParoLayer}):
 *   per head the text positions stay first and in place and the image tokens follow in the
 *   head's order; a joint block pair (query block, key block) is kept when either block
 *   holds a text token (text queries see every key, every query sees every text key) or
 *   when an image block pair it overlaps is kept by the image mask (with L a multiple of
 *   64, as FLUX's 512, the image part is exactly the plan's mask);
 * - runs the joint sequence through PARO's block-sparse kernel
 *   ({@linkcode FluxParoAttention}, runtime/ops/attn_sparse.ts: the same INT8/INT4
 *   quantize-to-blocks and sparse kernels as plugins/attention/paro.ts; the text tokens'
 *   q/k/v are quantized with the rest). The joint plan depends on L, so it is built per
 *   text length on first use (or up front for a given L).
 *
 * The `paro` attention plugin (plugins/attention/paro.ts) plans and creates this form for
 * FLUX models; its stored metadata says `form: "flux-joint"`.
 *
 * @module
 */
import type { FluxAttentionContext } from "../models/flux.ts";
import type { SelfAttention } from "../models/pixart.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import { Tensor } from "../../runtime/gpu/tensor.ts";
import type { AttnSparseTuning } from "../../runtime/ops/attn_sparse.ts";
import { slice } from "../../runtime/ops/patch.ts";
import type { ParoStatsObserver } from "../../runtime/quant/paro_calibrate.ts";
import {
  BLOCK,
  blocksOf,
  maskHas,
  maskWords,
  type ParoPlan,
} from "../../runtime/quant/paro_plan.ts";
import type { AttentionImpl } from "../types.ts";
import {
  type ParoLayerTensors,
  releaseParoLayers,
  runParoLayer,
  uploadParoLayer,
} from "./paro_layers.ts";

/** A FLUX layer's joint plan: per-head order [H, L + T] and masks [H, G, nb, mw] (u32). */
export interface JointParoLayer {
  /** perm[h, i] = joint token at position i. */
  perm: Uint32Array;
  /** Bitsets over joint blocks. */
  masks: Uint32Array;
}

/** Image blocks (of the image-only sequence) overlapped by joint block `b`; empty if none. */
function imageBlocks(b: number, L: number, J: number): number[] {
  const start = Math.max(L, b * BLOCK) - L;
  const end = Math.min(J, (b + 1) * BLOCK) - L; // exclusive
  if (end <= start) return [];
  const out: number[] = [];
  for (let i = Math.floor(start / BLOCK); i <= Math.floor((end - 1) / BLOCK); i++) out.push(i);
  return out;
}

/** Layer `layer` of an image plan as a plan over [L text; h·w image] tokens (see the module doc). */
export function jointParoLayer(plan: ParoPlan, layer: number, L: number): JointParoLayer {
  const m = plan.meta;
  const T = m.tokens;
  const J = L + T;
  const H = m.heads;
  const G = m.groups;
  const nbI = blocksOf(T);
  const nb = blocksOf(J);
  const mw = maskWords(nb);
  const src = plan.layers[layer];
  if (!src) throw new RangeError(`the PARO plan has ${m.layers} layers, asked for ${layer}`);
  const perm = new Uint32Array(H * J);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < L; i++) perm[h * J + i] = i;
    for (let j = 0; j < T; j++) perm[h * J + L + j] = L + src.perm[h * T + j];
  }
  const text = (b: number) => b * BLOCK < L;
  const img = Array.from({ length: nb }, (_, b) => imageBlocks(b, L, J));
  const masks = new Uint32Array(H * G * nb * mw);
  for (let h = 0; h < H; h++) {
    for (let g = 0; g < G; g++) {
      const im = plan.mask(layer, h, g);
      const o = (h * G + g) * nb * mw;
      for (let qb = 0; qb < nb; qb++) {
        for (let kb = 0; kb < nb; kb++) {
          const keep = text(qb) || text(kb) ||
            img[qb].some((qi) => img[kb].some((ki) => maskHas(im, nbI, qi, ki)));
          if (keep) masks[o + qb * mw + (kb >> 5)] |= 1 << (kb & 31);
        }
      }
    }
  }
  return { perm, masks };
}

/**
 * Wraps FLUX's attention so that PARO's observer sees the image tokens only: the image
 * rows of q and k (rows L… of each batch item) as an h×w grid.
 */
export function observeImageTokens(obs: ParoStatsObserver, inner: SelfAttention): SelfAttention {
  return {
    run: (rec, layer, q, k, v, ctx) => {
      const out = inner.run(rec, layer, q, k, v, ctx);
      const L = (ctx as FluxAttentionContext).textTokens ?? 0;
      if (ctx.step >= 0 && ctx.steps > 0) {
        if (!(q instanceof Tensor) || !(k instanceof Tensor)) {
          throw new TypeError("observeImageTokens: q and k must be plain tensors");
        }
        const T = ctx.h * ctx.w;
        const qi = slice(rec, q, 1, L, T);
        const ki = slice(rec, k, 1, L, T);
        obs.observe(rec, layer, qi, ki, ctx);
        qi.release();
        ki.release();
      }
      return out;
    },
  };
}

/** PARO over FLUX's joint sequence: the image plan's orders and masks, text dense. */
export class FluxParoAttention implements AttentionImpl {
  /** The image plan. */
  readonly plan: ParoPlan;
  /** Kernel launch shape (benchmarks, tests). */
  tuning: AttnSparseTuning | undefined;
  readonly #rt: Runtime;
  /** Per text length L: the joint plan's layers on the GPU and their kept-block share. */
  readonly #byL = new Map<number, { layers: ParoLayerTensors[]; density: number }>();

  /** Keeps the image plan; builds and uploads the joint plan for `textTokens` now if given. */
  constructor(rt: Runtime, plan: ParoPlan, textTokens?: number, tuning?: AttnSparseTuning) {
    this.#rt = rt;
    this.plan = plan;
    this.tuning = tuning;
    if (textTokens !== undefined) this.#joint(textTokens);
  }

  /** The joint plan for L text tokens (built on first use; through `rec` when recording). */
  #joint(L: number, rec?: Recorder): { layers: ParoLayerTensors[]; density: number } {
    let j = this.#byL.get(L);
    if (j) return j;
    if (!Number.isInteger(L) || L < 0) throw new RangeError(`text tokens must be ≥ 0, got ${L}`);
    const m = this.plan.meta;
    const J = L + m.tokens;
    const nb = blocksOf(J);
    let kept = 0;
    const layers = this.plan.layers.map((_, i) => {
      const l = jointParoLayer(this.plan, i, L);
      for (const w of l.masks) {
        for (let x = w; x; x &= x - 1) kept++;
      }
      return uploadParoLayer(this.#rt, l, m.heads, m.groups, J, rec);
    });
    j = { layers, density: kept / (m.layers * m.heads * m.groups * nb * nb) };
    this.#byL.set(L, j);
    return j;
  }

  /** Kept blocks / all blocks of the joint masks for L text tokens (layers, heads, groups). */
  jointDensity(textTokens: number): number {
    return this.#joint(textTokens).density;
  }

  /** Records PARO attention of layer `layer` over the joint q/k/v [B, L + h·w, H·D]. */
  readonly run: SelfAttention["run"] = (rec, layer, q, k, v, ctx) => {
    const L = (ctx as FluxAttentionContext).textTokens;
    const m = this.plan.meta;
    if (layer < 0 || layer >= m.layers) {
      throw new RangeError(`PARO plan has ${m.layers} layers, asked for layer ${layer}`);
    }
    if (L === undefined || ctx.h !== m.h || ctx.w !== m.w || ctx.heads !== m.heads) {
      throw new RangeError(
        `FLUX PARO plan is for a ${m.h}×${m.w} image grid and ${m.heads} heads; got ` +
          `${ctx.h}×${ctx.w}, ${ctx.heads}${L === undefined ? " without text tokens" : ""}: ` +
          "re-plan for this size",
      );
    }
    return runParoLayer(rec, this.#joint(L, rec).layers[layer], m, q, k, v, ctx, this.tuning);
  };

  /** Frees every joint plan's GPU tensors. */
  release(): void {
    for (const j of this.#byL.values()) releaseParoLayers(j.layers);
    this.#byL.clear();
  }
}
