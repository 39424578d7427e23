/**
 * The configuration of diffusers' AutoencoderKL (vae/config.json) as its decoder reads it,
 * with diffusers' defaults and errors naming the field, and the tensors the decoder loads.
 *
 * @module
 */
import { CheckpointError } from "../../runtime/errors.ts";
import {
  boolField,
  enumField,
  intField,
  numField,
  objectOf,
} from "../../runtime/io/config_fields.ts";

/** A parsed AutoencoderKL config (the decoder's side). */
export interface VaeConfig {
  /** Latent channels the decoder takes. */
  latentChannels: number;
  /** Image channels out. */
  outChannels: number;
  /** Channels of each resolution level, finest first (the decoder walks them reversed). */
  blockOutChannels: number[];
  /** Resnets per encoder level; the decoder's up blocks have one more. */
  layersPerBlock: number;
  /** GroupNorm groups. */
  normNumGroups: number;
  /** Latents are divided by it before decoding. */
  scalingFactor: number;
  /** Added after the scaling (FLUX's VAE), or 0. */
  shiftFactor: number;
  /** A 1×1 conv on the latents before the decoder. */
  usePostQuantConv: boolean;
  /** Self-attention in the decoder's mid block. */
  midBlockAddAttention: boolean;
  /** Image size the VAE was built for: the tile of tiled decoding (enable_tiling), in pixels. */
  sampleSize: number;
}

/** Parses an AutoencoderKL config.json object. */
export function parseVaeConfig(raw: unknown, file = "vae/config.json"): VaeConfig {
  const cfg = objectOf(raw, file);
  const cls = cfg["_class_name"];
  if (cls !== undefined && cls !== "AutoencoderKL") {
    throw new CheckpointError(
      file,
      `expected AutoencoderKL, got ${JSON.stringify(cls)}`,
      "_class_name",
    );
  }
  enumField(cfg, "act_fn", ["silu", "swish"], "silu", file); // diffusers: both are nn.SiLU
  const boc = cfg["block_out_channels"] ?? [64];
  if (!Array.isArray(boc) || boc.length < 1 || !boc.every((c) => Number.isInteger(c) && c > 0)) {
    throw new CheckpointError(
      file,
      `must be a list of positive integers, got ${JSON.stringify(boc)}`,
      "block_out_channels",
    );
  }
  const groups = intField(cfg, "norm_num_groups", 32, file);
  const bad = (boc as number[]).find((c) => c % groups !== 0);
  if (bad !== undefined) {
    throw new CheckpointError(
      file,
      `${groups} groups do not divide ${bad} channels`,
      "norm_num_groups",
    );
  }
  const up = cfg["up_block_types"] ?? boc.map(() => "UpDecoderBlock2D");
  if (!Array.isArray(up) || up.length !== boc.length || up.some((t) => t !== "UpDecoderBlock2D")) {
    throw new CheckpointError(
      file,
      `must be ${boc.length} × "UpDecoderBlock2D" (one per block_out_channels), got ${
        JSON.stringify(up)
      }`,
      "up_block_types",
    );
  }
  const shift = cfg["shift_factor"];
  // diffusers takes a list's first entry for the tile (its height).
  const ss = Array.isArray(cfg["sample_size"]) ? cfg["sample_size"][0] : cfg["sample_size"];
  return {
    latentChannels: intField(cfg, "latent_channels", 4, file),
    outChannels: intField(cfg, "out_channels", 3, file),
    blockOutChannels: boc as number[],
    layersPerBlock: intField(cfg, "layers_per_block", 1, file),
    normNumGroups: groups,
    scalingFactor: numField(cfg, "scaling_factor", 0.18215, file),
    shiftFactor: shift === null || shift === undefined ? 0 : numField(cfg, "shift_factor", 0, file),
    usePostQuantConv: boolField(cfg, "use_post_quant_conv", true, file),
    midBlockAddAttention: boolField(cfg, "mid_block_add_attention", true, file),
    sampleSize: intField({ sample_size: ss }, "sample_size", 32, file),
  };
}

/** Pixels per latent cell: 2 per up block that upsamples (all but the last). */
export function vaeScale(c: VaeConfig): number {
  return 2 ** (c.blockOutChannels.length - 1);
}

/**
 * Bytes of the decoder's widest activation for one h × w latent (f32, channels last): at
 * each level's resolution the wider of the channels coming in (conv_in's or the upsampler's)
 * and the level's own. The decoder binds it whole; im2col and attention scores go in chunks.
 */
export function vaeLargestBytes(c: VaeConfig, h: number, w: number): number {
  const rev = [...c.blockOutChannels].reverse();
  let most = 0;
  for (let i = 0; i < rev.length; i++) {
    const cells = h * w * 4 ** i;
    most = Math.max(most, cells * Math.max(rev[Math.max(0, i - 1)], rev[i]) * 4);
  }
  return most;
}

/** One resnet of the decoder: its checkpoint prefix and channels in and out. */
export interface VaeResnet {
  prefix: string;
  cin: number;
  cout: number;
}

/** The decoder's resnets in order (mid block first), and where the up blocks upsample. */
export function vaeLayout(c: VaeConfig): {
  mid: [VaeResnet, VaeResnet];
  up: { resnets: VaeResnet[]; upsample: boolean; prefix: string }[];
} {
  const rev = [...c.blockOutChannels].reverse();
  const top = rev[0];
  const mid: [VaeResnet, VaeResnet] = [0, 1].map((i) => ({
    prefix: `decoder.mid_block.resnets.${i}`,
    cin: top,
    cout: top,
  })) as [VaeResnet, VaeResnet];
  let prev = top;
  const up = rev.map((out, i) => {
    const resnets = Array.from({ length: c.layersPerBlock + 1 }, (_, j) => ({
      prefix: `decoder.up_blocks.${i}.resnets.${j}`,
      cin: j === 0 ? prev : out,
      cout: out,
    }));
    prev = out;
    return { resnets, upsample: i < rev.length - 1, prefix: `decoder.up_blocks.${i}` };
  });
  return { mid, up };
}

/** The decoder's tensors and their torch shapes (attention in diffusers' current names). */
export function vaeWeightShapes(c: VaeConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const L = c.latentChannels;
  const top = c.blockOutChannels[c.blockOutChannels.length - 1];
  const conv = (name: string, cout: number, cin: number, k: number) => {
    m.set(`${name}.weight`, k === 1 ? [cout, cin, 1, 1] : [cout, cin, k, k]);
    m.set(`${name}.bias`, [cout]);
  };
  const norm = (name: string, ch: number) => {
    m.set(`${name}.weight`, [ch]);
    m.set(`${name}.bias`, [ch]);
  };
  if (c.usePostQuantConv) conv("post_quant_conv", L, L, 1);
  conv("decoder.conv_in", top, L, 3);
  const { mid, up } = vaeLayout(c);
  const resnet = (r: VaeResnet) => {
    norm(`${r.prefix}.norm1`, r.cin);
    conv(`${r.prefix}.conv1`, r.cout, r.cin, 3);
    norm(`${r.prefix}.norm2`, r.cout);
    conv(`${r.prefix}.conv2`, r.cout, r.cout, 3);
    if (r.cin !== r.cout) conv(`${r.prefix}.conv_shortcut`, r.cout, r.cin, 1);
  };
  resnet(mid[0]);
  if (c.midBlockAddAttention) {
    const a = "decoder.mid_block.attentions.0";
    norm(`${a}.group_norm`, top);
    for (const p of ["to_q", "to_k", "to_v", "to_out.0"]) {
      m.set(`${a}.${p}.weight`, [top, top]);
      m.set(`${a}.${p}.bias`, [top]);
    }
  }
  resnet(mid[1]);
  for (const b of up) {
    b.resnets.forEach(resnet);
    if (b.upsample) conv(`${b.prefix}.upsamplers.0.conv`, b.resnets[0].cout, b.resnets[0].cout, 3);
  }
  norm("decoder.conv_norm_out", c.blockOutChannels[0]);
  conv("decoder.conv_out", c.outChannels, c.blockOutChannels[0], 3);
  return m;
}

/** diffusers' deprecated attention names (query, key, value, proj_attn) of the current ones. */
export const LEGACY_ATTENTION: Readonly<Record<string, string>> = {
  to_q: "query",
  to_k: "key",
  to_v: "value",
  "to_out.0": "proj_attn",
};
