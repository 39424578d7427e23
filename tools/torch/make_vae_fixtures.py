"""Writes the VAE decoder test vectors under tests/fixtures/vae_<name>/ (f32, small).

An independent PyTorch implementation of diffusers' AutoencoderKL decoder (its module
structure and weight names, written here from torch ops: conv2d, group_norm, interpolate,
scaled_dot_product_attention), random weights at a realistic scale, and what
`vae.decode(latents / scaling_factor + shift_factor)` returns. Each fixture:
vae/config.json + vae/diffusion_pytorch_model.safetensors (with a few encoder tensors, which the
decoder must ignore), io.safetensors ("latents" [B, C, h, w] as the sampler leaves them, "image"
[B, 3, H, W] in [-1, 1], "image_tiled" as `vae.enable_tiling()` decodes it), README.md. The math runs in float64 on the CPU from the f32 values
stored in the files; results are rounded to f32.

  python3 tools/torch/make_vae_fixtures.py --out tests/fixtures
"""

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stio import save_file  # noqa: E402

FIXTURES = {
    # PixArt's VAE (sd-vae-ft-ema) in small: post_quant_conv, attention in diffusers' current names.
    "tiny": dict(
        cfg=dict(block_out_channels=[16, 32, 32], layers_per_block=1, norm_num_groups=8, latent_channels=4,
                 scaling_factor=0.5, shift_factor=None, use_post_quant_conv=True, sample_size=16),
        latent=(2, 6, 5), legacy=False,
        about="PixArt-like (sd-vae-ft-ema in small): 3 levels [16, 32, 32] (4 pixels a latent), 1 layer a "
              "block (2 resnets an up block), 8 groups, post_quant_conv, scaling 0.5; batch 2, 6 x 5 latent"),
    # FLUX's VAE in small: 16 latent channels, a shift, no post_quant_conv; legacy attention names.
    "flux_legacy": dict(
        cfg=dict(block_out_channels=[8, 16, 24, 24], layers_per_block=2, norm_num_groups=4, latent_channels=16,
                 scaling_factor=0.3611, shift_factor=0.1159, use_post_quant_conv=False, use_quant_conv=False,
                 sample_size=32),
        latent=(1, 4, 4), legacy=True,
        about="FLUX-like: 4 levels [8, 16, 24, 24] (8 pixels a latent), 2 layers a block, 4 groups, 16 "
              "latent channels, scaling 0.3611 and shift 0.1159, no post_quant_conv; the mid block's "
              "attention under the deprecated names query/key/value/proj_attn; batch 1, 4 x 4 latent"),
}


def config_json(c):
    n = len(c["block_out_channels"])
    return {
        "_class_name": "AutoencoderKL", "act_fn": "silu", "in_channels": 3, "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * n, "up_block_types": ["UpDecoderBlock2D"] * n,
        "force_upcast": True, "mid_block_add_attention": True, **c,
    }


def random_weights(c, g, legacy):
    """diffusers' decoder tensors (plus two encoder ones), f32, fan-in scaled."""
    w = {}
    L = c["latent_channels"]
    boc = c["block_out_channels"]
    top = boc[-1]

    def conv(name, cout, cin, k):
        w[name + ".weight"] = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5
        w[name + ".bias"] = torch.randn(cout, generator=g) * 0.05

    def norm(name, ch):
        w[name + ".weight"] = 1 + 0.1 * torch.randn(ch, generator=g)
        w[name + ".bias"] = 0.1 * torch.randn(ch, generator=g)

    def resnet(p, cin, cout):
        norm(p + ".norm1", cin)
        conv(p + ".conv1", cout, cin, 3)
        norm(p + ".norm2", cout)
        conv(p + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(p + ".conv_shortcut", cout, cin, 1)

    conv("encoder.conv_in", boc[0], 3, 3)  # not the decoder's: must be ignored
    if c.get("use_post_quant_conv", True):
        conv("post_quant_conv", L, L, 1)
    conv("decoder.conv_in", top, L, 3)
    resnet("decoder.mid_block.resnets.0", top, top)
    a = "decoder.mid_block.attentions.0"
    norm(a + ".group_norm", top)
    names = ["query", "key", "value", "proj_attn"] if legacy else ["to_q", "to_k", "to_v", "to_out.0"]
    for n in names:
        w[f"{a}.{n}.weight"] = torch.randn(top, top, generator=g) / top ** 0.5
        w[f"{a}.{n}.bias"] = torch.randn(top, generator=g) * 0.05
    resnet("decoder.mid_block.resnets.1", top, top)
    rev = list(reversed(boc))
    prev = rev[0]
    for i, out in enumerate(rev):
        for j in range(c["layers_per_block"] + 1):
            resnet(f"decoder.up_blocks.{i}.resnets.{j}", prev if j == 0 else out, out)
        prev = out
        if i < len(rev) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", out, out, 3)
    norm("decoder.conv_norm_out", boc[0])
    conv("decoder.conv_out", 3, boc[0], 3)
    return {k: v.float() for k, v in w.items()}


def decode(z, w, c, legacy, dtype=torch.float64):
    """AutoencoderKL.decode(z / scaling_factor + shift_factor).sample, in `dtype` (float64 for
    the fixtures; tools/torch/bench_vae.py times it in float32 and float16)."""
    W = {k: v.to(dtype) for k, v in w.items()}
    G = c["norm_num_groups"]
    eps = 1e-6

    def gn(x, p, silu):
        y = F.group_norm(x, G, W[p + ".weight"], W[p + ".bias"], eps)
        return F.silu(y) if silu else y

    def conv(x, p, pad=1):
        return F.conv2d(x, W[p + ".weight"], W[p + ".bias"], padding=pad)

    def resnet(x, p):
        h = conv(gn(x, p + ".norm1", True), p + ".conv1")
        h = conv(gn(h, p + ".norm2", True), p + ".conv2")
        if p + ".conv_shortcut.weight" in W:
            x = conv(x, p + ".conv_shortcut", 0)
        return x + h  # output_scale_factor 1

    def attention(x, p):
        B, C, H, Wd = x.shape
        h = gn(x, p + ".group_norm", False).view(B, C, H * Wd).transpose(1, 2)
        names = ["query", "key", "value", "proj_attn"] if legacy else ["to_q", "to_k", "to_v", "to_out.0"]
        q, k, v = (F.linear(h, W[f"{p}.{n}.weight"], W[f"{p}.{n}.bias"]) for n in names[:3])
        a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # one head of C
        a = F.linear(a, W[f"{p}.{names[3]}.weight"], W[f"{p}.{names[3]}.bias"])
        return a.transpose(1, 2).reshape(B, C, H, Wd) + x  # residual_connection, rescale 1

    x = z.to(dtype) / c["scaling_factor"]
    if c.get("shift_factor") is not None:
        x = x + c["shift_factor"]
    if c.get("use_post_quant_conv", True):
        x = conv(x, "post_quant_conv", 0)
    x = conv(x, "decoder.conv_in")
    x = resnet(x, "decoder.mid_block.resnets.0")
    x = attention(x, "decoder.mid_block.attentions.0")
    x = resnet(x, "decoder.mid_block.resnets.1")
    n = len(c["block_out_channels"])
    for i in range(n):
        for j in range(c["layers_per_block"] + 1):
            x = resnet(x, f"decoder.up_blocks.{i}.resnets.{j}")
        if i < n - 1:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = conv(x, f"decoder.up_blocks.{i}.upsamplers.0.conv")
    x = gn(x, "decoder.conv_norm_out", True)
    return conv(x, "decoder.conv_out")


def tiled_decode(z, w, c, legacy):
    """AutoencoderKL.tiled_decode (enable_tiling) of z / scaling_factor + shift_factor, float64:
    latent tiles of sample_size / 2^(levels - 1) every 3/4 of one, each decoded alone (after
    post_quant_conv), blended with the tile above and then the one to the left over a quarter
    of a tile, in place and in that order, then cropped to 3/4 of a tile and concatenated."""
    scale = 2 ** (len(c["block_out_channels"]) - 1)
    sample = c["sample_size"]
    tile_latent = int(sample / scale)
    overlap = int(tile_latent * (1 - 0.25))
    blend = int(sample * 0.25)
    limit = sample - blend
    rows = []
    for i in range(0, z.shape[2], overlap):
        rows.append([decode(z[:, :, i:i + tile_latent, j:j + tile_latent], w, c, legacy)
                     for j in range(0, z.shape[3], overlap)])

    def blend_v(a, b, e):
        e = min(a.shape[2], b.shape[2], e)
        for y in range(e):
            b[:, :, y, :] = a[:, :, -e + y, :] * (1 - y / e) + b[:, :, y, :] * (y / e)
        return b

    def blend_h(a, b, e):
        e = min(a.shape[3], b.shape[3], e)
        for x in range(e):
            b[:, :, :, x] = a[:, :, :, -e + x] * (1 - x / e) + b[:, :, :, x] * (x / e)
        return b

    out_rows = []
    for i, row in enumerate(rows):
        out = []
        for j, tile in enumerate(row):
            if i > 0:
                tile = blend_v(rows[i - 1][j], tile, blend)
            if j > 0:
                tile = blend_h(row[j - 1], tile, blend)
            out.append(tile[:, :, :limit, :limit])
        out_rows.append(torch.cat(out, dim=3))
    return torch.cat(out_rows, dim=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    for name, f in FIXTURES.items():
        g = torch.Generator().manual_seed(1234 + len(name))
        c = f["cfg"]
        w = random_weights(c, g, f["legacy"])
        B, h, wd = f["latent"]
        z = torch.randn(B, c["latent_channels"], h, wd, generator=g).float()
        img = decode(z, w, c, f["legacy"]).float()
        # As AutoencoderKL._decode with use_tiling: tiles only a latent larger than one tile.
        tile_latent = int(c["sample_size"] / 2 ** (len(c["block_out_channels"]) - 1))
        larger = z.shape[2] > tile_latent or z.shape[3] > tile_latent
        tiled = tiled_decode(z, w, c, f["legacy"]).float() if larger else img.clone()
        assert tiled.shape == img.shape, (tiled.shape, img.shape)
        d = os.path.join(args.out, f"vae_{name}")
        os.makedirs(os.path.join(d, "vae"), exist_ok=True)
        with open(os.path.join(d, "vae", "config.json"), "w") as fh:
            json.dump(config_json(c), fh, indent=2)
        save_file(w, os.path.join(d, "vae", "diffusion_pytorch_model.safetensors"))
        save_file({"latents": z, "image": img, "image_tiled": tiled}, os.path.join(d, "io.safetensors"),
                  {"torch": torch.__version__, "about": f["about"]})
        with open(os.path.join(d, "README.md"), "w") as fh:
            fh.write(f"# vae_{name}\n\n{f['about']}.\n\nWritten by `tools/torch/make_vae_fixtures.py` "
                     "(an independent torch implementation of diffusers' AutoencoderKL decoder, float64): "
                     "io.safetensors holds `latents` as the sampler leaves them and `image`, "
                     "`vae.decode(latents / scaling_factor + shift_factor)`, and `image_tiled`, the same "
                     "with `vae.enable_tiling()` (tiles of sample_size).\n")
        print(f"vae_{name}: latents {list(z.shape)} -> image {list(img.shape)}, image rms {img.pow(2).mean().sqrt():.3f}, "
              f"tiled vs whole max |diff| {(tiled - img).abs().max():.3f}")


if __name__ == "__main__":
    main()
