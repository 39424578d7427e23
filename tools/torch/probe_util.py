"""Helpers of tools/torch/quant_probe.py: oneDNN-routed f32 matmuls for this host's torch,
webdit's own PRNG (runtime/io/prng.ts) so the probe draws the same initial noise, and the
BENCHMARKS.md results format of its runs."""

import math
import re

import numpy as np
import torch
import torch.nn.functional as F

import pixart


# ------------------------------------------------------------------------------ activation quantizer


def _hadamard(k, seed=0):
    """A randomised block-diagonal Hadamard (blocks of 128, or k if smaller): ±1 diag × H / √n."""
    n = min(k, 128)
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    g = torch.Generator().manual_seed(seed)
    d = torch.randint(0, 2, (k,), generator=g).to(torch.float32) * 2 - 1
    return d[:, None] * torch.block_diag(*([h / math.sqrt(n)] * (k // n)))


def quant_act(x, bits, cfg_share=False, center=None, group=0, asym=False, cfg_delta=False, had=False):
    """Per-token dynamic symmetric fake quantization (wgsl/act_quant.wgsl). With cfg_share the
    batch is [uncond; cond] and a token's scale is the max over its two CFG halves. With
    center ("mean" or "midrange") each sample's channels are first shifted by their centre
    over its tokens (x [B, T, K]) and the centre added back exactly (quantize --center).

    Variants, to size them (probe configs ^gN, ^asym, ^cfgd): group > 0 gives each run of
    `group` channels of a token its own scale; asym quantizes each token (or group) on 2^b
    levels from its min to its max (webdit has both since: quantize --act-group, --act-asym,
    the asymmetric one only with groups); cfg_delta (not in webdit) quantizes [uncond; cond −
    uncond] and adds the uncond half back to the cond one (exact algebra: the guided
    difference then carries only the delta's rounding). had: the input is rotated by a randomised
    block Hadamard R before quantizing and rotated back (Q(x R) Rᵀ: with FP weights, the same
    product as webdit's Q(x R)(W R)ᵀ), after centring, without smoothing."""
    if cfg_delta and x.shape[0] % 2 == 0:
        h = x.shape[0] // 2
        qu = quant_act(x[:h], bits, False, center, group, asym, had=had)
        qd = quant_act(x[h:] - x[:h], bits, False, center, group, asym, had=had)
        return torch.cat([qu, qu + qd], dim=0)
    if center is not None:
        if center == "mean":
            c = x.mean(-2, keepdim=True)
        else:
            c = 0.5 * x.amax(-2, keepdim=True) + 0.5 * x.amin(-2, keepdim=True)
        return quant_act(x - c, bits, cfg_share, None, group, asym, had=had) + c
    if had:
        r = _hadamard(x.shape[-1]).to(x.dtype)
        return F.linear(quant_act(F.linear(x, r.T.contiguous()), bits, cfg_share, None, group, asym), r)
    if group:
        shape = x.shape
        g = x.reshape(*shape[:-1], shape[-1] // group, group)
        return quant_act(g, bits, cfg_share, None, 0, asym).reshape(shape)
    if asym:
        top = 2**bits - 1
        lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
        delta = (hi - lo) / top
        inv = torch.where(delta > 0, 1.0 / delta, torch.zeros_like(delta))
        return torch.clamp(torch.round((x - lo) * inv), 0, top) * delta + lo
    qmax = 2 ** (bits - 1) - 1
    amax = x.abs().amax(-1, keepdim=True)
    if cfg_share:
        h = amax.shape[0] // 2
        m = torch.maximum(amax[:h], amax[h:])
        amax = torch.cat([m, m], dim=0)
    delta = amax / qmax
    inv = torch.where(amax > 0, 1.0 / delta, torch.zeros_like(delta))
    return torch.clamp(torch.round(x * inv), -qmax - 1, qmax) * delta


# ------------------------------------------------------------------------------ fast f32 matmuls

# This host's torch (Debian 1.13, BLAS_INFO=generic) multiplies at ~2 GFLOP/s; its oneDNN
# linear runs at 30-60 GFLOP/s, so the probe routes F.linear and attention through it.
_mkldnn_linear = torch._C._nn.mkldnn_linear
_dense_linear = F.linear


def fast_linear(x, w, b=None):
    """F.linear through oneDNN (f32 CPU tensors; anything else goes the usual way)."""
    if x.dtype != torch.float32 or x.device.type != "cpu" or torch.is_grad_enabled():
        return _dense_linear(x, w, b)
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    y = _mkldnn_linear(x2.to_mkldnn(), w.contiguous().to_mkldnn(), None if b is None else b.contiguous())
    return y.to_dense().reshape(*x.shape[:-1], w.shape[0])


def fast_attention(q, k, v, bias=None, impl="math"):
    """pixart.attention ("math": softmax(q k^T / sqrt(d) + bias) v) with oneDNN matmuls."""
    b, h, n, d = q.shape
    scores = torch.empty(b, h, n, k.shape[2])
    for i in range(b):
        for j in range(h):
            scores[i, j] = fast_linear(q[i, j], k[i, j])
    scores = scores * (d**-0.5)
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    p = torch.softmax(scores, dim=-1)
    out = torch.empty(b, h, n, v.shape[3])
    for i in range(b):
        for j in range(h):
            out[i, j] = fast_linear(p[i, j], v[i, j].t())
    return out


def use_fast_matmuls():
    F.linear = fast_linear  # nn.Linear.forward looks F.linear up at call time
    pixart.attention = fast_attention


# ------------------------------------------------------------------------------ webdit's PRNG


def _splitmix32(state):
    state = (state + 0x9E3779B9) & 0xFFFFFFFF
    z = state
    z = ((z ^ (z >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
    z = ((z ^ (z >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
    return state, (z ^ (z >> 16)) & 0xFFFFFFFF


def _rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def webdit_normals(seed, n):
    """runtime/io/prng.ts `new Prng(seed).normals(n)` (f32)."""
    st = seed & 0xFFFFFFFF
    s = []
    for _ in range(4):
        st, out = _splitmix32(st)
        s.append(out)

    def next_u32():
        r = (_rotl((s[1] * 5) & 0xFFFFFFFF, 7) * 9) & 0xFFFFFFFF
        t = (s[1] << 9) & 0xFFFFFFFF
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 11)
        return r

    out = np.empty(n, np.float64)
    for i in range(0, n, 2):
        u1 = (next_u32() + 1) / 4294967296
        u2 = next_u32() / 4294967296
        r = math.sqrt(-2 * math.log(u1))
        out[i] = r * math.cos(2 * math.pi * u2)
        if i + 1 < n:
            out[i + 1] = r * math.sin(2 * math.pi * u2)
    return out.astype(np.float32)


# ------------------------------------------------------------------------------ results format


def result_name(config):
    """A config as a lower_snake_case results name: `w4a16+gptqo=0.1` -> `probe_w4a16_gptqo_damp0_1`,
    `w16a8%0-9` -> `probe_w16a8_steps0_9`, `w16a8^cfgd^mean` -> `probe_w16a8_cfgdelta_mean`."""
    n = re.sub(r"\+gptq(o?)=", r"_gptq\1_damp", config).replace("+gptq", "_gptq").replace("%", "_steps")
    n = n.replace("^cfgd", "_cfgdelta")
    n = re.sub(r"\^cfg$", "_cfgshare", n)
    return "probe_" + re.sub(r"[^a-z0-9]+", "_", n.lower()).strip("_")


def results_file(runs, command, device="cpu"):
    """BENCHMARKS.md's results format from probe runs (their --out JSON), header and rows as
    bench/results_file.ts writes them (results_format.py): per config the mean PSNR (dB) as a
    figure row (no timing), its min and cosine in the note; per-image PSNRs, prompts, seed,
    steps and guidance under extra.rows[<name>]."""
    from results_format import figure_row, host_cpu, results_header

    results = []
    per_row = {}
    for run in runs:
        for r in run["rows"]:
            if r["config"].startswith("webdit"):
                continue
            name = result_name(r["config"])
            n = len(r["psnr_per_image"])
            results.append(figure_row(name, round(r["psnr"], 3), "dB",
                                      f"mean PSNR against FP32 over {n} images; min {r['psnr_min']:.3f} dB, "
                                      f"cosine {r['cosine']:.6f}; a figure, not a time"))
            per_row[name] = {"psnr_min": round(r["psnr_min"], 3), "cosine": round(r["cosine"], 6),
                             "psnr_images": [round(v, 3) for v in r["psnr_per_image"]],
                             "prompts": run["prompts"], "seed": run["seed"], "steps": run["steps"],
                             "guidance": run["guidance"]}
    on_gpu = device.startswith("cuda")
    name = torch.cuda.get_device_name(0) if on_gpu else host_cpu()
    adapter = f"pytorch-{'cuda' if on_gpu else 'cpu'} {torch.__version__}"
    return {**results_header(name, adapter, command), "results": results, "extra": {"rows": per_row}}
