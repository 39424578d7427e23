/**
 * CPU reference of the text encoders' attention (runtime/ops/attention_text.ts), float64 math.
 *
 * @module
 */

/** Options of {@linkcode textAttentionRef}. */
export interface TextAttentionRefOptions {
  /** Heads H. */
  heads: number;
  /** Score scale. */
  scale: number;
  /** Key mask [B, Tk]: 0 drops a key. */
  mask?: Float32Array;
  /** Drop keys after the query. */
  causal?: boolean;
  /** T5's bias: table [buckets, H] and the bucket of j − i at index j − i + Tq − 1. */
  relativeBias?: { table: Float32Array; buckets: ArrayLike<number> };
}

/**
 * softmax(scale·q·kᵀ + bias)·v per (batch, head) over q [B, Tq, H·D], k and v [B, Tk, H·D]
 * (row-major) → [B, Tq, H·D]; dropped keys get probability 0, a row without keys zeros.
 */
export function textAttentionRef(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  shape: { B: number; Tq: number; Tk: number },
  o: TextAttentionRefOptions,
): Float32Array {
  const { B, Tq, Tk } = shape;
  const H = o.heads;
  const W = q.length / (B * Tq);
  const D = W / H;
  const out = new Float32Array(B * Tq * W);
  const s = new Float64Array(Tk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < Tq; i++) {
        let m = -Infinity;
        for (let j = 0; j < Tk; j++) {
          const dropped = (o.mask && o.mask[b * Tk + j] === 0) || (o.causal && j > i);
          if (dropped) {
            s[j] = -Infinity;
            continue;
          }
          let acc = 0;
          for (let d = 0; d < D; d++) {
            acc += q[(b * Tq + i) * W + h * D + d] * k[(b * Tk + j) * W + h * D + d];
          }
          acc *= o.scale;
          const rb = o.relativeBias;
          if (rb) acc += rb.table[rb.buckets[j - i + Tq - 1]! * H + h]!;
          s[j] = acc;
          m = Math.max(m, acc);
        }
        if (m === -Infinity) continue; // no key left: zeros
        let sum = 0;
        for (let j = 0; j < Tk; j++) {
          s[j] = Math.exp(s[j]! - m);
          sum += s[j]!;
        }
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < Tk; j++) acc += s[j]! * v[(b * Tk + j) * W + h * D + d]!;
          out[(b * Tq + i) * W + h * D + d] = acc / sum;
        }
      }
    }
  }
  return out;
}
