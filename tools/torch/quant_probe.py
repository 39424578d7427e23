"""Quantization-sensitivity probe of the bundled model (models/emoji-s) in PyTorch.

Fake-quantizes (quantize -> dequantize in f32) the DiT's linear weights and/or their per-token
input activations with webdit's formulas and scores the final images against the FP32 model's
(same prompts, noise and sampler): mean/min PSNR on 8-bit pixels and cosine of the final
latents, as webdit's `deno task ablation` does (runtime/eval/eval.ts).

Formulas (METHODS.md section 1, plugins/quantizers/uniform.ts, wgsl/act_quant.wgsl):
  weight, per output row: asymmetric q = clamp(round(w/D) + z, 0, 2^b - 1), w^ = (q - z) D,
    D = f32(r (hi - lo) / (2^b - 1)), z = clamp(round(-r lo / D)), lo = min(0, min w),
    hi = max(0, max w); or symmetric D = f32(r max(-lo, hi) / (2^(b-1) - 1)), z = 2^(b-1);
    r in 1.0, 0.95, ..., 0.5 minimising sum (w^ - w)^2 (first ratio wins ties); round = JS
    Math.round (half up). webdit's W8 with integer activations is symmetric, else asymmetric.
  activation, per token: D_t = max|x_t| / (2^(b-1) - 1), q = clamp(round_half_even(x / D_t),
    -2^(b-1), 2^(b-1) - 1), x^ = q D_t.
Layers kept FP (webdit's default): pos_embed.proj, adaln_single.*, caption_projection.*,
proj_out; the caption encoder is never quantized.

Initial noise: by default webdit's own PRNG (runtime/io/prng.ts: xoshiro128** seeded by
splitmix32, Box-Muller in f64, both outputs used, rounded to f32), one Prng(seed).normals(C H W)
per image as runtime/eval/eval.ts draws it, so the FP32 images are webdit's up to f32 rounding;
`--noise torch` uses torch.randn with a torch.Generator instead.

  python3 tools/torch/quant_probe.py --out /tmp/probe.json [--configs fp32,w8a8,...] [--teacher]
  [--device cuda]   (the GPU machine: all 120 prompts in ~2 s a config, f32 without TF32)

Prints a markdown table; --teacher also measures each config's per-forward error (guided
epsilon on the FP32 trajectory's inputs, relative RMS over all 20 steps).
"""

import argparse
import json
import math
import re
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pixart import PixArtTransformer  # noqa: E402
from samplers import sample  # noqa: E402
from text_encoder import NULL, PAD, EmojiCaptionEncoder, Tokenizer  # noqa: E402
from probe_util import fast_linear, quant_act, results_file, use_fast_matmuls, webdit_normals  # noqa: E402
from results_format import write_results  # noqa: E402

CLIP_RATIOS = [1 - 0.05 * i for i in range(11)]
KEEP_FP = ("pos_embed.", "adaln_single.", "caption_projection.", "proj_out")
# Layer kinds of one PixArt block (suffixes of transformer_blocks.N.<suffix>).
KINDS = {
    "attn1_qkv": ("attn1.to_q", "attn1.to_k", "attn1.to_v"),
    "attn1_out": ("attn1.to_out.0",),
    "attn2_q": ("attn2.to_q",),
    "attn2_kv": ("attn2.to_k", "attn2.to_v"),
    "attn2_out": ("attn2.to_out.0",),
    "ff_up": ("ff.net.0.proj",),
    "ff_down": ("ff.net.2",),
}


# ------------------------------------------------------------------------------ quantizers


def _f32(x):
    return x.to(torch.float32).to(torch.float64)


def quant_weight(w, bits, symmetric, group=0):
    """uniform per-row (per-group: `group` columns a scale) fake quantization as
    plugins/quantizers/uniform.ts (f64 math, f32 scale)."""
    scale, zero, levels = uniform_grid_full(w, bits, symmetric, group)
    w = w.detach().to(torch.float64)
    q = (torch.floor(w / scale + 0.5) + zero).clamp(0, levels)
    return _f32((q - zero) * scale).to(torch.float32)


def uniform_grid_full(w, bits, symmetric, group=0):
    """uniform_grid's (scale, zero) per weight [N, K]: per row, or per run of `group` columns
    (uniform's --group-size; each group searched on its own)."""
    N, K = w.shape
    if not group:
        s, z, levels = uniform_grid(w, bits, symmetric)
        return s.expand(N, K), z.expand(N, K), levels
    if K % group:
        raise ValueError(f"weight group {group} does not divide K = {K}")
    s, z, levels = uniform_grid(w.reshape(N * K // group, group), bits, symmetric)
    return (s.reshape(N, K // group).repeat_interleave(group, 1),
            z.reshape(N, K // group).repeat_interleave(group, 1), levels)


def uniform_grid(w, bits, symmetric):
    """Per-row (scale, zero) that quant_weight picks (the same clip-ratio search)."""
    w = w.detach().to(torch.float64)
    lo = w.min(1, keepdim=True).values.clamp(max=0)
    hi = w.max(1, keepdim=True).values.clamp(min=0)
    levels, half = 2**bits - 1, 2 ** (bits - 1)
    bs = torch.ones_like(lo)
    bz = torch.zeros_like(lo)
    best_err = torch.full((w.shape[0], 1), math.inf, dtype=torch.float64, device=w.device)
    nonzero = hi > lo
    for r in CLIP_RATIOS:
        if symmetric:
            scale = _f32(r * torch.maximum(-lo, hi) / (half - 1))
            zero = torch.full_like(scale, half)
        else:
            scale = _f32(r * (hi - lo) / levels)
            zero = torch.floor(-(r * lo) / scale + 0.5).clamp(0, levels)
        scale = torch.where(nonzero, scale, torch.ones_like(scale))
        q = (torch.floor(w / scale + 0.5) + zero).clamp(0, levels)
        err = ((_f32((q - zero) * scale) - w) ** 2).sum(1, keepdim=True)
        upd = err < best_err
        bs, bz = torch.where(upd, scale, bs), torch.where(upd, zero, bz)
        best_err = torch.where(upd, err, best_err)
    return bs, bz, levels


def gptq_weight(w, bits, symmetric, h, damp=0.01, act_order=False, group=0):
    """GPTQ (column-by-column rounding with the error pushed onto the columns not yet rounded,
    weighted by the inverse Hessian H = X^T X of the layer's calibration inputs), on the fixed
    grid of quant_weight (per row, or per `group` columns in the weight's own order: static
    groups); act_order: columns by decreasing H_jj."""
    scale, zero, levels = uniform_grid_full(w, bits, symmetric, group)
    perm = torch.argsort(torch.diag(h), descending=True) if act_order else None
    if perm is not None:
        w, h, scale, zero = w[:, perm], h[perm][:, perm], scale[:, perm], zero[:, perm]
    W = w.detach().to(torch.float64).clone()
    H = h.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for j in range(W.shape[1]):
        col, sj, zj = W[:, j], scale[:, j], zero[:, j]
        q = (torch.floor(col / sj + 0.5) + zj).clamp(0, levels)
        Q[:, j] = _f32((q - zj) * sj)
        err = (col - Q[:, j]) / U[j, j]
        W[:, j + 1:] -= err[:, None] * U[j, j + 1:][None, :]
    Q = Q.to(torch.float32)
    return Q if perm is None else Q[:, torch.argsort(perm)]


# ------------------------------------------------------------------------------ configs


def quant_layers(dit, kinds=None, blocks=None):
    """{name: nn.Linear} of the linears webdit quantizes (optionally only some kinds / blocks)."""
    sfx = None if kinds is None else tuple(s for k in kinds for s in KINDS[k])
    out = {}
    for name, m in dit.named_modules():
        if not isinstance(m, nn.Linear) or name.startswith(KEEP_FP):
            continue
        parts = name.split(".")
        assert parts[0] == "transformer_blocks", name
        if blocks is not None and int(parts[1]) not in blocks:
            continue
        if sfx is not None and ".".join(parts[2:]) not in sfx:
            continue
        out[name] = m
    return out


def parse_config(name):
    """`fp32`, `wXaY` (X, Y in 4, 8, 16), optional `/gN` (weights in groups of N columns, as
    uniform's --group-size), `:kind+kind`, `@blocks` (0+1), `~sym`/`~asym`;
    `outnoise=REL` (Gaussian noise of REL x RMS on the model's output at every step, per CFG half);
    `outscale=F` (the model's output times F at every step: a systematic gain error);
    `initnoise=REL` (the initial noise perturbed by REL x N(0, 1)); `+lrR` before `+gptq` keeps a
    rank-R SVD branch of each weight in f32, run on the unquantized input, and quantizes the rest
    (SVDQuant's low-rank branch); a `^cfg` suffix shares each
    token's activation scale between its two CFG halves; `^mean` / `^mid` centre each sample's
    channels by their mean / midrange over its tokens before quantizing (quantize --center:
    the centre is added back exact); `^gN` (N channels a scale), `^asym` (min-to-max levels),
    `^cfgd` (quantize [uncond; cond − uncond]), `^had` (a randomised block Hadamard, no
    smoothing), in that order before `^mean`/`^mid`, are variants (probe_util.quant_act:
    webdit has the groups and their asymmetric levels as --act-group, --act-asym); a `%A-B`
    suffix (before `^cfg`) quantizes only sampler steps A..B (0-based, inclusive), the others
    run in FP32."""
    c = {"name": name, "wbits": 16, "abits": 16, "kinds": None, "blocks": None, "sym": None,
         "outnoise": 0.0, "outscale": 1.0, "initnoise": 0.0, "cfg_share": name.endswith("^cfg"), "steps": None,
         "center": None, "group": 0, "wgroup": 0, "asym": False, "cfg_delta": False, "had": False}
    name = name.removesuffix("^cfg")
    for m, mode in (("^mean", "mean"), ("^mid", "midrange")):
        if name.endswith(m):
            c["center"], name = mode, name.removesuffix(m)
    if name.endswith("^had"):
        c["had"], name = True, name.removesuffix("^had")
    if name.endswith("^cfgd"):
        c["cfg_delta"], name = True, name.removesuffix("^cfgd")
    if name.endswith("^asym"):
        c["asym"], name = True, name.removesuffix("^asym")
    gm = re.search(r"\^g([0-9]+)$", name)
    if gm:
        c["group"], name = int(gm.group(1)), name[: gm.start()]
    if "%" in name:
        name, win = name.split("%")
        a, b = win.split("-")
        c["steps"] = (int(a), int(b))
    g = re.search(r"\+gptq(o?)(?:=([0-9.e-]+))?$", name)  # +gptq, +gptqo (act order), =DAMP
    c["gptq"], c["act_order"] = bool(g), bool(g and g.group(1))
    c["damp"] = float(g.group(2)) if g and g.group(2) else 0.01
    name = name[: g.start()] if g else name
    # +lrR: a rank-R SVD branch kept in f32 (SVDQuant); +lrfR: then its down factor refitted to
    # W - Q (the branch absorbs the rounding error in its span); +lrhR: the branch refitted as the
    # best rank R of W - Q in the Hessian's norm, the rest re-quantized (twice)
    lr = re.search(r"\+lr([fh]?)([0-9]+)$", name)
    c["lowrank"] = int(lr.group(2)) if lr else 0
    c["lr_refit"] = lr.group(1) if lr else ""
    name = name[: lr.start()] if lr else name
    if name == "fp32":
        return c
    if name.startswith("outscale="):
        c["outscale"] = float(name.split("=")[1])
        return c
    if name.startswith("outnoise="):
        c["outnoise"] = float(name.split("=")[1])
        return c
    if name.startswith("initnoise="):
        c["initnoise"] = float(name.split("=")[1])
        return c
    base = name
    wg = re.search(r"/g([0-9]+)", base)  # w4a16/g64: uniform weights with groups of 64 columns
    c["wgroup"] = int(wg.group(1)) if wg else 0
    base = base[: wg.start()] + base[wg.end():] if wg else base
    if "~" in base:
        base, s = base.split("~")
        c["sym"] = {"sym": True, "asym": False}[s]
    if "@" in base:
        base, b = base.split("@")
        c["blocks"] = [int(v) for v in b.split("+")]
    if ":" in base:
        base, k = base.split(":")
        c["kinds"] = k.split("+")
        for kk in c["kinds"]:
            if kk not in KINDS:
                raise ValueError(f"unknown layer kind {kk!r} (one of {', '.join(KINDS)})")
    w, a = base[1:].split("a")
    c["wbits"], c["abits"] = int(w), int(a)
    if c["sym"] is None:  # webdit's default (runtime/quant/quantize.ts)
        c["sym"] = c["wbits"] == 8 and c["abits"] < 16
    return c


class Applied:
    """Fake quantization installed on a model (weights swapped, activation pre-hooks);
    `set_on(False)` puts the FP32 weights back and bypasses the hooks until `set_on(True)`."""

    def __init__(self, dit, c, hessians=None):
        self.saved, self.hooks, self.on = {}, [], True
        if c["wbits"] == 16 and c["abits"] == 16:
            return
        for name, m in quant_layers(dit, c["kinds"], c["blocks"]).items():
            if c["wbits"] < 16:
                w = m.weight.data
                low = 0
                if c["lowrank"]:
                    u, sv, vh = torch.linalg.svd(w.to(torch.float64), full_matrices=False)
                    r = c["lowrank"]
                    low = ((u[:, :r] * sv[:r]) @ vh[:r]).to(torch.float32)
                    w = w - low
                def quant(w):
                    if c["gptq"]:
                        return gptq_weight(w, c["wbits"], c["sym"], hessians[name], damp=c["damp"],
                                           act_order=c["act_order"], group=c["wgroup"])
                    return quant_weight(w, c["wbits"], c["sym"], c["wgroup"])
                q = quant(w)
                full = m.weight.data.to(torch.float64)
                if c["lr_refit"] == "f":  # L = U Uᵀ (W - Q): the best branch with U kept
                    ur = u[:, : c["lowrank"]]
                    low = (ur @ (ur.T @ (full - q.to(torch.float64)))).to(torch.float32)
                elif c["lr_refit"] == "h":
                    hh = hessians[name].to(torch.float64)
                    hh = hh + 0.01 * hh.diag().mean() * torch.eye(hh.shape[0], dtype=hh.dtype, device=hh.device)
                    ev, evec = torch.linalg.eigh(hh)
                    sq = (evec * ev.clamp_min(0).sqrt()) @ evec.T
                    isq = (evec * ev.clamp_min(1e-30).rsqrt()) @ evec.T
                    for it in range(3):
                        d = (full - q.to(torch.float64)) @ sq
                        u2, s2, v2 = torch.linalg.svd(d, full_matrices=False)
                        r = c["lowrank"]
                        low = (((u2[:, :r] * s2[:r]) @ v2[:r]) @ isq).to(torch.float32)
                        if it < 2:
                            q = quant(m.weight.data - low)
                self.saved[name] = (m, m.weight.data.clone(), q)
                m.weight.data = q
                if c["lowrank"]:  # x·Lᵀ on the unquantized input, added to the quantized product
                    self._low_rank_branch(m, low)
            if c["abits"] < 16:
                kw = {k: c[k] for k in ("center", "group", "asym", "cfg_delta", "had")}
                bits, share = c["abits"], c["cfg_share"]
                self.hooks.append(m.register_forward_pre_hook(
                    lambda _m, inp, b=bits, sh=share, kw=kw: (quant_act(inp[0], b, sh, **kw),) if self.on else None))

    def _low_rank_branch(self, m, low):
        held = {}

        def keep(_m, inp):
            held["x"] = inp[0]

        def add(_m, _inp, out):
            return out + held.pop("x") @ low.T if self.on else out
        self.hooks.append(m.register_forward_pre_hook(keep))  # before the activation quantizer's
        self.hooks.append(m.register_forward_hook(add))

    def set_on(self, on):
        self.on = on
        for m, w, q in self.saved.values():
            m.weight.data = q if on else w

    def remove(self):
        for m, w, _q in self.saved.values():
            m.weight.data = w
        for h in self.hooks:
            h.remove()


class StepWindow(nn.Module):
    """The model with `applied` quantization on only for sampler steps lo..hi (one call a step)."""

    def __init__(self, model, applied, lo, hi):
        super().__init__()
        self.model, self.applied, self.lo, self.hi, self.i = model, applied, lo, hi, 0

    def forward(self, *a, **k):
        self.applied.set_on(self.lo <= self.i <= self.hi)
        self.i += 1
        return self.model(*a, **k)


class NoisyOutput(nn.Module):
    """The model with its output times `scale`, plus Gaussian noise of `rel` x RMS (per CFG half)."""

    def __init__(self, dit, rel, seed, scale=1.0):
        super().__init__()
        self.dit, self.rel, self.scale = dit, rel, scale
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, x, *a, **k):
        out = self.dit(x, *a, **k) * self.scale
        if not self.rel:
            return out
        rms = out.pow(2).mean().sqrt()
        return out + self.rel * rms * torch.randn(out.shape, generator=self.gen).to(out.device)


# ------------------------------------------------------------------------------ run


def to_u8(x):
    return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255).to(torch.uint8)


def psnr_u8(a, b):
    e = (a.double() - b.double()).pow(2).mean().item()
    return math.inf if e == 0 else 10 * math.log10(255.0**2 / e)


def cosine(a, b):
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    return float(a @ b / (a.norm() * b.norm()))


class Probe:
    def __init__(self, args):
        m = args.model
        dev = self.device = args.device
        self.dit = PixArtTransformer.from_pretrained(os.path.join(m, "transformer"), torch.float32).eval().to(dev)
        te = EmojiCaptionEncoder.from_pretrained(os.path.join(m, "text_encoder"), torch.float32).eval().to(dev)
        vocab = json.load(open(os.path.join(m, "tokenizer", "vocab.json")))
        tok = Tokenizer(vocab, te.config.max_length if hasattr(te, "config") else 16)
        prompts = [p.strip() for p in open(args.prompts) if p.strip()][: args.n]
        self.prompts = prompts
        with torch.no_grad():
            ids, mask = (t.to(dev) for t in tok.batch(prompts))
            self.y, self.mask = te(ids, mask), mask
            L = ids.shape[1]
            nids = torch.full((len(prompts), L), PAD, dtype=torch.long)
            nids[:, 0] = NULL
            nmask = torch.zeros((len(prompts), L), dtype=torch.long)
            nmask[:, 0] = 1
            nids, nmask = nids.to(dev), nmask.to(dev)
            self.ny, self.nmask = te(nids, nmask), nmask
        per = 3 * 64 * 64
        if args.noise == "webdit":
            z = np.concatenate([webdit_normals(args.seed, per) for _ in prompts])
            self.noise = torch.from_numpy(z).reshape(len(prompts), 3, 64, 64)
        else:
            g = torch.Generator().manual_seed(args.seed)
            self.noise = torch.randn(len(prompts), 3, 64, 64, generator=g)
        self.noise = self.noise.to(dev)
        self.steps, self.guidance = args.steps, args.guidance
        self.hessians = None

    @torch.no_grad()
    def collect_hessians(self, other):
        """H = sum of x^T x over every input row of each quantized linear, over `other`'s FP32
        run (its prompts: the calibration set, all steps, both CFG halves)."""
        hs, hooks = {}, []
        for name, m in quant_layers(self.dit).items():
            def hook(_m, inp, name=name):
                xt = inp[0].reshape(-1, inp[0].shape[-1]).T.contiguous()
                hs[name] = hs.get(name, 0) + fast_linear(xt, xt).to(torch.float64)  # x^T x
            hooks.append(m.register_forward_pre_hook(hook))
        try:
            other.run(parse_config("fp32"))
        finally:
            for h in hooks:
                h.remove()
        self.hessians = hs

    def run(self, c, traj=False):
        model, lat = self.dit, self.noise
        if c["outnoise"] or c["outscale"] != 1.0:
            model = NoisyOutput(self.dit, c["outnoise"], 1234, c["outscale"])
        if c["initnoise"]:
            g = torch.Generator().manual_seed(4321)
            lat = lat + c["initnoise"] * torch.randn(lat.shape, generator=g).to(lat.device)
        ap = Applied(self.dit, c, self.hessians)
        if c["steps"]:
            model = StepWindow(model, ap, *c["steps"])
        try:
            return sample(model, lat, self.y, self.mask, self.ny, self.nmask, steps=self.steps,
                          guidance_scale=self.guidance, sampler="dpm++2m", return_trajectory=traj)
        finally:
            ap.remove()

    @torch.no_grad()
    def teacher(self, c, xs, ts, ref_eps=None):
        """Guided epsilon of config c at the FP32 trajectory's inputs xs[i] (step i)."""
        ap = Applied(self.dit, c, self.hessians)
        try:
            emb = torch.cat([self.ny, self.y])
            mask = torch.cat([self.nmask, self.mask])
            eps = []
            for x, t in zip(xs, ts):
                out = self.dit(torch.cat([x, x]), emb, t.to(x.device).expand(2 * x.shape[0]), encoder_attention_mask=mask)
                u, cc = out.chunk(2)
                eps.append(u + self.guidance * (cc - u))
            return torch.stack(eps)
        finally:
            ap.remove()


@torch.no_grad()
def act_stats(p, xs, ts, steps=(0, 10, 19), bits=8):
    """Per layer kind, on the FP32 trajectory's inputs at some steps: the inputs' per-token
    crest factor max|x|/rms(x) (mean and max over tokens) and the A8 quantization SQNR (dB)."""
    acc = {}
    hooks = []
    for name, m in quant_layers(p.dit).items():
        kind = next(k for k, sf in KINDS.items() if name.split(".", 2)[2] in sf)

        def hook(_m, inp, kind=kind):
            x = inp[0].reshape(-1, inp[0].shape[-1])
            rms = x.pow(2).mean(1).sqrt().clamp_min(1e-30)
            crest = x.abs().amax(1) / rms
            e = (quant_act(x, bits) - x).pow(2).sum()
            a = acc.setdefault(kind, {"crest_sum": 0.0, "n": 0, "crest_max": 0.0, "sig": 0.0, "err": 0.0})
            a["crest_sum"] += float(crest.sum())
            a["n"] += crest.numel()
            a["crest_max"] = max(a["crest_max"], float(crest.max()))
            a["sig"] += float(x.pow(2).sum())
            a["err"] += float(e)

        hooks.append(m.register_forward_pre_hook(hook))
    try:
        emb, mask = torch.cat([p.ny, p.y]), torch.cat([p.nmask, p.mask])
        for i in steps:
            x = xs[i]
            p.dit(torch.cat([x, x]), emb, ts[i].to(x.device).expand(2 * x.shape[0]), encoder_attention_mask=mask)
    finally:
        for h in hooks:
            h.remove()
    return {k: {"crest_mean": a["crest_sum"] / a["n"], "crest_max": a["crest_max"],
                "a8_sqnr_db": 10 * math.log10(a["sig"] / a["err"])} for k, a in acc.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/emoji-s")
    ap.add_argument("--prompts", default="bench/prompts/emoji_fidelity.txt")
    ap.add_argument("--n", type=int, default=4, help="first N prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", choices=["webdit", "torch"], default="webdit")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=None,
                    help="default: the model's (model_index.json webdit.default_guidance), else PixArt's 4.5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--configs", default="w8a16,w16a8,w8a8,w4a16,w4a8")
    ap.add_argument("--teacher", action="store_true", help="also the per-forward error on the FP32 trajectory")
    ap.add_argument("--out", help="JSON results file (rows appended as they finish)")
    ap.add_argument("--webdit-ref", help="webdit's FP32 samples to compare with the torch FP32 images "
                    "(deno task ablation's .cache/ablation/<hash>/reference.safetensors, same prompts and seed)")
    ap.add_argument("--act-stats", action="store_true", help="per layer kind: input crest factor and A8 SQNR")
    ap.add_argument("--calib-prompts", help="file of prompts whose FP32 run gives the GPTQ Hessians (configs "
                    "with +gptq); default webdit's CALIBRATION_PROMPTS (runtime/quant/calibrate.ts)")
    ap.add_argument("--results", help="also write BENCHMARKS.md's results format (one PSNR row per config)")
    ap.add_argument("--slow", action="store_true", help="keep torch's own matmuls (no oneDNN routing)")
    ap.add_argument("--device", default="cpu", help="torch device (cuda: f32 matmuls without TF32)")
    args = ap.parse_args()
    if args.guidance is None:  # as webdit's generate and eval: the model's own default
        try:
            with open(os.path.join(args.model, "model_index.json")) as f:
                args.guidance = float(json.load(f).get("webdit", {}).get("default_guidance", 4.5))
        except FileNotFoundError:
            args.guidance = 4.5
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if not args.slow and args.device == "cpu":
        use_fast_matmuls()
    p = Probe(args)
    if "+gptq" in args.configs:
        t0 = time.time()
        cp = args.calib_prompts
        if cp is None:  # webdit's own list, one source of truth
            src = open(os.path.join(HERE, "../../runtime/quant/calibrate.ts")).read()
            body = re.search(r"CALIBRATION_PROMPTS: readonly string\[\] = \[(.*?)\];", src, re.S).group(1)
            cp = "/tmp/webdit_calibration_prompts.txt"
            with open(cp, "w") as f:
                f.write("\n".join(re.findall(r'"([^"]+)"', body)) + "\n")
        calib = Probe(argparse.Namespace(**{**vars(args), "prompts": cp, "n": 1000}))
        calib.dit = p.dit
        p.collect_hessians(calib)
        print(f"GPTQ Hessians from {len(calib.prompts)} calibration prompts: {time.time() - t0:.1f} s", flush=True)
    t0 = time.time()
    with torch.no_grad():
        ref, ts, traj = p.run(parse_config("fp32"), traj=True)
        ref, traj = ref.cpu(), traj.cpu()
    ref_u8 = to_u8(ref)
    xs = torch.cat([p.noise[None], traj[:-1].to(p.device)])  # the input of step i
    ref_eps = p.teacher(parse_config("fp32"), xs, ts) if args.teacher else None
    print(f"fp32 reference: {time.time() - t0:.1f} s; noise {args.noise} seed {args.seed}; prompts {p.prompts}",
          flush=True)
    res = {"model": args.model, "prompts": p.prompts, "seed": args.seed, "noise": args.noise, "steps": args.steps,
           "guidance": args.guidance, "sampler": "dpm++2m", "torch": torch.__version__, "rows": []}
    if args.act_stats:
        res["act_stats"] = act_stats(p, xs, ts)
        print("| layer kind | input max/rms per token (mean) | (max) | A8 SQNR dB |\n| --- | ---: | ---: | ---: |")
        for k, a in res["act_stats"].items():
            print(f"| {k} | {a['crest_mean']:.1f} | {a['crest_max']:.1f} | {a['a8_sqnr_db']:.1f} |", flush=True)
    print("| config | PSNR dB | min | cosine | per-forward rel. err | s |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    if args.webdit_ref:
        from stio import load_file

        if args.noise != "webdit":
            raise ValueError("--webdit-ref needs --noise webdit")
        wl = load_file(args.webdit_ref)["latents"].float()
        if wl.shape != ref.shape:
            raise ValueError(f"{args.webdit_ref}: latents {list(wl.shape)}, expected {list(ref.shape)}")
        ps = [psnr_u8(to_u8(wl[i]), ref_u8[i]) for i in range(len(p.prompts))]
        row = {"config": "webdit fp32 (its lavapipe reference) vs torch fp32", "psnr": sum(ps) / len(ps),
               "psnr_min": min(ps), "psnr_per_image": ps,
               "cosine": sum(cosine(wl[i], ref[i]) for i in range(len(ps))) / len(ps)}
        res["rows"].append(row)
        print(f"| {row['config']} | {row['psnr']:.2f} | {row['psnr_min']:.2f} | {row['cosine']:.5f} | | |", flush=True)
    for name in [s for s in args.configs.split(",") if s]:
        c = parse_config(name)
        t1 = time.time()
        with torch.no_grad():
            x = p.run(c).cpu()
        u8 = to_u8(x)
        ps = [psnr_u8(u8[i], ref_u8[i]) for i in range(len(p.prompts))]
        row = {"config": name, "psnr": sum(ps) / len(ps), "psnr_min": min(ps), "psnr_per_image": ps,
               "cosine": sum(cosine(x[i], ref[i]) for i in range(len(ps))) / len(ps)}
        if args.teacher and not (c["outnoise"] or c["initnoise"] or c["outscale"] != 1.0):
            eps = p.teacher(c, xs, ts)
            d = (eps - ref_eps).flatten(1).norm(dim=1) / ref_eps.flatten(1).norm(dim=1)
            row["fwd_rel_err_mean"] = float(d.mean())
            row["fwd_rel_err_per_step"] = [round(float(v), 6) for v in d]
        row["seconds"] = round(time.time() - t1, 1)
        res["rows"].append(row)
        fe = row.get("fwd_rel_err_mean")
        print(f"| {name} | {row['psnr']:.2f} | {row['psnr_min']:.2f} | {row['cosine']:.5f} | "
              f"{'' if fe is None else f'{fe:.2e}'} | {row['seconds']} |", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(res, f, indent=1)
                f.write("\n")
    if args.results:  # and the .md table beside it
        write_results(args.results,
                      results_file([res], "python3 tools/torch/quant_probe.py " + " ".join(sys.argv[1:]), args.device))


if __name__ == "__main__":
    main()
