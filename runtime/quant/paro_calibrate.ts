/**
 * PARO calibration: post-softmax self-attention statistics per layer, head and sampler
 * step at 64×64-block granularity (mass, sparse share, incoherence) under every candidate
 * order, collected on the GPU while the FP model runs over calibration prompts
 * (runtime/quant/calibration_run.ts).
 *
 * For each (batch item, head) the observer records one head's map softmax(scale·q·kᵀ)
 * [T, T] (GEMM + row softmax), then one launch of the stats kernel accumulates the block
 * statistics of that map under every candidate order into a per-layer buffer; the map's
 * buffer is released and reused by the next head, so at most one head's full map exists
 * at a time, and nothing is read back until {@linkcode ParoStatsObserver.read}.
 *
 * @module
 */
import type { AttentionContext, SelfAttention } from "../../plugins/models/pixart.ts";
import type { Runtime } from "../gpu/device.ts";
import { composeWgsl } from "../gpu/compose.ts";
import type { KernelSpec, Recorder } from "../gpu/kernel.ts";
import { readTensor, Tensor } from "../gpu/tensor.ts";
import type { AttentionInput } from "../ops/attention.ts";
import { elementwise } from "../ops/elementwise.ts";
import { gemm } from "../ops/gemm.ts";
import { slice } from "../ops/patch.ts";
import { softmax } from "../ops/softmax.ts";
import { transformerWeightsHash } from "./calibrate.ts";
import {
  type CalibrationEmbeds,
  calibrationEmbedsHash,
  type CalibrationFamily,
  type CalibrationSize,
  encoderAndSize,
  modelFamily,
  modelSamplingDefaults,
  promptEncoderKey,
  type PromptEncoderSource,
  runCalibration,
} from "./calibration_run.ts";
import { DEFAULT_MODEL_DIR } from "../pipeline.ts";
import {
  blocksOf,
  type BlockStats,
  type CandidateOptions,
  candidatePermutations,
  NEAR_ZERO,
  type ParoStats,
} from "./paro_plan.ts";
import statsSrc from "../../wgsl/attn_sparse_stats.wgsl" with { type: "text" };

interface StatsParams {
  t: number;
  nb: number;
  base: number;
  c: number;
  threshold: number;
}

let statsSpecCache: KernelSpec<StatsParams> | undefined;

function statsSpec(): KernelSpec<StatsParams> {
  if (!statsSpecCache) {
    const c = composeWgsl(statsSrc);
    statsSpecCache = {
      name: "attn_sparse_stats",
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read_write"],
      uniform: {
        fields: ["u32", "u32", "u32", "u32", "f32", "u32", "u32", "u32"],
        values: (p) => [p.t, p.nb, p.base, p.nb * p.nb * 3, p.threshold, 0, 0, 0],
      },
      dispatch: (p) => [p.nb * p.nb, p.c],
    };
  }
  return statsSpecCache;
}

/**
 * Records the block statistics of the post-softmax map [T, T] (f32, raster order) under
 * each of the C orders in `perms` [C, T] u32, added into `stats` at element `base`
 * ([C, nb², 3]: mass, sparse flag, incoherence).
 */
export function accumulateBlockStats(
  rec: Recorder,
  map: Tensor,
  perms: Tensor,
  stats: Tensor,
  base: number,
  threshold = NEAR_ZERO,
): void {
  const T = map.shape[map.shape.length - 1];
  if (map.dtype !== "f32" || map.size !== T * T) {
    throw new RangeError(`accumulateBlockStats: map must be f32 [T, T], got [${map.shape}]`);
  }
  if (perms.dtype !== "u32" || perms.size % T !== 0 || perms.size === 0) {
    throw new RangeError(`accumulateBlockStats: perms must be u32 [C, ${T}]`);
  }
  const nb = blocksOf(T);
  const C = perms.size / T;
  if (stats.dtype !== "f32" || base + C * nb * nb * 3 > stats.size) {
    throw new RangeError("accumulateBlockStats: stats is too small for this base");
  }
  rec.dispatch(statsSpec(), { t: T, nb, base, c: C, threshold }, [map, perms, stats]);
}

/** Options of {@linkcode ParoStatsObserver}. */
export interface ParoObserverOptions extends CandidateOptions {
  /** Near-zero threshold of the sparse share; default 1e−3. */
  threshold?: number;
}

/** Collects {@linkcode ParoStats} from a wrapped self-attention on the GPU. */
export class ParoStatsObserver {
  readonly #rt: Runtime;
  readonly #opts: ParoObserverOptions;
  #grid: { h: number; w: number; heads: number; steps: number } | undefined;
  #names: string[] = [];
  #perms: Tensor | undefined;
  readonly #stats = new Map<number, Tensor>();
  readonly #maps = new Map<string, number>();

  /** Creates an observer for runtime `rt`. */
  constructor(rt: Runtime, opts: ParoObserverOptions = {}) {
    this.#rt = rt;
    this.#opts = opts;
  }

  /** Wraps `inner`: runs it, and records the statistics of each head's map. */
  wrap(inner: SelfAttention): SelfAttention {
    return {
      run: (rec, layer, q, k, v, ctx) => {
        const out = inner.run(rec, layer, q, k, v, ctx);
        if (ctx.step >= 0 && ctx.steps > 0) this.observe(rec, layer, q, k, ctx);
        return out;
      },
    };
  }

  /** Records the statistics of every (batch item, head) map of q, k [B, T, H·D]. */
  observe(
    rec: Recorder,
    layer: number,
    q: AttentionInput,
    k: AttentionInput,
    ctx: AttentionContext,
  ): void {
    const T = ctx.h * ctx.w;
    const g = this.#grid;
    if (!g) {
      this.#grid = { h: ctx.h, w: ctx.w, heads: ctx.heads, steps: ctx.steps };
      const cands = candidatePermutations(ctx.h, ctx.w, this.#opts);
      this.#names = cands.map((c) => c.name);
      const all = new Uint32Array(cands.length * T);
      cands.forEach((c, i) => all.set(c.perm, i * T));
      this.#perms = rec.upload(all, [cands.length, T], "u32");
    } else if (g.h !== ctx.h || g.w !== ctx.w || g.heads !== ctx.heads || g.steps !== ctx.steps) {
      throw new RangeError(
        `PARO calibration saw a ${ctx.h}×${ctx.w} grid, ${ctx.heads} heads, ${ctx.steps} steps ` +
          `after ${g.h}×${g.w}, ${g.heads}, ${g.steps}: calibrate one shape at a time`,
      );
    }
    const H = ctx.heads;
    const S = ctx.steps;
    const C = this.#names.length;
    const nb = blocksOf(T);
    let stats = this.#stats.get(layer);
    if (!stats) {
      // Zeros, uploaded inside the recording (a pooled buffer may be reused).
      stats = rec.upload(new Float32Array(H * S * C * nb * nb * 3), [H, S, C, nb * nb * 3]);
      this.#stats.set(layer, stats);
    }
    const qv = q instanceof Tensor ? { tensor: q } : q;
    const kv = k instanceof Tensor ? { tensor: k } : k;
    const [B, rows, W] = qv.tensor.shape;
    if (rows !== T) { // FLUX's joint [text; image] sequence: observe the image rows only
      throw new RangeError(
        `PARO calibration: q has ${rows} tokens, the ${ctx.h}×${ctx.w} grid ${T}; ` +
          "pass the image tokens alone (plugins/attention/paro_flux.ts observeImageTokens)",
      );
    }
    const D = (qv.width ?? W - (qv.column ?? 0)) / H;
    const head = (x: { tensor: Tensor; column?: number }, b: number, h: number) => {
      const cols = slice(rec, x.tensor, -1, (x.column ?? 0) + h * D, D); // [B, T, D]
      const one = slice(rec, cols.reshape([B * T, D]), 0, b * T, T); // [T, D]
      cols.release();
      return one;
    };
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const qh = head(qv, b, h);
        const qs = elementwise(rec, "affine", qh, { alpha: 1 / Math.sqrt(D) });
        qh.release();
        const kh = head(kv, b, h);
        const scores = gemm(rec, qs, kh); // [T, T] = q·kᵀ
        qs.release();
        kh.release();
        const map = softmax(rec, scores);
        scores.release();
        accumulateBlockStats(
          rec,
          map,
          this.#perms!,
          stats,
          (h * S + ctx.step) * C * nb * nb * 3,
          this.#opts.threshold,
        );
        map.release();
      }
    }
    const key = `${layer}:${ctx.step}`;
    this.#maps.set(key, (this.#maps.get(key) ?? 0) + B);
  }

  /** Reads the statistics back (waits for the queued work). */
  async read(): Promise<ParoStats> {
    const g = this.#grid;
    if (!g) throw new Error("PARO calibration observed no self-attention call");
    const layers = Math.max(...this.#stats.keys()) + 1;
    const counts = new Set(this.#maps.values());
    if (counts.size !== 1 || this.#maps.size !== layers * g.steps) {
      throw new Error("PARO calibration: layers or steps were observed unevenly");
    }
    const C = this.#names.length;
    const nb = blocksOf(g.h * g.w);
    const n = nb * nb;
    const stats: BlockStats[][][][] = [];
    for (let l = 0; l < layers; l++) {
      const t = this.#stats.get(l);
      if (!t) throw new Error(`PARO calibration: layer ${l} was not observed`);
      const data = await readTensor(this.#rt, t);
      stats.push(
        Array.from(
          { length: g.heads },
          (_, h) =>
            Array.from({ length: g.steps }, (_, s) =>
              Array.from({ length: C }, (_, c) => {
                const at = ((h * g.steps + s) * C + c) * n * 3;
                const pick = (j: number) =>
                  Float64Array.from({ length: n }, (_, i) => data[at + i * 3 + j]);
                return { mass: pick(0), sparse: pick(1), incoherence: pick(2) };
              })),
        ),
      );
    }
    return {
      h: g.h,
      w: g.w,
      layers,
      heads: g.heads,
      steps: g.steps,
      candidates: [...this.#names],
      maps: [...counts][0],
      stats,
    };
  }

  /** Frees the GPU buffers. */
  release(): void {
    this.#perms?.release();
    for (const t of this.#stats.values()) t.release();
    this.#stats.clear();
  }
}

/** Options of {@linkcode calibrateParo} (`textEncoder`: a real checkpoint's prompt encoders' folder). */
export interface ParoCalibrationOptions
  extends ParoObserverOptions, PromptEncoderSource, CalibrationSize {
  /** Model folder; default the bundled model. */
  path?: string;
  /** Calibration prompts (1–2 are enough: the patterns hardly depend on the prompt). */
  prompts: readonly string[];
  /** Precomputed inputs instead of the prompts (FLUX without its text encoders: required). */
  embeds?: CalibrationEmbeds;
  /** Sampler steps; default the model's. */
  steps?: number;
  /**
   * Installs the observer around the model's attention; default `obs.wrap(inner)` (the
   * whole sequence is the h×w grid: PixArt). FLUX passes its image-token observer.
   */
  wrap?: (obs: ParoStatsObserver, inner: SelfAttention, family: CalibrationFamily) => SelfAttention;
  /** Guidance scale; default the model's (PixArt 4.5, the bundled model 3.5, FLUX 3.5). */
  guidance?: number;
  /** First seed; default 0. */
  seed?: number;
  /** Progress after every step. */
  onProgress?: (p: { prompt: number; prompts: number; step: number; steps: number }) => void;
}

/** Runs the FP32 model over the prompts and returns the block statistics of every map. */
export async function calibrateParo(rt: Runtime, o: ParoCalibrationOptions): Promise<ParoStats> {
  const obs = new ParoStatsObserver(rt, o);
  try {
    await runCalibration(rt, {
      path: o.path,
      prompts: o.prompts,
      embeds: o.embeds,
      steps: o.steps,
      guidance: o.guidance,
      seed: o.seed,
      ...encoderAndSize(o),
      selfAttention: (inner, family) => o.wrap ? o.wrap(obs, inner, family) : obs.wrap(inner),
      onProgress: o.onProgress,
    });
    return await obs.read();
  } finally {
    obs.release();
  }
}

/**
 * What cached statistics depend on: the model's weights, the prompts (or embeddings), steps,
 * guidance, seed and the observer's options.
 */
export async function paroStatsKey(o: ParoCalibrationOptions): Promise<string> {
  const family = await modelFamily(o.path);
  const own = await modelSamplingDefaults(o.path, family);
  const encoder = await promptEncoderKey(o.path ?? DEFAULT_MODEL_DIR, family, o);
  return JSON.stringify({
    model: await transformerWeightsHash(o.path),
    prompts: o.embeds ? null : o.prompts,
    embeds: o.embeds ? calibrationEmbedsHash(o.embeds) : null,
    ...(encoder ? { textEncoder: encoder } : {}), // absent otherwise: earlier keys still match
    ...(o.height !== undefined || o.width !== undefined
      ? { size: [o.height ?? 0, o.width ?? 0] }
      : {}),
    steps: o.steps ?? own.steps,
    guidance: o.guidance ?? own.guidance,
    seed: o.seed ?? 0,
    extended: o.extended ?? false,
    threshold: o.threshold ?? NEAR_ZERO,
  });
}

/**
 * The statistics kept in `file` when `file.key` says they were made with the same
 * {@linkcode paroStatsKey}, else a new calibration ({@linkcode calibrateParo}) written to
 * both: calibration takes minutes on a CPU, and a model retrained in place must not reuse
 * its old statistics.
 */
export async function cachedParoStats(
  rt: Runtime,
  file: string,
  o: ParoCalibrationOptions,
): Promise<ParoStats> {
  const key = await paroStatsKey(o);
  try {
    if (await Deno.readTextFile(`${file}.key`) === key) {
      return decodeParoStats(await Deno.readFile(file));
    }
  } catch { /* none yet, or unreadable: calibrate */ }
  const s = await calibrateParo(rt, o);
  await Deno.writeFile(file, encodeParoStats(s));
  await Deno.writeTextFile(`${file}.key`, key);
  return s;
}

/** Serialises statistics (a JSON header line, then the f32 data) for reuse across runs. */
export function encodeParoStats(s: ParoStats): Uint8Array {
  const nb = blocksOf(s.h * s.w);
  const C = s.candidates.length;
  const data = new Float32Array(s.layers * s.heads * s.steps * C * nb * nb * 3);
  let i = 0;
  for (const l of s.stats) {
    for (const h of l) {
      for (const st of h) {
        for (const c of st) {
          for (const a of [c.mass, c.sparse, c.incoherence]) for (const v of a) data[i++] = v;
        }
      }
    }
  }
  const { stats: _drop, ...head } = s;
  const header = new TextEncoder().encode(JSON.stringify(head) + "\n");
  const out = new Uint8Array(header.length + data.byteLength);
  out.set(header);
  out.set(new Uint8Array(data.buffer), header.length);
  return out;
}

/** Reads statistics written by {@linkcode encodeParoStats}. */
export function decodeParoStats(bytes: Uint8Array): ParoStats {
  const nl = bytes.indexOf(10);
  if (nl < 0) throw new TypeError("PARO statistics: no header line");
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(0, nl))) as Omit<
    ParoStats,
    "stats"
  >;
  const nb = blocksOf(head.h * head.w);
  const n = nb * nb;
  const C = head.candidates.length;
  const want = head.layers * head.heads * head.steps * C * n * 3;
  const body = bytes.slice(nl + 1);
  if (body.byteLength !== want * 4) {
    throw new TypeError("PARO statistics: the data has the wrong size");
  }
  const data = new Float32Array(body.buffer);
  let i = 0;
  const take = () => Float64Array.from(data.subarray(i, i += n));
  const stats = Array.from(
    { length: head.layers },
    () =>
      Array.from({ length: head.heads }, () =>
        Array.from({ length: head.steps }, () =>
          Array.from(
            { length: C },
            () => ({ mass: take(), sparse: take(), incoherence: take() }),
          ))),
  );
  return { ...head, stats };
}

/** Sums statistics of the same model, grid, steps and candidates (e.g. two prompts' runs). */
export function mergeParoStats(list: readonly ParoStats[]): ParoStats {
  if (list.length === 0) throw new RangeError("mergeParoStats: nothing to merge");
  const [a] = list;
  for (const b of list) {
    if (
      b.h !== a.h || b.w !== a.w || b.layers !== a.layers || b.heads !== a.heads ||
      b.steps !== a.steps || b.candidates.join() !== a.candidates.join()
    ) {
      throw new RangeError("mergeParoStats: the statistics are of different shapes or orders");
    }
  }
  const sum = (f: (s: BlockStats) => Float64Array, at: (s: ParoStats) => BlockStats) => {
    const out = new Float64Array(f(at(a)).length);
    for (const s of list) f(at(s)).forEach((v, i) => out[i] += v);
    return out;
  };
  return {
    ...a,
    candidates: [...a.candidates],
    maps: list.reduce((n, s) => n + s.maps, 0),
    stats: a.stats.map((l, li) =>
      l.map((h, hi) =>
        h.map((st, si) =>
          st.map((_, ci) => {
            const at = (s: ParoStats) => s.stats[li][hi][si][ci];
            return {
              mass: sum((b) => b.mass, at),
              sparse: sum((b) => b.sparse, at),
              incoherence: sum((b) => b.incoherence, at),
            };
          })
        )
      )
    ),
  };
}
