/**
 * Model output to base64 PNGs: the final images and low-resolution step previews.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { encodePng, tensorToImage } from "../io/png.ts";

/** Base64 of a byte array. */
export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** The `i`-th image [C, H, W] of a batch [B, C, H, W] as a base64 PNG (values in [-1, 1]). */
export function imagePngBase64(
  batch: Float32Array,
  i: number,
  C: number,
  H: number,
  W: number,
): string {
  const plane = C * H * W;
  const img = tensorToImage(batch.subarray(i * plane, (i + 1) * plane), C, H, W);
  return base64(encodePng(img.data, img.width, img.height, img.channels));
}

/** The box-filter factor of a preview: about 32 pixels on the short side, at least 1. */
export function previewFactor(H: number, W: number): number {
  return Math.max(1, Math.floor(Math.min(H, W) / 32));
}

/** Box-averages planar [C, H, W] by `f` (dropping rows/columns that do not fill a box). */
export function downsample(
  chw: Float32Array,
  C: number,
  H: number,
  W: number,
  f: number,
): { data: Float32Array; H: number; W: number } {
  if (f === 1) return { data: chw, H, W };
  const h = Math.floor(H / f), w = Math.floor(W / f);
  const out = new Float32Array(C * h * w);
  const inv = 1 / (f * f);
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let s = 0;
        for (let dy = 0; dy < f; dy++) {
          const row = c * H * W + (y * f + dy) * W + x * f;
          for (let dx = 0; dx < f; dx++) s += chw[row + dx];
        }
        out[c * h * w + y * w + x] = s * inv;
      }
    }
  }
  return { data: out, H: h, W: w };
}

/** A low-resolution preview PNG (base64) of image `i` of intermediate latents. */
export function previewPngBase64(
  batch: Float32Array,
  i: number,
  C: number,
  H: number,
  W: number,
): { b64: string; width: number; height: number } {
  const plane = C * H * W;
  const d = downsample(batch.subarray(i * plane, (i + 1) * plane), C, H, W, previewFactor(H, W));
  const img = tensorToImage(d.data, C, d.H, d.W);
  return {
    b64: base64(encodePng(img.data, img.width, img.height, img.channels)),
    width: d.W,
    height: d.H,
  };
}

/** The steps (1-based, < total) at which `k` previews are taken, evenly spread. */
export function previewSteps(k: number, total: number): number[] {
  const n = Math.min(k, total - 1);
  const out = new Set<number>();
  for (let j = 0; j < n; j++) out.add(Math.max(1, Math.floor(((j + 1) * total) / (n + 1))));
  return [...out];
}
