/**
 * CPU reference of the AutoencoderKL decoder (plugins/models/vae.ts), built from the
 * kernel references (conv.ts) on channels-last images: for checking the GPU decoder at a
 * small size before it is timed (bench/vae_bench.ts). Slow: f64 sums over every tap.
 *
 * @module
 */
import { type VaeConfig, vaeLayout, type VaeResnet } from "../../plugins/models/vae_config.ts";
import {
  conv3x3Ref,
  conv3x3WeightNhwc,
  groupNormRef,
  type ImageShape,
  transposeRef,
} from "./conv.ts";
import { gemmRef } from "./gemm.ts";
import { softmaxRef } from "./softmax.ts";

/** The decoder of `c` on latents z [B, C, h, w] (weights by torch name): [B, 3, H, W]. */
export function vaeDecodeRef(
  weight: (name: string) => Float32Array,
  c: VaeConfig,
  z: Float32Array,
  shape: readonly [number, number, number, number],
): Float32Array {
  const [B, L, h, w] = shape;
  const G = c.normNumGroups;
  let s: ImageShape = { B, H: h, W: w, C: L };
  const lin = (x: Float32Array, M: number, name: string, K: number, N: number) =>
    gemmRef(x, weight(`${name}.weight`), M, N, K, { bias: weight(`${name}.bias`) });
  const conv = (x: Float32Array, sh: ImageShape, name: string, N: number, up = false) =>
    conv3x3Ref(
      x,
      sh,
      conv3x3WeightNhwc(weight(`${name}.weight`), N, sh.C),
      weight(`${name}.bias`),
      N,
      up,
    );
  const norm = (x: Float32Array, sh: ImageShape, name: string, silu: boolean) =>
    groupNormRef(x, sh, G, weight(`${name}.weight`), weight(`${name}.bias`), 1e-6, silu);
  const resnet = (x: Float32Array, sh: ImageShape, r: VaeResnet) => {
    const a = { ...sh, C: r.cin }, b = { ...sh, C: r.cout };
    const h2 = conv(norm(x, a, `${r.prefix}.norm1`, true), a, `${r.prefix}.conv1`, r.cout);
    const h4 = conv(norm(h2, b, `${r.prefix}.norm2`, true), b, `${r.prefix}.conv2`, r.cout);
    const M = sh.B * sh.H * sh.W;
    const res = r.cin === r.cout ? x : lin(x, M, `${r.prefix}.conv_shortcut`, r.cin, r.cout);
    return h4.map((v, i) => res[i] + v);
  };
  const attention = (x: Float32Array, sh: ImageShape) => {
    const a = "decoder.mid_block.attentions.0";
    const P = sh.H * sh.W, C = sh.C;
    const n = norm(x, sh, `${a}.group_norm`, false);
    const out = new Float32Array(x.length);
    for (let b = 0; b < sh.B; b++) {
      const nb = n.subarray(b * P * C, (b + 1) * P * C);
      const [q, k, v] = ["to_q", "to_k", "to_v"].map((p) => lin(nb, P, `${a}.${p}`, C, C));
      const scores = gemmRef(q, k, P, P, C).map((t) => t / Math.sqrt(C));
      const p = softmaxRef(scores, P);
      const o = gemmRef(p, transposeRef(v, 1, P, C), P, C, P);
      const y = lin(o, P, `${a}.to_out.0`, C, C);
      for (let i = 0; i < P * C; i++) out[b * P * C + i] = y[i] + x[b * P * C + i];
    }
    return out;
  };

  let x = transposeRef(z.map((v) => v / c.scalingFactor + c.shiftFactor), B, L, h * w);
  if (c.usePostQuantConv) x = lin(x, B * h * w, "post_quant_conv", L, L);
  const top = c.blockOutChannels[c.blockOutChannels.length - 1];
  x = conv(x, s, "decoder.conv_in", top);
  s = { ...s, C: top };
  const { mid, up } = vaeLayout(c);
  x = resnet(x, s, mid[0]);
  if (c.midBlockAddAttention) x = attention(x, s);
  x = resnet(x, s, mid[1]);
  for (const blk of up) {
    for (const r of blk.resnets) {
      x = resnet(x, s, r);
      s = { ...s, C: r.cout };
    }
    if (blk.upsample) {
      x = conv(x, s, `${blk.prefix}.upsamplers.0.conv`, s.C, true);
      s = { ...s, H: 2 * s.H, W: 2 * s.W };
    }
  }
  x = conv(norm(x, s, "decoder.conv_norm_out", true), s, "decoder.conv_out", c.outChannels);
  return transposeRef(x, B, s.H * s.W, c.outChannels);
}
