/**
 * The sampling loop: for each step, one recording with the model forward, guidance and
 * the sampler update, one submit, no read-back. Latents stay f32 (the sampler's
 * precision); an f16 model gets casts at its input and output.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { finish, Recorder } from "../gpu/kernel.ts";
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
  /** Milliseconds this step took (GPU finished). */
  stepMs: number;
  /** Reads the current latents back (for previews); costs a read-back. */
  latents(): Promise<Float32Array>;
}

/** Options of {@linkcode sampleLoop}. */
export interface SampleLoopOptions {
  /** The sampler (its schedule sets the steps). */
  sampler: GpuSampler;
  /** Classifier-free guidance scale; > 1 doubles the batch as [uncond, cond]. */
  guidance: number;
  /** Cancels between steps (the step in flight finishes). */
  signal?: AbortSignal;
  /** Called after each step. */
  onStep?: (info: StepInfo) => void | Promise<void>;
}

/** Runs the sampler from `latents` (f32 [B, C, H, W], not modified) and returns the final f32 latents. */
export async function sampleLoop(
  rt: Runtime,
  model: Denoiser,
  latents: Tensor,
  o: SampleLoopOptions,
): Promise<{ latents: Tensor; stepMs: number[] }> {
  if (latents.dtype !== "f32" || latents.shape.length !== 4) {
    throw new RangeError(
      `latents must be f32 [B, C, H, W], got [${latents.shape}] ${latents.dtype}`,
    );
  }
  const [B, C, H, W] = latents.shape;
  if (C !== model.inChannels) {
    throw new RangeError(`latents have ${C} channels, the model takes ${model.inChannels}`);
  }
  const guided = usesGuidance(o.guidance);
  const rows = guided ? 2 * B : B;
  const layout = nchwLayout(B, C, model.outChannels, H, W);
  const start = performance.now();
  const stepMs: number[] = [];
  let x = createTensor(rt, latents.shape, "f32");
  {
    const rec = new Recorder(rt, "copy latents");
    rec.copy(latents, x, latents.byteLength);
    await rec.submit();
  }
  o.sampler.reset();
  try {
    const n = o.sampler.numSteps;
    for (let i = 0; i < n; i++) {
      o.signal?.throwIfAborted();
      const t0 = performance.now();
      const tv = model.modelTime ? model.modelTime(o.sampler.timesteps[i]) : o.sampler.timesteps[i];
      const rec = new Recorder(rt, `step ${i}`);
      const xin32 = guided ? duplicateBatchGpu(rec, x) : x;
      const xin = cast(rec, xin32, model.dtype);
      const raw = model.forward(rec, xin, new Array(rows).fill(tv), { index: i, total: n });
      if (xin !== xin32) xin.release();
      if (xin32 !== x) xin32.release();
      const raw32 = cast(rec, raw, "f32");
      if (raw32 !== raw) raw.release();
      const eps = guideGpu(rec, raw32, layout, o.guidance, { shape: [B, C, H, W] });
      if (eps !== raw32) raw32.release();
      const next = o.sampler.step(rec, i, eps, x);
      eps.release();
      x.release();
      x = next;
      await rec.submit();
      await finish(rt);
      const ms = performance.now() - t0;
      stepMs.push(ms);
      const cur = x;
      await o.onStep?.({
        step: i + 1,
        total: n,
        elapsedMs: performance.now() - start,
        stepMs: ms,
        latents: () => readTensor(rt, cur),
      });
    }
    return { latents: x, stepMs };
  } catch (e) {
    x.release();
    throw e;
  } finally {
    o.sampler.dispose();
  }
}
