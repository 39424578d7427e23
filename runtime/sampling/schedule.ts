/**
 * Schedule math shared by the samplers, reproducing diffusers' numbers (float64 where
 * diffusers uses numpy/Python floats, float32 where it uses torch float32 tensors), and
 * the sampler interfaces the generation loop calls.
 *
 * Float32 emulation: every torch float32 op (+ − × ÷ √) is computed in float64 and
 * rounded with Math.fround, which gives the correctly rounded float32 result (float64
 * carries more than 2·24+2 bits, so the double rounding is harmless for these ops).
 * Where torch differs from a correctly rounded op it is said at the function.
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";

/** Rounds to float32 (one torch float32 op). */
export const f32 = Math.fround;

const F32_BUF = new Float32Array(1);
const I32_BUF = new Int32Array(F32_BUF.buffer);

/** The float32 next to `x` (a float32 value) in the direction of `dir` (+1 or −1). */
function nextF32(x: number, dir: number): number {
  if (x === 0) return dir > 0 ? 1.401298464324817e-45 : -1.401298464324817e-45;
  F32_BUF[0] = x;
  I32_BUF[0] += (x > 0) === (dir > 0) ? 1 : -1;
  return F32_BUF[0];
}

/**
 * Fused multiply-add a·b + c of float32 inputs with one float32 rounding, as a C++
 * compiler contracts `c + a * b` when FMA is available (GCC's default -ffp-contract=fast
 * with -mfma). The product is exact in float64; TwoSum recovers the sum's error so a
 * float64 result sitting exactly on a float32 midpoint is resolved correctly.
 */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bb = s - p;
  const err = (p - (s - bb)) + (c - bb);
  const r = f32(s);
  if (err === 0 || r === s) return r;
  const other = nextF32(r, s > r ? 1 : -1);
  if (s - r !== other - s) return r; // not a midpoint: fround(s) is the nearest
  return (err > 0) === (other > r) ? other : r;
}

/** numpy's `np.round` (round half to even) of a float64. */
export function roundHalfEven(x: number): number {
  const fl = Math.floor(x);
  const d = x - fl;
  if (d > 0.5) return fl + 1;
  if (d < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

/**
 * `np.linspace(start, stop, num)` in float64, as numpy computes it: y[i] = i·step + start
 * with step = (stop − start)/(num − 1), the last value set to `stop` exactly; num = 1
 * gives [start].
 */
export function npLinspace(start: number, stop: number, num: number): number[] {
  if (!Number.isInteger(num) || num < 0) throw new RangeError(`num must be ≥ 0, got ${num}`);
  const div = num - 1;
  const delta = stop - start;
  const out: number[] = [];
  const step = div > 0 ? delta / div : NaN;
  for (let i = 0; i < num; i++) {
    let y: number;
    if (div > 0) y = step === 0 ? (i / div) * delta : i * step;
    else y = i * delta;
    out.push(y + start);
  }
  if (num > 1) out[num - 1] = stop;
  return out;
}

/**
 * `np.arange(start, stop, step)` for float64: length ceil((stop − start)/step); numpy
 * fills a[i] = start + i·d with d = (start + step) − start (its _fill), not `step` itself.
 */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  if (len === 0) return [];
  const out = [start];
  if (len > 1) out.push(start + step);
  const d = (start + step) - start;
  for (let i = 2; i < len; i++) out.push(start + i * d);
  return out;
}

/**
 * `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU. ATen converts
 * start/end to float32, step = (end − start)/(steps − 1) in float32, and fills the first
 * half from the start and the second from the end:
 * `i < steps/2 ? start + step·i : end − step·(steps − 1 − i)` — contracted to an FMA by
 * the compiler (checked bit for bit against torch 1.13's x86 build, whose FMA-contracted
 * base reproduces all 1,000 linear betas; without the contraction 168 differ).
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const s = f32(start);
  const e = f32(end);
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < half ? fmaF32(step, i, s) : fmaF32(-step, steps - 1 - i, e);
  }
  return out;
}

/** Beta schedules of the VP (DDPM-family) samplers. */
export type BetaSchedule = "linear" | "scaled_linear";

/** The training noise schedule of a VP diffusion model. */
export interface VpScheduleConfig {
  /** Training timesteps. Default 1000. */
  numTrainTimesteps?: number;
  /** First beta. Default 1e-4. */
  betaStart?: number;
  /** Last beta. Default 0.02. */
  betaEnd?: number;
  /** How betas go from start to end. Default "linear". */
  betaSchedule?: BetaSchedule;
  /** Explicit betas (diffusers' trained_betas), rounded to float32; overrides the above. */
  trainedBetas?: ArrayLike<number>;
}

/** The float32 tables diffusers builds in a VP scheduler's constructor. */
export interface VpSchedule {
  /** Training timesteps T. */
  readonly numTrainTimesteps: number;
  /** betas[t], float32 as torch.linspace gives them. */
  readonly betas: Float32Array;
  /** alphas_cumprod[t] = ∏_{s≤t}(1 − beta_s), float32. */
  readonly alphasCumprod: Float32Array;
}

/**
 * Builds betas and alphas_cumprod as diffusers' DDIM/DPM constructors do: betas =
 * torch.linspace(float32) ("scaled_linear": linspace of √β then squared, in float32);
 * alphas = 1 − betas in float32; torch.cumprod on the CPU accumulates in float64 (its
 * acc_type for float) and rounds each output to float32 — checked against torch: a
 * float32 accumulation would differ at 907 of the 1,000 entries.
 */
export function vpSchedule(config: VpScheduleConfig = {}): VpSchedule {
  const T = config.numTrainTimesteps ?? 1000;
  const b0 = config.betaStart ?? 0.0001;
  const b1 = config.betaEnd ?? 0.02;
  const kind = config.betaSchedule ?? "linear";
  if (!Number.isInteger(T) || T < 2) {
    throw new RangeError(`numTrainTimesteps must be ≥ 2, got ${T}`);
  }
  let betas: Float32Array;
  if (config.trainedBetas) {
    if (config.trainedBetas.length !== T) {
      throw new RangeError(`trainedBetas has ${config.trainedBetas.length} values, expected ${T}`);
    }
    betas = Float32Array.from(config.trainedBetas);
  } else if (kind === "linear") betas = torchLinspaceF32(b0, b1, T);
  else if (kind === "scaled_linear") {
    betas = torchLinspaceF32(Math.sqrt(b0), Math.sqrt(b1), T).map((v) => f32(v * v));
  } else throw new TypeError(`betaSchedule must be "linear" or "scaled_linear", got ${kind}`);
  const alphasCumprod = new Float32Array(T);
  let acc = 1;
  for (let t = 0; t < T; t++) {
    acc *= f32(1 - betas[t]);
    alphasCumprod[t] = f32(acc);
  }
  return { numTrainTimesteps: T, betas, alphasCumprod };
}

/** The sampler kinds webdit implements. */
export type SamplerKind = "dpm++2m" | "ddim" | "flow-euler";

/** What every sampler exposes about its schedule. */
export interface SamplerSchedule {
  /** The algorithm. */
  readonly kind: SamplerKind;
  /** Number of model evaluations (steps). */
  readonly numSteps: number;
  /**
   * The model input time of each step, as diffusers' `scheduler.timesteps` holds it:
   * integers (int64) for DPM-Solver and DDIM, float32 values σ·1000 for flow matching
   * (the FLUX pipeline then feeds t/1000 to the transformer).
   */
  readonly timesteps: readonly number[];
  /**
   * The noise levels, numSteps + 1 values ending in the final one, float32 as diffusers
   * stores `scheduler.sigmas` (DPM: √((1−ᾱ)/ᾱ) then 0; flow: σ then 0). DDIM has none and
   * exposes √(1−ᾱ_t)/√ᾱ_t at each step's timestep, then 0, for reference.
   */
  readonly sigmas: Float32Array;
}

/** Per-call inputs a stochastic step may need (DDIM with eta > 0). */
export interface StepExtras {
  /** Standard normal noise shaped like the sample (DDIM eta > 0: variance_noise). */
  noise?: Float32Array;
}

/** A sampler stepping Float32Arrays on the CPU: the reference implementation. */
export interface CpuSampler extends SamplerSchedule {
  /**
   * One update from step i's model output (ε, v or x₀ as configured; already guided and
   * split) and sample x_i, returning x_{i+1}. Steps must come in order 0, 1, … (as
   * diffusers' step_index counter); call {@linkcode reset} to start over.
   */
  step(
    i: number,
    modelOutput: Float32Array,
    sample: Float32Array,
    extras?: StepExtras,
  ): Float32Array;
  /** The x₀ prediction of the last step (diffusers' pred_original_sample / x0_pred). */
  readonly lastX0: Float32Array | undefined;
  /** Forgets the history (DPM's previous model output) and expects step 0 next. */
  reset(): void;
}

/** Per-call options of a GPU step. */
export interface GpuStepOptions {
  /** Where to write x_{i+1}; default a new tensor. Must not share sample's buffer. */
  out?: Tensor;
  /** Standard normal noise tensor (DDIM eta > 0). */
  noise?: Tensor;
}

/**
 * A sampler that records its update as elementwise GPU kernels (no read-back). It owns
 * the tensors it keeps between steps (DPM's previous x₀); {@linkcode dispose} frees them.
 */
export interface GpuSampler extends SamplerSchedule {
  /**
   * Records step i: from the model output and x_i (same shape and dtype) to x_{i+1},
   * returned (a new tensor unless `opts.out`). Steps must come in order 0, 1, ….
   */
  step(
    rec: Recorder,
    i: number,
    modelOutput: Tensor,
    sample: Tensor,
    opts?: GpuStepOptions,
  ): Tensor;
  /** Releases kept tensors and expects step 0 next. */
  reset(): void;
  /** Releases kept tensors. */
  dispose(): void;
}

/** Checks the step order shared by every sampler; returns the next expected index. */
export function checkStepIndex(kind: string, i: number, expected: number, n: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= n) {
    throw new RangeError(`${kind}: step index must be in [0, ${n}), got ${i}`);
  }
  if (i !== expected) {
    throw new RangeError(
      `${kind}: steps must run in order; expected step ${expected}, got ${i} (call reset() to restart)`,
    );
  }
}

/** Checks that the CPU operands of a step have one length. */
export function checkCpuOperands(
  kind: string,
  modelOutput: Float32Array,
  sample: Float32Array,
): void {
  if (modelOutput.length !== sample.length) {
    throw new RangeError(
      `${kind}: modelOutput has ${modelOutput.length} elements, sample has ${sample.length}`,
    );
  }
}

/** Checks that the GPU operands of a step match. */
export function checkGpuOperands(kind: string, modelOutput: Tensor, sample: Tensor): void {
  if (modelOutput.size !== sample.size) {
    throw new RangeError(
      `${kind}: modelOutput has ${modelOutput.size} elements, sample has ${sample.size}`,
    );
  }
  if (modelOutput.dtype !== sample.dtype) {
    throw new TypeError(`${kind}: modelOutput is ${modelOutput.dtype}, sample is ${sample.dtype}`);
  }
}

/** Checks a step count. */
export function checkSteps(kind: string, steps: number, max = Infinity): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > max) {
    throw new RangeError(`${kind}: steps must be an integer in [1, ${max}], got ${steps}`);
  }
}

/**
 * Exact model oracles for Gaussian data N(μ, s²) (per element), to test samplers and
 * loops without a model: the ideal ε̂ (VP) and v̂ (flow) and where the probability-flow
 * ODE ends. s = 0 is a point mass at μ, where every sampler step is exact.
 */
export interface GaussianToy {
  /** The data mean μ (float64). */
  readonly mu: Float64Array;
  /** The data standard deviation s. */
  readonly s: number;
  /** A standard normal starting sample, as the pipeline's initial latents. */
  readonly xT: Float32Array;
  /** E[ε | x] for x = αx₀ + σε: σ(x − αμ)/(α²s² + σ²). */
  vpEps(x: Float64Array, alpha: number, sigma: number): Float64Array;
  /** E[n − x₀ | x] for x = (1−σ)x₀ + σn. */
  flowV(x: Float64Array, sigma: number): Float64Array;
  /** The ODE's end from xT at (α_T, σ_T): μ + s·(x_T − α_T μ)/√(α_T²s² + σ_T²). */
  vpEndpoint(alphaT: number, sigmaT: number): Float64Array;
  /** The flow ODE's end from xT at σ_T: μ + s·(x_T − (1−σ_T)μ)/√((1−σ_T)²s² + σ_T²). */
  flowEndpoint(sigmaT: number): Float64Array;
}

/** A Gaussian toy of n elements: μ uniform in [−0.8, 0.8), deterministic per seed. */
export function gaussianToy(n: number, s: number, seed = 1): GaussianToy {
  let state = (seed >>> 0) || 1;
  const next = () => { // xorshift32 then Box–Muller; independent of Prng on purpose
    state ^= state << 13, state >>>= 0, state ^= state >>> 17, state ^= state << 5, state >>>= 0;
    return (state + 1) / 4294967297;
  };
  const mu = new Float64Array(n).map(() => 1.6 * next() - 0.8);
  const xT = new Float32Array(n).map(() =>
    Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next())
  );
  const s2 = s * s;
  const vpEps = (x: Float64Array, a: number, sg: number) =>
    x.map((v, j) => (sg * (v - a * mu[j])) / (a * a * s2 + sg * sg));
  const flowV = (x: Float64Array, sg: number) =>
    x.map((v, j) => {
      const d = (1 - sg) ** 2 * s2 + sg * sg;
      const r = v - (1 - sg) * mu[j];
      return (sg * r) / d - (mu[j] + ((1 - sg) * s2 * r) / d);
    });
  const end = (a: number, sg: number) =>
    Float64Array.from(
      xT,
      (v, j) => mu[j] + (s * (v - a * mu[j])) / Math.sqrt(a * a * s2 + sg * sg),
    );
  return {
    mu,
    s,
    xT,
    vpEps,
    flowV,
    vpEndpoint: end,
    flowEndpoint: (sg) => end(1 - sg, sg),
  };
}
