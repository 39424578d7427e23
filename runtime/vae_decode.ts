/**
 * A pipeline's latents to images through its VAE decoder (Pipeline.decode): one image at a
 * time, whole or — with `tiling`, as diffusers' `vae.enable_tiling()` — in blended tiles
 * (plugins/models/vae_tiling.ts); and the check, before sampling, that a size decodes on
 * the runtime (Pipeline.vaeProblem).
 *
 * @module
 */
import type { VaeDecoder } from "../plugins/models/vae.ts";
import { type Planar, tiledDecode, tiles, vaeDecodeBytes } from "../plugins/models/vae_tiling.ts";
import type { Runtime } from "./gpu/device.ts";
import { Recorder } from "./gpu/kernel.ts";
import { readTensor, type Tensor, uploadTensor } from "./gpu/tensor.ts";

/** Options of {@linkcode decodeLatents}. */
export interface DecodeOptions {
  /** Decode in tiles where the latent is larger than one (diffusers' enable_tiling). */
  tiling?: boolean;
}

/** One latent [C, h, w] → its image [3, H, W] on the GPU. */
async function decodeOne(rt: Runtime, vae: VaeDecoder, z: Planar): Promise<Planar> {
  const zt = uploadTensor(rt, z.data, [1, z.C, z.H, z.W]);
  const rec = new Recorder(rt, "vae decode");
  let y: Tensor;
  try {
    y = vae.decode(rec, zt);
  } catch (e) {
    rec.discard();
    zt.release();
    throw e;
  }
  try {
    await rec.submit();
    const data = await readTensor(rt, y);
    return { data, C: y.shape[1], H: y.shape[2], W: y.shape[3] };
  } finally {
    y.release();
    zt.release();
  }
}

/** Images [B, 3, H, W] in [−1, 1] of latents [B, C, h, w] (model space: scaled inside). */
export async function decodeLatents(
  rt: Runtime,
  vae: VaeDecoder,
  latents: Float32Array,
  shape: readonly [number, number, number, number],
  o: DecodeOptions = {},
): Promise<{ images: Float32Array; shape: [number, number, number, number] }> {
  const [B, C, h, w] = shape;
  const [H, W] = [h * vae.scale, w * vae.scale];
  const oc = vae.config.outChannels;
  const images = new Float32Array(B * oc * H * W);
  for (let b = 0; b < B; b++) {
    const z = { data: latents.subarray(b * C * h * w, (b + 1) * C * h * w), C, H: h, W: w };
    const img = o.tiling && tiles(vae.config, h, w)
      ? await tiledDecode(vae.config, z, (t) => decodeOne(rt, vae, t))
      : await decodeOne(rt, vae, z);
    images.set(img.data, b * oc * H * W);
  }
  return { images, shape: [B, oc, H, W] };
}

/**
 * Why `vae` cannot decode an h × w latent on `rt` — its widest activation (of one tile, when
 * tiling) over the binding limit — or undefined when it can.
 */
export function vaeProblemOf(
  rt: Runtime,
  vae: VaeDecoder,
  h: number,
  w: number,
  o: DecodeOptions = {},
): string | undefined {
  const need = vaeDecodeBytes(vae.config, h, w, o.tiling);
  const limit = rt.bindingLimit;
  if (need <= limit) return undefined;
  const size = (b: number) =>
    b < 2 ** 20 ? `${(b / 1024).toFixed(0)} KiB` : `${(b / 2 ** 20).toFixed(0)} MiB`;
  const what = o.tiling ? "its tiles need" : "needs";
  return `a ${h * vae.scale}×${w * vae.scale} image ${what} a ${size(need)} tensor in the VAE ` +
    `decoder, over this adapter's binding limit of ${size(limit)}; ask for a smaller size` +
    (o.tiling ? "" : " or decode in tiles");
}
