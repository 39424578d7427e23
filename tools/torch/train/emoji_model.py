"""The bundled emoji model: sizes, construction, initialisation, data loading, checkpoints."""

import gzip
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from pixart import PixArtConfig, PixArtTransformer  # noqa: E402
from stio import load_file, load_metadata, save_file  # noqa: E402
from text_encoder import NULL, PAD, EmojiCaptionEncoder, TextEncoderConfig, Tokenizer  # noqa: E402

# Two candidate sizes, trained side by side; the team picks by measured CPU speed.
SIZES = {
    "a": dict(heads=2, layers=6, d_text=128),  # hidden 128 = 2 x 64
    "b": dict(heads=3, layers=4, d_text=192),  # hidden 192 = 3 x 64
    # a's denoiser (it fits the CPU budget) with a wider, deeper caption encoder: the encoder
    # runs once per prompt, so its capacity costs no per-step time on the CPU.
    "c": dict(heads=2, layers=6, d_text=384, te_layers=4),
}
HEAD_DIM = 64
MAX_LENGTH = 16


def dit_config(size):
    s = SIZES[size]
    hidden = s["heads"] * HEAD_DIM
    return PixArtConfig(num_attention_heads=s["heads"], attention_head_dim=HEAD_DIM, in_channels=3, out_channels=3,
                        num_layers=s["layers"], cross_attention_dim=hidden, sample_size=64, patch_size=2,
                        caption_channels=s["d_text"], use_additional_conditions=False, interpolation_scale=1)


def te_config(size, vocab_size):
    d = SIZES[size]["d_text"]
    return TextEncoderConfig(vocab_size=vocab_size, d_model=d, num_layers=SIZES[size].get("te_layers", 2),
                             num_heads=d // HEAD_DIM,
                             max_length=MAX_LENGTH)


class Joint(nn.Module):
    """Caption encoder + denoiser, trained together. Keys: text_encoder.*, transformer.*"""

    def __init__(self, size, vocab_size):
        super().__init__()
        self.text_encoder = EmojiCaptionEncoder(te_config(size, vocab_size))
        self.transformer = PixArtTransformer(dit_config(size))

    def forward(self, x_t, t, ids, mask):
        y = self.text_encoder(ids, mask)
        return self.transformer(x_t, y, t, encoder_attention_mask=mask)

    def set_attn(self, impl):
        self.text_encoder.attn_impl = impl
        self.transformer.attn_impl = impl


def init_weights(joint, seed=0):
    """PixArt-style init: xavier linears, N(0, 0.02) embedders, zeroed cross-attn outputs and head."""
    torch.manual_seed(seed)
    dit, te = joint.transformer, joint.text_encoder
    for m in joint.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    w = dit.pos_embed.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(dit.pos_embed.proj.bias)
    for lin in (dit.adaln_single.emb.timestep_embedder.linear_1, dit.adaln_single.emb.timestep_embedder.linear_2,
                dit.adaln_single.linear, dit.caption_projection.linear_1, dit.caption_projection.linear_2):
        nn.init.normal_(lin.weight, std=0.02)
    for blk in dit.transformer_blocks:
        nn.init.zeros_(blk.attn2.to_out[0].weight)
        nn.init.zeros_(blk.attn2.to_out[0].bias)
    nn.init.zeros_(dit.proj_out.weight)
    nn.init.zeros_(dit.proj_out.bias)
    nn.init.normal_(te.embed_tokens.weight, std=0.02)
    nn.init.normal_(te.embed_positions.weight, std=0.02)


# ------------------------------------------------------------------------------- data


def load_data(folder, device):
    """Images u8 [N, 64, 64, 3] on device, the caption table and the tokenizer."""
    meta = json.load(open(os.path.join(folder, "emoji_meta.json")))
    vocab = json.load(open(os.path.join(folder, "vocab.json")))
    n, s = meta["count"], meta["size"]
    raw = gzip.open(os.path.join(folder, "emoji64.u8.gz")).read()
    imgs = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).reshape(n, s, s, 3).copy()).to(device)
    tok = Tokenizer(vocab, MAX_LENGTH)
    ids, masks, img, weight = [], [], [], []
    for e in meta["emoji"]:
        caps = e["captions"]
        for j, c in enumerate(caps):
            i_, m_, unk = tok.encode(c)
            assert not unk, (c, unk)
            ids.append(i_)
            masks.append(m_)
            img.append(e["index"])
            # the name half the time, the other variants share the rest
            weight.append(1.0 if len(caps) == 1 else (0.5 if j == 0 else 0.5 / (len(caps) - 1)))
    cap = {
        "ids": torch.tensor(ids, dtype=torch.long, device=device),
        "mask": torch.tensor(masks, dtype=torch.long, device=device),
        "img": torch.tensor(img, dtype=torch.long, device=device),
        "weight": torch.tensor(weight, dtype=torch.float, device=device),
    }
    return imgs, cap, tok, meta


def to_model_space(u8):
    """u8 [B, 64, 64, 3] -> float [B, 3, 64, 64] in [-1, 1]."""
    return u8.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_u8(x):
    """float [B, 3, H, W] in [-1, 1] -> u8 [B, H, W, 3] (round half up after clamping)."""
    return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def null_caption(b, device):
    ids = torch.full((b, MAX_LENGTH), PAD, dtype=torch.long, device=device)
    ids[:, 0] = NULL
    mask = torch.zeros((b, MAX_LENGTH), dtype=torch.long, device=device)
    mask[:, 0] = 1
    return ids, mask


# ------------------------------------------------------------------------------- checkpoints


def save_ckpt(out, size, joint, ema, meta):
    """ckpt_<size>_params / _ema .safetensors (fp32); training state in the metadata."""
    md = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()}
    for tag, sd in (("params", joint.state_dict()), ("ema", ema)):
        path = os.path.join(out, f"ckpt_{size}_{tag}.safetensors")
        save_file({k: v.float() for k, v in sd.items()}, path + ".tmp", metadata=md)
        os.replace(path + ".tmp", path)


def load_ckpt(folder, size):
    p = os.path.join(folder, f"ckpt_{size}_params.safetensors")
    e = os.path.join(folder, f"ckpt_{size}_ema.safetensors")
    meta = {k: json.loads(v) if k != "size" else v for k, v in load_metadata(p).items()}
    return load_file(p), load_file(e), meta
