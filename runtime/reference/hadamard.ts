/**
 * Hadamard matrices and the fast Walsh–Hadamard transform on the host: the CPU side of
 * the hadamard rotation (plugins/rotations/hadamard.ts) and of the outlier-aware greedy
 * rotation steps, and the reference of the rotq_hadamard kernels' butterflies.
 *
 * Conventions: a row vector x is rotated as x·R. The Sylvester Hadamard matrix H_n
 * (n a power of two) has H[i][j] = (−1)^popcount(i & j); it is symmetric, so x·H = H·x.
 *
 * @module
 */

/** True when `n` is a positive power of two. */
export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/**
 * The largest power of two ≤ `cap` that divides `n` (1 when `n` is odd): the block of a
 * block-diagonal Hadamard for widths that are not a power of two (1152 = 9 × 128).
 */
export function largestPow2Divisor(n: number, cap = Infinity): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be a positive integer, got ${n}`);
  let b = 1;
  while (n % (b * 2) === 0 && b * 2 <= cap) b *= 2;
  return b;
}

/** The entry H[i][j] ∈ {+1, −1} of the Sylvester Hadamard matrix. */
export function hadamardEntry(i: number, j: number): number {
  let v = i & j;
  let parity = 0;
  while (v) {
    parity ^= 1;
    v &= v - 1;
  }
  return parity ? -1 : 1;
}

/** The n×n Sylvester Hadamard matrix (entries ±1, not normalised), row-major. */
export function hadamardMatrix(n: number): Float32Array {
  if (!isPowerOfTwo(n)) throw new RangeError(`Hadamard size must be a power of two, got ${n}`);
  const h = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j] = hadamardEntry(i, j);
  return h;
}

/**
 * In-place unnormalised Walsh–Hadamard transform of `v[offset .. offset + n)`, butterfly
 * stages h = 1, 2, 4, … in that order, each (a, b) → (a + b, a − b) rounded to f32 —
 * exactly the order and rounding of the WGSL kernel, so results match bit for bit.
 */
export function fwhtF32(v: Float32Array, offset: number, n: number): void {
  for (let h = 1; h < n; h *= 2) {
    for (let i = 0; i < n; i += 2 * h) {
      for (let j = i; j < i + h; j++) {
        const a = v[offset + j];
        const b = v[offset + j + h];
        v[offset + j] = a + b; // Float32Array stores round to f32
        v[offset + j + h] = a - b;
      }
    }
  }
}

/** In-place unnormalised Walsh–Hadamard transform in double precision (any order). */
export function fwhtF64(v: Float64Array, offset: number, n: number): void {
  for (let h = 1; h < n; h *= 2) {
    for (let i = 0; i < n; i += 2 * h) {
      for (let j = i; j < i + h; j++) {
        const a = v[offset + j];
        const b = v[offset + j + h];
        v[offset + j] = a + b;
        v[offset + j + h] = a - b;
      }
    }
  }
}

/**
 * The dense K×K matrix of a randomised block-diagonal Hadamard rotation
 * R = diag(signs) · blockdiag(H_b / √b, …) (for tests and small layers).
 */
export function blockHadamardDense(signs: Float32Array, block: number): Float64Array {
  const K = signs.length;
  if (K % block !== 0) throw new RangeError(`block ${block} does not divide ${K}`);
  const r = new Float64Array(K * K);
  const norm = 1 / Math.sqrt(block);
  for (let b0 = 0; b0 < K; b0 += block) {
    for (let i = 0; i < block; i++) {
      for (let j = 0; j < block; j++) {
        r[(b0 + i) * K + b0 + j] = signs[b0 + i] * hadamardEntry(i, j) * norm;
      }
    }
  }
  return r;
}

/**
 * Applies R = diag(signs)·blockdiag(H_b/√b) to the columns of a row-major matrix in
 * place, in double precision: each row r ← r·R (for weights W·R, offline).
 */
export function rotateRowsBlockHadamard(
  data: Float32Array,
  rows: number,
  cols: number,
  signs: Float32Array,
  block: number,
): void {
  if (signs.length !== cols) throw new RangeError(`signs has ${signs.length} values, not ${cols}`);
  if (cols % block !== 0) throw new RangeError(`block ${block} does not divide ${cols}`);
  const norm = 1 / Math.sqrt(block);
  const tmp = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let j = 0; j < cols; j++) tmp[j] = data[o + j] * signs[j];
    for (let b0 = 0; b0 < cols; b0 += block) fwhtF64(tmp, b0, block);
    for (let j = 0; j < cols; j++) data[o + j] = tmp[j] * norm;
  }
}
