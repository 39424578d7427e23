/**
 * CPU references of the embeddings, in float64 math with f32 rounding exactly where
 * torch rounds (diffusers' get_timestep_embedding runs in f32; get_2d_sincos_pos_embed
 * builds f32 grid positions and takes sin/cos in f64), and of the row gather.
 *
 * @module
 */

/** Settings of diffusers' get_timestep_embedding. */
export interface TimestepEmbeddingSettings {
  /** Put cos before sin (PixArt's Timesteps: true). Default false, as diffusers. */
  flipSinToCos?: boolean;
  /** Frequencies are exp(−ln(maxPeriod)·k / (half − shift)) (PixArt: 0). Default 1. */
  downscaleFreqShift?: number;
  /** Multiplies the arguments. Default 1. */
  scale?: number;
  /** Default 10000. */
  maxPeriod?: number;
}

const f = Math.fround;

/**
 * get_timestep_embedding(timesteps, dim, …) → [n, dim], emulating torch's f32 steps:
 * exponent = f32(−ln P)·k, / f32(half − shift), exp, ·t, ·scale, then sin/cos of the
 * f32 argument (evaluated in f64 and rounded). Odd dims get a zero last column.
 */
export function timestepEmbeddingRef(
  timesteps: ArrayLike<number>,
  dim: number,
  s: TimestepEmbeddingSettings = {},
): Float32Array {
  const half = Math.floor(dim / 2);
  const shift = s.downscaleFreqShift ?? 1;
  const scale = f(s.scale ?? 1);
  const negLog = f(-Math.log(s.maxPeriod ?? 10000));
  const denom = f(half - shift);
  const out = new Float32Array(timesteps.length * dim);
  for (let b = 0; b < timesteps.length; b++) {
    const t = f(timesteps[b]);
    for (let k = 0; k < half; k++) {
      const freq = f(Math.exp(f(f(negLog * k) / denom)));
      const arg = f(scale * f(t * freq));
      const sin = Math.sin(arg);
      const cos = Math.cos(arg);
      out[b * dim + k] = s.flipSinToCos ? cos : sin;
      out[b * dim + half + k] = s.flipSinToCos ? sin : cos;
    }
  }
  return out;
}

/** Settings of get_2d_sincos_pos_embed as PatchEmbed calls it. */
export interface PosEmbed2dSettings {
  /** Embedding dim E, a multiple of 4. */
  embedDim: number;
  /** Grid height in patches. */
  gridH: number;
  /** Grid width in patches. */
  gridW: number;
  /** PatchEmbed's base_size (height // patch_size at construction). */
  baseSize: number;
  /** PatchEmbed's interpolation_scale. */
  interpolationScale: number;
}

/**
 * get_2d_sincos_pos_embed(E, (gridH, gridW), base_size, interpolation_scale) → [gridH·gridW,
 * E] for tokens in row-major (h, w) order: columns [0, E/2) are [sin | cos] of the w
 * position (diffusers' grid[0] comes from meshgrid(grid_w, grid_h)), [E/2, E) of the h
 * position; positions are f32 `i / (size / base_size) / interpolation_scale`.
 */
export function posEmbed2dRef(s: PosEmbed2dSettings): Float32Array {
  const { embedDim: E, gridH: H, gridW: W } = s;
  const q = E / 4;
  const interp = f(s.interpolationScale);
  const hStep = f(H / s.baseSize);
  const wStep = f(W / s.baseSize);
  const omega = Array.from({ length: q }, (_, k) => 1 / 10000 ** (k / q));
  const out = new Float32Array(H * W * E);
  for (let i = 0; i < H; i++) {
    const ph = f(f(i / hStep) / interp);
    for (let j = 0; j < W; j++) {
      const pw = f(f(j / wStep) / interp);
      const o = (i * W + j) * E;
      for (let k = 0; k < q; k++) {
        out[o + k] = Math.sin(pw * omega[k]);
        out[o + q + k] = Math.cos(pw * omega[k]);
        out[o + 2 * q + k] = Math.sin(ph * omega[k]);
        out[o + 3 * q + k] = Math.cos(ph * omega[k]);
      }
    }
  }
  return out;
}

/** Rows `ids` of table [rows, width]; ids past the table give zero rows. */
export function gatherRowsRef(
  table: Float32Array,
  width: number,
  ids: ArrayLike<number>,
): Float32Array {
  const rows = table.length / width;
  const out = new Float32Array(ids.length * width);
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < rows) out.set(table.subarray(ids[i] * width, (ids[i] + 1) * width), i * width);
  }
  return out;
}
