/**
 * CPU reference of the GEMM kernels: Y = X·Wᵀ (+ bias), an activation, then an
 * optional gated residual, accumulated in double precision.
 *
 * @module
 */
import { geluTanh, silu } from "./elementwise.ts";

/** The activations the GEMM epilogue can apply. */
export type GemmActivation = "none" | "gelu" | "silu" | "quickGelu";

/** Epilogue options of {@linkcode gemmRef} (host arrays, f32). */
export interface GemmRefOptions {
  /** bias [N], added before the activation. */
  bias?: Float32Array;
  /** Activation after the bias; default "none". */
  activation?: GemmActivation;
  /** residual [M, N]: out = residual + gate ⊙ y (gate ⊙ y alone when absent). */
  residual?: Float32Array;
  /** gate [B, N], row b used for output rows b·rowsPerGate … (b+1)·rowsPerGate − 1. */
  gate?: Float32Array;
  /** Rows per gate row; default M (one gate row). */
  rowsPerGate?: number;
}

/** Applies an activation to one value. */
export function activate(v: number, activation: GemmActivation = "none"): number {
  if (activation === "gelu") return geluTanh(v);
  if (activation === "silu") return silu(v);
  if (activation === "quickGelu") return v / (1 + Math.exp(-1.702 * v)); // CLIP's quick_gelu
  return v;
}

/** The epilogue of output (m, n) for the product `s`: + bias, activation, gate, residual. */
export function epilogueRef(
  s: number,
  m: number,
  n: number,
  N: number,
  rowsPerGate: number,
  opts: GemmRefOptions,
): number {
  if (opts.bias) s += opts.bias[n];
  let y = activate(s, opts.activation);
  if (opts.gate) y *= opts.gate[Math.floor(m / rowsPerGate) * N + n];
  if (opts.residual) y += opts.residual[m * N + n];
  return y;
}

/**
 * Y [M, N] = epilogue(X [M, K] · W [N, K]ᵀ), W in the PyTorch Linear layout.
 * The epilogue is: + bias[n], activation, then residual[m, n] + gate[⌊m / rowsPerGate⌋, n] · y
 * (either term optional).
 */
export function gemmRef(
  x: Float32Array,
  w: Float32Array,
  M: number,
  N: number,
  K: number,
  opts: GemmRefOptions = {},
): Float32Array {
  if (x.length < M * K) throw new RangeError(`x has ${x.length} values, needs M·K = ${M * K}`);
  if (w.length < N * K) throw new RangeError(`w has ${w.length} values, needs N·K = ${N * K}`);
  const rpg = opts.rowsPerGate ?? Math.max(1, M);
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    const xo = m * K;
    for (let n = 0; n < N; n++) {
      const wo = n * K;
      let s = 0;
      for (let k = 0; k < K; k++) s += x[xo + k] * w[wo + k];
      out[m * N + n] = epilogueRef(s, m, n, N, rpg, opts);
    }
  }
  return out;
}
