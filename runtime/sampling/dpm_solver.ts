/**
 * DPM-Solver++ (multistep, orders 1–2) as diffusers' DPMSolverMultistepScheduler computes
 * it with algorithm_type "dpmsolver++": timesteps, sigmas and every per-step coefficient
 * reproduced in float32 as torch evaluates them, plus a CPU step (the reference) and a
 * GPU step recorded as elementwise kernels.
 *
 * Defaults are diffusers' (and PixArt-α's, whose conversion script saves
 * `DPMSolverMultistepScheduler()`): 1000 training steps, linear betas 1e-4→0.02,
 * epsilon prediction, order 2, midpoint, lower_order_final, "linspace" spacing, final
 * sigma 0, no Karras sigmas, no thresholding, lambda_min_clipped −∞.
 *
 * Order per step (diffusers' step()): step 0 is first order (no history); the last step
 * is first order whenever final_sigmas_type is "zero" (the default) or when
 * lower_order_final and fewer than 15 steps — so the "< 15 steps" rule changes nothing
 * under the defaults; every other step is second order.
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
  npArange,
  npLinspace,
  roundHalfEven,
  vpSchedule,
  type VpScheduleConfig,
} from "./schedule.ts";

/** What the model predicts. */
export type PredictionType = "epsilon" | "v_prediction" | "sample";

/** How inference timesteps are spread over the training ones. */
export type TimestepSpacing = "linspace" | "leading" | "trailing";

/** DPMSolverMultistepScheduler options (diffusers' names in camelCase). */
export interface DpmSolverConfig extends VpScheduleConfig {
  /** Default "epsilon". */
  predictionType?: PredictionType;
  /** 1 or 2. Default 2. */
  solverOrder?: 1 | 2;
  /** Second-order variant. Default "midpoint". */
  solverType?: "midpoint" | "heun";
  /** Default true. */
  lowerOrderFinal?: boolean;
  /** Default false. */
  eulerAtFinal?: boolean;
  /** Default "linspace". */
  timestepSpacing?: TimestepSpacing;
  /** Added to "leading" timesteps. Default 0. */
  stepsOffset?: number;
  /** The sigma after the last step. Default "zero". */
  finalSigmasType?: "zero" | "sigma_min";
  /**
   * Timesteps whose λ = log α − log σ is below this are not used (diffusers clips them for
   * cosine schedules). Default −∞: all are.
   */
  lambdaMinClipped?: number;
}

/** The float32 coefficients of one step; x_{i+1} = cSample·x − c0·D0 + k1·D1. */
export interface DpmStepCoefficients {
  /** 1 or 2. */
  order: 1 | 2;
  /** α_s and σ_s of the current sigma (x₀ = (x − σ_s·ε)/α_s). */
  alphaS: number;
  /** σ_s (see alphaS). */
  sigmaS: number;
  /** σ_t/σ_s. */
  cSample: number;
  /** α_t·(e^{−h} − 1). */
  c0: number;
  /** 1/r0 (order 2): D1 = (1/r0)·(m0 − m1). */
  invR0: number;
  /** The D1 coefficient with its sign (midpoint: −0.5·c0); 0 for order 1. */
  k1: number;
}

/** The full schedule of a DPM-Solver++ run. */
export interface DpmSolverPlan {
  /** Integer timesteps fed to the model. */
  timesteps: number[];
  /** numSteps + 1 float32 sigmas (the last is the final sigma). */
  sigmas: Float32Array;
  /** Per-step coefficients. */
  coefficients: DpmStepCoefficients[];
  /** The prediction type. */
  predictionType: PredictionType;
}

/**
 * Integer timesteps as diffusers' set_timesteps computes them, with L = last_timestep (T
 * unless λ is clipped, {@linkcode dpmLastTimestep}): "linspace" rounds
 * np.linspace(0, L−1, N+1) half-to-even, reverses and drops the last; "leading" takes
 * multiples of L // (N+1) plus the offset; "trailing" rounds np.arange(L, 0, −T/N) and
 * subtracts 1.
 */
export function dpmTimesteps(
  steps: number,
  T = 1000,
  spacing: TimestepSpacing = "linspace",
  offset = 0,
  last = T,
): number[] {
  checkSteps("dpm++2m", steps);
  if (spacing === "linspace") {
    return npLinspace(0, last - 1, steps + 1).map(roundHalfEven).reverse().slice(0, steps);
  }
  if (spacing === "leading") {
    const ratio = Math.floor(last / (steps + 1));
    const ts: number[] = [];
    for (let i = steps; i >= 1; i--) ts.push(i * ratio + offset);
    return ts;
  }
  if (spacing === "trailing") {
    // Below a clipped λ (L < T) this gives fewer than N; diffusers runs those (its
    // num_inference_steps becomes len(timesteps)), and so does the plan.
    return npArange(last, 0, -T / steps).map((v) => roundHalfEven(v) - 1);
  }
  throw new TypeError(`timestepSpacing must be linspace, leading or trailing, got ${spacing}`);
}

/**
 * diffusers' last_timestep: T minus the number of training timesteps whose λ_t =
 * log √ᾱ − log √(1−ᾱ) (float32) is below `lambdaMinClipped` (torch.searchsorted on the
 * ascending flipped λ).
 */
export function dpmLastTimestep(alphasCumprod: Float32Array, lambdaMinClipped: number): number {
  const T = alphasCumprod.length;
  if (lambdaMinClipped === -Infinity) return T;
  let clipped = 0;
  for (const a of alphasCumprod) {
    const alpha = f32(Math.sqrt(a));
    const sigma = f32(Math.sqrt(f32(1 - a)));
    if (f32(f32(Math.log(alpha)) - f32(Math.log(sigma))) < lambdaMinClipped) clipped++;
  }
  return T - clipped;
}

/** α_t = 1/√(σ²+1) and σ_t = σ·α_t in float32, as _sigma_to_alpha_sigma_t. */
function alphaSigma(sigma: number): [number, number] {
  const a = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  return [a, f32(sigma * a)];
}

/**
 * λ = log α − log σ in float32. Here log is correctly rounded; torch's CPU log goes through
 * Sleef (≤ 1 ulp), so λ may differ from diffusers by an ulp now and then.
 */
function lambdaOf(alpha: number, sigma: number): number {
  return f32(f32(Math.log(alpha)) - f32(Math.log(sigma)));
}

/** Computes the timesteps, sigmas and per-step coefficients of a run. */
export function dpmSolverPlan(steps: number, config: DpmSolverConfig = {}): DpmSolverPlan {
  const T = config.numTrainTimesteps ?? 1000;
  checkSteps("dpm++2m", steps);
  const order = config.solverOrder ?? 2;
  if (order !== 1 && order !== 2) throw new RangeError(`solverOrder must be 1 or 2, got ${order}`);
  const solverType = config.solverType ?? "midpoint";
  const lowerOrderFinal = config.lowerOrderFinal ?? true;
  const finalType = config.finalSigmasType ?? "zero";
  const predictionType = config.predictionType ?? "epsilon";
  const vp = vpSchedule(config);
  // The training sigma table √((1−ᾱ)/ᾱ), float32 ops as torch (checked bit for bit).
  const table = vp.alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
  const last = dpmLastTimestep(vp.alphasCumprod, config.lambdaMinClipped ?? -Infinity);
  const timesteps = dpmTimesteps(
    steps,
    T,
    config.timestepSpacing,
    config.stepsOffset ?? 0,
    last,
  );
  const n = timesteps.length; // `steps`, or fewer: trailing spacing below a clipped λ
  const sigmas = new Float32Array(n + 1);
  // np.interp at integer points returns the table entry; beyond the end, the last one.
  timesteps.forEach((t, i) => sigmas[i] = table[Math.min(Math.max(t, 0), T - 1)]);
  sigmas[n] = finalType === "zero" ? 0 : table[0];

  const coefficients: DpmStepCoefficients[] = [];
  for (let i = 0; i < n; i++) {
    const last = i === n - 1;
    const lowerFinal = last &&
      ((config.eulerAtFinal ?? false) || (lowerOrderFinal && n < 15) || finalType === "zero");
    const o: 1 | 2 = order === 1 || i === 0 || lowerFinal ? 1 : 2;
    const [alphaT, sigmaT] = alphaSigma(sigmas[i + 1]);
    const [alphaS, sigmaS] = alphaSigma(sigmas[i]);
    const lambdaT = lambdaOf(alphaT, sigmaT);
    const lambdaS = lambdaOf(alphaS, sigmaS);
    const h = f32(lambdaT - lambdaS);
    const expm = f32(f32(Math.exp(-h)) - 1); // exp(−h) − 1
    const c0 = f32(alphaT * expm);
    const cSample = f32(sigmaT / sigmaS);
    let invR0 = 0;
    let k1 = 0;
    if (o === 2) {
      const [alphaS1, sigmaS1] = alphaSigma(sigmas[i - 1]);
      const h0 = f32(lambdaS - lambdaOf(alphaS1, sigmaS1));
      invR0 = f32(1 / f32(h0 / h));
      // midpoint: − 0.5·(α_t(e^{−h}−1))·D1; heun: + α_t((e^{−h}−1)/h + 1)·D1.
      k1 = solverType === "midpoint" ? -f32(0.5 * c0) : f32(alphaT * f32(f32(expm / h) + 1));
    }
    coefficients.push({ order: o, alphaS, sigmaS, cSample, c0, invR0, k1 });
  }
  return { timesteps, sigmas, coefficients, predictionType };
}

/** x₀ from the model output in float32, as convert_model_output (dpmsolver++). */
export function dpmConvertCpu(
  type: PredictionType,
  c: DpmStepCoefficients,
  out: Float32Array,
  x: Float32Array,
): Float32Array {
  if (type === "sample") return out.slice();
  const r = new Float32Array(x.length);
  if (type === "epsilon") {
    for (let j = 0; j < x.length; j++) r[j] = f32(f32(x[j] - f32(c.sigmaS * out[j])) / c.alphaS);
  } else {
    for (let j = 0; j < x.length; j++) r[j] = f32(f32(c.alphaS * x[j]) - f32(c.sigmaS * out[j]));
  }
  return r;
}

/**
 * DPM-Solver++ stepping Float32Arrays: the reference, float32 op for op as torch. lastX0
 * is the x₀ predicted at the last step (a second-order step's history).
 */
export class DpmSolverCpu extends CpuSamplerBase<DpmSolverPlan> implements CpuSampler {
  /** Always "dpm++2m" (the order may be configured to 1). */
  readonly kind = "dpm++2m" as const;

  /** Plans a run of `steps` steps. */
  constructor(steps: number, config: DpmSolverConfig = {}) {
    super(dpmSolverPlan(steps, config));
  }

  /** One DPM-Solver++ update (see {@linkcode CpuSampler.step}). */
  protected update(i: number, modelOutput: Float32Array, sample: Float32Array): CpuUpdate {
    const c = this.plan.coefficients[i];
    const m0 = dpmConvertCpu(this.plan.predictionType, c, modelOutput, sample);
    const out = new Float32Array(sample.length);
    if (c.order === 1) {
      for (let j = 0; j < out.length; j++) {
        out[j] = f32(f32(c.cSample * sample[j]) - f32(c.c0 * m0[j]));
      }
    } else {
      const m1 = this.lastX0!;
      for (let j = 0; j < out.length; j++) {
        const d1 = f32(c.invR0 * f32(m0[j] - m1[j]));
        const t = f32(f32(c.cSample * sample[j]) - f32(c.c0 * m0[j]));
        out[j] = f32(t + f32(c.k1 * d1));
      }
    }
    return { next: out, x0: m0 };
  }
}

/**
 * DPM-Solver++ recorded on the GPU, as elementwise dispatches: x₀ (2 for ε, 1 for v or
 * x₀ predictions), then 1 for a first-order update or 2 for a second-order one. Owns the
 * previous x₀.
 */
export class DpmSolverGpu extends GpuSamplerBase<DpmSolverPlan> implements GpuSampler {
  /** Always "dpm++2m". */
  readonly kind = "dpm++2m" as const;
  #prev: Tensor | undefined;

  /** Plans a run of `steps` steps. */
  constructor(steps: number, config: DpmSolverConfig = {}) {
    super(dpmSolverPlan(steps, config));
  }

  /** Records one update (see {@linkcode GpuSampler.step}). */
  protected record(
    rec: Recorder,
    i: number,
    modelOutput: Tensor,
    sample: Tensor,
    opts: GpuStepOptions,
  ): Tensor {
    const c = this.plan.coefficients[i];
    const type = this.plan.predictionType;
    let m0: Tensor;
    if (type === "epsilon") {
      // torch's order, (x − σε)/α: rounding x − σε first keeps the error at ulp(x)/α
      // instead of ulp(x/α) terms of size ~400 at σ_max (α ≈ 0.0064).
      const d = elementwise(rec, "axpby", sample, { y: modelOutput, alpha: 1, beta: -c.sigmaS });
      m0 = elementwise(rec, "affine", d, { alpha: 1 / c.alphaS, beta: 0 });
      d.release();
    } else if (type === "v_prediction") {
      m0 = elementwise(rec, "axpby", sample, { y: modelOutput, alpha: c.alphaS, beta: -c.sigmaS });
    } else {
      m0 = elementwise(rec, "copy", modelOutput); // kept as history: the caller may reuse its buffer
    }
    const out = opts.out ?? createTensor(rec.runtime, sample.shape, sample.dtype);
    if (c.order === 1) {
      elementwise(rec, "axpby", sample, { y: m0, alpha: c.cSample, beta: -c.c0, out });
    } else {
      // cS·x − c0·m0 + k1·(m0 − m1)/r0 = [cS·x + (k1/r0 − c0)·m0] − (k1/r0)·m1
      const k = c.k1 * c.invR0;
      const t = elementwise(rec, "axpby", sample, { y: m0, alpha: c.cSample, beta: k - c.c0 });
      elementwise(rec, "axpby", t, { y: this.#prev!, alpha: 1, beta: -k, out });
      t.release(); // later writers of the pooled buffer run after this read (queue order)
    }
    this.#prev?.release();
    this.#prev = m0;
    return out;
  }

  /** Releases the kept x₀. */
  override dispose(): void {
    this.#prev?.release();
    this.#prev = undefined;
  }
}
