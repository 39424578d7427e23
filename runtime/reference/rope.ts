/**
 * CPU references of FLUX's rotary position embedding (diffusers' FluxPosEmbed +
 * apply_rotary_emb with use_real, repeat_interleave_real, unbind dim −1) and of the fused
 * per-head RMSNorm + rotation the GPU op records.
 *
 * @module
 */

/**
 * FLUX's position ids for L text tokens followed by an h×w image grid: text ids are
 * zeros, image id (0, row, column) in raster order. Returns [(L + h·w), 3] flattened.
 */
export function fluxPositionIds(textTokens: number, h: number, w: number): Float32Array {
  const ids = new Float32Array((textTokens + h * w) * 3);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const i = (textTokens + r * w + c) * 3;
      ids[i + 1] = r;
      ids[i + 2] = c;
    }
  }
  return ids;
}

/**
 * The rotation table of ids [S, n] over `axesDims` (one axis per id column, each even,
 * summing to the head dim D): for axis a of dim d, frequency k < d/2 is
 * θ^(−2k/d) and the angle pos·freq, in float64 as diffusers (freqs_dtype float64), then
 * cos and sin rounded to f32. Returns [S, D/2, 2] flattened: (cos, sin) of pair j, pairs
 * of all axes concatenated in axis order.
 */
export function ropeFreqs(
  ids: ArrayLike<number>,
  axesDims: readonly number[],
  theta = 10000,
): Float32Array {
  const n = axesDims.length;
  if (ids.length % n !== 0) {
    throw new RangeError(`ropeFreqs: ${ids.length} ids do not split into rows of ${n}`);
  }
  for (const d of axesDims) {
    if (!Number.isInteger(d) || d < 0 || d % 2) {
      throw new RangeError(`ropeFreqs: axis dims must be even, got [${axesDims}]`);
    }
  }
  const S = ids.length / n;
  const half = axesDims.reduce((a, b) => a + b, 0) / 2;
  const out = new Float32Array(S * half * 2);
  for (let s = 0; s < S; s++) {
    let j = 0;
    for (let a = 0; a < n; a++) {
      const d = axesDims[a];
      const pos = Math.fround(ids[s * n + a]); // ids.float()
      for (let k = 0; k < d / 2; k++, j++) {
        const freq = 1 / Math.pow(theta, (2 * k) / d);
        const ang = pos * freq;
        out[(s * half + j) * 2] = Math.cos(ang);
        out[(s * half + j) * 2 + 1] = Math.sin(ang);
      }
    }
  }
  return out;
}

/** One input of {@linkcode ropeRef}: rows [B, T, W] read as heads from `column`. */
export interface RopeRefPart {
  /** Data [B, T, W] row-major. */
  data: Float32Array;
  /** Tokens T of this part. */
  tokens: number;
  /** Row width W. */
  width: number;
  /** First column of head 0; default 0. */
  column?: number;
  /** RMSNorm weight [D] (with normalize). */
  normWeight?: Float32Array;
}

/**
 * The parts concatenated along tokens, each head optionally RMS-normalised
 * (`x·rsqrt(mean(x²) + eps)·weight`) and then rotated pairwise:
 * out[2j] = x[2j]·cos_j − x[2j+1]·sin_j, out[2j+1] = x[2j+1]·cos_j + x[2j]·sin_j.
 * Returns [B, ΣT, H·D]; `freqs` is [ΣT, D/2, 2] (see {@linkcode ropeFreqs}).
 */
export function ropeRef(
  parts: readonly RopeRefPart[],
  freqs: Float32Array,
  o: { batch: number; heads: number; headDim: number; normalize?: boolean; eps?: number },
): Float32Array {
  const { batch: B, heads: H, headDim: D } = o;
  const S = parts.reduce((a, p) => a + p.tokens, 0);
  const half = D / 2;
  const eps = o.eps ?? 1e-6;
  const out = new Float32Array(B * S * H * D);
  const x = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (const p of parts) {
      for (let t = 0; t < p.tokens; t++, s++) {
        for (let h = 0; h < H; h++) {
          const base = (b * p.tokens + t) * p.width + (p.column ?? 0) + h * D;
          let ss = 0;
          for (let i = 0; i < D; i++) {
            x[i] = p.data[base + i];
            ss += x[i] * x[i];
          }
          if (o.normalize) {
            const r = 1 / Math.sqrt(ss / D + eps);
            for (let i = 0; i < D; i++) x[i] *= r * (p.normWeight ? p.normWeight[i] : 1);
          }
          const ob = ((b * S + s) * H + h) * D;
          for (let j = 0; j < half; j++) {
            const c = freqs[(s * half + j) * 2];
            const sn = freqs[(s * half + j) * 2 + 1];
            out[ob + 2 * j] = x[2 * j] * c - x[2 * j + 1] * sn;
            out[ob + 2 * j + 1] = x[2 * j + 1] * c + x[2 * j] * sn;
          }
        }
      }
    }
  }
  return out;
}
