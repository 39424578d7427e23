"""The bundled emoji model's caption encoder and word tokenizer.

Kept deliberately simple so the Deno runtime rebuilds it from LayerNorm, GEMM, attention and
GELU kernels (the same definition is written into text_encoder/config.json):

  tokens     lowercase words: NFKD, combining marks dropped, lowercased, then the maximal runs
             of [a-z0-9]; ids from vocab.json ("<pad>" = 0, "<null>" = 1, "<unk>" = 2, words
             after); at most max_length (16) tokens, the rest cut; mask 1 for tokens, 0 for pad.
             The unconditional caption is the single token "<null>" (mask [1, 0, ...]).
  embed      x = embed_tokens[ids] + embed_positions[0:16]                [B, 16, d]
  layer i    (pre-LN, num_layers = 2)
             a = LayerNorm_1(x)   (affine, eps 1e-5)
             q, k, v = a Wq^T + bq, a Wk^T + bk, a Wv^T + bv  split into heads of head_dim
             attention softmax(q k^T / sqrt(head_dim)) over the unmasked keys only
             x = x + (attn) Wo^T + bo
             x = x + fc2(GELU_tanh(fc1(LayerNorm_2(x))))       fc1: d -> 4d, fc2: 4d -> d
  output     final_norm(x) (affine LayerNorm), [B, 16, d]; rows at padded positions are
             computed too but never used: the DiT's cross-attention masks them.

Keys: embed_tokens.weight, embed_positions.weight, layers.{i}.norm1.{weight,bias},
layers.{i}.attn.{q,k,v,o}.{weight,bias}, layers.{i}.norm2.*, layers.{i}.mlp.fc1.*,
layers.{i}.mlp.fc2.*, final_norm.{weight,bias}.
"""

import json
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, NULL, UNK = 0, 1, 2
SPECIALS = ["<pad>", "<null>", "<unk>"]


def words(text):
    """The tokenizer's word split (see the module doc)."""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(ch for ch in t if not unicodedata.combining(ch)).lower()
    return re.findall(r"[a-z0-9]+", t)


class Tokenizer:
    def __init__(self, vocab, max_length=16):
        self.vocab = list(vocab)
        if self.vocab[:3] != SPECIALS:
            raise ValueError("vocab must start with <pad>, <null>, <unk>")
        self.ids = {w: i for i, w in enumerate(self.vocab)}
        self.max_length = max_length

    def encode(self, text):
        """(ids [max_length], mask [max_length], unknown words) for one caption."""
        ws = words(text)[: self.max_length]
        ids = [self.ids.get(w, UNK) for w in ws]
        unknown = [w for w in ws if w not in self.ids]
        mask = [1] * len(ids) + [0] * (self.max_length - len(ids))
        ids = ids + [PAD] * (self.max_length - len(ids))
        return ids, mask, unknown

    def null(self):
        return [NULL] + [PAD] * (self.max_length - 1), [1] + [0] * (self.max_length - 1)

    def batch(self, texts, device=None):
        enc = [self.encode(t) if t is not None else (*self.null(), []) for t in texts]
        ids = torch.tensor([e[0] for e in enc], dtype=torch.long, device=device)
        mask = torch.tensor([e[1] for e in enc], dtype=torch.long, device=device)
        return ids, mask


@dataclass
class TextEncoderConfig:
    vocab_size: int = 3
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 2
    max_length: int = 16
    ffn_mult: int = 4
    layer_norm_eps: float = 1e-5

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self):
        d = {"_class_name": "EmojiCaptionEncoder", "architecture": ARCH_DOC}
        d.update(asdict(self))
        d.update({"pad_token_id": PAD, "null_token_id": NULL, "unk_token_id": UNK, "activation": "gelu_tanh",
                  "norm": "pre-LN, affine LayerNorm", "attention_mask": "key padding: masked keys excluded",
                  "output": "final_norm(x) [B, max_length, d_model]"})
        return d


ARCH_DOC = (
    "x = embed_tokens[ids] + embed_positions[0:max_length]; for each layer: "
    "x = x + attn.o(MHA(attn.q/k/v(norm1(x)), scale 1/sqrt(head_dim), softmax over unmasked keys)); "
    "x = x + mlp.fc2(gelu_tanh(mlp.fc1(norm2(x)))); out = final_norm(x). "
    "Tokens: NFKD, drop combining marks, lowercase, runs of [a-z0-9]; <pad>=0 <null>=1 <unk>=2; "
    "unconditional caption = [<null>] with mask [1,0,...]."
)


class SelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)

    def forward(self, x, mask, impl="math"):
        b, n, d = x.shape
        q, k, v = (m(x).view(b, n, self.heads, -1).transpose(1, 2) for m in (self.q, self.k, self.v))
        keep = mask[:, None, None, :].bool()  # [B, 1, 1, L]
        if impl == "sdpa" and hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        else:
            s = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
            s = s.masked_fill(~keep, float("-inf"))
            o = torch.matmul(torch.softmax(s, dim=-1), v)
        return self.o(o.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, d, mult):
        super().__init__()
        self.fc1 = nn.Linear(d, d * mult)
        self.fc2 = nn.Linear(d * mult, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        self.norm1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.attn = SelfAttention(d, cfg.num_heads)
        self.norm2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(d, cfg.ffn_mult)

    def forward(self, x, mask, impl):
        x = x + self.attn(self.norm1(x), mask, impl)
        return x + self.mlp(self.norm2(x))


class EmojiCaptionEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = TextEncoderConfig.from_dict(cfg)
        if cfg.d_model % cfg.num_heads:
            raise ValueError("d_model must be divisible by num_heads")
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.embed_positions = nn.Embedding(cfg.max_length, cfg.d_model)
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg.num_layers)])
        self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attn_impl = "math"

    def forward(self, ids, mask):
        x = self.embed_tokens(ids) + self.embed_positions.weight[None, : ids.shape[1]]
        for layer in self.layers:
            x = layer(x, mask, self.attn_impl)
        return self.final_norm(x)

    def save_pretrained(self, folder, dtype=None, metadata=None):
        from stio import save_file

        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(self.config.to_dict(), f, indent=2)
            f.write("\n")
        sd = {k: (v.to(dtype) if dtype is not None else v) for k, v in self.state_dict().items()}
        meta = {"format": "pt"}
        meta.update(metadata or {})
        save_file(sd, os.path.join(folder, "model.safetensors"), metadata=meta)

    @classmethod
    def from_pretrained(cls, folder, dtype=torch.float32):
        from stio import load_file

        with open(os.path.join(folder, "config.json")) as f:
            model = cls(TextEncoderConfig.from_dict(json.load(f)))
        sd = load_file(os.path.join(folder, "model.safetensors"))
        model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True)
        return model.to(dtype)
