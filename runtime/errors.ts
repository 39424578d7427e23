/**
 * Typed errors of webdit. Bad arguments throw the built-in TypeError/RangeError;
 * everything the runtime itself detects throws one of these, carrying the kernel,
 * file or field it concerns.
 *
 * @module
 */

/** Base class of every webdit error. */
export class WebditError extends Error {
  /** Creates the error with a message in sentence case. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** No adapter of the requested kind, or it lacks a required feature. */
export class AdapterError extends WebditError {}

/** A feature the caller asked for (f16, packed dot products…) is not on this adapter. */
export class UnsupportedFeatureError extends WebditError {
  /** The WebGPU feature or WGSL language feature that is missing. */
  readonly feature: string;
  /** Creates the error for `feature`. */
  constructor(feature: string, message: string) {
    super(message);
    this.feature = feature;
  }
}

/** The GPU device was lost; the runtime must be re-created. */
export class DeviceLostError extends WebditError {
  /** The reason WebGPU gave ("destroyed" or "unknown"). */
  readonly reason: string;
  /** Creates the error from the lost info. */
  constructor(reason: string, message: string) {
    super(`GPU device lost (${reason}): ${message}`);
    this.reason = reason;
  }
}

/** A WGSL module failed to compile or its pipeline failed validation. */
export class ShaderCompileError extends WebditError {
  /** The kernel's name. */
  readonly kernel: string;
  /** 1-based line of the first error in the composed source, or 0 when unknown. */
  readonly line: number;
  /** Creates the error for `kernel` at `line`. */
  constructor(kernel: string, line: number, message: string) {
    super(`Kernel "${kernel}" failed to compile${line ? ` at line ${line}` : ""}: ${message}`);
    this.kernel = kernel;
    this.line = line;
  }
}

/** A GPU validation or out-of-memory error raised while running a kernel. */
export class GpuExecutionError extends WebditError {}

/** A checkpoint or artifact file is malformed or does not match what was expected. */
export class CheckpointError extends WebditError {
  /** The file concerned. */
  readonly file: string;
  /** The tensor or field concerned, when there is one. */
  readonly field: string | undefined;
  /** Creates the error for `file` (and `field`). */
  constructor(file: string, message: string, field?: string) {
    super(`${file}: ${field ? `${field}: ` : ""}${message}`);
    this.file = file;
    this.field = field;
  }
}
