"""An independent PyTorch implementation of diffusers' FluxTransformer2DModel (FLUX.1 MMDiT).

Written from the equations (FLUX.1: MMDiT double-stream blocks, single-stream parallel blocks,
rotary position embedding over (index, row, column) ids), with diffusers' config.json fields,
defaults and state-dict keys, so a folder saved by one loads in the other. Runs on torch >= 1.13
(no nn.RMSNorm, no SDPA needed).

  x_embedder                          Linear(in_channels, D) over packed 2x2 latent tokens
  context_embedder                    Linear(joint_attention_dim, D) over T5 tokens
  time_text_embed.timestep_embedder   256-d sinusoid of 1000 t -> D -> D (SiLU between)
  time_text_embed.guidance_embedder   (guidance_embeds) the same for 1000 g
  time_text_embed.text_embedder       pooled CLIP -> D -> D (SiLU between)
    temb = timestep_emb (+ guidance_emb) + text_emb
  transformer_blocks.N (double stream, image x and text c):
    norm1.linear, norm1_context.linear     SiLU(temb) -> 6D: shift1 scale1 gate1 shift2 scale2 gate2
    attn.to_q/k/v, attn.add_q/k/v_proj      projections of LN(x)(1+scale1)+shift1 and of the text
    attn.norm_q/k, attn.norm_added_q/k      RMSNorm(head_dim, eps 1e-6, weight) per head
    joint sequence [text; image], RoPE on q, k, softmax attention, split back
    attn.to_out.0 (image), attn.to_add_out (text)   x = x + gate1 * out
    ff / ff_context: net.0.proj (D -> 4D, GELU-tanh), net.2 (4D -> D)   x = x + gate2 * FF(LN(x)(1+scale2)+shift2)
  single_transformer_blocks.N (joint sequence h = [text; image]):
    norm.linear  SiLU(temb) -> 3D: shift scale gate;  n = LN(h)(1+scale)+shift
    proj_mlp (D -> 4D, GELU-tanh);  attn.to_q/k/v + norm_q/k + RoPE, attention (no output projection)
    proj_out (5D -> D) of [attn, mlp];  h = h + gate * proj_out
  norm_out.linear  SiLU(temb) -> 2D: scale, shift (this order);  proj_out  D -> out_channels

LayerNorms have no affine parameters and eps 1e-6. RoPE: per axis a of dim d, frequency
theta^(-2k/d), angle = id_a * freq (float64), cos/sin rounded to f32; pairs (x[2j], x[2j+1]) are
rotated: (x0 cos - x1 sin, x1 cos + x0 sin); the axes' pairs are concatenated in axis order.
Text ids are zeros, image ids (0, row, col) of the packed grid.
"""

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

DIFFUSERS_VERSION = "0.40.0.dev0"


@dataclass
class FluxConfig:
    """config.json of FluxTransformer2DModel, with diffusers' defaults."""

    patch_size: int = 1
    in_channels: int = 64
    out_channels: int = None
    num_layers: int = 19
    num_single_layers: int = 38
    attention_head_dim: int = 128
    num_attention_heads: int = 24
    joint_attention_dim: int = 4096
    pooled_projection_dim: int = 768
    guidance_embeds: bool = False
    axes_dims_rope: list = field(default_factory=lambda: [16, 56, 56])

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self):
        d = {"_class_name": "FluxTransformer2DModel", "_diffusers_version": DIFFUSERS_VERSION}
        d.update(asdict(self))
        return d

    @property
    def inner_dim(self):
        return self.num_attention_heads * self.attention_head_dim

    @property
    def resolved_out_channels(self):
        return self.out_channels or self.in_channels


# ---------------------------------------------------------------- pure functions


def sinusoid(t, dim=256, max_period=10000.0):
    """Timestep sinusoid [cos | sin] (flip_sin_to_cos=True, shift 0), computed in float64.

    diffusers computes it in f32; the f64 form keeps t * freq rounding out of the vectors.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def position_ids(text_tokens, h, w):
    """[L + h*w, 3] ids: zeros for text, (0, row, col) for the image grid in raster order."""
    img = torch.zeros(h, w, 3)
    img[..., 1] = torch.arange(h)[:, None].float()
    img[..., 2] = torch.arange(w)[None, :].float()
    return torch.cat([torch.zeros(text_tokens, 3), img.reshape(h * w, 3)], dim=0)


def rope_table(ids, axes_dims, theta=10000.0):
    """(cos, sin), each [S, D/2] in f32: angle of pair j of axis a = id_a * theta^(-2k/d_a)."""
    angles = []
    for a, d in enumerate(axes_dims):
        k = torch.arange(0, d, 2, dtype=torch.float64)
        freq = 1.0 / theta ** (k / d)
        angles.append(ids[:, a].to(torch.float64)[:, None] * freq[None, :])
    ang = torch.cat(angles, dim=1)
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x, cos, sin):
    """x [B, S, H, D]; rotate pairs (x[2j], x[2j+1]) by the angle of pair j of token s."""
    xr = x.reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    c = cos[None, :, None, :].to(x.dtype)
    s = sin[None, :, None, :].to(x.dtype)
    return torch.stack([x0 * c - x1 * s, x1 * c + x0 * s], dim=-1).reshape(x.shape)


def rms_norm(x, weight, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def layer_norm(x, eps=1e-6):
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


def attention(q, k, v):
    """q, k, v [B, S, H, D] -> [B, S, H*D], softmax(q k^T / sqrt(D)) v per head."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    o = torch.matmul(torch.softmax(scores, dim=-1), v)
    b, h, s, d = o.shape
    return o.transpose(1, 2).reshape(b, s, h * d)


def pack_latents(x):
    """[B, C, H, W] -> [B, (H/2)(W/2), 4C], channel order (c, dy, dx)."""
    b, c, hh, ww = x.shape
    x = x.view(b, c, hh // 2, 2, ww // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (hh // 2) * (ww // 2), c * 4)


def unpack_latents(x, hh, ww):
    """[B, (H/2)(W/2), 4C] -> [B, C, H, W]."""
    b, _, ch = x.shape
    x = x.view(b, hh // 2, ww // 2, ch // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, ch // 4, hh, ww)


# ---------------------------------------------------------------- modules with diffusers' key names


class MLPEmbedder(nn.Module):
    """linear_1 -> SiLU -> linear_2 (TimestepEmbedding / PixArtAlphaTextProjection with act silu)."""

    def __init__(self, dim_in, dim):
        super().__init__()
        self.linear_1 = nn.Linear(dim_in, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class TimeTextEmbed(nn.Module):
    def __init__(self, dim, pooled_dim, guidance):
        super().__init__()
        self.timestep_embedder = MLPEmbedder(256, dim)
        if guidance:
            self.guidance_embedder = MLPEmbedder(256, dim)
        self.text_embedder = MLPEmbedder(pooled_dim, dim)

    def forward(self, t1000, g1000, pooled):
        dtype = pooled.dtype
        emb = self.timestep_embedder(sinusoid(t1000).to(dtype))
        if g1000 is not None:
            emb = emb + self.guidance_embedder(sinusoid(g1000).to(dtype))
        return emb + self.text_embedder(pooled)


class AdaLinear(nn.Module):
    """norm*.linear: SiLU(temb) -> n * D, chunked by the caller."""

    def __init__(self, dim, n):
        super().__init__()
        self.linear = nn.Linear(dim, n * dim)

    def forward(self, temb):
        return self.linear(F.silu(temb))


class Norm(nn.Module):
    """An RMSNorm weight under diffusers' key `<name>.weight`."""

    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


class GeluProj(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x):
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GeluProj(dim, 4 * dim), nn.Identity(), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class JointAttention(nn.Module):
    """attn of a double block: image projections to_*, text projections add_*_proj."""

    def __init__(self, dim, heads, head_dim):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        for n in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"):
            setattr(self, n, nn.Linear(dim, dim))
        for n in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
            setattr(self, n, Norm(head_dim))
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.to_add_out = nn.Linear(dim, dim)

    def heads_of(self, x):
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim)

    def forward(self, x, c, cos, sin):
        L = c.shape[1]
        q = torch.cat([rms_norm(self.heads_of(self.add_q_proj(c)), self.norm_added_q.weight),
                       rms_norm(self.heads_of(self.to_q(x)), self.norm_q.weight)], dim=1)
        k = torch.cat([rms_norm(self.heads_of(self.add_k_proj(c)), self.norm_added_k.weight),
                       rms_norm(self.heads_of(self.to_k(x)), self.norm_k.weight)], dim=1)
        v = torch.cat([self.heads_of(self.add_v_proj(c)), self.heads_of(self.to_v(x))], dim=1)
        o = attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)
        return self.to_out[0](o[:, L:]), self.to_add_out(o[:, :L])


class SingleAttention(nn.Module):
    """attn of a single block: q/k/v projections and norms, no output projection."""

    def __init__(self, dim, heads, head_dim):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        for n in ("to_q", "to_k", "to_v"):
            setattr(self, n, nn.Linear(dim, dim))
        self.norm_q = Norm(head_dim)
        self.norm_k = Norm(head_dim)

    def forward(self, h, cos, sin):
        b, s, _ = h.shape
        q = rms_norm(self.to_q(h).view(b, s, self.heads, -1), self.norm_q.weight)
        k = rms_norm(self.to_k(h).view(b, s, self.heads, -1), self.norm_k.weight)
        v = self.to_v(h).view(b, s, self.heads, -1)
        return attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)


class DoubleBlock(nn.Module):
    def __init__(self, dim, heads, head_dim):
        super().__init__()
        self.norm1 = AdaLinear(dim, 6)
        self.norm1_context = AdaLinear(dim, 6)
        self.attn = JointAttention(dim, heads, head_dim)
        self.ff = FeedForward(dim)
        self.ff_context = FeedForward(dim)

    def forward(self, x, c, temb, cos, sin):
        sx, scx, gx, sx2, scx2, gx2 = self.norm1(temb)[:, None].chunk(6, dim=-1)
        sc, scc, gc, sc2, scc2, gc2 = self.norm1_context(temb)[:, None].chunk(6, dim=-1)
        ax, ac = self.attn(layer_norm(x) * (1 + scx) + sx, layer_norm(c) * (1 + scc) + sc, cos, sin)
        x = x + gx * ax
        x = x + gx2 * self.ff(layer_norm(x) * (1 + scx2) + sx2)
        c = c + gc * ac
        c = c + gc2 * self.ff_context(layer_norm(c) * (1 + scc2) + sc2)
        return x, c


class SingleBlock(nn.Module):
    def __init__(self, dim, heads, head_dim):
        super().__init__()
        self.norm = AdaLinear(dim, 3)
        self.proj_mlp = nn.Linear(dim, 4 * dim)
        self.proj_out = nn.Linear(5 * dim, dim)
        self.attn = SingleAttention(dim, heads, head_dim)

    def forward(self, h, temb, cos, sin):
        shift, scale, gate = self.norm(temb)[:, None].chunk(3, dim=-1)
        n = layer_norm(h) * (1 + scale) + shift
        mlp = F.gelu(self.proj_mlp(n), approximate="tanh")
        return h + gate * self.proj_out(torch.cat([self.attn(n, cos, sin), mlp], dim=-1))


class NormOut(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)

    def forward(self, x, temb):
        scale, shift = self.linear(F.silu(temb))[:, None].chunk(2, dim=-1)
        return layer_norm(x) * (1 + scale) + shift


class FluxTransformer(nn.Module):
    """FluxTransformer2DModel: forward(hidden_states [B, T, in], encoder_hidden_states [B, L, J],
    pooled_projections [B, P], timestep [B] in [0, 1], img_ids [T, 3], txt_ids [L, 3],
    guidance [B] or None) -> [B, T, out] (packed, as diffusers)."""

    def __init__(self, cfg):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = FluxConfig.from_dict(cfg)
        if cfg.patch_size != 1:
            raise NotImplementedError("patch_size must be 1")
        if sum(cfg.axes_dims_rope) != cfg.attention_head_dim:
            raise ValueError("axes_dims_rope must sum to attention_head_dim")
        self.config = cfg
        d, h, hd = cfg.inner_dim, cfg.num_attention_heads, cfg.attention_head_dim
        self.x_embedder = nn.Linear(cfg.in_channels, d)
        self.context_embedder = nn.Linear(cfg.joint_attention_dim, d)
        self.time_text_embed = TimeTextEmbed(d, cfg.pooled_projection_dim, cfg.guidance_embeds)
        self.transformer_blocks = nn.ModuleList([DoubleBlock(d, h, hd) for _ in range(cfg.num_layers)])
        self.single_transformer_blocks = nn.ModuleList([SingleBlock(d, h, hd) for _ in range(cfg.num_single_layers)])
        self.norm_out = NormOut(d)
        self.proj_out = nn.Linear(d, cfg.patch_size ** 2 * cfg.resolved_out_channels)

    def forward(self, hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids,
                guidance=None):
        cfg = self.config
        if cfg.guidance_embeds != (guidance is not None):
            raise ValueError("guidance must be given exactly when guidance_embeds is true")
        # diffusers: timestep.to(dtype) * 1000 in the model's dtype; here always the f32 product.
        t1000 = timestep.float() * 1000
        g1000 = guidance.float() * 1000 if guidance is not None else None
        temb = self.time_text_embed(t1000, g1000, pooled_projections)
        x = self.x_embedder(hidden_states)
        c = self.context_embedder(encoder_hidden_states)
        cos, sin = rope_table(torch.cat([txt_ids, img_ids], dim=0), cfg.axes_dims_rope)
        for blk in self.transformer_blocks:
            x, c = blk(x, c, temb, cos, sin)
        L = c.shape[1]
        h = torch.cat([c, x], dim=1)
        for blk in self.single_transformer_blocks:
            h = blk(h, temb, cos, sin)
        return self.proj_out(self.norm_out(h[:, L:], temb))

    # ------------------------------------------------------------ diffusers folder layout

    def save_pretrained(self, folder, shards=1):
        """Writes folder/config.json and the weights, in `shards` files (+ index) when > 1."""
        from stio import save_file

        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(self.config.to_dict(), f, indent=2)
            f.write("\n")
        sd = {k: v.detach().float().contiguous() for k, v in self.state_dict().items()}
        if shards == 1:
            save_file(sd, os.path.join(folder, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
            return
        names = sorted(sd)
        per = math.ceil(len(names) / shards)
        weight_map = {}
        for i in range(shards):
            part = names[i * per:(i + 1) * per]
            fname = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_file({k: sd[k] for k in part}, os.path.join(folder, fname), metadata={"format": "pt"})
            weight_map.update({k: fname for k in part})
        total = sum(v.numel() * v.element_size() for v in sd.values())
        with open(os.path.join(folder, "diffusion_pytorch_model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            f.write("\n")


def init_random(model, gen, bias_std=0.1, norm_std=0.2, out_gain=0.1, mod_gain=0.5):
    """Random weights of realistic scale: linear ~ N(0, gain^2 / fan_in), biases ~ N(0, 0.1^2),
    RMSNorm weights ~ 1 + N(0, 0.2^2); adaLN linears scaled by mod_gain (moderate shifts, scales and
    gates), proj_out by out_gain (velocity RMS ~0.1-0.3)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            adaln = "norm" in name and name.split(".")[-2] == "linear"
            g = out_gain if name.startswith("proj_out.") else mod_gain if adaln else 1.0
            if name.endswith(("norm_q.weight", "norm_k.weight", "norm_added_q.weight", "norm_added_k.weight")):
                p.copy_(1 + norm_std * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * bias_std * g)
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * (g / p.shape[1] ** 0.5))
    return model
