/**
 * CPU references of the fused rotate + per-token quantize kernels (wgsl/rotq_hadamard_reg.wgsl,
 * rotq_hadamard.wgsl, rotq_outlier*.wgsl). They repeat the kernels' f32 operations in the same
 * order, so the integer codes match bit for bit and the scales to the last bit on an adapter
 * whose f32 division is correctly rounded (lavapipe; WGSL itself allows 2.5 ULP).
 *
 * Per-token symmetric quantization (METHODS.md "Activation quantizer"):
 * amax = max|v|, Δ = amax / qmax, inv = 1 / Δ, q = clamp(round_half_even(v·inv),
 * −qmax − 1, qmax) with qmax = 2^(bits−1) − 1; a zero row has Δ = 0 and codes 0 — the
 * same operations as the plain quantizer (wgsl/act_quant.wgsl), so "none" matches it.
 *
 * @module
 */
import type { Prng } from "../io/prng.ts";
import { fwhtF32 } from "./hadamard.ts";

/** Round half to even, as WGSL's round(). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** qmax = 2^(bits−1) − 1 for 2 ≤ bits ≤ 8. */
export function qmaxOf(bits: number): number {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) {
    throw new RangeError(`activation bits must be an integer in [2, 8], got ${bits}`);
  }
  return 2 ** (bits - 1) - 1;
}

/** Per-token quantized rows: codes (one per value), the packed words and the scales. */
export interface QuantizedRows {
  /** Codes [M, K]. */
  codes: Int8Array;
  /** Codes packed four per u32, little-endian bytes, rows of ⌈K/4⌉ words (zero padded). */
  packed: Uint32Array;
  /** Δ per row [M]. */
  scales: Float32Array;
}

/** Quantizes each row of `v` [M, K] per token, symmetric, with `bits` bits. */
export function quantizeRows(v: Float32Array, M: number, K: number, bits: number): QuantizedRows {
  const qmax = qmaxOf(bits);
  const f = Math.fround;
  const codes = new Int8Array(M * K);
  const scales = new Float32Array(M);
  for (let r = 0; r < M; r++) {
    let amax = 0;
    for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(v[r * K + k]));
    scales[r] = f(amax / qmax);
    const inv = amax > 0 ? f(1 / scales[r]) : 0;
    for (let k = 0; k < K; k++) {
      const q = roundHalfEven(f(v[r * K + k] * inv));
      codes[r * K + k] = Math.min(qmax, Math.max(-qmax - 1, q));
    }
  }
  return { codes, packed: packCodes(codes, M, K), scales };
}

/** Packs int8 codes [M, K] four per u32 word (byte i of a word = column 4w + i). */
export function packCodes(codes: Int8Array, M: number, K: number): Uint32Array {
  const W = Math.ceil(K / 4);
  const out = new Uint32Array(M * W);
  for (let r = 0; r < M; r++) {
    for (let k = 0; k < K; k++) {
      out[r * W + (k >> 2)] |= (codes[r * K + k] & 0xff) << ((k & 3) * 8);
    }
  }
  return out;
}

/** Unpacks words [M, ⌈K/4⌉] into int8 codes [M, K]. */
export function unpackCodes(packed: Uint32Array, M: number, K: number): Int8Array {
  const W = Math.ceil(K / 4);
  if (packed.length < M * W) {
    throw new RangeError(`packed has ${packed.length} words, not ${M * W}`);
  }
  const out = new Int8Array(M * K);
  for (let r = 0; r < M; r++) {
    for (let k = 0; k < K; k++) {
      out[r * K + k] = (packed[r * W + (k >> 2)] >>> ((k & 3) * 8)) << 24 >> 24;
    }
  }
  return out;
}

/** x̂ = Δ_t · q, [M, K]. */
export function dequantizeRows(
  codes: Int8Array,
  scales: Float32Array,
  M: number,
  K: number,
): Float32Array {
  const out = new Float32Array(M * K);
  for (let r = 0; r < M; r++) {
    for (let k = 0; k < K; k++) out[r * K + k] = codes[r * K + k] * scales[r];
  }
  return out;
}

/**
 * The hadamard transform of the kernel, in f32: v = x ⊙ s (s = signs / (m·√block), one
 * rounding), then the unnormalised fast Walsh–Hadamard transform of every block.
 */
export function rotateHadamardRef(
  x: Float32Array,
  M: number,
  K: number,
  s: Float32Array,
  block: number,
): Float32Array {
  checkTransform(x, M, K, s, block);
  const v = new Float32Array(M * K);
  for (let i = 0; i < M * K; i++) v[i] = x[i] * s[i % K];
  for (let r = 0; r < M; r++) for (let b0 = 0; b0 < K; b0 += block) fwhtF32(v, r * K + b0, block);
  return v;
}

/** Parameters of the outlier-aware transform x ↦ ((x ⊙ s)·R1)·P·R2. */
export interface OutlierTransformParams {
  /** Pre-multiplier [K] (1/m of smoothing, or ones). */
  s: Float32Array;
  /** First block rotation [block, block], row-major, shared by all blocks. */
  q1: Float32Array;
  /** Second block rotation [block, block]. */
  q2: Float32Array;
  /** The permutation as a gather: z[k] = y[perm[k]]. */
  perm: Uint32Array;
  /** Block size (divides K). */
  block: number;
}

function checkTransform(x: Float32Array, M: number, K: number, s: Float32Array, block: number) {
  if (x.length !== M * K) throw new RangeError(`x has ${x.length} values, not ${M}×${K}`);
  if (s.length !== K) throw new RangeError(`s has ${s.length} values, not ${K}`);
  if (!Number.isInteger(block) || block < 1 || K % block !== 0) {
    throw new RangeError(`block ${block} must divide K = ${K}`);
  }
}

/**
 * Q1·P·Q2 [K, K] of a transform whose K is one block: C[i][j] = Σ_k Q1[i][perm[k]]·Q2[k][j]
 * in f64, rounded to f32 — the whole rotation as one matrix, which the CPU adapters' kernel
 * multiplies by once instead of Q1 and Q2 in turn (the same map; its own rounding).
 */
export function composeOutlierQ(p: OutlierTransformParams): Float32Array {
  const B = p.block;
  if (p.perm.length !== B) {
    throw new RangeError(`composeOutlierQ: K must be one block (${B}), got ${p.perm.length}`);
  }
  const c = new Float32Array(B * B);
  for (let i = 0; i < B; i++) {
    for (let j = 0; j < B; j++) {
      let acc = 0;
      for (let k = 0; k < B; k++) acc += p.q1[i * B + p.perm[k]] * p.q2[k * B + j];
      c[i * B + j] = acc;
    }
  }
  return c;
}

/**
 * The outlier-aware transform of the kernel, in f32: v = x ⊙ s; y = blockwise v·Q1
 * (each output a sequential sum over i of v_i·Q1[i][j], from 0); z = y permuted; out =
 * blockwise z·Q2 — or, given `composed` ({@linkcode composeOutlierQ}, K one block), out =
 * v·C in one such product. `fused` rounds each multiply-add once (an adapter that contracts
 * a·b + c into an FMA); otherwise product and sum round separately.
 */
export function rotateOutlierRef(
  x: Float32Array,
  M: number,
  K: number,
  p: OutlierTransformParams,
  fused = false,
  composed?: Float32Array,
): Float32Array {
  const B = p.block;
  checkTransform(x, M, K, p.s, B);
  if (p.q1.length !== B * B || p.q2.length !== B * B || p.perm.length !== K) {
    throw new RangeError("q1/q2 must be block×block and perm must have K entries");
  }
  const f = Math.fround;
  const mac = fused ? (acc: number, a: number, b: number) => f(acc + a * b) : (
    acc: number,
    a: number,
    b: number,
  ) => f(acc + f(a * b));
  const out = new Float32Array(M * K);
  const v = new Float32Array(K);
  const y = new Float32Array(K);
  const z = new Float32Array(K);
  if (composed && (K !== B || composed.length !== K * K)) {
    throw new RangeError(`composed must be [${K}, ${K}] of a one-block transform`);
  }
  for (let r = 0; r < M; r++) {
    for (let k = 0; k < K; k++) v[k] = x[r * K + k] * p.s[k];
    if (composed) {
      blockMul(v, composed, K, K, out.subarray(r * K, (r + 1) * K), mac);
      continue;
    }
    blockMul(v, p.q1, B, K, y, mac);
    for (let k = 0; k < K; k++) z[k] = y[p.perm[k]];
    blockMul(z, p.q2, B, K, out.subarray(r * K, (r + 1) * K), mac);
  }
  return out;
}

function blockMul(
  v: Float32Array,
  q: Float32Array,
  B: number,
  K: number,
  out: Float32Array,
  mac: (acc: number, a: number, b: number) => number,
): void {
  for (let b0 = 0; b0 < K; b0 += B) {
    for (let j = 0; j < B; j++) {
      let acc = 0;
      for (let i = 0; i < B; i++) acc = mac(acc, v[b0 + i], q[i * B + j]);
      out[b0 + j] = acc;
    }
  }
}

/**
 * A random orthogonal n×n matrix, f32: Gram–Schmidt (in f64) of a Gaussian one drawn from
 * `g`. Q1/Q2 stand-ins for the outlier kernel's tests and benchmark.
 */
export function randomOrthogonal(n: number, g: Prng): Float32Array {
  const a = Float64Array.from(g.normals(n * n));
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < i; p++) {
      let d = 0;
      for (let k = 0; k < n; k++) d += a[i * n + k] * a[p * n + k];
      for (let k = 0; k < n; k++) a[i * n + k] -= d * a[p * n + k];
    }
    let norm = 0;
    for (let k = 0; k < n; k++) norm += a[i * n + k] ** 2;
    for (let k = 0; k < n; k++) a[i * n + k] /= Math.sqrt(norm);
  }
  return Float32Array.from(a);
}
