/**
 * CPU references of FLUX's latent packing (pipeline_flux `_pack_latents` /
 * `_unpack_latents`): [B, C, H, W] ↔ [B, (H/2)·(W/2), 4·C], tokens in raster order of the
 * 2×2 cells, channels ordered (c, dy, dx).
 *
 * @module
 */

/** For each packed element in order, the index of the [B, C, H, W] element it holds. */
function packedSources([B, C, H, W]: readonly number[], p: number): Uint32Array {
  const h = H / p;
  const w = W / p;
  const src = new Uint32Array(B * C * H * W);
  let o = 0;
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < h; r++) {
      for (let q = 0; q < w; q++) {
        for (let c = 0; c < C; c++) {
          for (let dy = 0; dy < p; dy++) {
            for (let dx = 0; dx < p; dx++) {
              src[o++] = ((b * C + c) * H + r * p + dy) * W + q * p + dx;
            }
          }
        }
      }
    }
  }
  return src;
}

/** `_pack_latents` (p = 2) or any p: [B, C, H, W] → [B, (H/p)·(W/p), C·p·p]. */
export function packLatentsRef(
  x: Float32Array,
  shape: readonly number[],
  p = 2,
): Float32Array {
  const src = packedSources(shape, p);
  const out = new Float32Array(x.length);
  for (let i = 0; i < src.length; i++) out[i] = x[src[i]];
  return out;
}

/** `_unpack_latents`: [B, (H/p)·(W/p), C·p·p] → [B, C, H, W]. */
export function unpackLatentsRef(
  x: Float32Array,
  shape: readonly number[],
  p = 2,
): Float32Array {
  const src = packedSources(shape, p);
  const out = new Float32Array(x.length);
  for (let i = 0; i < src.length; i++) out[src[i]] = x[i];
  return out;
}
