/**
 * One layer's input transform as planned by a rotation plugin: smoothing m and an
 * orthogonal R, with T = diag(m)⁻¹·R online (fused with the per-token quantizer) and
 * W' = W·diag(m)·R offline, so that (X·T)·W'ᵀ = X·Wᵀ.
 *
 * - "none": T = I (plain per-token quantization);
 * - "hadamard": R = diag(signs)·blockdiag(H_b/√b), b the largest power of two dividing K;
 * - "outlier": R = blockdiag(Q1)·P·blockdiag(Q2) (DuQuant-style; Q1, Q2 b×b, P a permutation).
 *
 * Stored form ({@linkcode LayerRotation.tensors}, loaded by {@linkcode loadLayerRotation}):
 * none: nothing; hadamard: `m` F32 [K], `signs` F32 [K], `block` U32 [1]; outlier: `m`
 * F32 [K], `q1` F32 [b, b], `q2` F32 [b, b], `perm` U32 [K] (gather: z[k] = y[perm[k]]).
 *
 * @module
 */
import type { HostMatrix } from "../../plugins/types.ts";
import type { Runtime } from "../gpu/device.ts";
import { fwhtF64, isPowerOfTwo, rotateRowsBlockHadamard } from "../reference/hadamard.ts";
import {
  composeOutlierQ,
  type OutlierTransformParams,
  type QuantizedRows,
  quantizeRows,
  rotateHadamardRef,
  rotateOutlierRef,
} from "../reference/rotq.ts";
import type { ActivationTransform } from "./transform.ts";
import { GpuHadamardTransform, GpuOutlierTransform } from "./rotation_gpu.ts";
import type { ActQuantSpec } from "./rotation_error.ts";

/** What a layer's plan chose. */
export type RotationKind = "none" | "hadamard" | "outlier";

/** A tensor of a layer rotation, as stored in the artifact. */
export interface RotationTensor {
  /** Safetensors dtype. */
  dtype: "F32" | "U32";
  /** Shape. */
  shape: number[];
  /** Values. */
  data: Float32Array | Uint32Array;
}

/** What the plan found for one layer (for `quantize --report`). */
export interface LayerRotationReport {
  /** The branch taken. */
  kind: RotationKind;
  /** RMS J of the calibration input (NaN when unknown). */
  J: number;
  /** Block of the rotation (1 for none). */
  block: number;
  /** Smoothing α, or null when not smoothed. */
  alpha: number | null;
  /** Outlier-aware: greedy steps kept in the first and second pass. */
  greedySteps?: [number, number];
  /** Outlier-aware: max − min of the calibration rows before and after. */
  proxySpread?: [number, number];
  /** Why this branch (ARS: "J ≥ τ", an override…). */
  reason?: string;
}

/** One layer's planned input transform. */
export interface LayerRotation {
  /** The branch. */
  readonly kind: RotationKind;
  /** K. */
  readonly cols: number;
  /** Block size (1 for none). */
  readonly block: number;
  /** What the plan found. */
  readonly report: LayerRotationReport;
  /** Offline, f64 math: W·diag(m)·R for W [N, K]. */
  transformWeight(w: HostMatrix): HostMatrix;
  /** Offline, f64 math: the inverse, W'·Rᵀ·diag(m)⁻¹, back to the layer's own input space. */
  restoreWeight(w: HostMatrix): HostMatrix;
  /**
   * CPU reference of the online transform x [rows, K] → x·diag(m)⁻¹·R, kernel-exact f32;
   * `fused`: as an adapter that contracts multiply-adds computes it (detectFmaContraction);
   * `composed`: outlier-aware with K one block, R as one matrix, as CPU adapters' kernel
   * multiplies (rotation_gpu.ts composesOutlier; the other kinds ignore it).
   */
  transformActivations(
    x: Float32Array,
    rows: number,
    fused?: boolean,
    composed?: boolean,
  ): Float32Array;
  /** CPU reference of `gpu(rt).applyQuant`: codes and scales exactly as the kernel. */
  quantizeActivations(
    x: Float32Array,
    rows: number,
    bits: number,
    fused?: boolean,
    composed?: boolean,
  ): QuantizedRows;
  /** The tensors to store in the artifact (see the module header). */
  tensors(): Record<string, RotationTensor>;
  /** The online side on the GPU (runtime/quant/rotation_gpu.ts). */
  gpu(rt: Runtime): ActivationTransform;
}

function checkM(m: Float32Array, K: number): void {
  if (m.length !== K) throw new RangeError(`m has ${m.length} values, not K = ${K}`);
  for (const v of m) {
    if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`smoothing factors must be > 0`);
  }
}

function checkCols(w: HostMatrix, K: number): void {
  if (w.cols !== K) throw new RangeError(`weight has ${w.cols} columns, not ${K}`);
}

/** W·diag(m) rows in f64 (a working copy). */
function smoothedRow(w: HostMatrix, r: number, m: Float32Array, out: Float64Array): void {
  const o = r * w.cols;
  for (let j = 0; j < w.cols; j++) out[j] = w.data[o + j] * m[j];
}

/** The randomised block-Hadamard rotation with smoothing (also "none" with block 1). */
export class HadamardRotation implements LayerRotation {
  readonly kind: RotationKind;
  readonly cols: number;
  readonly block: number;
  readonly report: LayerRotationReport;
  /** Smoothing factors m [K]. */
  readonly m: Float32Array;
  /** Random ±1 diagonal [K]. */
  readonly signs: Float32Array;
  /** The kernel's pre-multiplier s = signs / (m·√block), rounded once to f32. */
  readonly s: Float32Array;

  /** Builds the rotation; `kind` "none" needs block 1, signs and m all ones. */
  constructor(
    m: Float32Array,
    signs: Float32Array,
    block: number,
    report: Partial<LayerRotationReport> = {},
    kind: "hadamard" | "none" = "hadamard",
  ) {
    const K = signs.length;
    checkM(m, K);
    if (!isPowerOfTwo(block) || K % block !== 0) {
      throw new RangeError(`block must be a power of two dividing K = ${K}, got ${block}`);
    }
    if (signs.some((v) => v !== 1 && v !== -1)) throw new RangeError("signs must be ±1");
    this.kind = kind;
    this.cols = K;
    this.block = block;
    this.m = m;
    this.signs = signs;
    const norm = Math.sqrt(block);
    this.s = Float32Array.from(signs, (d, j) => d / (m[j] * norm));
    this.report = { kind, J: NaN, block, alpha: null, ...report };
  }

  transformWeight(w: HostMatrix): HostMatrix {
    checkCols(w, this.cols);
    const data = new Float32Array(w.data.length);
    const row = new Float64Array(w.cols);
    for (let r = 0; r < w.rows; r++) {
      smoothedRow(w, r, this.m, row);
      data.set(row, r * w.cols);
    }
    rotateRowsBlockHadamard(data, w.rows, w.cols, this.signs, this.block);
    return { data, rows: w.rows, cols: w.cols };
  }

  restoreWeight(w: HostMatrix): HostMatrix {
    checkCols(w, this.cols);
    const K = this.cols;
    const norm = 1 / Math.sqrt(this.block);
    const data = new Float32Array(w.data.length);
    const v = new Float64Array(K);
    for (let r = 0; r < w.rows; r++) { // H/√b is symmetric and its own inverse
      for (let j = 0; j < K; j++) v[j] = w.data[r * K + j];
      for (let b0 = 0; b0 < K; b0 += this.block) fwhtF64(v, b0, this.block);
      for (let j = 0; j < K; j++) data[r * K + j] = v[j] * norm * this.signs[j] / this.m[j];
    }
    return { data, rows: w.rows, cols: w.cols };
  }

  // The kernels' butterflies have no multiply-add to contract: `fused` changes nothing.
  transformActivations(x: Float32Array, rows: number, _fused?: boolean): Float32Array {
    return rotateHadamardRef(x, rows, this.cols, this.s, this.block);
  }

  quantizeActivations(x: Float32Array, rows: number, bits: number): QuantizedRows {
    return quantizeRows(this.transformActivations(x, rows), rows, this.cols, bits);
  }

  tensors(): Record<string, RotationTensor> {
    if (this.kind === "none") return {};
    return {
      m: { dtype: "F32", shape: [this.cols], data: this.m },
      signs: { dtype: "F32", shape: [this.cols], data: this.signs },
      block: { dtype: "U32", shape: [1], data: new Uint32Array([this.block]) },
    };
  }

  gpu(rt: Runtime): ActivationTransform {
    return new GpuHadamardTransform(rt, this.kind, this.s, this.block);
  }
}

/** The identity ("none"): plain per-token quantization. */
export function identityRotation(
  K: number,
  report: Partial<LayerRotationReport> = {},
): HadamardRotation {
  return new HadamardRotation(
    new Float32Array(K).fill(1),
    new Float32Array(K).fill(1),
    1,
    report,
    "none",
  );
}

/** The outlier-aware rotation R = blockdiag(Q1)·P·blockdiag(Q2) with smoothing. */
export class OutlierRotation implements LayerRotation {
  readonly kind: RotationKind = "outlier";
  readonly cols: number;
  readonly block: number;
  readonly report: LayerRotationReport;
  /** Smoothing factors m [K]. */
  readonly m: Float32Array;
  /** Q1 [block, block]. */
  readonly q1: Float32Array;
  /** Q2 [block, block]. */
  readonly q2: Float32Array;
  /** Gather permutation [K]: z[k] = y[perm[k]]. */
  readonly perm: Uint32Array;
  /** The kernel's pre-multiplier 1/m. */
  readonly s: Float32Array;

  /** Builds the rotation from its parts (Q1, Q2 orthogonal; perm a permutation of 0..K−1). */
  constructor(
    m: Float32Array,
    q1: Float32Array,
    q2: Float32Array,
    perm: Uint32Array,
    report: Partial<LayerRotationReport> = {},
  ) {
    const K = perm.length;
    checkM(m, K);
    const B = Math.round(Math.sqrt(q1.length));
    if (B * B !== q1.length || q2.length !== q1.length || !isPowerOfTwo(B) || K % B !== 0) {
      throw new RangeError(`q1 and q2 must be b×b with b a power of two dividing K = ${K}`);
    }
    const seen = new Uint8Array(K);
    for (const p of perm) {
      if (p >= K || seen[p]) throw new RangeError("perm must be a permutation of 0..K−1");
      seen[p] = 1;
    }
    this.cols = K;
    this.block = B;
    this.m = m;
    this.q1 = q1;
    this.q2 = q2;
    this.perm = perm;
    this.s = Float32Array.from(m, (v) => 1 / v);
    this.report = { kind: "outlier", J: NaN, block: B, alpha: null, ...report };
  }

  transformWeight(w: HostMatrix): HostMatrix {
    checkCols(w, this.cols);
    const K = this.cols;
    const data = new Float32Array(w.data.length);
    const v = new Float64Array(K);
    const y = new Float64Array(K);
    const z = new Float64Array(K);
    for (let r = 0; r < w.rows; r++) {
      smoothedRow(w, r, this.m, v);
      blockMulF64(v, this.q1, this.block, y);
      for (let k = 0; k < K; k++) z[k] = y[this.perm[k]];
      blockMulF64(z, this.q2, this.block, v);
      data.set(v, r * K);
    }
    return { data, rows: w.rows, cols: w.cols };
  }

  restoreWeight(w: HostMatrix): HostMatrix {
    checkCols(w, this.cols);
    const K = this.cols;
    const data = new Float32Array(w.data.length);
    const v = new Float64Array(K);
    const z = new Float64Array(K);
    const y = new Float64Array(K);
    for (let r = 0; r < w.rows; r++) {
      for (let k = 0; k < K; k++) v[k] = w.data[r * K + k];
      blockMulF64(v, this.q2, this.block, z, true);
      for (let k = 0; k < K; k++) y[this.perm[k]] = z[k];
      blockMulF64(y, this.q1, this.block, v, true);
      for (let k = 0; k < K; k++) data[r * K + k] = v[k] / this.m[k];
    }
    return { data, rows: w.rows, cols: w.cols };
  }

  transformActivations(
    x: Float32Array,
    rows: number,
    fused = false,
    composed = false,
  ): Float32Array {
    const p = this.params;
    return rotateOutlierRef(
      x,
      rows,
      this.cols,
      p,
      fused,
      composed ? composeOutlierQ(p) : undefined,
    );
  }

  /** The online transform's parameters, as the reference and the kernels take them. */
  get params(): OutlierTransformParams {
    return { s: this.s, q1: this.q1, q2: this.q2, perm: this.perm, block: this.block };
  }

  quantizeActivations(
    x: Float32Array,
    rows: number,
    bits: number,
    fused = false,
    composed = false,
  ): QuantizedRows {
    const v = this.transformActivations(x, rows, fused, composed);
    return quantizeRows(v, rows, this.cols, bits);
  }

  tensors(): Record<string, RotationTensor> {
    const B = this.block;
    return {
      m: { dtype: "F32", shape: [this.cols], data: this.m },
      q1: { dtype: "F32", shape: [B, B], data: this.q1 },
      q2: { dtype: "F32", shape: [B, B], data: this.q2 },
      perm: { dtype: "U32", shape: [this.cols], data: this.perm },
    };
  }

  gpu(rt: Runtime): ActivationTransform {
    return new GpuOutlierTransform(rt, this);
  }
}

/** out = blockwise v·Q, or v·Qᵀ when `transposed` (f64 math on f32 Q). */
function blockMulF64(
  v: Float64Array,
  q: Float32Array,
  B: number,
  out: Float64Array,
  transposed = false,
): void {
  const [si, sj] = transposed ? [1, B] : [B, 1];
  for (let b0 = 0; b0 < v.length; b0 += B) {
    for (let j = 0; j < B; j++) {
      let acc = 0;
      for (let i = 0; i < B; i++) acc += v[b0 + i] * q[i * si + j * sj];
      out[b0 + j] = acc;
    }
  }
}

/** A stored tensor as read back: typed values or raw little-endian bytes. */
export interface StoredTensor {
  /** Safetensors dtype. */
  dtype: string;
  /** Shape. */
  shape: readonly number[];
  /** Values, or raw bytes. */
  data: Float32Array | Uint32Array | Uint8Array;
}

function f32Of(t: StoredTensor | undefined, name: string): Float32Array {
  if (!t || t.dtype !== "F32") throw new RangeError(`rotation tensor "${name}" must be F32`);
  if (t.data instanceof Float32Array) return t.data;
  const b = t.data as Uint8Array;
  return new Float32Array(b.slice().buffer);
}

function u32Of(t: StoredTensor | undefined, name: string): Uint32Array {
  if (!t || t.dtype !== "U32") throw new RangeError(`rotation tensor "${name}" must be U32`);
  if (t.data instanceof Uint32Array) return t.data;
  const b = t.data as Uint8Array;
  return new Uint32Array(b.slice().buffer);
}

/**
 * Rebuilds a layer's rotation from the tensors {@linkcode LayerRotation.tensors} stored
 * (for the artifact loader). `cols` is needed for "none", which stores nothing.
 * @throws {RangeError} naming the missing or malformed tensor.
 */
export function loadLayerRotation(
  kind: string,
  tensors: Record<string, StoredTensor>,
  cols?: number,
): LayerRotation {
  switch (kind) {
    case "none": {
      if (cols === undefined) throw new RangeError('loadLayerRotation("none") needs cols');
      return identityRotation(cols);
    }
    case "hadamard": {
      const block = u32Of(tensors.block, "block")[0];
      return new HadamardRotation(f32Of(tensors.m, "m"), f32Of(tensors.signs, "signs"), block);
    }
    case "outlier":
      return new OutlierRotation(
        f32Of(tensors.m, "m"),
        f32Of(tensors.q1, "q1"),
        f32Of(tensors.q2, "q2"),
        u32Of(tensors.perm, "perm"),
      );
    default:
      throw new RangeError(`Unknown rotation kind "${kind}"; expected none, hadamard or outlier`);
  }
}

/** The rotation choices of a plan (`quantize --rotation`). */
export type RotationChoice = "none" | "hadamard" | "outlier" | "adaptive";

/** How the adaptive rotation picks a layer's branch (RotationPlanOptions.select). */
export type ArsSelect = "rms" | "error" | "act-error";

/** The ARS branch choices. */
export const ARS_SELECT: readonly ArsSelect[] = ["rms", "error", "act-error"];

/** Options of a rotation plan (see runtime/quant/rotation_plan.ts). */
export interface RotationPlanOptions {
  /** The plugin: none, hadamard, outlier or adaptive (ARS). */
  rotation: RotationChoice;
  /** ARS threshold: J < τ → hadamard, else outlier. Default 1. */
  tau?: number;
  /**
   * ARS branch choice: "rms" (METHODS.md §2: J against τ; the default), "error": of
   * hadamard, outlier-aware and none, the branch whose output error on the layer's
   * calibration sample rows is least (runtime/quant/rotation_error.ts), or "act-error": the
   * same by the activation quantizer's error alone, weights exact (for plans whose GPTQ and
   * low-rank branch leave the weights' error small, as plain rounding does not).
   */
  select?: ArsSelect;
  /**
   * The activation quantizer "error" measures with. Absent: A8 with one scale a token for
   * the activation-only measure; none (a weight-only layer) with `weightQuant`.
   */
  act?: ActQuantSpec;
  /**
   * The weight quantizer, quantize → dequantize: with it "error" measures the whole layer's
   * output error (both quantizers; runtime/quant/rotation_error.ts's layerErrors), without it
   * the activation quantizer's alone ("act-error" never uses it).
   */
  weightQuant?: (w: HostMatrix) => Float32Array;
  /** Smoothing α; default 0.5. */
  alpha?: number;
  /** Smooth before rotating (hadamard/outlier); default true. */
  smooth?: boolean;
  /** Per-layer branch by exact name or `*` pattern, e.g. `{"transformer_blocks.*.ff.net.2": "outlier"}`. */
  overrides?: Record<string, RotationKind>;
  /** Seed of the random signs and permutations; default 0. */
  seed?: number;
  /** Outlier-aware block (a power of two); default 128, or the largest power of two dividing K below it. */
  outlierBlock?: number;
  /** Outlier-aware greedy steps per pass; default 256. */
  maxSteps?: number;
  /** Outlier-aware: calibration sample rows the greedy passes rotate (plus the proxy row); default 128. */
  greedyRows?: number;
  /**
   * Outlier-aware greedy objective: "rowmax" (mean of the sample tokens' squared max |v|,
   * default), or over the whole matrix "absmax" (max |v|) or "range" (max − min).
   */
  greedyObjective?: "range" | "absmax" | "rowmax";
}

/** A deterministic per-layer seed from the plan's seed and the layer name (FNV-1a). */
export function layerSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
