/**
 * Flow-matching Euler as diffusers' FlowMatchEulerDiscreteScheduler computes it (the FLUX
 * sampler): sigmas (custom or default, static shift or dynamic exponential/linear time
 * shift with μ from the image sequence length), timesteps σ·T in float32, and the update
 * x ← x + (σ_next − σ)·v, on the CPU (reference) and the GPU (one axpby).
 *
 * dtypes as diffusers: custom sigmas (the FLUX pipeline passes np.linspace(1, 1/N, N)) are
 * cast to float32 by numpy and shifted in float32 numpy arithmetic (Python scalars take
 * the array's dtype); default sigmas come from a float64 np.linspace and are shifted in
 * float64; both end as float32 torch tensors, timesteps = sigmas·T in float32.
 * μ and e^μ are float64 (Python math); e^μ is correctly rounded here while CPython uses
 * the C library's exp, which can differ by an ulp of float64 (never seen in float32).
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { elementwise } from "../ops/elementwise.ts";
import { CpuSamplerBase, type CpuUpdate, GpuSamplerBase } from "./sampler_base.ts";
import {
  checkSteps,
  type CpuSampler,
  f32,
  type GpuSampler,
  type GpuStepOptions,
  npLinspace,
} from "./schedule.ts";

/** FlowMatchEulerDiscreteScheduler options (diffusers' names in camelCase). */
export interface FlowEulerConfig {
  /** Default 1000. */
  numTrainTimesteps?: number;
  /** Static shift (used when not dynamic). Default 1. */
  shift?: number;
  /** Shift by μ given at set_timesteps. Default false. */
  useDynamicShifting?: boolean;
  /** Default 0.5. */
  baseShift?: number;
  /** Default 1.15. */
  maxShift?: number;
  /** Default 256. */
  baseImageSeqLen?: number;
  /** Default 4096. */
  maxImageSeqLen?: number;
  /** Default "exponential". */
  timeShiftType?: "exponential" | "linear";
}

/** FLUX.1's scheduler config (dynamic shifting, shift 3 unused while dynamic). */
export const FLUX_FLOW_CONFIG: Readonly<FlowEulerConfig> = {
  shift: 3,
  useDynamicShifting: true,
  baseShift: 0.5,
  maxShift: 1.15,
  baseImageSeqLen: 256,
  maxImageSeqLen: 4096,
};

/** Per-run inputs of set_timesteps. */
export interface FlowEulerRun {
  /** Custom sigmas (N values); default: the scheduler's own linspace. */
  sigmas?: readonly number[];
  /** μ for dynamic shifting (required then); see {@linkcode calculateShift}. */
  mu?: number;
}

/**
 * μ = seqLen·m + b on the line through (baseSeqLen, baseShift) and (maxSeqLen, maxShift),
 * in float64 as pipeline_flux.calculate_shift.
 */
export function calculateShift(
  imageSeqLen: number,
  baseSeqLen = 256,
  maxSeqLen = 4096,
  baseShift = 0.5,
  maxShift = 1.15,
): number {
  const m = (maxShift - baseShift) / (maxSeqLen - baseSeqLen);
  const b = baseShift - m * baseSeqLen;
  return imageSeqLen * m + b;
}

/** The sigmas the FLUX pipeline passes: np.linspace(1, 1/N, N) (float64). */
export function fluxSigmas(steps: number): number[] {
  checkSteps("flow-euler", steps);
  return npLinspace(1, 1 / steps, steps);
}

/** The full schedule of a flow-matching Euler run. */
export interface FlowEulerPlan {
  /** float32 timesteps σ·T. */
  timesteps: number[];
  /** numSteps + 1 float32 sigmas ending in 0. */
  sigmas: Float32Array;
  /** float32 σ_{i+1} − σ_i per step. */
  dt: Float32Array;
}

/** set_timesteps' sigmas: shift (static or by μ) applied in float32 or float64. */
export function flowEulerPlan(
  steps: number,
  config: FlowEulerConfig = {},
  run: FlowEulerRun = {},
): FlowEulerPlan {
  checkSteps("flow-euler", steps);
  const T = config.numTrainTimesteps ?? 1000;
  const shift = config.shift ?? 1;
  const dynamic = config.useDynamicShifting ?? false;
  if (dynamic && run.mu === undefined) {
    throw new TypeError("flow-euler: mu must be given when useDynamicShifting is true");
  }
  if (run.sigmas && run.sigmas.length !== steps) {
    throw new RangeError(`flow-euler: ${run.sigmas.length} sigmas given for ${steps} steps`);
  }
  let s: number[];
  let r: (v: number) => number; // the rounding of the numpy array's dtype
  if (run.sigmas) {
    r = f32;
    s = run.sigmas.map(f32);
  } else {
    r = (v) => v;
    // __init__: sigmas = t/T for t = T…1 (float32), statically shifted unless dynamic;
    // set_timesteps then spans [σ_max·T, σ_min·T] in float64 (and shifts again).
    const init = (t: number) => {
      const sg = f32(t / T);
      return dynamic ? sg : staticShift(sg, shift, f32);
    };
    s = npLinspace(init(T) * T, init(1) * T, steps).map((t) => t / T);
  }
  if (dynamic) {
    const mu = run.mu!;
    // time_shift(mu, 1.0, t); (1/t − 1)**1.0 is exact.
    const e = r(config.timeShiftType === "linear" ? mu : Math.exp(mu));
    s = s.map((t) => r(e / r(e + r(r(1 / t) - 1))));
  } else {
    s = s.map((t) => staticShift(t, shift, r));
  }
  const sigmas = new Float32Array(steps + 1);
  s.forEach((v, i) => sigmas[i] = v);
  const timesteps = Array.from(sigmas.subarray(0, steps), (v) => f32(v * T));
  const dt = new Float32Array(steps);
  for (let i = 0; i < steps; i++) dt[i] = f32(sigmas[i + 1] - sigmas[i]);
  return { timesteps, sigmas, dt };
}

/** shift·σ / (1 + (shift − 1)·σ), each op rounded by `r`. */
function staticShift(sg: number, shift: number, r: (v: number) => number): number {
  return r(r(r(shift) * sg) / r(1 + r(r(shift - 1) * sg)));
}

/**
 * Flow-matching Euler stepping Float32Arrays: the reference. lastX0 is x − σ·v of the
 * last step (not a diffusers output; for previews).
 */
export class FlowEulerCpu extends CpuSamplerBase<FlowEulerPlan> implements CpuSampler {
  /** Always "flow-euler". */
  readonly kind = "flow-euler" as const;

  /** Plans a run of `steps` steps. */
  constructor(steps: number, config: FlowEulerConfig = {}, run: FlowEulerRun = {}) {
    super(flowEulerPlan(steps, config, run));
  }

  /** x + dt·v (see {@linkcode CpuSampler.step}). */
  protected update(i: number, v: Float32Array, x: Float32Array): CpuUpdate {
    const dt = this.plan.dt[i];
    const sg = this.plan.sigmas[i];
    const out = new Float32Array(x.length);
    const x0 = new Float32Array(x.length);
    for (let j = 0; j < x.length; j++) {
      out[j] = f32(x[j] + f32(dt * v[j]));
      x0[j] = f32(x[j] - f32(sg * v[j]));
    }
    return { next: out, x0 };
  }
}

/** Flow-matching Euler recorded on the GPU: one axpby per step, nothing kept between. */
export class FlowEulerGpu extends GpuSamplerBase<FlowEulerPlan> implements GpuSampler {
  /** Always "flow-euler". */
  readonly kind = "flow-euler" as const;

  /** Plans a run of `steps` steps. */
  constructor(steps: number, config: FlowEulerConfig = {}, run: FlowEulerRun = {}) {
    super(flowEulerPlan(steps, config, run));
  }

  /** Records x + dt·v (see {@linkcode GpuSampler.step}). */
  protected record(rec: Recorder, i: number, v: Tensor, x: Tensor, opts: GpuStepOptions): Tensor {
    const out = opts.out ?? createTensor(rec.runtime, x.shape, x.dtype);
    elementwise(rec, "axpby", x, { y: v, alpha: 1, beta: this.plan.dt[i], out });
    return out;
  }
}
