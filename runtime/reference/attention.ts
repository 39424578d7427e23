/**
 * CPU reference of scaled-dot-product attention (float64 math), with the same layouts,
 * strided operands and key-mask semantics as runtime/ops/attention.ts.
 *
 * @module
 */

/** A [B, T, W] host tensor read as heads of `headDim` starting at column `column`. */
export interface HostHeads {
  /** Row-major data of shape [batch, tokens, width]. */
  data: Float32Array;
  /** Batch size (1 broadcasts over the query batch). */
  batch: number;
  /** Tokens per batch. */
  tokens: number;
  /** Row width in elements. */
  width: number;
  /** First column of head 0 (default 0). */
  column?: number;
}

/** Options of {@linkcode attentionRef}. */
export interface AttentionRefOptions {
  /** Number of heads. */
  heads: number;
  /** Head dim. */
  headDim: number;
  /** Score scale; default 1/√headDim. */
  scale?: number;
  /** Key mask [maskBatch, Tk]: nonzero keeps, 0 masks. */
  mask?: Float32Array;
  /** Batch size of the mask (1 broadcasts); default the query batch. */
  maskBatch?: number;
  /** "bias": add -10000 to masked scores (diffusers); "drop": exclude them. */
  maskMode?: "bias" | "drop";
}

/**
 * softmax(scale·q·kᵀ + bias)·v per (batch, head); out [B, Tq, heads·headDim]. In "bias"
 * mode masked scores get −10000 added, literally, as diffusers does; in "drop" mode they
 * are excluded and a row whose keys are all dropped gives zeros.
 */
export function attentionRef(
  q: HostHeads,
  k: HostHeads,
  v: HostHeads,
  o: AttentionRefOptions,
): Float32Array {
  const { heads: H, headDim: D } = o;
  const B = q.batch;
  const Tq = q.tokens;
  const Tk = k.tokens;
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const drop = o.maskMode === "drop";
  const mb = o.maskBatch ?? B;
  const out = new Float32Array(B * Tq * H * D);
  const at = (t: HostHeads, b: number, i: number, h: number, d: number) =>
    t.data[((t.batch === 1 ? 0 : b) * t.tokens + i) * t.width + (t.column ?? 0) + h * D + d];
  const s = new Float64Array(Tk);
  const keep = new Uint8Array(Tk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < Tq; i++) {
        let max = -Infinity;
        for (let j = 0; j < Tk; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += at(q, b, i, h, d) * at(k, b, j, h, d);
          let sj = dot * scale;
          keep[j] = 1;
          if (o.mask && o.mask[(mb === 1 ? 0 : b) * Tk + j] === 0) {
            if (drop) keep[j] = 0;
            else sj += -10000;
          }
          s[j] = sj;
          if (keep[j] && sj > max) max = sj;
        }
        let sum = 0;
        for (let j = 0; j < Tk; j++) {
          s[j] = keep[j] ? Math.exp(s[j] - max) : 0;
          sum += s[j];
        }
        const base = (b * Tq + i) * H * D + h * D;
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < Tk; j++) if (s[j] !== 0) acc += s[j] * at(v, b, j, h, d);
          out[base + d] = sum > 0 ? acc / sum : 0;
        }
      }
    }
  }
  return out;
}
