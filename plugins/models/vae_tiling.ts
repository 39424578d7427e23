/**
 * diffusers' tiled VAE decoding (`vae.enable_tiling()`, AutoencoderKL.tiled_decode), so an
 * image whose decoder activations would not bind whole decodes in tiles: latent tiles of
 * sample_size / 2^(levels − 1) cells every 3/4 of a tile, each decoded alone; each decoded
 * tile blended with the (already blended) tile above over a quarter of a tile, then with the
 * one to its left, then cropped to 3/4 of a tile; the crops concatenated. The blends run on
 * the host in f32, as diffusers' run in the VAE's dtype. Like diffusers', the result differs
 * from the whole decode near tile seams.
 *
 * @module
 */
import type { VaeConfig } from "./vae_config.ts";
import { vaeLargestBytes, vaeScale } from "./vae_config.ts";

/** One decoded image [C, H, W] (planar, f32) and its size. */
export interface Planar {
  data: Float32Array;
  C: number;
  H: number;
  W: number;
}

/** The tiling of a VAE: latent tile, its stride, and the pixel blend and crop. */
export function vaeTiles(
  c: VaeConfig,
): { tile: number; stride: number; blend: number; keep: number } {
  const tile = Math.trunc(c.sampleSize / vaeScale(c));
  const blend = Math.trunc(c.sampleSize * 0.25);
  return { tile, stride: Math.trunc(tile * 0.75), blend, keep: c.sampleSize - blend };
}

/** True when diffusers would tile a decode of an h × w latent (larger than one tile). */
export function tiles(c: VaeConfig, h: number, w: number): boolean {
  const t = vaeTiles(c).tile;
  return h > t || w > t;
}

/**
 * Bytes of the widest activation a decode of an h × w latent binds: the whole image's, or with
 * `tiling` one tile's (vaeLargestBytes at the tile's size).
 */
export function vaeDecodeBytes(c: VaeConfig, h: number, w: number, tiling = false): number {
  const t = tiling ? vaeTiles(c).tile : Infinity;
  return vaeLargestBytes(c, Math.min(h, t), Math.min(w, t));
}

/** Rows [y0, y0 + n) and columns [x0, x0 + m) of a planar latent [C, h, w]. */
function crop(z: Planar, y0: number, n: number, x0: number, m: number): Planar {
  const out = new Float32Array(z.C * n * m);
  for (let c = 0; c < z.C; c++) {
    for (let y = 0; y < n; y++) {
      const src = (c * z.H + y0 + y) * z.W + x0;
      out.set(z.data.subarray(src, src + m), (c * n + y) * m);
    }
  }
  return { data: out, C: z.C, H: n, W: m };
}

const f = Math.fround;

/** b's first rows ← a's last rows · (1 − y/e) + b's · (y/e), in place (diffusers' blend_v). */
function blendV(a: Planar, b: Planar, extent: number): void {
  const e = Math.min(a.H, b.H, extent);
  for (let y = 0; y < e; y++) {
    const [wa, wb] = [f(1 - y / e), f(y / e)];
    for (let c = 0; c < b.C; c++) {
      for (let x = 0; x < b.W; x++) {
        const i = (c * b.H + y) * b.W + x;
        const ai = (c * a.H + a.H - e + y) * a.W + x;
        b.data[i] = f(f(a.data[ai] * wa) + f(b.data[i] * wb));
      }
    }
  }
}

/** b's first columns ← a's last columns · (1 − x/e) + b's · (x/e), in place (blend_h). */
function blendH(a: Planar, b: Planar, extent: number): void {
  const e = Math.min(a.W, b.W, extent);
  for (let x = 0; x < e; x++) {
    const [wa, wb] = [f(1 - x / e), f(x / e)];
    for (let c = 0; c < b.C; c++) {
      for (let y = 0; y < b.H; y++) {
        const i = (c * b.H + y) * b.W + x;
        const ai = (c * a.H + y) * a.W + a.W - e + x;
        b.data[i] = f(f(a.data[ai] * wa) + f(b.data[i] * wb));
      }
    }
  }
}

/**
 * Tiled decode of one latent [C, h, w] with `decode` (one tile → its image [3, th·s, tw·s]).
 * @throws {RangeError} when the tiles' crops do not add up to the image (a sample_size whose
 *   latent tile is not a multiple of 4: diffusers' own result would be misshapen).
 */
export async function tiledDecode(
  c: VaeConfig,
  z: Planar,
  decode: (tile: Planar) => Promise<Planar>,
): Promise<Planar> {
  const { tile, stride, blend, keep } = vaeTiles(c);
  if (stride < 1) throw new RangeError(`vae: sample_size ${c.sampleSize} gives no tile to decode`);
  const rows: Planar[][] = [];
  for (let i = 0; i < z.H; i += stride) {
    const row: Planar[] = [];
    for (let j = 0; j < z.W; j += stride) {
      row.push(await decode(crop(z, i, Math.min(tile, z.H - i), j, Math.min(tile, z.W - j))));
    }
    rows.push(row);
  }
  const s = vaeScale(c);
  const [H, W] = [z.H * s, z.W * s];
  const C = rows[0][0].C;
  const out = new Float32Array(C * H * W);
  let y0 = 0;
  for (let i = 0; i < rows.length; i++) {
    let x0 = 0;
    let height = 0;
    for (let j = 0; j < rows[i].length; j++) {
      const t = rows[i][j];
      if (i > 0) blendV(rows[i - 1][j], t, blend);
      if (j > 0) blendH(rows[i][j - 1], t, blend);
      const [n, m] = [Math.min(keep, t.H), Math.min(keep, t.W)];
      if (y0 + n > H || x0 + m > W) {
        throw new RangeError(
          `vae: tiles of sample_size ${c.sampleSize} do not add up to a ${H}×${W} image`,
        );
      }
      for (let ch = 0; ch < C; ch++) {
        for (let y = 0; y < n; y++) {
          const src = (ch * t.H + y) * t.W;
          out.set(t.data.subarray(src, src + m), (ch * H + y0 + y) * W + x0);
        }
      }
      x0 += m;
      height = n;
    }
    if (x0 !== W) {
      throw new RangeError(
        `vae: tiles of sample_size ${c.sampleSize} do not add up to ${W} columns`,
      );
    }
    y0 += height;
  }
  if (y0 !== H) {
    throw new RangeError(`vae: tiles of sample_size ${c.sampleSize} do not add up to ${H} rows`);
  }
  return { data: out, C, H, W };
}
