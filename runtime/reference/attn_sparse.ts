/**
 * CPU references of the PAROAttention kernels (runtime/ops/attn_sparse.ts): the K mean,
 * the quantize-to-blocks pass (reorder by a per-head permutation, per-block symmetric
 * INT8/INT4 codes), block-sparse attention on those codes (the kernel's algorithm: online
 * softmax over kept key blocks in ascending order, P quantized per block), block-sparse
 * attention in float, and the calibration's block statistics of one attention map.
 *
 * GPU layouts these mirror (B batch, H heads, D head dim, nb blocks of 64 positions,
 * DP = D rounded up to a multiple of 16):
 * - Q/K codes: u32 [B, H, nb·64, DP/4]; byte i of word w is channel 4w + i (int8).
 * - V codes transposed per block: u32 [B, H, nb, D, 16]; byte i of word w of channel d is
 *   position 4w + i of the block.
 * - scales: f32 [3 (q, k, v), B, H, nb, 2] = (scale, inv) with scale = absmax / qmax and
 *   inv = qmax / absmax (0 for an all-zero block).
 *
 * @module
 */
import type { HostHeads } from "./attention.ts";
import { BLOCK, blocksOf, maskHas, maskWords, NEAR_ZERO } from "../quant/paro_plan.ts";

/** D rounded up to a multiple of 16 (the code rows' padded width). */
export function paddedHeadDim(d: number): number {
  return Math.ceil(d / 16) * 16;
}

/** Largest code of a bit width: 127 (INT8) or 7 (INT4, symmetric). */
export function qmaxOf(bits: number): number {
  if (bits === 8) return 127;
  if (bits === 4) return 7;
  throw new RangeError(`bits must be 8 or 4, got ${bits}`);
}

/** Round half to even (WGSL's round). */
export function roundEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const f = Math.fround;

function at(x: HostHeads, b: number, t: number, h: number, D: number, d: number): number {
  const bb = x.batch === 1 ? 0 : b;
  return x.data[(bb * x.tokens + t) * x.width + (x.column ?? 0) + h * D + d];
}

/** Mean of K over tokens per (batch, head, channel): [B, H, D] (float64 sum, rounded to f32). */
export function kMeanRef(k: HostHeads, heads: number, headDim: number): Float32Array {
  const out = new Float32Array(k.batch * heads * headDim);
  for (let b = 0; b < k.batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let d = 0; d < headDim; d++) {
        let s = 0;
        for (let t = 0; t < k.tokens; t++) s += at(k, b, t, h, headDim, d);
        out[(b * heads + h) * headDim + d] = s / k.tokens;
      }
    }
  }
  return out;
}

/** Codes and scales of one tensor quantized to blocks. */
export interface BlockCodes {
  /** int8 codes [B, H, nb·64, DP] in reordered position order (zero-padded). */
  codes: Int8Array;
  /** absmax / qmax per block [B, H, nb]. */
  scale: Float32Array;
  /** qmax / absmax per block [B, H, nb] (0 for an all-zero block). */
  inv: Float32Array;
}

/** Options of {@linkcode quantizeBlocksRef}. */
export interface QuantizeBlocksRefOptions {
  /** Heads H and head dim D. */
  heads: number;
  headDim: number;
  /** 8 or 4. */
  bits: number;
  /** Subtracted per (batch, head, channel) before quantizing (K's mean) [B, H, D]. */
  mean?: Float32Array;
  /**
   * Use these inv values [B, H, nb] instead of computing them (the GPU's, read back, so
   * the codes can be compared bit for bit: WGSL's division need not be correctly rounded).
   */
  inv?: Float32Array;
}

/**
 * Reorders x [B, T, ·] per head by `perm` [H, T] and quantizes every block of 64
 * positions × D channels symmetrically: code = clamp(round((x − mean)·inv), ±qmax).
 */
export function quantizeBlocksRef(
  x: HostHeads,
  perm: Uint32Array,
  o: QuantizeBlocksRefOptions,
): BlockCodes {
  const { heads: H, headDim: D } = o;
  const B = x.batch;
  const T = x.tokens;
  const nb = blocksOf(T);
  const DP = paddedHeadDim(D);
  const qmax = qmaxOf(o.bits);
  const codes = new Int8Array(B * H * nb * BLOCK * DP);
  const scale = new Float32Array(B * H * nb);
  const inv = new Float32Array(B * H * nb);
  const vals = new Float32Array(BLOCK * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let blk = 0; blk < nb; blk++) {
        let amax = 0;
        vals.fill(0);
        for (let r = 0; r < BLOCK; r++) {
          const pos = blk * BLOCK + r;
          if (pos >= T) break;
          const tok = perm[h * T + pos];
          for (let d = 0; d < D; d++) {
            const m = o.mean ? o.mean[(b * H + h) * D + d] : 0;
            const v = f(at(x, b, tok, h, D, d) - m);
            vals[r * D + d] = v;
            amax = Math.max(amax, Math.abs(v));
          }
        }
        const bi = (b * H + h) * nb + blk;
        scale[bi] = f(amax / qmax);
        inv[bi] = o.inv ? o.inv[bi] : amax > 0 ? f(qmax / amax) : 0;
        for (let r = 0; r < BLOCK; r++) {
          for (let d = 0; d < D; d++) {
            const c = roundEven(f(vals[r * D + d] * inv[bi]));
            codes[((b * H + h) * nb * BLOCK + blk * BLOCK + r) * DP + d] = Math.max(
              -qmax,
              Math.min(qmax, c),
            );
          }
        }
      }
    }
  }
  return { codes, scale, inv };
}

/** Options of the sparse attention references. */
export interface SparseRefOptions {
  /** Heads H and head dim D. */
  heads: number;
  headDim: number;
  /** Score scale; default 1/√D. */
  scale?: number;
  /** Mask bitsets [H, G, nb, mw] and the group used. */
  masks: Uint32Array;
  groups: number;
  group: number;
  /** Only these raster query tokens (default all); other rows stay 0. */
  rows?: readonly number[];
}

function maskRow(o: SparseRefOptions, nb: number, h: number): Uint32Array {
  const n = nb * maskWords(nb);
  const off = (h * o.groups + o.group) * n;
  return o.masks.subarray(off, off + n);
}

function rowSet(T: number, rows?: readonly number[]): Uint8Array {
  const s = new Uint8Array(T);
  if (rows) { for (const r of rows) s[r] = 1; }
  else s.fill(1);
  return s;
}

/**
 * Block-sparse attention in float64: per head, query position i (token perm[i]) attends
 * to the keys of the kept blocks of its row (positions, mapped to tokens by perm), exact
 * softmax. Output [B, T, H·D] in raster order.
 */
export function attnSparseFloatRef(
  q: HostHeads,
  k: HostHeads,
  v: HostHeads,
  perm: Uint32Array,
  o: SparseRefOptions,
): Float32Array {
  const { heads: H, headDim: D } = o;
  const B = q.batch;
  const T = q.tokens;
  const nb = blocksOf(T);
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const want = rowSet(T, o.rows);
  const out = new Float32Array(B * T * H * D);
  const s = new Float64Array(T);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const mask = maskRow(o, nb, h);
      const p = perm.subarray(h * T, (h + 1) * T);
      for (let i = 0; i < T; i++) {
        const tq = p[i];
        if (!want[tq]) continue;
        const qb = Math.floor(i / BLOCK);
        let m = -Infinity;
        for (let j = 0; j < T; j++) {
          s[j] = -Infinity;
          if (!maskHas(mask, nb, qb, Math.floor(j / BLOCK))) continue;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += at(q, b, tq, h, D, d) * at(k, b, p[j], h, D, d);
          s[j] = dot * scale;
          m = Math.max(m, s[j]);
        }
        let l = 0;
        acc.fill(0);
        for (let j = 0; j < T; j++) {
          if (s[j] === -Infinity) continue;
          const e = Math.exp(s[j] - m);
          l += e;
          for (let d = 0; d < D; d++) acc[d] += e * at(v, b, p[j], h, D, d);
        }
        for (let d = 0; d < D; d++) out[(b * T + tq) * H * D + h * D + d] = acc[d] / l;
      }
    }
  }
  return out;
}

/** Quantized operands of {@linkcode attnSparseQuantRef}. */
export interface QuantOperands {
  q: BlockCodes;
  k: BlockCodes;
  v: BlockCodes;
}

/** Options of {@linkcode attnSparseQuantRef}. */
export interface SparseQuantRefOptions extends SparseRefOptions {
  /** Batch and tokens. */
  batch: number;
  tokens: number;
  /** Q/K/V bits (8 or 4); P is INT8 for 8 and INT4 (per-block scale) for 4. */
  bits: number;
  /** INT8 P scale: fixed 1/127 (default) or per block. */
  pScale?: "fixed" | "block";
}

/**
 * The quantized kernel's algorithm on the host: for each query position, kept key blocks
 * in ascending order; integer q·k dot products times sq·sk·scale·log2e; online softmax
 * (base 2) with m, l in float; P codes round(p·127) against the running max (INT8 fixed)
 * or round(2^(s − block max)·qmax) with scale 2^(block max − m)/qmax (per block); l sums
 * the dequantized P; o += P codes · V codes · sp·sv. Output [B, T, H·D] raster order.
 */
export function attnSparseQuantRef(
  ops: QuantOperands,
  perm: Uint32Array,
  o: SparseQuantRefOptions,
): Float32Array {
  const { heads: H, headDim: D, batch: B, tokens: T } = o;
  const nb = blocksOf(T);
  const DP = paddedHeadDim(D);
  const sl2 = (o.scale ?? 1 / Math.sqrt(D)) * Math.LOG2E;
  const block = o.bits === 4 || o.pScale === "block";
  const qp = o.bits === 4 ? 7 : 127;
  const want = rowSet(T, o.rows);
  const out = new Float32Array(B * T * H * D);
  const s = new Float64Array(BLOCK);
  const pq = new Int32Array(BLOCK);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const bh = b * H + h;
      const mask = maskRow(o, nb, h);
      const code = (c: BlockCodes, pos: number, d: number) =>
        c.codes[(bh * nb * BLOCK + pos) * DP + d];
      for (let i = 0; i < T; i++) {
        const tq = perm[h * T + i];
        if (!want[tq]) continue;
        const qb = Math.floor(i / BLOCK);
        let m = -Infinity;
        let l = 0;
        acc.fill(0);
        for (let kb = 0; kb < nb; kb++) {
          if (!maskHas(mask, nb, qb, kb)) continue;
          const fac = ops.q.scale[bh * nb + qb] * ops.k.scale[bh * nb + kb] * sl2;
          let bmax = -Infinity;
          for (let j = 0; j < BLOCK; j++) {
            const pos = kb * BLOCK + j;
            if (pos >= T) {
              s[j] = -Infinity;
              continue;
            }
            let dot = 0;
            for (let d = 0; d < D; d++) dot += code(ops.q, i, d) * code(ops.k, pos, d);
            s[j] = dot * fac;
            bmax = Math.max(bmax, s[j]);
          }
          const mn = Math.max(m, bmax);
          const alpha = m === -Infinity ? 0 : 2 ** (m - mn);
          let sp: number;
          if (block) {
            for (let j = 0; j < BLOCK; j++) pq[j] = roundEven(2 ** (s[j] - bmax) * qp);
            sp = 2 ** (bmax - mn) / qp;
          } else {
            for (let j = 0; j < BLOCK; j++) pq[j] = roundEven(2 ** (s[j] - mn) * 127);
            sp = 1 / 127;
          }
          let psum = 0;
          for (let j = 0; j < BLOCK; j++) psum += pq[j];
          l = l * alpha + sp * psum;
          const sv = ops.v.scale[bh * nb + kb];
          for (let d = 0; d < D; d++) {
            let dot = 0;
            for (let j = 0; j < BLOCK; j++) {
              if (pq[j]) dot += pq[j] * code(ops.v, kb * BLOCK + j, d);
            }
            acc[d] = acc[d] * alpha + sp * sv * dot;
          }
          m = mn;
        }
        for (let d = 0; d < D; d++) {
          out[(b * T + tq) * H * D + h * D + d] = l > 0 ? acc[d] / l : 0;
        }
      }
    }
  }
  return out;
}

/**
 * Block statistics of one post-softmax map [T, T] (raster order) under order `perm`:
 * per block (qb, kb) of positions, the mass Σp, whether ≥ 90% of its entries are below
 * `threshold`, and its incoherence max/mean (1 for an all-zero block).
 */
export function blockStatsRef(
  map: Float32Array,
  T: number,
  perm: ArrayLike<number>,
  threshold = NEAR_ZERO,
): { mass: Float64Array; sparse: Float64Array; incoherence: Float64Array } {
  const nb = blocksOf(T);
  const mass = new Float64Array(nb * nb);
  const sparse = new Float64Array(nb * nb);
  const incoherence = new Float64Array(nb * nb);
  for (let qb = 0; qb < nb; qb++) {
    for (let kb = 0; kb < nb; kb++) {
      let sum = 0;
      let max = 0;
      let small = 0;
      let n = 0;
      for (let r = qb * BLOCK; r < Math.min(T, (qb + 1) * BLOCK); r++) {
        for (let c = kb * BLOCK; c < Math.min(T, (kb + 1) * BLOCK); c++) {
          const p = map[perm[r] * T + perm[c]];
          sum += p;
          max = Math.max(max, p);
          if (p < threshold) small++;
          n++;
        }
      }
      const i = qb * nb + kb;
      mass[i] = sum;
      sparse[i] = small >= 0.9 * n ? 1 : 0;
      incoherence[i] = sum > 0 ? max / (sum / n) : 1;
    }
  }
  return { mass, sparse, incoherence };
}

/** Softmax(scale·q·kᵀ) of one (batch, head) as a [T, T] map in raster order (float64 math). */
export function attentionMapRef(
  q: HostHeads,
  k: HostHeads,
  b: number,
  h: number,
  headDim: number,
  scale = 1 / Math.sqrt(headDim),
): Float32Array {
  const T = q.tokens;
  const map = new Float32Array(T * T);
  const row = new Float64Array(T);
  for (let i = 0; i < T; i++) {
    let m = -Infinity;
    for (let j = 0; j < T; j++) {
      let dot = 0;
      for (let d = 0; d < headDim; d++) {
        dot += at(q, b, i, h, headDim, d) * at(k, b, j, h, headDim, d);
      }
      row[j] = dot * scale;
      m = Math.max(m, row[j]);
    }
    let l = 0;
    for (let j = 0; j < T; j++) l += row[j] = Math.exp(row[j] - m);
    for (let j = 0; j < T; j++) map[i * T + j] = row[j] / l;
  }
  return map;
}
