/**
 * CPU references of the VAE decoder's kernels (runtime/ops/conv.ts, group_norm.ts), on
 * channels-last images: a sample is [H, W, C] row-major, a batch [B, H, W, C].
 *
 * @module
 */

/** An image batch's shape, channels last. */
export interface ImageShape {
  /** Samples. */
  B: number;
  /** Height. */
  H: number;
  /** Width. */
  W: number;
  /** Channels. */
  C: number;
}

/**
 * A 3×3 convolution, stride 1, zero padding 1, of x [B, H, W, C] (first upsampled 2× by
 * nearest neighbour when `upsample`, as diffusers' Upsample2D) with w [N, 3, 3, C]
 * (torch's [N, C, 3, 3] reordered by {@linkcode conv3x3WeightNhwc}) and bias [N]:
 * [B, H', W', N]. Sums in f64 (a reference, not a rounding model).
 */
export function conv3x3Ref(
  x: Float32Array,
  s: ImageShape,
  w: Float32Array,
  bias: Float32Array | undefined,
  N: number,
  upsample = false,
): Float32Array {
  const f = upsample ? 2 : 1;
  const [Ho, Wo] = [s.H * f, s.W * f];
  const out = new Float32Array(s.B * Ho * Wo * N);
  for (let b = 0; b < s.B; b++) {
    for (let y = 0; y < Ho; y++) {
      for (let xo = 0; xo < Wo; xo++) {
        for (let n = 0; n < N; n++) {
          let acc = bias ? bias[n] : 0;
          for (let ky = 0; ky < 3; ky++) {
            const yy = y + ky - 1;
            if (yy < 0 || yy >= Ho) continue;
            for (let kx = 0; kx < 3; kx++) {
              const xx = xo + kx - 1;
              if (xx < 0 || xx >= Wo) continue;
              const src = ((b * s.H + Math.floor(yy / f)) * s.W + Math.floor(xx / f)) * s.C;
              const wk = ((n * 3 + ky) * 3 + kx) * s.C;
              for (let c = 0; c < s.C; c++) acc += x[src + c] * w[wk + c];
            }
          }
          out[((b * Ho + y) * Wo + xo) * N + n] = acc;
        }
      }
    }
  }
  return out;
}

/** torch's conv weight [N, C, 3, 3] → [N, 3, 3, C] (channels last, as the kernels read it). */
export function conv3x3WeightNhwc(w: Float32Array, N: number, C: number): Float32Array {
  const out = new Float32Array(N * 9 * C);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      for (let k = 0; k < 9; k++) out[(n * 9 + k) * C + c] = w[(n * C + c) * 9 + k];
    }
  }
  return out;
}

/**
 * torch.nn.GroupNorm(G, C, eps) of x [B, H, W, C] channels last: each sample's G groups of
 * C/G channels over all positions normalised by their mean and (biased) variance, then
 * γ·x̂ + β per channel; SiLU after it when `silu`.
 */
export function groupNormRef(
  x: Float32Array,
  s: ImageShape,
  groups: number,
  gamma: Float32Array,
  beta: Float32Array,
  eps: number,
  silu = false,
): Float32Array {
  const out = new Float32Array(x.length);
  const cg = s.C / groups;
  const P = s.H * s.W;
  for (let b = 0; b < s.B; b++) {
    for (let g = 0; g < groups; g++) {
      let sum = 0;
      for (let p = 0; p < P; p++) {
        for (let c = g * cg; c < (g + 1) * cg; c++) sum += x[(b * P + p) * s.C + c];
      }
      const mean = sum / (P * cg);
      let sq = 0;
      for (let p = 0; p < P; p++) {
        for (let c = g * cg; c < (g + 1) * cg; c++) sq += (x[(b * P + p) * s.C + c] - mean) ** 2;
      }
      const inv = 1 / Math.sqrt(sq / (P * cg) + eps);
      for (let p = 0; p < P; p++) {
        for (let c = g * cg; c < (g + 1) * cg; c++) {
          const i = (b * P + p) * s.C + c;
          const v = (x[i] - mean) * inv * gamma[c] + beta[c];
          out[i] = silu ? v / (1 + Math.exp(-v)) : v;
        }
      }
    }
  }
  return out;
}

/** [B, R, C] → [B, C, R] (channels first ↔ channels last, R = H·W). */
export function transposeRef(x: Float32Array, B: number, R: number, C: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < R; r++) {
      for (let c = 0; c < C; c++) out[(b * C + c) * R + r] = x[(b * R + r) * C + c];
    }
  }
  return out;
}
