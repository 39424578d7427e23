/**
 * CPU references of FLUX's latent packing (pipeline_flux `_pack_latents` /
 * `_unpack_latents`): [B, C, H, W] ↔ [B, (H/2)·(W/2), 4·C], tokens in raster order of the
 * 2×2 cells, channels ordered (c, dy, dx).
 *
 * @module
 */

/** Packs (`pack`) or unpacks `x`: one walk over the packed order serves both directions. */
function repack(
  x: Float32Array,
  [B, C, H, W]: readonly number[],
  p: number,
  pack: boolean,
): Float32Array {
  const h = H / p;
  const w = W / p;
  const out = new Float32Array(x.length);
  let o = 0;
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < h; r++) {
      for (let q = 0; q < w; q++) {
        for (let c = 0; c < C; c++) {
          for (let dy = 0; dy < p; dy++) {
            for (let dx = 0; dx < p; dx++) {
              const s = ((b * C + c) * H + r * p + dy) * W + q * p + dx;
              if (pack) out[o++] = x[s];
              else out[s] = x[o++];
            }
          }
        }
      }
    }
  }
  return out;
}

/** `_pack_latents` (p = 2) or any p: [B, C, H, W] → [B, (H/p)·(W/p), C·p·p]. */
export function packLatentsRef(x: Float32Array, shape: readonly number[], p = 2): Float32Array {
  return repack(x, shape, p, true);
}

/** `_unpack_latents`: [B, (H/p)·(W/p), C·p·p] → [B, C, H, W]. */
export function unpackLatentsRef(x: Float32Array, shape: readonly number[], p = 2): Float32Array {
  return repack(x, shape, p, false);
}
