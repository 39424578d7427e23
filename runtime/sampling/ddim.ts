/**
 * DDIM as diffusers' DDIMScheduler computes it: timesteps, the float32 ᾱ lookups and the
 * update, with a CPU step (the reference, float32 op for op as torch) and a GPU step
 * recorded as elementwise kernels.
 *
 * Defaults are DDIMScheduler's own: clip_sample true (range 1), set_alpha_to_one true,
 * steps_offset 0, "leading" spacing, epsilon, eta 0. PixArt loads a DPM config, so
 * `DDIMScheduler.from_config(pixart.scheduler.config)` keeps DDIM's clip_sample and
 * set_alpha_to_one defaults but takes steps_offset 0 and the saved timestep_spacing
 * ("linspace" when the saved config has it): {@linkcode PIXART_DDIM_CONFIG}. The pipeline
 * reads the folder's file that way (vp_scheduler_config.ts).
 *
 * The previous timestep is t − T // N whatever the spacing (diffusers' step() does this
 * even for "linspace", where the actual next timestep differs): reproduced as is.
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { elementwise } from "../ops/elementwise.ts";
import type { PredictionType, TimestepSpacing } from "./dpm_solver.ts";
import { CpuSamplerBase, type CpuUpdate, GpuSamplerBase } from "./sampler_base.ts";
import {
  checkSteps,
  type CpuSampler,
  f32,
  type GpuSampler,
  type GpuStepOptions,
  npArange,
  npLinspace,
  roundHalfEven,
  type StepExtras,
  vpSchedule,
  type VpScheduleConfig,
} from "./schedule.ts";

/** DDIMScheduler options (diffusers' names in camelCase) and the step's eta. */
export interface DdimConfig extends VpScheduleConfig {
  /** Default "epsilon". */
  predictionType?: PredictionType;
  /** Clamp x₀ to ±clipSampleRange. Default true. */
  clipSample?: boolean;
  /** Default 1. */
  clipSampleRange?: number;
  /** ᾱ after the last step is 1 (else ᾱ_0). Default true. */
  setAlphaToOne?: boolean;
  /** Added to "leading" timesteps. Default 0. */
  stepsOffset?: number;
  /** Default "leading". */
  timestepSpacing?: TimestepSpacing;
  /** Noise weight η of step() (0: deterministic DDIM). Default 0. */
  eta?: number;
}

/** DDIM as PixArt's pipeline gets it from its DPM-Solver scheduler config. */
export const PIXART_DDIM_CONFIG: Readonly<DdimConfig> = {
  clipSample: true,
  setAlphaToOne: true,
  stepsOffset: 0,
  timestepSpacing: "linspace",
};

/** The float32 coefficients of one DDIM step. */
export interface DdimStepCoefficients {
  /** The model timestep t. */
  timestep: number;
  /** t − T // N (negative: use the final ᾱ). */
  prevTimestep: number;
  /** √ᾱ_t. */
  sqrtAlpha: number;
  /** √(1 − ᾱ_t). */
  sqrtBeta: number;
  /** √ᾱ_prev. */
  sqrtAlphaPrev: number;
  /** √(1 − ᾱ_prev − std²), the ε coefficient of the direction term. */
  dirCoef: number;
  /** std = η·√variance (0 for η = 0). */
  std: number;
}

/** The full schedule of a DDIM run. */
export interface DdimPlan {
  /** Integer timesteps. */
  timesteps: number[];
  /** √((1−ᾱ_t)/ᾱ_t) at each timestep, then 0 (for reference; DDIM does not use them). */
  sigmas: Float32Array;
  /** Per-step coefficients. */
  coefficients: DdimStepCoefficients[];
  /** Resolved options. */
  config: Required<Pick<DdimConfig, "predictionType" | "clipSample" | "clipSampleRange" | "eta">>;
}

/**
 * Integer timesteps as DDIMScheduler.set_timesteps: "linspace" rounds
 * np.linspace(0, T−1, N) half-to-even and reverses (N = 1 gives [0]); "leading" takes
 * multiples of T // N plus the offset; "trailing" rounds np.arange(T, 0, −T/N) minus 1.
 */
export function ddimTimesteps(
  steps: number,
  T = 1000,
  spacing: TimestepSpacing = "leading",
  offset = 0,
): number[] {
  checkSteps("ddim", steps, T);
  if (spacing === "linspace") return npLinspace(0, T - 1, steps).map(roundHalfEven).reverse();
  if (spacing === "leading") {
    const ratio = Math.floor(T / steps);
    const ts: number[] = [];
    for (let i = steps - 1; i >= 0; i--) ts.push(i * ratio + offset);
    return ts;
  }
  if (spacing === "trailing") return npArange(T, 0, -T / steps).map((v) => roundHalfEven(v) - 1);
  throw new TypeError(`timestepSpacing must be linspace, leading or trailing, got ${spacing}`);
}

/** Computes timesteps and per-step coefficients, float32 as torch. */
export function ddimPlan(steps: number, config: DdimConfig = {}): DdimPlan {
  const T = config.numTrainTimesteps ?? 1000;
  const eta = config.eta ?? 0;
  if (!(eta >= 0)) throw new RangeError(`eta must be ≥ 0, got ${eta}`);
  const vp = vpSchedule(config);
  const ac = vp.alphasCumprod;
  const finalAlpha = (config.setAlphaToOne ?? true) ? 1 : ac[0];
  const timesteps = ddimTimesteps(
    steps,
    T,
    config.timestepSpacing ?? "leading",
    config.stepsOffset ?? 0,
  );
  const ratio = Math.floor(T / steps);
  const sigmas = new Float32Array(steps + 1);
  const coefficients = timesteps.map((t, i) => {
    if (t >= ac.length) {
      throw new RangeError(`ddim: timestep ${t} is beyond the ${T} training steps`);
    }
    const prevTimestep = t - ratio;
    const a = ac[t];
    const ap = prevTimestep >= 0 ? ac[prevTimestep] : finalAlpha;
    const bt = f32(1 - a);
    const bp = f32(1 - ap);
    // _get_variance: (β_prev/β_t)·(1 − ᾱ_t/ᾱ_prev); std = η·√variance.
    const variance = f32(f32(bp / bt) * f32(1 - f32(a / ap)));
    const std = f32(f32(eta) * f32(Math.sqrt(variance)));
    sigmas[i] = f32(Math.sqrt(f32(bt / a)));
    return {
      timestep: t,
      prevTimestep,
      sqrtAlpha: f32(Math.sqrt(a)),
      sqrtBeta: f32(Math.sqrt(bt)),
      sqrtAlphaPrev: f32(Math.sqrt(ap)),
      dirCoef: f32(Math.sqrt(f32(bp - f32(std * std)))),
      std,
    };
  });
  return {
    timesteps,
    sigmas,
    coefficients,
    config: {
      predictionType: config.predictionType ?? "epsilon",
      clipSample: config.clipSample ?? true,
      clipSampleRange: config.clipSampleRange ?? 1,
      eta,
    },
  };
}

/**
 * DDIM stepping Float32Arrays: the reference, float32 op for op as torch. lastX0 is
 * pred_original_sample (clipped if clipSample); η > 0 needs `extras.noise`.
 */
export class DdimCpu extends CpuSamplerBase<DdimPlan> implements CpuSampler {
  /** Always "ddim". */
  readonly kind = "ddim" as const;

  /** Plans a run of `steps` steps. */
  constructor(steps: number, config: DdimConfig = {}) {
    super(ddimPlan(steps, config));
  }

  /** One DDIM update (see {@linkcode CpuSampler.step}). */
  protected update(i: number, out: Float32Array, x: Float32Array, extras: StepExtras): CpuUpdate {
    const c = this.plan.coefficients[i];
    const { predictionType, clipSample, clipSampleRange: r, eta } = this.plan.config;
    const noise = extras.noise;
    if (eta > 0 && (!noise || noise.length !== x.length)) {
      throw new TypeError("ddim: eta > 0 needs extras.noise shaped like the sample");
    }
    const n = x.length;
    const x0 = new Float32Array(n);
    const eps = new Float32Array(n);
    for (let j = 0; j < n; j++) {
      if (predictionType === "epsilon") {
        x0[j] = f32(f32(x[j] - f32(c.sqrtBeta * out[j])) / c.sqrtAlpha);
        eps[j] = out[j];
      } else if (predictionType === "sample") {
        x0[j] = out[j];
        eps[j] = f32(f32(x[j] - f32(c.sqrtAlpha * out[j])) / c.sqrtBeta);
      } else {
        x0[j] = f32(f32(c.sqrtAlpha * x[j]) - f32(c.sqrtBeta * out[j]));
        eps[j] = f32(f32(c.sqrtAlpha * out[j]) + f32(c.sqrtBeta * x[j]));
      }
      if (clipSample) x0[j] = Math.min(Math.max(x0[j], -r), r);
    }
    const prev = new Float32Array(n);
    for (let j = 0; j < n; j++) {
      prev[j] = f32(f32(c.sqrtAlphaPrev * x0[j]) + f32(c.dirCoef * eps[j]));
      if (eta > 0) prev[j] = f32(prev[j] + f32(c.std * noise![j]));
    }
    return { next: prev, x0 };
  }
}

/**
 * DDIM recorded on the GPU: x₀ (and ε), clamp, update — 3 to 5 elementwise dispatches;
 * η > 0 needs `opts.noise`. Nothing is kept between steps.
 */
export class DdimGpu extends GpuSamplerBase<DdimPlan> implements GpuSampler {
  /** Always "ddim". */
  readonly kind = "ddim" as const;

  /** Plans a run of `steps` steps. */
  constructor(steps: number, config: DdimConfig = {}) {
    super(ddimPlan(steps, config));
  }

  /** Records one update (see {@linkcode GpuSampler.step}). */
  protected record(rec: Recorder, i: number, out: Tensor, x: Tensor, opts: GpuStepOptions): Tensor {
    const c = this.plan.coefficients[i];
    const { predictionType, clipSample, clipSampleRange: r, eta } = this.plan.config;
    if (eta > 0 && !opts.noise) throw new TypeError("ddim: eta > 0 needs opts.noise");
    const temps: Tensor[] = [];
    let x0: Tensor;
    let eps: Tensor;
    // (x − b·y)/a in torch's order: rounding the difference first keeps the error at
    // ulp(x)/a rather than ulp(x/a) when a is small (√ᾱ ≈ 0.0064 at t = 999).
    const divided = (y: Tensor, b: number, a: number) => {
      const d = elementwise(rec, "axpby", x, { y, alpha: 1, beta: -b });
      const q = elementwise(rec, "affine", d, { alpha: 1 / a, beta: 0 });
      d.release();
      temps.push(q);
      return q;
    };
    if (predictionType === "epsilon") {
      x0 = divided(out, c.sqrtBeta, c.sqrtAlpha);
      eps = out;
    } else if (predictionType === "sample") {
      x0 = out;
      eps = divided(out, c.sqrtAlpha, c.sqrtBeta);
    } else {
      x0 = elementwise(rec, "axpby", x, { y: out, alpha: c.sqrtAlpha, beta: -c.sqrtBeta });
      eps = elementwise(rec, "axpby", out, { y: x, alpha: c.sqrtAlpha, beta: c.sqrtBeta });
      temps.push(x0, eps);
    }
    if (clipSample) {
      x0 = elementwise(rec, "clamp", x0, { alpha: -r, beta: r });
      temps.push(x0);
    }
    const dst = opts.out ?? createTensor(rec.runtime, x.shape, x.dtype);
    if (eta > 0) {
      const p = elementwise(rec, "axpby", x0, { y: eps, alpha: c.sqrtAlphaPrev, beta: c.dirCoef });
      elementwise(rec, "axpby", p, { y: opts.noise!, alpha: 1, beta: c.std, out: dst });
      temps.push(p);
    } else {
      elementwise(rec, "axpby", x0, {
        y: eps,
        alpha: c.sqrtAlphaPrev,
        beta: c.dirCoef,
        out: dst,
      });
    }
    for (const t of temps) t.release(); // queue order keeps recorded reads valid
    return dst;
  }
}
