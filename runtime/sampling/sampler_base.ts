/**
 * What every sampler class shares: its plan, the schedule getters and the step counter
 * (steps run in order 0, 1, …, as diffusers' step_index; reset() starts over). A CPU
 * sampler supplies only its update ({@linkcode CpuSamplerBase.update}), a GPU one only
 * its recording ({@linkcode GpuSamplerBase.record}) and what it keeps between steps.
 *
 * @module
 */
import type { Recorder } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import {
  checkCpuOperands,
  checkGpuOperands,
  checkStepIndex,
  type CpuSampler,
  type GpuSampler,
  type GpuStepOptions,
  type SamplerKind,
  type StepExtras,
} from "./schedule.ts";

/** What every sampler's plan holds. */
export interface SamplerPlan {
  /** The model timesteps (see {@linkcode SamplerSchedule.timesteps}). */
  readonly timesteps: readonly number[];
  /** numSteps + 1 sigmas (see {@linkcode SamplerSchedule.sigmas}). */
  readonly sigmas: Float32Array;
}

/** The plan, its getters and the in-order step counter. */
export abstract class SamplerBase<P extends SamplerPlan> {
  /** The algorithm (also the prefix of error messages). */
  abstract readonly kind: SamplerKind;
  /** The schedule and coefficients. */
  readonly plan: P;
  #next = 0;

  /** Keeps the plan of a run. */
  protected constructor(plan: P) {
    this.plan = plan;
  }

  /** Number of steps. */
  get numSteps(): number {
    return this.plan.timesteps.length;
  }
  /** The model timesteps (integers; σ·T in float32 for flow matching). */
  get timesteps(): readonly number[] {
    return this.plan.timesteps;
  }
  /** numSteps + 1 sigmas, as the plan holds them. */
  get sigmas(): Float32Array {
    return this.plan.sigmas;
  }

  /** Runs step i's `body` if i is the step expected next; then expects i + 1. */
  protected inOrder<R>(i: number, body: () => R): R {
    checkStepIndex(this.kind, i, this.#next, this.numSteps);
    const r = body();
    this.#next = i + 1;
    return r;
  }

  /** Expects step 0 next. */
  protected rewind(): void {
    this.#next = 0;
  }
}

/** The result of one CPU update. */
export interface CpuUpdate {
  /** x_{i+1}. */
  next: Float32Array;
  /** The x₀ prediction, kept as {@linkcode CpuSampler.lastX0}. */
  x0: Float32Array;
}

/** A CPU sampler: checks the step and its operands, keeps the last x₀. */
export abstract class CpuSamplerBase<P extends SamplerPlan> extends SamplerBase<P>
  implements CpuSampler {
  #x0: Float32Array | undefined;

  /** The x₀ prediction of the last step (see {@linkcode CpuSampler.lastX0}). */
  get lastX0(): Float32Array | undefined {
    return this.#x0;
  }

  /** One update of sample x (see {@linkcode CpuSampler.step}). */
  step(i: number, output: Float32Array, x: Float32Array, extras: StepExtras = {}): Float32Array {
    return this.inOrder(i, () => {
      checkCpuOperands(this.kind, output, x);
      const { next, x0 } = this.update(i, output, x, extras);
      this.#x0 = x0;
      return next;
    });
  }

  /** Forgets the last x₀ and starts over at step 0. */
  reset(): void {
    this.#x0 = undefined;
    this.rewind();
  }

  /**
   * The sampler's math for step i, on checked operands; {@linkcode lastX0} still holds
   * the previous step's x₀.
   */
  protected abstract update(
    i: number,
    modelOutput: Float32Array,
    sample: Float32Array,
    extras: StepExtras,
  ): CpuUpdate;
}

/** A GPU sampler: checks the step and its operands; dispose() frees what it keeps. */
export abstract class GpuSamplerBase<P extends SamplerPlan> extends SamplerBase<P>
  implements GpuSampler {
  /** Records one update of sample x (see {@linkcode GpuSampler.step}). */
  step(rec: Recorder, i: number, output: Tensor, x: Tensor, opts: GpuStepOptions = {}): Tensor {
    return this.inOrder(i, () => {
      checkGpuOperands(this.kind, output, x);
      return this.record(rec, i, output, x, opts);
    });
  }

  /** Releases kept tensors and starts over at step 0. */
  reset(): void {
    this.dispose();
    this.rewind();
  }

  /** Releases kept tensors (none unless the sampler overrides this). */
  dispose(): void {}

  /** Records the sampler's update for step i on checked operands; returns x_{i+1}. */
  protected abstract record(
    rec: Recorder,
    i: number,
    modelOutput: Tensor,
    sample: Tensor,
    opts: GpuStepOptions,
  ): Tensor;
}
