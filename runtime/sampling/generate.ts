/**
 * The sampling loop: for each step, one recording with the model forward, guidance and
 * the sampler update, one submit, no read-back. The sampler computes in f32; an f16 model
 * gets casts at its input and output, and its latents are rounded to f16 at the start and
 * after every step, as diffusers' schedulers return `prev_sample.to(model_output.dtype)`.
 * Unlike an f16 diffusers pipeline, the guidance combination and DPM-Solver's x₀ history
 * stay f32 (diffusers forms them from f16 tensors).
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { finish, type LaunchTime, Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, type Tensor } from "../gpu/tensor.ts";
import { cast } from "../ops/cast.ts";
import { duplicateBatchGpu, guideGpu, nchwLayout, usesGuidance } from "./guidance.ts";
import type { GpuSampler } from "./schedule.ts";

/** What the loop needs of a model: a forward over NCHW latents with bound conditioning. */
export interface Denoiser {
  /** Latent channels C. */
  readonly inChannels: number;
  /** Output channels (2·C with a learned sigma). */
  readonly outChannels: number;
  /** Storage type the model computes in. */
  readonly dtype: "f32" | "f16";
  /**
   * Records the raw model output [B', C_out, H, W] for x [B', C, H, W] at times t (B'
   * numbers), at sampler step `step.index` of `step.total`.
   */
  forward(
    rec: Recorder,
    x: Tensor,
    t: readonly number[],
    step: { index: number; total: number },
  ): Tensor;
  /**
   * The time value fed to the model for scheduler timestep `t` (PixArt: t itself;
   * FLUX: t / 1000).
   */
  modelTime?(t: number): number;
}

/** Progress of the loop, after each step has run on the GPU. */
export interface StepInfo {
  /** Steps done (1-based). */
  step: number;
  /** Steps in all. */
  total: number;
  /** Milliseconds since the loop started. */
  elapsedMs: number;
  /**
   * Milliseconds since the previous step was reported (the first: since the loop began).
   * Reports trail the GPU ({@linkcode SampleLoopOptions.inFlight}), so one value may hold
   * parts of two steps; their sum is the loop's time.
   */
  stepMs: number;
  /** Reads this step's latents back (for previews); costs a read-back. */
  latents(): Promise<Float32Array>;
}

/** Steps the loop may have submitted and not yet reported, by default. */
export const DEFAULT_IN_FLIGHT = 4;

/** Options of {@linkcode sampleLoop}. */
export interface SampleLoopOptions {
  /** The sampler (its schedule sets the steps). */
  sampler: GpuSampler;
  /** Classifier-free guidance scale; > 1 doubles the batch as [uncond, cond]. */
  guidance: number;
  /** Cancels between steps (the step already submitted finishes). */
  signal?: AbortSignal;
  /** Called after each step, in order, once the GPU has finished it. */
  onStep?: (info: StepInfo) => void | Promise<void>;
  /** Called as each step (0-based) is submitted to the GPU, before its work has run. */
  onSubmitted?: (step: number) => void;
  /**
   * Steps submitted and not yet reported before the loop waits for a report (1 to 16;
   * default {@linkcode DEFAULT_IN_FLIGHT}). 1 waits for every step before recording the
   * next, so the GPU idles while the host records. From 2 the next step is recorded while
   * the GPU runs the last, and reports trail by up to this many − 1 steps, which hides the
   * ~10 ms Deno takes to resolve a completion. The GPU never has more than one step queued.
   */
  inFlight?: number;
  /**
   * GPU ms of one step of the model, by the shape of its batch: `${rows}x${C}x${H}x${W}` (rows
   * = 2B with guidance). Kept by the caller across loops: the loop reads its shape's entry, so
   * its first step sleeps as the later ones do, and writes back its last estimate. A shape
   * not in it starts from another batch size's ({@linkcode stepTimeEstimate}).
   */
  stepTimes?: Map<string, number>;
  /**
   * Profile this step (0-based): its launches' GPU times, by timestamp queries (the adapter
   * must have timestamp-query). The loop waits for that step before recording the next.
   */
  profileStep?: number;
}

/** What {@linkcode sampleLoop} returns. */
export interface SampleLoopResult {
  /** The final latents (f32 [B, C, H, W]); the caller releases them. */
  latents: Tensor;
  /** Per step: ms since the previous report (see {@linkcode StepInfo.stepMs}). */
  stepMs: number[];
  /** With `profileStep`: that step's launches, in order, with their GPU ms. */
  profile?: LaunchTime[];
}

/** A submitted step whose output latents are kept until the next step read them and it was reported. */
interface Submitted {
  index: number;
  x: Tensor;
  /** performance.now() after its submit. */
  submitted: number;
  /** Resolves once the GPU has run the step (asked for when the next step is recorded). */
  done?: Promise<void>;
  /** Set when `done` resolved. */
  finished?: boolean;
  consumed: boolean;
  reported: boolean;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * A batch shape's step-time estimate from `stepTimes`: its own entry, else one from the
 * nearest batch size (rows) of the same C×H×W, scaled by rows/rows' when fewer and kept when
 * more. Both are lower bounds (a smaller batch is no more efficient; a bigger one takes no
 * less time), so the loop's first steps sleep without oversleeping. 0: nothing to go by.
 */
export function stepTimeEstimate(
  stepTimes: ReadonlyMap<string, number> | undefined,
  key: string,
): number {
  const own = stepTimes?.get(key);
  if (own !== undefined) return own;
  const [rows, ...rest] = key.split("x");
  let best = 0;
  let bestDist = Infinity;
  let bestRows = 0;
  for (const [k, ms] of stepTimes ?? []) {
    const [r, ...kr] = k.split("x");
    if (kr.join("x") !== rest.join("x") || !(ms > 0)) continue;
    const ratio = Number(rows) / Number(r);
    const dist = Math.abs(Math.log(ratio));
    if (dist < bestDist || (dist === bestDist && Number(r) > bestRows)) {
      [best, bestDist, bestRows] = [ms * Math.min(1, ratio), dist, Number(r)];
    }
  }
  return best;
}

/** Checks an `inFlight` option. */
export function checkInFlight(v: number | undefined): number {
  if (v === undefined) return DEFAULT_IN_FLIGHT;
  if (!Number.isInteger(v) || v < 1 || v > 16) {
    throw new RangeError(`inFlight must be an integer from 1 to 16, got ${v}`);
  }
  return v;
}

/**
 * Runs the sampler from `latents` (f32 [B, C, H, W], not modified) and returns the final f32
 * latents. Each step is one recording and one submit; the queue runs them in order, so a
 * buffer released by one step and reused by a later one is safe.
 */
export async function sampleLoop(
  rt: Runtime,
  model: Denoiser,
  latents: Tensor,
  o: SampleLoopOptions,
): Promise<SampleLoopResult> {
  if (latents.dtype !== "f32" || latents.shape.length !== 4) {
    throw new RangeError(
      `latents must be f32 [B, C, H, W], got [${latents.shape}] ${latents.dtype}`,
    );
  }
  const [B, C, H, W] = latents.shape;
  if (C !== model.inChannels) {
    throw new RangeError(`latents have ${C} channels, the model takes ${model.inChannels}`);
  }
  const depth = checkInFlight(o.inFlight);
  const guided = usesGuidance(o.guidance);
  const rows = guided ? 2 * B : B;
  const layout = nchwLayout(B, C, model.outChannels, H, W);
  const start = performance.now();
  const stepMs: number[] = [];
  const n = o.sampler.numSteps;
  const live = new Set<Tensor>();
  const queue: Submitted[] = [];
  let lastSeen = start;
  const drop = (s: Submitted) => {
    if (s.consumed && s.reported) {
      s.x.release();
      live.delete(s.x);
    }
  };
  // Deno's completion calls block the thread until the GPU is idle. Sleeping through most of
  // a step first (by the last step's GPU time) keeps the event loop, e.g. a server's, running.
  const timeKey = `${rows}x${C}x${H}x${W}`;
  let gpuStepMs = stepTimeEstimate(o.stepTimes, timeKey);
  // With no estimate of this shape yet, the first step's time may hold one-off costs (lavapipe
  // compiles a shader at its first use, on the queue): it is not learnt from, or later steps
  // oversleep.
  const learnFirst = o.stepTimes?.has(timeKey) ?? false;
  const awaitable = async (s: Submitted) => {
    const left = 0.95 * gpuStepMs - (performance.now() - s.submitted);
    if (left >= 4) await sleep(left, o.signal);
    if (o.signal?.aborted) return; // the loop throws before it waits for `done`
    const t0 = performance.now();
    s.done = finish(rt);
    // Awaited in order by settle, where a rejection is still thrown.
    s.done.then(() => s.finished = true, () => {});
    const t1 = performance.now();
    // It blocked: the step ended now (it started at its submit, the GPU being idle then).
    // It did not: the sleep overshot, so halve the estimate (an over-estimate costs idle time).
    if (t1 - t0 <= 1) gpuStepMs *= 0.5;
    else if (s.index > 0 || learnFirst) gpuStepMs = t1 - s.submitted;
  };
  const settle = async () => {
    o.signal?.throwIfAborted(); // nothing is reported after a cancel, even a finished step
    const s = queue.shift()!;
    await s.done!;
    const now = performance.now();
    const ms = now - lastSeen;
    lastSeen = now;
    stepMs.push(ms);
    await o.onStep?.({
      step: s.index + 1,
      total: n,
      elapsedMs: now - start,
      stepMs: ms,
      latents: () => readTensor(rt, s.x),
    });
    s.reported = true;
    drop(s);
  };
  let x = createTensor(rt, latents.shape, "f32");
  live.add(x);
  let current: Submitted | undefined;
  o.sampler.reset();
  let profile: LaunchTime[] | undefined;
  try {
    const ps = o.profileStep;
    if (ps !== undefined && !(Number.isInteger(ps) && ps >= 0 && ps < n)) {
      throw new RangeError(`profileStep must be an integer from 0 to ${n - 1}, got ${ps}`);
    }
    if (ps !== undefined && !rt.info.timestamps) {
      throw new RangeError("profileStep needs timestamp-query, which this adapter lacks");
    }
    {
      const rec = new Recorder(rt, "copy latents");
      rec.copy(latents, x, latents.byteLength);
      if (model.dtype === "f16") roundToF16(rec, x);
      await rec.submit();
    }
    for (let i = 0; i < n; i++) {
      o.signal?.throwIfAborted();
      const tv = model.modelTime ? model.modelTime(o.sampler.timesteps[i]) : o.sampler.timesteps[i];
      const profiled = i === o.profileStep;
      const rec = new Recorder(rt, `step ${i}`, { profile: profiled });
      // The step's intermediates, freed once recorded, or when recording throws.
      const temps = new Set<Tensor>();
      const own = (t: Tensor) => {
        if (t !== x) temps.add(t);
        return t;
      };
      let next: Tensor;
      try {
        const xin32 = own(guided ? duplicateBatchGpu(rec, x) : x);
        const xin = own(cast(rec, xin32, model.dtype));
        const raw = own(model.forward(rec, xin, new Array(rows).fill(tv), { index: i, total: n }));
        const raw32 = own(cast(rec, raw, "f32"));
        const eps = own(guideGpu(rec, raw32, layout, o.guidance, { shape: [B, C, H, W] }));
        next = o.sampler.step(rec, i, eps, x);
        live.add(next); // the loop's from here: freed with the rest if what follows throws
        if (model.dtype === "f16") roundToF16(rec, next);
      } catch (e) {
        rec.discard();
        throw e;
      } finally {
        for (const t of temps) t.release();
      }
      // Deno's completion wait (onSubmittedWorkDone, mapAsync) blocks the thread until the
      // GPU is idle, then resolves ~10 ms later. So ask for the last step's here: the GPU ran
      // it while this step was recorded, and this one is not submitted yet.
      if (depth > 1 && current) await awaitable(current);
      if (o.signal?.aborted) { // while it slept: drop this step rather than run it
        rec.discard();
        o.signal.throwIfAborted();
      }
      await rec.submit();
      o.onSubmitted?.(i);
      if (profiled) profile = await rec.launchTimes(); // waits for the step
      if (current) {
        current.consumed = true;
        drop(current);
      } else {
        x.release();
        live.delete(x);
      }
      x = next;
      current = { index: i, x, submitted: performance.now(), consumed: false, reported: false };
      queue.push(current);
      if (depth === 1) await awaitable(current);
      // Report what has finished; wait only when `depth` steps are unreported.
      while (queue.length && (queue[0].finished || (queue.length >= depth && queue[0].done))) {
        await settle();
      }
    }
    if (current && !current.done) await awaitable(current);
    o.signal?.throwIfAborted();
    while (queue.length) await settle();
    live.delete(x);
    if (gpuStepMs > 0) o.stepTimes?.set(timeKey, gpuStepMs);
    return { latents: x, stepMs, ...(profile ? { profile } : {}) };
  } finally {
    for (const t of live) t.release();
    o.sampler.dispose();
  }
}

/** Rounds the f32 tensor `x` to f16 values in place (a cast there and back). */
function roundToF16(rec: Recorder, x: Tensor): void {
  const h = cast(rec, x, "f16");
  try {
    cast(rec, h, "f32", x);
  } finally {
    h.release();
  }
}
