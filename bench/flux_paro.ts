/**
 * PARO for FLUX's joint attention, as issue 10 asks: sparse over the image tokens, the text
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
 *   q/k/v are quantized with the rest).
 *
 * @module
 */
import type { FluxAttentionContext } from "../plugins/models/flux.ts";
import type { AttentionContext, SelfAttention } from "../plugins/models/pixart.ts";
import type { Runtime } from "../runtime/gpu/device.ts";
import type { Recorder } from "../runtime/gpu/kernel.ts";
import { Tensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import type { AttentionInput } from "../runtime/ops/attention.ts";
import {
  type ParoLayerTensors,
  releaseParoLayers,
  runParoLayer,
} from "../plugins/attention/paro.ts";
import { slice } from "../runtime/ops/patch.ts";
import type { ParoStatsObserver } from "../runtime/quant/paro_calibrate.ts";
import { BLOCK, blocksOf, maskHas, maskWords, type ParoPlan } from "../runtime/quant/paro_plan.ts";

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
export class FluxParoAttention implements SelfAttention {
  /** The image plan. */
  readonly plan: ParoPlan;
  /** Text tokens L the joint plan was made for. */
  readonly textTokens: number;
  /** Kept blocks / all blocks of the joint masks, averaged over layers, heads and groups. */
  readonly jointDensity: number;
  readonly #layers: ParoLayerTensors[];

  /** Builds and uploads the joint plan of every layer for L text tokens. */
  constructor(rt: Runtime, plan: ParoPlan, textTokens: number) {
    const m = plan.meta;
    const J = textTokens + m.tokens;
    const nb = blocksOf(J);
    const mw = maskWords(nb);
    this.plan = plan;
    this.textTokens = textTokens;
    let kept = 0;
    this.#layers = plan.layers.map((_, i) => {
      const l = jointParoLayer(plan, i, textTokens);
      for (const w of l.masks) {
        for (let x = w; x; x &= x - 1) kept++;
      }
      return {
        perm: uploadTensor(rt, l.perm, [m.heads, J], "u32"),
        masks: uploadTensor(rt, l.masks, [m.heads, m.groups, nb, mw], "u32"),
      };
    });
    this.jointDensity = kept / (m.layers * m.heads * m.groups * nb * nb);
  }

  /** Records PARO attention of layer `layer` over the joint q/k/v [B, L + h·w, H·D]. */
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
    const L = (ctx as FluxAttentionContext).textTokens;
    if (!l) throw new RangeError(`PARO plan has ${m.layers} layers, asked for layer ${layer}`);
    if (L !== this.textTokens || ctx.h !== m.h || ctx.w !== m.w || ctx.heads !== m.heads) {
      throw new RangeError(
        `FLUX PARO plan is for ${this.textTokens} text tokens, a ${m.h}×${m.w} grid and ` +
          `${m.heads} heads; got ${L}, ${ctx.h}×${ctx.w}, ${ctx.heads}`,
      );
    }
    return runParoLayer(rec, l, m, q, k, v, ctx);
  }

  /** Frees the plan's GPU tensors. */
  release(): void {
    releaseParoLayers(this.#layers);
  }
}
