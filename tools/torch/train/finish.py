"""Exports trained emoji models (EMA weights, fp16, diffusers layout) and measures prompt fidelity.

For each size: models/emoji-s-<size>/{model_index.json, transformer/, text_encoder/,
tokenizer/, scheduler/, losses.json}; then reloads the exported fp16 files as fp32 and, with
TF32 off, generates every prompt of the list with 20-step DPM-Solver++ 2M and CFG at each
guidance, and scores prompt fidelity: the share of images whose nearest dataset emoji (pixel
MSE at 64x64 on white) is the prompted one. Writes fidelity.json and samples.png.

  python3 tools/torch/train/finish.py --ckpt .train/ckpt --out OUTDIR [--sizes a,b]
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emoji_model import SIZES, Joint, load_ckpt, load_data, null_caption, to_u8  # noqa: E402
from pixart import DIFFUSERS_VERSION, PixArtTransformer  # noqa: E402
from samplers import sample  # noqa: E402
from text_encoder import EmojiCaptionEncoder  # noqa: E402

SCHEDULER = {
    "_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": DIFFUSERS_VERSION,
    "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
    "trained_betas": None, "solver_order": 2, "prediction_type": "epsilon", "thresholding": False,
    "algorithm_type": "dpmsolver++", "solver_type": "midpoint", "lower_order_final": True,
    "euler_at_final": False, "use_karras_sigmas": False, "final_sigmas_type": "zero",
    "lambda_min_clipped": float("-inf"), "variance_type": None, "timestep_spacing": "linspace", "steps_offset": 0,
    # Read by DDIMScheduler.from_config only: its default x0 clipping to [-1, 1] turns this pixel
    # model's guided images to noise (README, "The schedule").
    "clip_sample": False,
}


def export(size, ema, md, tok, out_root):
    joint = Joint(size, len(tok.vocab))
    joint.load_state_dict(ema)
    folder = os.path.join(out_root, f"emoji-s-{size}")
    meta = {"trained_steps": str(md["step"]), "source": "tools/torch/train (EMA weights)"}
    joint.transformer.save_pretrained(os.path.join(folder, "transformer"), dtype=torch.float16, metadata=meta)
    joint.text_encoder.save_pretrained(os.path.join(folder, "text_encoder"), dtype=torch.float16, metadata=meta)
    os.makedirs(os.path.join(folder, "tokenizer"), exist_ok=True)
    os.makedirs(os.path.join(folder, "scheduler"), exist_ok=True)
    dump(os.path.join(folder, "tokenizer", "vocab.json"), tok.vocab, indent=None)
    dump(os.path.join(folder, "tokenizer", "tokenizer_config.json"), {
        "_class_name": "WordTokenizer", "lowercase": True, "normalization": "NFKD, combining marks removed",
        "word_pattern": "[a-z0-9]+", "max_length": tok.max_length, "pad_token": "<pad>", "null_token": "<null>",
        "unk_token": "<unk>", "padding": "max_length (mask 1 for tokens, 0 for padding)", "truncation": True,
        "unconditional": ["<null>"]})
    dump(os.path.join(folder, "scheduler", "scheduler_config.json"), SCHEDULER)
    dump(os.path.join(folder, "losses.json"), {"history": md["history"], "runs": md["runs"], "step": md["step"],
                                               "images": md["images"], "train_seconds": md["train_seconds"],
                                               "columns": ["step", "mean_loss_since_last_entry", "train_seconds"]})
    return folder


def dump(path, obj, indent=2):
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")


@torch.no_grad()
def generate(dit, te, tok, prompts, guidance, seed, device, steps=20):
    ids, mask = tok.batch(prompts, device)
    y = te(ids, mask)
    nids, nmask = null_caption(len(prompts), device)
    ny = te(nids, nmask)
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(len(prompts), 3, 64, 64, generator=g).to(device)
    x = sample(dit, lat, y, mask, ny, nmask, steps=steps, guidance_scale=guidance, sampler="dpm++2m")
    return to_u8(x)


def distances(gen_u8, data_f64, data_sq):
    """Squared pixel distances [B, N] (exact: integers below 2^53 in f64)."""
    g = gen_u8.reshape(gen_u8.shape[0], -1).double()
    return (g * g).sum(1, keepdim=True) + data_sq[None] - 2 * g @ data_f64.T


def hit(d, expected):
    """The prompted emoji is a nearest one (ties: pixel-identical dataset images count)."""
    return d.gather(1, expected[:, None])[:, 0] <= d.min(1).values


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", default=".train")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="a,b")
    ap.add_argument("--prompts", default="bench/prompts/emoji_fidelity.txt")
    ap.add_argument("--guidance", default="1.5,3,4.5,7")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    imgs, cap, tok, meta = load_data(args.data, device)
    data = imgs.reshape(imgs.shape[0], -1).double()
    data_sq = (data * data).sum(1)
    prompts = [p.strip() for p in open(args.prompts) if p.strip()]
    by_name = {}
    for e in meta["emoji"]:
        by_name.setdefault(e["name"], []).append(e["index"])
    expected = []
    for p in prompts:
        if len(by_name.get(p, [])) != 1:
            raise ValueError(f"prompt {p!r} is not exactly one emoji's name")
        expected.append(by_name[p][0])
    expected_t = torch.tensor(expected, device=device)
    assert bool(hit(distances(imgs[expected_t], data, data_sq), expected_t).all()), "nearest-neighbour self check"
    cats = [meta["emoji"][i]["category"] for i in expected]
    guidances = [float(g) for g in args.guidance.split(",")]
    for size in args.sizes.split(","):
        _, ema, md = load_ckpt(args.ckpt, size)
        folder = export(size, ema, md, tok, args.out)
        dit = PixArtTransformer.from_pretrained(os.path.join(folder, "transformer"), torch.float32).to(device).eval()
        te = EmojiCaptionEncoder.from_pretrained(os.path.join(folder, "text_encoder"), torch.float32).to(device).eval()
        dit.attn_impl = te.attn_impl = "sdpa"
        res = {"size": size, "config": SIZES[size], "steps": args.steps, "sampler": "dpm++2m", "seeds": args.seeds,
               "prompts": len(prompts), "weights": "exported fp16, computed in fp32 (TF32 off)",
               "trained_steps": md["step"], "images_seen": md["images"], "train_seconds": md["train_seconds"],
               "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "by_guidance": {}}
        grid_imgs = None
        for g in guidances:
            hits, per_cat, misses = 0, {}, []
            for s in range(args.seeds):
                out = generate(dit, te, tok, prompts, g, 1000 * s + 17, device, args.steps)
                dist = distances(out, data, data_sq)
                nn_idx = dist.argmin(1)
                ok = hit(dist, expected_t).cpu().tolist()
                hits += sum(ok)
                for i, k in enumerate(ok):
                    c = per_cat.setdefault(cats[i], [0, 0])
                    c[0] += k
                    c[1] += 1
                    if not k and s == 0:
                        misses.append([prompts[i], meta["emoji"][int(nn_idx[i])]["name"]])
                if g == 4.5 and s == 0:
                    grid_imgs = out.cpu().numpy()
            res["by_guidance"][str(g)] = {
                "fidelity_pct": round(100.0 * hits / (len(prompts) * args.seeds), 2),
                "per_category_pct": {k: round(100.0 * v[0] / v[1], 1) for k, v in per_cat.items()},
                "misses_seed0": misses}
            print(f"size {size} guidance {g}: fidelity {res['by_guidance'][str(g)]['fidelity_pct']}%", flush=True)
        # one image (CFG batch 2), 20 steps, fp32: a PyTorch reference time
        ids1 = prompts[:1]
        for _ in range(2):
            torch.cuda.synchronize() if device == "cuda" else None
            t0 = time.time()
            generate(dit, te, tok, ids1, 4.5, 0, device, args.steps)
            torch.cuda.synchronize() if device == "cuda" else None
        res["torch_fp32_image_20step_s"] = round(time.time() - t0, 4)
        best = max(res["by_guidance"].items(), key=lambda kv: kv[1]["fidelity_pct"])
        res["best_guidance"] = float(best[0])
        dump(os.path.join(folder, "fidelity.json"), res)
        dump(os.path.join(folder, "model_index.json"), {
            "_class_name": "WebditEmojiPipeline", "_diffusers_version": DIFFUSERS_VERSION,
            "transformer": ["diffusers", "PixArtTransformer2DModel"],
            "text_encoder": ["webdit", "EmojiCaptionEncoder"], "tokenizer": ["webdit", "WordTokenizer"],
            "scheduler": ["diffusers", "DPMSolverMultistepScheduler"], "vae": [None, None],
            "webdit": {"pixel_space": True, "height": 64, "width": 64, "value_range": [-1.0, 1.0],
                       "to_uint8": "round((clamp(x, -1, 1) + 1) * 127.5)", "prediction_type": "epsilon",
                       # PixArt's 4.5 until a model's own sweep says otherwise (docs/decisions/guidance.md)
                       "default_steps": 20, "default_sampler": "dpm++2m", "default_guidance": 4.5, "torch_sweep_best_guidance": res["best_guidance"],
                       "negative_prompt": "<null>", "size": size}})
        if grid_imgs is not None:
            save_grid(grid_imgs[:48], os.path.join(folder, "samples.png"))
            dump(os.path.join(folder, "samples.json"), {"guidance": 4.5, "seed": 17, "steps": args.steps,
                                                        "prompts": prompts[:48], "columns": 8})


def save_grid(u8, path, cols=8):
    from PIL import Image

    n = u8.shape[0]
    rows = (n + cols - 1) // cols
    g = np.full((rows * 66, cols * 66, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        g[r * 66 + 1: r * 66 + 65, c * 66 + 1: c * 66 + 65] = u8[i]
    Image.fromarray(g).save(path)


if __name__ == "__main__":
    main()
