/**
 * Classifier-free guidance and the learned-sigma split as diffusers' PixArt pipeline does
 * them, on the CPU and the GPU; a sampler factory; and the CPU reference loop
 * ({@linkcode runSamplerCpu}) that runs a sampler around a model callback.
 *
 * The pipeline's order: the model sees the batch [uncond…, cond…] (torch.cat of
 * [negative, positive] embeddings, latents repeated), its output is split with chunk(2),
 * guided as `uncond + g·(cond − uncond)` (only when g > 1), then, when
 * out_channels // 2 == latent channels, the first C channels are kept.
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { elementwise } from "../ops/elementwise.ts";
import { cfgRows, gatherRows } from "../reference/elementwise.ts";
import { type DdimConfig, DdimCpu, DdimGpu } from "./ddim.ts";
import { type DpmSolverConfig, DpmSolverCpu, DpmSolverGpu } from "./dpm_solver.ts";
import {
  type FlowEulerConfig,
  FlowEulerCpu,
  FlowEulerGpu,
  type FlowEulerRun,
} from "./flow_euler.ts";
import type { CpuSampler, GpuSampler, SamplerKind, StepExtras } from "./schedule.ts";

/**
 * Where ε sits in the model output, per half of the batch: `rows` rows of `stride`
 * elements whose first `width` are kept.
 */
export interface OutputLayout {
  /** Rows per batch half (NCHW: the batch; tokens-last: batch·tokens). */
  rows: number;
  /** Elements kept per row (NCHW: C·H·W; tokens-last: C). */
  width: number;
  /** Elements per row of the model output (NCHW: C_out·H·W; tokens-last: C_out). */
  stride: number;
}

/** The learned-sigma rule of the pipeline: out_channels // 2 == latent channels. */
export function hasLearnedSigma(outChannels: number, latentChannels: number): boolean {
  return Math.floor(outChannels / 2) === latentChannels;
}

// Odd C_out with C_out // 2 == C would make the pipeline's chunk(2) keep C + 1 channels.
function checkOutChannels(outChannels: number, channels: number): void {
  if (outChannels !== channels && outChannels !== 2 * channels) {
    throw new RangeError(`outChannels ${outChannels} is neither ${channels} nor 2·${channels}`);
  }
}

function checkDims(dims: Record<string, number>): void {
  for (const [k, v] of Object.entries(dims)) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`${k} must be an integer ≥ 1, got ${v}`);
    }
  }
}

/**
 * The layout of an NCHW model output [B, C_out, H, W] (per half) for latents [B, C, H, W]:
 * the first C channels are kept when the model has a learned sigma.
 */
export function nchwLayout(
  batch: number,
  channels: number,
  outChannels: number,
  height: number,
  width: number,
): OutputLayout {
  checkDims({ batch, channels, outChannels, height, width });
  checkOutChannels(outChannels, channels);
  const hw = height * width;
  return { rows: batch, width: channels * hw, stride: outChannels * hw };
}

/** The layout of a tokens-last model output [B, T, C_out] (per half) for C channels. */
export function tokenLayout(
  batch: number,
  tokens: number,
  channels: number,
  outChannels: number,
): OutputLayout {
  checkDims({ batch, tokens, channels, outChannels });
  checkOutChannels(outChannels, channels);
  return { rows: batch * tokens, width: channels, stride: outChannels };
}

/** True when the pipeline guides: diffusers' do_classifier_free_guidance = g > 1. */
export function usesGuidance(scale: number | undefined): boolean {
  return scale !== undefined && scale > 1;
}

function expectedInput(layout: OutputLayout, scale: number | undefined): number {
  return (usesGuidance(scale) ? 2 : 1) * layout.rows * layout.stride;
}

/**
 * ε from a raw model output on the CPU: guided (g > 1: the output holds both halves) and
 * split; float32 per op as torch. Returns `out` itself when there is nothing to do.
 */
export function guideCpu(
  out: Float32Array,
  layout: OutputLayout,
  scale?: number,
): Float32Array {
  const n = expectedInput(layout, scale);
  if (out.length !== n) {
    throw new RangeError(`guide: model output has ${out.length} elements, expected ${n}`);
  }
  if (usesGuidance(scale)) return cfgRows(out, layout.width, layout.stride, scale!);
  return layout.width === layout.stride ? out : gatherRows(out, layout.width, layout.stride);
}

/**
 * ε from a raw model output on the GPU (one dispatch; none when there is nothing to do,
 * in which case `out` itself is returned). `shape` is the ε tensor's shape (default
 * [rows·width]).
 */
export function guideGpu(
  rec: Recorder,
  out: Tensor,
  layout: OutputLayout,
  scale?: number,
  opts: { shape?: readonly number[]; out?: Tensor } = {},
): Tensor {
  const n = expectedInput(layout, scale);
  if (out.size !== n) {
    throw new RangeError(`guide: model output has ${out.size} elements, expected ${n}`);
  }
  const { width, stride } = layout;
  if (usesGuidance(scale)) {
    return elementwise(rec, "cfg", out, { alpha: scale, width, stride, ...opts });
  }
  if (width === stride) return out;
  return elementwise(rec, "gatherRows", out, { width, stride, ...opts });
}

/** The model input of a guided step on the GPU: the latents twice, [x; x] (two copies). */
export function duplicateBatchGpu(rec: Recorder, x: Tensor): Tensor {
  const bytes = x.byteLength;
  if ((x.size * (x.dtype === "f16" ? 2 : 4)) % 4 !== 0) {
    throw new RangeError("duplicateBatchGpu: the tensor's bytes must be a multiple of 4");
  }
  const shape = x.shape.length > 0 ? [2 * x.shape[0], ...x.shape.slice(1)] : [2];
  const out = createTensor(rec.runtime, shape, x.dtype);
  rec.copy(x, out, bytes, 0, 0);
  rec.copy(x, out, bytes, 0, bytes);
  return out;
}

/** Options of every sampler kind, for the factories. */
export interface SamplerOptions {
  /** DPM-Solver++ options. */
  dpm?: DpmSolverConfig;
  /** DDIM options. */
  ddim?: DdimConfig;
  /** Flow-matching Euler options. */
  flow?: FlowEulerConfig;
  /** Flow-matching run inputs (custom sigmas, μ). */
  flowRun?: FlowEulerRun;
}

/** A CPU sampler of a kind. */
export function createCpuSampler(
  kind: SamplerKind,
  steps: number,
  o: SamplerOptions = {},
): CpuSampler {
  if (kind === "dpm++2m") return new DpmSolverCpu(steps, o.dpm);
  if (kind === "ddim") return new DdimCpu(steps, o.ddim);
  if (kind === "flow-euler") return new FlowEulerCpu(steps, o.flow, o.flowRun);
  throw new TypeError(`Unknown sampler ${JSON.stringify(kind)}`);
}

/** A GPU sampler of a kind (the same schedule as {@linkcode createCpuSampler}). */
export function createGpuSampler(
  kind: SamplerKind,
  steps: number,
  o: SamplerOptions = {},
): GpuSampler {
  if (kind === "dpm++2m") return new DpmSolverGpu(steps, o.dpm);
  if (kind === "ddim") return new DdimGpu(steps, o.ddim);
  if (kind === "flow-euler") return new FlowEulerGpu(steps, o.flow, o.flowRun);
  throw new TypeError(`Unknown sampler ${JSON.stringify(kind)}`);
}

/**
 * A model on the CPU: the raw output for input x (the batch doubled as [x; x] when
 * guiding) at step i's timestep t (diffusers' `scheduler.timesteps[i]`).
 */
export type CpuModel = (
  x: Float32Array,
  t: number,
  i: number,
) => Float32Array | Promise<Float32Array>;

/** Options of {@linkcode runSamplerCpu}. */
export interface CpuRunOptions {
  /** Where ε sits in one half of the model output; default: the output is ε. */
  layout?: OutputLayout;
  /** Guidance scale g; the pipeline guides only when g > 1. */
  guidanceScale?: number;
  /** Noise of step i (DDIM with η > 0). */
  noise?: (i: number) => Float32Array;
  /** Called after each step with the new sample. */
  onStep?: (i: number, t: number, x: Float32Array) => void;
}

/**
 * Runs a whole sampler on the CPU from the initial latents (init_noise_sigma is 1 and
 * scale_model_input the identity for all three samplers) and returns the final sample.
 * Starts from step 0 (resets the sampler).
 */
export async function runSamplerCpu(
  sampler: CpuSampler,
  latents: Float32Array,
  model: CpuModel,
  o: CpuRunOptions = {},
): Promise<Float32Array> {
  sampler.reset();
  const guided = usesGuidance(o.guidanceScale);
  const layout = o.layout ?? { rows: 1, width: latents.length, stride: latents.length };
  if (layout.rows * layout.width !== latents.length) {
    throw new RangeError(
      `runSamplerCpu: layout keeps ${
        layout.rows * layout.width
      } elements, latents have ${latents.length}`,
    );
  }
  let x = latents;
  for (let i = 0; i < sampler.numSteps; i++) {
    const t = sampler.timesteps[i];
    let input = x;
    if (guided) {
      input = new Float32Array(2 * x.length);
      input.set(x);
      input.set(x, x.length);
    }
    const eps = guideCpu(await model(input, t, i), layout, o.guidanceScale);
    const extras: StepExtras = o.noise ? { noise: o.noise(i) } : {};
    x = sampler.step(i, eps, x, extras);
    o.onStep?.(i, t, x);
  }
  return x;
}
