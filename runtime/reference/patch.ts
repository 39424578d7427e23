/**
 * CPU references of the layout kernels: PatchEmbed's im2col, PixArt's unpatchify, and
 * concat/slice along an axis.
 *
 * @module
 */

/**
 * x [B, C, H, W] → [B·h·w, C·p·p] with h = ⌊H/p⌋, w = ⌊W/p⌋: rows in (b, h, w) order,
 * columns in (c, ph, pw) order (the flattened conv weight's).
 */
export function im2colRef(x: Float32Array, shape: readonly number[], p: number): Float32Array {
  const [B, C, H, W] = shape;
  const h = Math.floor(H / p);
  const w = Math.floor(W / p);
  const k = C * p * p;
  const out = new Float32Array(B * h * w * k);
  for (let b = 0; b < B; b++) {
    for (let hi = 0; hi < h; hi++) {
      for (let wi = 0; wi < w; wi++) {
        const row = (b * h + hi) * w + wi;
        for (let c = 0; c < C; c++) {
          for (let ph = 0; ph < p; ph++) {
            for (let pw = 0; pw < p; pw++) {
              out[row * k + (c * p + ph) * p + pw] =
                x[((b * C + c) * H + hi * p + ph) * W + wi * p + pw];
            }
          }
        }
      }
    }
  }
  return out;
}

/** A stride-p, kernel-p conv (no padding) of x [B, C, H, W] by weight [O, C, p, p] + bias, as [B, O, h, w]. */
export function patchConvRef(
  x: Float32Array,
  shape: readonly number[],
  weight: Float32Array,
  outChannels: number,
  p: number,
  bias?: Float32Array,
): Float32Array {
  const [B, C, H, W] = shape;
  const h = Math.floor(H / p);
  const w = Math.floor(W / p);
  const out = new Float32Array(B * outChannels * h * w);
  for (let b = 0; b < B; b++) {
    for (let o = 0; o < outChannels; o++) {
      for (let hi = 0; hi < h; hi++) {
        for (let wi = 0; wi < w; wi++) {
          let s = bias ? bias[o] : 0;
          for (let c = 0; c < C; c++) {
            for (let ph = 0; ph < p; ph++) {
              for (let pw = 0; pw < p; pw++) {
                s += weight[((o * C + c) * p + ph) * p + pw] *
                  x[((b * C + c) * H + hi * p + ph) * W + wi * p + pw];
              }
            }
          }
          out[((b * outChannels + o) * h + hi) * w + wi] = s;
        }
      }
    }
  }
  return out;
}

/**
 * PixArt's unpatchify: [B, h·w, p·p·C] → reshape (B, h, w, p, p, C) → einsum
 * "nhwpqc->nchpwq" → [B, C, h·p, w·p], written as the literal index permutation.
 */
export function unpatchifyRef(
  x: Float32Array,
  B: number,
  h: number,
  w: number,
  p: number,
  C: number,
): Float32Array {
  const out = new Float32Array(x.length);
  for (let n = 0; n < B; n++) {
    for (let hi = 0; hi < h; hi++) {
      for (let wi = 0; wi < w; wi++) {
        for (let pi = 0; pi < p; pi++) {
          for (let qi = 0; qi < p; qi++) {
            for (let c = 0; c < C; c++) {
              const s = ((((n * h + hi) * w + wi) * p + pi) * p + qi) * C + c;
              const d = ((n * C + c) * h * p + hi * p + pi) * w * p + wi * p + qi;
              out[d] = x[s];
            }
          }
        }
      }
    }
  }
  return out;
}

/** Concatenates row-major arrays of `shapes` along `axis`. */
export function concatRef(
  parts: readonly Float32Array[],
  shapes: readonly (readonly number[])[],
  axis: number,
): Float32Array {
  const outer = shapes[0].slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shapes.map((s) => s.slice(axis).reduce((a, b) => a * b, 1));
  const width = inner.reduce((a, b) => a + b, 0);
  const out = new Float32Array(outer * width);
  let off = 0;
  parts.forEach((x, i) => {
    for (let r = 0; r < outer; r++) {
      out.set(x.subarray(r * inner[i], (r + 1) * inner[i]), r * width + off);
    }
    off += inner[i];
  });
  return out;
}
