/**
 * Calibration statistics of every linear layer's input (METHODS.md §2): the FP32 model
 * runs the calibration prompts over every sampler timestep (runtime/quant/calibration_run.ts)
 * with an observer around each linear that folds its input into GPU accumulators
 * (runtime/ops/act_stats.ts: per-channel absmax, min, max, Σx²) and copies a few token rows
 * into a fixed-size sample buffer — and, for a plan that centres or quantizes a CFG delta,
 * the same rows as its activation quantizer sees them (runtime/quant/quantizer_input.ts).
 * Nothing is read back until the end; no activations are kept beyond the sample.
 *
 * The result is cached at `.cache/calib/<model hash>-<settings hash>.safetensors`, keyed
 * by the sha-256 of the transformer weights and the prompts (with a real checkpoint's text
 * encoders: their files' sha-256; or the sha-256 of precomputed embeddings), steps,
 * guidance, sampler, seed, image and sample size and what else is collected. The file
 * format and the settings are runtime/quant/calibration_file.ts.
 *
 * @module
 */
import { join } from "node:path";
import type { Runtime } from "../gpu/device.ts";
import type { Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, type Tensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import type { Linear, LinearEpilogue, LinearFactory } from "../model/linear.ts";
import { ActStatsAccumulator } from "../ops/act_stats.ts";
import { ActGramAccumulator } from "../ops/act_gram.ts";
import { actStatsRef, type ChannelStats, rmsOf } from "../reference/act_stats.ts";
import { DEFAULT_MODEL_DIR, type SamplerName } from "../pipeline.ts";
import { transformerWeightsHash } from "./model_hash.ts";
import { quantizerInput, type QuantizerInputSpec } from "./quantizer_input.ts";
import {
  calibrationCacheName,
  type CalibrationSettings,
  type CalibrationStats,
  DEFAULT_CALIB_CACHE,
  type LayerStats,
  loadCalibration,
  saveCalibration,
} from "./calibration_file.ts";
export { transformerWeightsHash } from "./model_hash.ts";
export {
  calibrationCacheName,
  type CalibrationSettings,
  type CalibrationStats,
  DEFAULT_CALIB_CACHE,
  type LayerStats,
  loadCalibration,
  saveCalibration,
} from "./calibration_file.ts";
import {
  type CalibrationEmbeds,
  calibrationEmbedsHash,
  type CalibrationSize,
  CAPTION_CALIBRATION_PROMPTS,
  checkFluxPrompts,
  encoderAndSize,
  modelFamily,
  modelSamplingDefaults,
  promptEncoderKey,
  type PromptEncoderSource,
  runCalibration,
  usesCaptionEncoder,
} from "./calibration_run.ts";

/**
 * The default calibration prompts: one per category of the emoji set (faces, people,
 * animals, nature, food, travel, activities, objects, symbols, flags), none of them in
 * the evaluation list bench/prompts/emoji_fidelity.txt.
 */
export const CALIBRATION_PROMPTS: readonly string[] = [
  "grinning face",
  "thumbs up sign",
  "dog face",
  "cherry blossom",
  "red apple",
  "rocket",
  "soccer ball",
  "electric light bulb",
  "heavy black heart",
  "japan flag",
];

/** Options of {@linkcode calibrate} (`textEncoder`: a real checkpoint's prompt encoders' folder). */
export interface CalibrateOptions extends PromptEncoderSource, CalibrationSize {
  /** Model folder; default the bundled model. */
  path?: string;
  /**
   * Prompts; default {@linkcode CALIBRATION_PROMPTS}, or through a real checkpoint's text
   * encoders CAPTION_CALIBRATION_PROMPTS (calibration_run.ts).
   */
  prompts?: readonly string[];
  /** Precomputed inputs instead of prompts (FLUX without its text encoders: required; a row a prompt). */
  embeds?: CalibrationEmbeds;
  /** Sampler steps; default the model's (model_index.json over its family's: PixArt 20, FLUX 28). */
  steps?: number;
  /** Guidance; default the model's (PixArt 4.5, the bundled model 3.5; FLUX the embedder's 3.5). */
  guidance?: number;
  /** Sampler; default the model's (PixArt dpm++2m, FLUX flow-euler). */
  sampler?: SamplerName;
  /** First seed; default 0. */
  seed?: number;
  /** Token rows sampled per layer; default 256. */
  sampleRows?: number;
  /**
   * Also collect each layer's Gram matrix Σ xᵀx (K² floats a layer; for GPTQ) from an evenly
   * strided sample of about this many rows of each forward call (0 or absent: none).
   */
  gramRows?: number;
  /**
   * Also keep the sample rows as a plan with these settings quantizes them (`quantSample`),
   * so errors are measured on what the quantizer sees. Absent or empty: not kept.
   */
  quantInput?: QuantizerInputSpec;
  /** Cache folder; default `<repo>/.cache/calib`; false: neither read nor write. */
  cacheDir?: string | false;
  /** Progress callback. */
  onProgress?: (p: { prompt: number; prompts: number; step: number; steps: number }) => void;
}

/** RMS J = ‖X‖_F / √(rows·K) of a layer's calibration input (ARS's criterion). */
export function layerJ(s: ChannelStats): number {
  return rmsOf(s);
}

/** Statistics of host rows x [M, K] (all rows kept as the sample): for tests and tools. */
export function statsFromRows(name: string, x: Float32Array, M: number, K: number): LayerStats {
  const s = actStatsRef(x, M, K);
  return { ...s, name, cols: K, calls: 1, sample: x.slice(), sampleRows: M };
}

/** What the observers of one run share: the last input observed, to share Gram matrices. */
interface ObserverContext {
  /** Rows of a call that go into a Gram matrix (0: no Gram matrices). */
  gramRows: number;
  /** The input the last observed layer saw, and that layer. */
  last?: { x: Tensor; obs: LayerObserver };
  /** Layers whose Gram matrix is another layer's (same input tensor at every call). */
  shared: number;
  /** Also sample the activation quantizer's input formed this way (absent: not). */
  quantInput?: QuantizerInputSpec;
}

/** One layer's GPU accumulators: statistics, the row sample and (for GPTQ) the Gram matrix. */
class LayerObserver {
  readonly name: string;
  readonly stats: ActStatsAccumulator;
  /** Its own Gram matrix, or undefined when it has none or shares `gramFrom`'s. */
  gram?: ActGramAccumulator;
  /** The layer whose Gram matrix this one shares (q/k/v see one tensor: one matrix). */
  gramFrom?: LayerObserver;
  readonly sample: Tensor;
  /** The sample's rows as the quantizer sees them (with the context's quantInput). */
  readonly quantSample?: Tensor;
  readonly capacity: number;
  /** Rows a call contributes: one slot of the sample. */
  #slot: number;
  /** Valid rows in each slot (a call may have had fewer rows than a slot). */
  #slotRows: Int32Array;
  /** Calls offered to the sample so far. */
  #offered = 0;
  #calls = 0;
  #prng: Prng;
  #rt: Runtime;
  #ctx: ObserverContext;

  constructor(
    rt: Runtime,
    name: string,
    cols: number,
    capacity: number,
    rowsPerCall: number,
    ctx: ObserverContext,
  ) {
    this.name = name;
    this.#rt = rt;
    this.#ctx = ctx;
    this.stats = new ActStatsAccumulator(rt, cols);
    this.capacity = capacity;
    this.sample = createTensor(rt, [Math.max(1, capacity), cols], "f32");
    if (ctx.quantInput) this.quantSample = createTensor(rt, [Math.max(1, capacity), cols], "f32");
    this.#slot = Math.max(1, Math.min(rowsPerCall, capacity));
    this.#slotRows = new Int32Array(Math.floor(capacity / this.#slot));
    let seed = 0;
    for (let i = 0; i < name.length; i++) seed = (seed * 31 + name.charCodeAt(i)) >>> 0;
    this.#prng = new Prng(seed);
  }

  /**
   * Adds x to the Gram matrix, or to none when it shares one: a layer whose first input is
   * the very tensor the layer before it saw (q, k and v) shares that layer's matrix, and must
   * then see that layer's input at every call.
   */
  #recordGram(rec: Recorder, x: Tensor): void {
    const ctx = this.#ctx;
    const last = ctx.last;
    const sameAsLast = last !== undefined && last.x === x && last.obs !== this;
    const owner = sameAsLast ? (last.obs.gramFrom ?? last.obs) : undefined;
    if (this.#calls === 0) {
      if (owner?.gram) {
        this.gramFrom = owner;
        ctx.shared++;
      } else this.gram = new ActGramAccumulator(this.#rt, this.stats.cols, ctx.gramRows);
    } else if (this.gramFrom && owner !== this.gramFrom) {
      throw new Error(
        `${this.name}: shares ${this.gramFrom.name}'s Gram matrix but got another input ` +
          "(calibration assumes a model calls its layers in the same order every step)",
      );
    }
    this.gram?.record(rec, x);
  }

  record(rec: Recorder, x: Tensor, e?: LinearEpilogue): void {
    this.stats.record(rec, x);
    if (this.#ctx.gramRows > 0) this.#recordGram(rec, x);
    this.#ctx.last = { x, obs: this };
    this.#calls++;
    const K = this.stats.cols;
    const M = x.size / K;
    const slots = this.#slotRows.length;
    const r = Math.min(M, this.#slot);
    if (slots < 1 || r < 1 || x.dtype !== "f32") return;
    // A uniform reservoir of calls (Algorithm R): every call of the run is equally likely
    // to be in the sample, whatever the run's length; r consecutive rows at a random start.
    const c = this.#offered++;
    const slot = c < slots ? c : Math.floor(this.#prng.uniform() * (c + 1));
    if (slot >= slots) return;
    const start = Math.floor(this.#prng.uniform() * (M - r + 1));
    const [from, to, bytes] = [start * K * 4, slot * this.#slot * K * 4, r * K * 4];
    rec.copy(x, this.sample, bytes, from, to);
    const spec = this.#ctx.quantInput;
    if (this.quantSample) {
      const q = spec && quantizerInput(rec, x, e, spec);
      rec.copy(q ?? x, this.quantSample, bytes, from, to);
      q?.release(); // the pool hands it out again only to work recorded after the copy
    }
    this.#slotRows[slot] = r;
  }

  async read(rt: Runtime): Promise<LayerStats> {
    const s = await this.stats.read(rt);
    const rows = (t: Tensor) => this.#gather(t, rt);
    const sample = await rows(this.sample);
    const qs = this.quantSample && await rows(this.quantSample);
    return {
      ...s,
      name: this.name,
      cols: this.stats.cols,
      calls: this.#calls,
      sample,
      sampleRows: sample.length / this.stats.cols,
      ...(qs ? { quantSample: qs } : {}),
      ...(this.gram || this.gramFrom ? { gram: await (this.gramFrom ?? this).#readGram(rt) } : {}),
    };
  }

  /** The sample's valid rows, slot by slot. */
  async #gather(t: Tensor, rt: Runtime): Promise<Float32Array> {
    const all = await readTensor(rt, t);
    const K = this.stats.cols;
    const out = new Float32Array(this.#slotRows.reduce((a, n) => a + n, 0) * K);
    let at = 0;
    for (const [i, n] of this.#slotRows.entries()) {
      out.set(all.subarray(i * this.#slot * K, (i * this.#slot + n) * K), at);
      at += n * K;
    }
    return out;
  }

  #gramRead?: Promise<Float32Array>;

  /** The Gram matrix, read back once for this layer and the layers sharing it. */
  #readGram(rt: Runtime): Promise<Float32Array> {
    return this.#gramRead ??= this.gram!.read(rt);
  }

  release(): void {
    this.stats.release();
    this.gram?.release();
    this.sample.release();
    this.quantSample?.release();
  }
}

/** A linear that feeds its input to an observer, then runs the inner layer. */
class ObservedLinear implements Linear {
  readonly name: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly weightBytes: number;
  #inner: Linear;
  #obs: LayerObserver;

  constructor(inner: Linear, obs: LayerObserver) {
    this.#inner = inner;
    this.#obs = obs;
    this.name = inner.name;
    this.inFeatures = inner.inFeatures;
    this.outFeatures = inner.outFeatures;
    this.weightBytes = inner.weightBytes;
  }

  forward(rec: Recorder, x: Tensor, e?: LinearEpilogue): Tensor {
    this.#obs.record(rec, x, e);
    return this.#inner.forward(rec, x, e);
  }

  release(): void {
    this.#inner.release();
  }
}

/**
 * Wraps a LinearFactory so that every layer's input is observed; `read()` returns the
 * statistics once the run is over, `release()` frees the accumulators.
 */
export class StatsCollector {
  #observers = new Map<string, LayerObserver>();
  #sampleRows: number;
  #rowsPerCall: number;
  #ctx: ObserverContext;

  /**
   * A collector with no layers observed yet.
   *
   * @param sampleRows rows kept per layer
   * @param expectedCalls forward calls expected per layer (prompts × steps): a sampled call
   *   gives sampleRows / expectedCalls rows (at least 1)
   * @param gramRows > 0: also accumulate each layer's Gram matrix Σ xᵀx over about this many rows a call
   * @param quantInput also keep the sample rows as a plan formed this way quantizes them
   */
  constructor(sampleRows = 256, expectedCalls = 1, gramRows = 0, quantInput?: QuantizerInputSpec) {
    this.#ctx = { gramRows, shared: 0, ...(quantInput ? { quantInput } : {}) };
    if (!Number.isInteger(sampleRows) || sampleRows < 0) {
      throw new RangeError(`sampleRows must be a non-negative integer, got ${sampleRows}`);
    }
    this.#sampleRows = sampleRows;
    this.#rowsPerCall = Math.max(1, Math.ceil(sampleRows / Math.max(1, expectedCalls)));
  }

  /** The wrapper to pass as `linears` to runCalibration. */
  wrap(inner: LinearFactory): LinearFactory {
    return {
      create: async (rt, src) => {
        const l = await inner.create(rt, src);
        let obs = this.#observers.get(src.name);
        if (!obs) {
          obs = new LayerObserver(
            rt,
            src.name,
            src.inFeatures,
            this.#sampleRows,
            this.#rowsPerCall,
            this.#ctx,
          );
          this.#observers.set(src.name, obs);
        }
        return new ObservedLinear(l, obs);
      },
    };
  }

  /** Layers whose Gram matrix is another's (same input tensor), so not computed again. */
  get sharedGrams(): number {
    return this.#ctx.shared;
  }

  /** Reads every layer's statistics back. */
  async read(rt: Runtime): Promise<Map<string, LayerStats>> {
    const out = new Map<string, LayerStats>();
    for (const [name, obs] of this.#observers) out.set(name, await obs.read(rt));
    return out;
  }

  /** Frees the GPU accumulators. */
  release(): void {
    for (const o of this.#observers.values()) o.release();
    this.#observers.clear();
  }
}

/**
 * Runs (or loads from the cache) the calibration statistics of a model: every linear
 * input over the prompts × all sampler timesteps.
 */
export async function calibrate(rt: Runtime, o: CalibrateOptions = {}): Promise<CalibrationStats> {
  const path = o.path ?? DEFAULT_MODEL_DIR;
  const family = await modelFamily(path);
  await checkFluxPrompts(path, family, o, "Calibrating a rotation");
  const own = await modelSamplingDefaults(path, family);
  const defaultPrompts = await usesCaptionEncoder(path, o, family)
    ? CAPTION_CALIBRATION_PROMPTS
    : CALIBRATION_PROMPTS;
  const settings: CalibrationSettings = {
    prompts: o.embeds ? [] : [...(o.prompts ?? defaultPrompts)],
    steps: o.steps ?? own.steps,
    guidance: o.guidance ?? own.guidance,
    sampler: o.sampler ?? own.sampler,
    seed: o.seed ?? 0,
    sampleRows: o.sampleRows ?? 256,
    sampling: "reservoir",
  };
  if (o.gramRows) { // absent otherwise, so earlier cache keys still match
    if (!Number.isInteger(o.gramRows) || o.gramRows < 0) {
      throw new RangeError(`gramRows must be an integer ≥ 0, got ${o.gramRows}`);
    }
    settings.gramRows = o.gramRows;
  }
  if (o.quantInput?.center || o.quantInput?.cfgDelta) { // likewise absent when not kept
    settings.quantInput = {
      ...(o.quantInput.center ? { center: o.quantInput.center } : {}),
      ...(o.quantInput.cfgDelta ? { cfgDelta: true } : {}),
    };
  }
  if (o.embeds) settings.embeds = calibrationEmbedsHash(o.embeds);
  const encoder = await promptEncoderKey(path, family, o);
  if (encoder) settings.textEncoder = encoder; // absent otherwise: earlier cache keys still match
  if (o.height !== undefined || o.width !== undefined) { // likewise
    settings.size = [o.height ?? 0, o.width ?? 0];
  }
  const count = o.embeds ? o.embeds.embeds.shape[0] : settings.prompts.length;
  if (count === 0) throw new RangeError("Calibration needs at least one prompt");
  const modelHash = await transformerWeightsHash(path);
  const cacheDir = o.cacheDir === undefined ? DEFAULT_CALIB_CACHE : o.cacheDir;
  const file = cacheDir ? join(cacheDir, calibrationCacheName(modelHash, settings)) : undefined;
  if (file) {
    const cached = await loadCalibration(file).catch(() => undefined);
    if (cached && cached.modelHash === modelHash) return cached;
  }
  const collector = new StatsCollector(
    settings.sampleRows,
    count * settings.steps,
    settings.gramRows ?? 0,
    settings.quantInput,
  );
  try {
    await runCalibration(rt, {
      path,
      prompts: settings.prompts,
      embeds: o.embeds,
      steps: settings.steps,
      guidance: settings.guidance,
      sampler: settings.sampler,
      seed: settings.seed,
      ...encoderAndSize(o),
      linears: (inner) => collector.wrap(inner),
      onProgress: o.onProgress,
    });
    const stats: CalibrationStats = { modelHash, settings, layers: await collector.read(rt) };
    if (file) {
      await Deno.mkdir(cacheDir as string, { recursive: true });
      await saveCalibration(file, stats);
    }
    return stats;
  } finally {
    collector.release();
  }
}
