/**
 * PAROAttention's offline plan (METHODS.md §3), on the host: the per-head choice among the
 * candidate token orders (paro_orders.ts, re-exported here) by the sparse-share /
 * incoherence score, the block masks per step group as bitsets, and the plan's tensors
 * and metadata for the quantized artifact.
 *
 * Conventions: a permutation `perm` maps a position in the reordered sequence to the
 * raster token it holds (perm[i] = token). Blocks are 64 consecutive positions; a mask
 * row `qb` is a bitset over key blocks `kb` (bit kb % 32 of word ⌊kb / 32⌋).
 *
 * @module
 */

/** Tokens per block (the 64×64-token block granularity of statistics, masks and kernels). */
export const BLOCK = 64;

/** Near-zero threshold of the sparse-share statistic (METHODS.md). */
export const NEAR_ZERO = 1e-3;

export {
  type CandidateOptions,
  candidatePermutations,
  invertPermutation,
  type PermCandidate,
  permutationByName,
  tileOrder,
} from "./paro_orders.ts";
import { permutationByName } from "./paro_orders.ts";

/** Blocks per side of a T-token map. */
export function blocksOf(tokens: number): number {
  return Math.ceil(tokens / BLOCK);
}

/** u32 words per mask row of nb blocks. */
export function maskWords(nb: number): number {
  return Math.ceil(nb / 32);
}

/** Step groups of a plan made over `steps` steps: the first half own one each, the rest share one. */
export function stepGroups(steps: number): number {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new RangeError(`steps must be a positive integer, got ${steps}`);
  }
  return Math.floor(steps / 2) + 1;
}

/**
 * The mask group of sampler step `step` of `steps` for a plan calibrated over `calSteps`
 * steps: the step is mapped onto the calibration schedule by its relative position; the
 * first ⌊calSteps/2⌋ calibration steps own a group each, the rest share the last. Outside
 * a sampling loop (step < 0) the shared group is used.
 */
export function stepGroup(step: number, steps: number, calSteps: number): number {
  const half = Math.floor(calSteps / 2);
  if (step < 0 || steps <= 0) return half;
  const s = Math.min(calSteps - 1, Math.floor((step * calSteps) / steps));
  return Math.min(s, half);
}

/** Calibration steps that feed mask group `g` (see {@linkcode stepGroup}). */
export function groupSteps(g: number, calSteps: number): number[] {
  const half = Math.floor(calSteps / 2);
  if (g < half) return [g];
  return Array.from({ length: calSteps - half }, (_, i) => half + i);
}

/**
 * The block mask of one head keeping the highest-mass blocks until `density` of the nb²
 * blocks are kept, the diagonal always kept (it counts toward the density). Ties keep the
 * lower index. Returns bitset rows [nb, maskWords(nb)].
 */
export function selectMask(mass: ArrayLike<number>, nb: number, density: number): Uint32Array {
  if (!(density > 0 && density <= 1)) {
    throw new RangeError(`density must be in (0, 1], got ${density}`);
  }
  if (mass.length !== nb * nb) throw new RangeError(`mass must have ${nb * nb} blocks`);
  const mw = maskWords(nb);
  const bits = new Uint32Array(nb * mw);
  const set = (i: number) => {
    const qb = Math.floor(i / nb);
    const kb = i % nb;
    bits[qb * mw + (kb >> 5)] |= 1 << (kb & 31);
  };
  const target = Math.max(nb, Math.round(density * nb * nb));
  for (let b = 0; b < nb; b++) set(b * nb + b);
  const order = Array.from({ length: nb * nb }, (_, i) => i)
    .filter((i) => Math.floor(i / nb) !== i % nb)
    .sort((a, b) => mass[b] - mass[a] || a - b);
  for (let n = nb, j = 0; n < target && j < order.length; n++, j++) set(order[j]);
  return bits;
}

/** True when block (qb, kb) is kept in bitset rows `bits` of nb blocks. */
export function maskHas(bits: ArrayLike<number>, nb: number, qb: number, kb: number): boolean {
  return ((bits[qb * maskWords(nb) + (kb >> 5)] >>> (kb & 31)) & 1) === 1;
}

/** Kept blocks / nb². */
export function maskDensity(bits: ArrayLike<number>, nb: number): number {
  let n = 0;
  for (let qb = 0; qb < nb; qb++) for (let kb = 0; kb < nb; kb++) n += +maskHas(bits, nb, qb, kb);
  return n / (nb * nb);
}

/** Share of the attention mass in kept blocks: Σ kept mass / Σ mass (1 when there is none). */
export function keptMass(bits: ArrayLike<number>, nb: number, mass: ArrayLike<number>): number {
  let kept = 0;
  let all = 0;
  for (let qb = 0; qb < nb; qb++) {
    for (let kb = 0; kb < nb; kb++) {
      const m = mass[qb * nb + kb];
      all += m;
      if (maskHas(bits, nb, qb, kb)) kept += m;
    }
  }
  return all > 0 ? kept / all : 1;
}

/** Block statistics of one head under one candidate order, summed over the maps seen. */
export interface BlockStats {
  /** Σ attention mass per block [nb²]. */
  mass: Float64Array;
  /** Σ over maps of 1 when ≥ 90% of the block's entries are < 1e−3 [nb²]. */
  sparse: Float64Array;
  /** Σ over maps of max/mean of the block [nb²]. */
  incoherence: Float64Array;
}

/**
 * Calibration statistics: per layer, head, calibration step and candidate order, the
 * block statistics summed over every map seen (batch items × prompts).
 */
export interface ParoStats {
  /** Token grid height. */
  h: number;
  /** Token grid width. */
  w: number;
  /** Attention layers. */
  layers: number;
  /** Heads per layer. */
  heads: number;
  /** Calibration steps. */
  steps: number;
  /** Candidate order names (stats index c). */
  candidates: string[];
  /** Maps summed into each (layer, head, step) entry. */
  maps: number;
  /** stats[layer][head][step][candidate]. */
  stats: BlockStats[][][][];
}

/** Blocks per side of the stats' grid. */
export function statsBlocks(s: ParoStats): number {
  return blocksOf(s.h * s.w);
}

/** Options of {@linkcode planParo}. */
export interface ParoPlanOptions {
  /** Target block density in (0, 1] (0.5, 0.3, 0.2…). */
  density: number;
  /** Bits of Q/K/P/V in the kernel: 8, 4, or 16 (float, sparsity only). */
  bits: 8 | 4 | 16;
  /** Weight of the sparse term in the score (METHODS.md); default 0.5. */
  alpha?: number;
  /** Restrict the choice to these candidates (e.g. ["hw"] for the no-reordering ablation). */
  candidates?: readonly string[];
  /** P's INT8 scale: "fixed" 1/127 (default) or per-block like INT4 (an ablation). */
  pScale?: "fixed" | "block";
}

/** The per-head scores of a layer: terms and total per candidate. */
export interface HeadScores {
  /** Candidate names. */
  names: string[];
  /** 1 − sparse share per candidate. */
  dense: number[];
  /** Mean incoherence per candidate. */
  incoherence: number[];
  /** α·dense/max + (1 − α)·incoherence/max per candidate. */
  score: number[];
}

/**
 * The METHODS.md score of every candidate for one head over all steps: sparse share =
 * share of (block, map) pairs with ≥ 90% near-zero entries; incoherence = mean max/mean;
 * each term divided by its largest value over the candidates.
 */
export function headScores(
  s: ParoStats,
  layer: number,
  head: number,
  alpha: number,
  allowed?: readonly string[],
): HeadScores {
  const nb = statsBlocks(s);
  const idx = s.candidates.map((n, i) => [n, i] as const).filter(([n]) =>
    !allowed || allowed.includes(n)
  );
  if (idx.length === 0) throw new RangeError(`No allowed candidate among ${s.candidates}`);
  const n = s.steps * s.maps * nb * nb;
  const dense: number[] = [];
  const inc: number[] = [];
  for (const [, c] of idx) {
    let sp = 0;
    let ic = 0;
    for (let st = 0; st < s.steps; st++) {
      const b = s.stats[layer][head][st][c];
      for (let i = 0; i < nb * nb; i++) {
        sp += b.sparse[i];
        ic += b.incoherence[i];
      }
    }
    dense.push(1 - sp / n);
    inc.push(ic / n);
  }
  const md = Math.max(...dense) || 1;
  const mi = Math.max(...inc) || 1;
  return {
    names: idx.map(([nm]) => nm),
    dense,
    incoherence: inc,
    score: dense.map((d, i) => alpha * (d / md) + (1 - alpha) * (inc[i] / mi)),
  };
}

/** Σ of a candidate's block mass over the calibration steps of mask group `g`. */
export function groupMass(
  s: ParoStats,
  layer: number,
  head: number,
  cand: number,
  g: number,
): Float64Array {
  const nb = statsBlocks(s);
  const m = new Float64Array(nb * nb);
  for (const st of groupSteps(g, s.steps)) {
    const b = s.stats[layer][head][st][cand].mass;
    for (let i = 0; i < m.length; i++) m[i] += b[i];
  }
  return m;
}

/** One layer's plan: per head the chosen order and its masks. */
export interface ParoLayerPlan {
  /** Chosen candidate name per head. */
  orders: string[];
  /** perm per head, concatenated: [H, T]. */
  perm: Uint32Array;
  /** Bitsets [H, G, nb, mw]. */
  masks: Uint32Array;
}

/** Plan metadata as stored in the artifact (JSON). */
export interface ParoPlanMeta {
  /** The attention method: always "paro". */
  method: "paro";
  /** Format version. */
  version: 1;
  /** Token grid height. */
  h: number;
  /** Token grid width. */
  w: number;
  /** Tokens T = h·w. */
  tokens: number;
  /** Tokens per block (64). */
  block: number;
  /** Heads per layer. */
  heads: number;
  /** Attention layers. */
  layers: number;
  /** Calibration steps the plan was made over. */
  steps: number;
  /** Step groups, one mask each per head: ⌊steps/2⌋ + 1. */
  groups: number;
  /** Target block density in (0, 1]. */
  density: number;
  /** Bits of Q/K/P/V in the kernel: 8, 4, or 16 (float, sparsity only). */
  bits: 8 | 4 | 16;
  /** Weight of the sparse term in the order score (default 0.5). */
  alpha: number;
  /** P's INT8 scale: "fixed" 1/127 or per-block. */
  pScale: "fixed" | "block";
  /** Chosen order per layer and head. */
  orders: string[][];
}

/** A host tensor to store: name → data, shape, dtype. */
export interface PlanTensor {
  /** u32 data. */
  data: Uint32Array;
  /** Shape. */
  shape: number[];
  /** Stored dtype ("u32"; safetensors "U32"). */
  dtype: "u32";
}

/** A PARO plan: per layer and head the order and the masks; tensors and metadata to store. */
export class ParoPlan {
  /** The metadata (what the artifact stores as JSON). */
  readonly meta: ParoPlanMeta;
  /** Per layer. */
  readonly layers: ParoLayerPlan[];

  /** Use {@linkcode planParo} or {@linkcode ParoPlan.fromTensors}. */
  constructor(meta: ParoPlanMeta, layers: ParoLayerPlan[]) {
    const nb = blocksOf(meta.tokens);
    const words = meta.heads * meta.groups * nb * maskWords(nb);
    if (layers.length !== meta.layers) {
      throw new RangeError(`PARO plan: ${layers.length} layers, metadata says ${meta.layers}`);
    }
    for (const [i, l] of layers.entries()) {
      if (l.perm.length !== meta.heads * meta.tokens || l.masks.length !== words) {
        throw new RangeError(`PARO plan: layer ${i} tensors do not match the metadata`);
      }
      for (let h = 0; h < meta.heads; h++) {
        const seen = new Uint8Array(meta.tokens);
        for (let t = 0; t < meta.tokens; t++) {
          const v = l.perm[h * meta.tokens + t];
          if (v >= meta.tokens || seen[v]) {
            throw new RangeError(`PARO plan: layer ${i} head ${h} order is not a permutation`);
          }
          seen[v] = 1;
        }
      }
    }
    this.meta = meta;
    this.layers = layers;
  }

  /** Tensor names of layer `i` in the artifact. */
  static tensorNames(i: number): { perm: string; masks: string } {
    return { perm: `attention.paro.${i}.perm`, masks: `attention.paro.${i}.masks` };
  }

  /** The tensors to store: per layer perm [H, T] and masks [H, G, nb, mw], u32. */
  tensors(): Record<string, PlanTensor> {
    const m = this.meta;
    const nb = blocksOf(m.tokens);
    const out: Record<string, PlanTensor> = {};
    this.layers.forEach((l, i) => {
      const n = ParoPlan.tensorNames(i);
      out[n.perm] = { data: l.perm, shape: [m.heads, m.tokens], dtype: "u32" };
      out[n.masks] = {
        data: l.masks,
        shape: [m.heads, m.groups, nb, maskWords(nb)],
        dtype: "u32",
      };
    });
    return out;
  }

  /** Rebuilds a plan from stored metadata and tensors (validating both). */
  static fromTensors(meta: unknown, get: (name: string) => Uint32Array): ParoPlan {
    const m = meta as ParoPlanMeta;
    if (!m || typeof m !== "object" || m.method !== "paro" || m.version !== 1) {
      throw new TypeError("PARO plan metadata: expected method paro, version 1");
    }
    for (const k of ["h", "w", "tokens", "heads", "layers", "steps", "groups"] as const) {
      if (!Number.isInteger(m[k]) || m[k] < 1) {
        throw new TypeError(`PARO plan metadata: ${k} must be a positive integer`);
      }
    }
    if (m.tokens !== m.h * m.w || m.block !== BLOCK) {
      throw new TypeError("PARO plan metadata: tokens must be h·w and block 64");
    }
    if (![8, 4, 16].includes(m.bits)) {
      throw new TypeError("PARO plan metadata: bits must be 8, 4 or 16");
    }
    const layers: ParoLayerPlan[] = [];
    for (let i = 0; i < m.layers; i++) {
      const n = ParoPlan.tensorNames(i);
      layers.push({ orders: m.orders?.[i] ?? [], perm: get(n.perm), masks: get(n.masks) });
    }
    return new ParoPlan({ ...m, pScale: m.pScale ?? "fixed" }, layers);
  }

  /** The bitset rows [nb, mw] of (layer, head, group). */
  mask(layer: number, head: number, group: number): Uint32Array {
    const nb = blocksOf(this.meta.tokens);
    const n = nb * maskWords(nb);
    const off = (head * this.meta.groups + group) * n;
    return this.layers[layer].masks.subarray(off, off + n);
  }
}

/**
 * Makes the plan from calibration statistics: per layer and head the candidate with the
 * lowest score, then per step group the mask of that order at the target density.
 */
export function planParo(stats: ParoStats, opts: ParoPlanOptions): ParoPlan {
  const alpha = opts.alpha ?? 0.5;
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`alpha must be in [0, 1], got ${alpha}`);
  if (![8, 4, 16].includes(opts.bits)) {
    throw new RangeError(`bits must be 8, 4 or 16, got ${opts.bits}`);
  }
  const { h, w, heads: H, steps } = stats;
  const T = h * w;
  const nb = blocksOf(T);
  const G = stepGroups(steps);
  const layers: ParoLayerPlan[] = [];
  for (let l = 0; l < stats.layers; l++) {
    const orders: string[] = [];
    const perm = new Uint32Array(H * T);
    const masks = new Uint32Array(H * G * nb * maskWords(nb));
    for (let hd = 0; hd < H; hd++) {
      const sc = headScores(stats, l, hd, alpha, opts.candidates);
      let best = 0;
      for (let i = 1; i < sc.score.length; i++) if (sc.score[i] < sc.score[best]) best = i;
      const name = sc.names[best];
      const c = stats.candidates.indexOf(name);
      orders.push(name);
      perm.set(permutationByName(name, h, w), hd * T);
      for (let g = 0; g < G; g++) {
        const bits = selectMask(groupMass(stats, l, hd, c, g), nb, opts.density);
        masks.set(bits, (hd * G + g) * nb * maskWords(nb));
      }
    }
    layers.push({ orders, perm, masks });
  }
  return new ParoPlan({
    method: "paro",
    version: 1,
    h,
    w,
    tokens: T,
    block: BLOCK,
    heads: H,
    layers: stats.layers,
    steps,
    groups: G,
    density: opts.density,
    bits: opts.bits,
    alpha,
    pScale: opts.pScale ?? "fixed",
    orders: layers.map((l) => l.orders),
  }, layers);
}

/**
 * Mass kept by a plan's masks on (possibly other) statistics, per layer and head, averaged
 * over steps: each step uses its group's mask and the plan's order for that head.
 */
export function planKeptMass(plan: ParoPlan, stats: ParoStats): number[][] {
  const nb = blocksOf(plan.meta.tokens);
  if (stats.h !== plan.meta.h || stats.w !== plan.meta.w) {
    throw new RangeError("planKeptMass: the statistics are of another grid");
  }
  return plan.layers.map((l, li) =>
    l.orders.map((name, hd) => {
      const c = stats.candidates.indexOf(name);
      if (c < 0) throw new RangeError(`planKeptMass: the statistics lack order ${name}`);
      let sum = 0;
      for (let st = 0; st < stats.steps; st++) {
        const g = stepGroup(st, stats.steps, plan.meta.steps);
        sum += keptMass(plan.mask(li, hd, g), nb, stats.stats[li][hd][st][c].mass);
      }
      return sum / stats.steps;
    })
  );
}
