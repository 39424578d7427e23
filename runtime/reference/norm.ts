/**
 * CPU references of the normalisations (float64 math): LayerNorm with optional affine
 * and adaLN modulation, and grouped RMSNorm.
 *
 * @module
 */

/** The adaLN modulation of {@linkcode layerNormRef}, on host arrays. */
export interface HostModulation {
  /** Per-batch rows [B, S]. */
  emb: Float32Array;
  /** Row width S of `emb`. */
  embWidth: number;
  /** Chunk index of shift (columns shift·C of `emb`, or 0 when S = C; row of `table`). */
  shift: number;
  /** Chunk index of scale. */
  scale: number;
  /** Learned rows [R, C] added to the chunks. */
  table?: Float32Array;
}

/** Options of {@linkcode layerNormRef}. */
export interface LayerNormRefOptions {
  /** Default 1e-6. */
  eps?: number;
  /** Affine weight [C]. */
  weight?: Float32Array;
  /** Affine bias [C]. */
  bias?: Float32Array;
  /** y·(1 + scale) + shift per batch. */
  modulation?: HostModulation;
}

/** LayerNorm of the rows of x [M, C] (biased variance, as torch), then affine, then modulation. */
export function layerNormRef(
  x: Float32Array,
  c: number,
  o: LayerNormRefOptions = {},
): Float32Array {
  const rows = x.length / c;
  const eps = o.eps ?? 1e-6;
  const out = new Float32Array(x.length);
  const md = o.modulation;
  const batches = md ? md.emb.length / md.embWidth : 1;
  const perBatch = rows / batches;
  const off = (idx: number) => (md && md.embWidth === c ? 0 : idx * c);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < c; i++) mean += x[r * c + i];
    mean /= c;
    let v = 0;
    for (let i = 0; i < c; i++) v += (x[r * c + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / c + eps);
    const b = Math.floor(r / perBatch);
    for (let i = 0; i < c; i++) {
      let y = (x[r * c + i] - mean) * rstd;
      if (o.weight) y *= o.weight[i];
      if (o.bias) y += o.bias[i];
      if (md) {
        let sh = md.emb[b * md.embWidth + off(md.shift) + i];
        let sc = md.emb[b * md.embWidth + off(md.scale) + i];
        if (md.table) {
          sh += md.table[md.shift * c + i];
          sc += md.table[md.scale * c + i];
        }
        y = y * (1 + sc) + sh;
      }
      out[r * c + i] = y;
    }
  }
  return out;
}

/** Options of {@linkcode rmsNormRef}. */
export interface RmsNormRefOptions {
  /** Default 1e-6. */
  eps?: number;
  /** Weight [groupSize]. */
  weight?: Float32Array;
  /** Columns per group; default `width`. */
  groupSize?: number;
  /** First column normalised; default 0. */
  column?: number;
  /** Columns normalised; default rowWidth − column. */
  width?: number;
}

/**
 * RMSNorm of groups of columns of x [M, rowWidth]; returns [M, width] (the normalised
 * columns only).
 */
export function rmsNormRef(
  x: Float32Array,
  rowWidth: number,
  o: RmsNormRefOptions = {},
): Float32Array {
  const rows = x.length / rowWidth;
  const col = o.column ?? 0;
  const width = o.width ?? rowWidth - col;
  const g = o.groupSize ?? width;
  const eps = o.eps ?? 1e-6;
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    for (let g0 = 0; g0 < width; g0 += g) {
      let ss = 0;
      for (let i = 0; i < g; i++) ss += x[r * rowWidth + col + g0 + i] ** 2;
      const s = 1 / Math.sqrt(ss / g + eps);
      for (let i = 0; i < g; i++) {
        const y = x[r * rowWidth + col + g0 + i] * s;
        out[r * width + g0 + i] = o.weight ? y * o.weight[i] : y;
      }
    }
  }
  return out;
}
