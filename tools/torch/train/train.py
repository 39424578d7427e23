"""Trains the bundled emoji model (caption encoder + pixel-space PixArt DiT) for a time budget.

Epsilon prediction on the DDPM schedule (1000 steps, linear betas 1e-4..0.02), uniform t,
images in [-1, 1], caption dropout 10% (-> "<null>"), bf16 autocast, AdamW, EMA of the
weights. Runs until --minutes have passed, checkpointing every --save-every seconds to --out
(params + EMA, fp32; the optimizer state is not kept, so a resumed run re-warms the LR).

  python3 tools/torch/train/train.py --size a --data .train --out $OUT [--resume .train/ckpt]
      [--init-from models/emoji-s-b] [--minutes 9] [--batch 256] [--lr 5e-4] [--compile 1] [--anneal 0]
      [--weighting eps|trunc] [--check-roundtrip 1]
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emoji_model import Joint, init_weights, load_ckpt, load_data, save_ckpt, to_model_space  # noqa: E402
from samplers import alphas_cumprod  # noqa: E402


def log(**kw):
    print(json.dumps(kw), flush=True)


def batch_sampler(imgs, cap, abar, b, p_drop, device, gen):
    null_ids = torch.zeros(16, dtype=torch.long, device=device)
    null_ids[0] = 1
    null_mask = torch.zeros(16, dtype=torch.long, device=device)
    null_mask[0] = 1

    def draw():
        ci = torch.multinomial(cap["weight"], b, replacement=True, generator=gen)
        ids, mask = cap["ids"][ci], cap["mask"][ci]
        drop = torch.rand(b, device=device, generator=gen) < p_drop
        ids = torch.where(drop[:, None], null_ids[None], ids)
        mask = torch.where(drop[:, None], null_mask[None], mask)
        x0 = to_model_space(imgs[cap["img"][ci]])
        t = torch.randint(0, 1000, (b,), device=device, generator=gen)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        a = abar[t][:, None, None, None]
        return a.sqrt() * x0 + (1 - a).sqrt() * noise, t, ids, mask, noise

    return draw


def loss_fn(model, batch, weight=None):
    """Epsilon MSE; with `weight` [1000], also the per-timestep weighted mean (what is optimised)."""
    x_t, t, ids, mask, noise = batch
    with torch.autocast(device_type=x_t.device.type, dtype=torch.bfloat16, enabled=x_t.device.type == "cuda"):
        pred = model(x_t, t.float(), ids, mask)
    per = (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))
    if weight is None:
        return per.mean()
    return per.mean(), (weight[t] * per).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", required=True, choices=["a", "b", "c"])
    ap.add_argument("--data", default=".train")
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--init-from", default=None,
                    help="start from an exported model folder (models/emoji-s-<size>: its fp16 EMA weights and "
                         "losses.json) when no checkpoint is given; the EMA restarts from those weights")
    ap.add_argument("--minutes", type=float, default=9.0)
    ap.add_argument("--save-every", type=float, default=120.0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--rewarm", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--p-drop", type=float, default=0.1)
    ap.add_argument("--compile", type=int, default=1)
    ap.add_argument("--anneal", type=int, default=0, help="decay the LR linearly to 5%% over this run")
    ap.add_argument("--anneal-span", default=None,
                    help="A,B: this run covers fractions A..B of one linear decay to 5%% spread over several runs")
    ap.add_argument("--weighting", default="eps", choices=["eps", "trunc"],
                    help="eps: plain epsilon MSE; trunc: x min(max(1/SNR, 1), --w-max), more weight on high noise")
    ap.add_argument("--w-max", type=float, default=10.0)
    ap.add_argument("--check-roundtrip", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args()
    t_start = time.time()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    imgs, cap, tok, meta = load_data(args.data, device)
    joint = Joint(args.size, len(tok.vocab))
    state = {"step": 0, "images": 0, "train_seconds": 0.0, "history": [], "runs": []}
    if args.resume and os.path.exists(os.path.join(args.resume, f"ckpt_{args.size}_params.safetensors")):
        params, ema_sd, md = load_ckpt(args.resume, args.size)
        joint.load_state_dict(params)
        state.update({k: md[k] for k in ("step", "images", "train_seconds", "history", "runs") if k in md})
        resumed = True
    elif args.init_from:
        from pixart import PixArtTransformer
        from text_encoder import EmojiCaptionEncoder

        joint.transformer.load_state_dict(
            PixArtTransformer.from_pretrained(os.path.join(args.init_from, "transformer")).state_dict())
        joint.text_encoder.load_state_dict(
            EmojiCaptionEncoder.from_pretrained(os.path.join(args.init_from, "text_encoder")).state_dict())
        lj = os.path.join(args.init_from, "losses.json")
        if os.path.exists(lj):
            prev = json.load(open(lj))
            state.update({k: prev[k] for k in ("step", "images", "train_seconds", "history", "runs") if k in prev})
        ema_sd = None
        resumed = True
    else:
        init_weights(joint, args.seed)
        ema_sd = None
        resumed = False
    joint = joint.to(device)
    joint.set_attn("sdpa")
    names = [n for n, _ in joint.named_parameters()]
    params = [p for _, p in joint.named_parameters()]
    ema = [(ema_sd[n].to(device).clone() if ema_sd is not None else p.detach().clone()) for n, p in
           zip(names, params)]
    n_dit = sum(p.numel() for p in joint.transformer.parameters())
    n_te = sum(p.numel() for p in joint.text_encoder.parameters())
    log(event="start", size=args.size, device=torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        resumed=resumed, step=state["step"], dit_params=n_dit, te_params=n_te, vocab=len(tok.vocab),
        images=int(imgs.shape[0]), captions=int(cap["ids"].shape[0]), batch=args.batch, lr=args.lr,
        torch=torch.__version__)
    try:
        opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0, fused=device == "cuda")
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    abar = alphas_cumprod().to(device)
    weight = None
    if args.weighting == "trunc":  # epsilon loss x clamp(1 / SNR, 1, w_max) = truncated x0-space weighting
        weight = ((1 - abar) / abar).clamp(1.0, args.w_max)
    gen = torch.Generator(device=device).manual_seed(args.seed * 1000 + state["step"] + (0 if args.size == "a" else 7))
    draw = batch_sampler(imgs, cap, abar, args.batch, args.p_drop, device, gen)
    model = joint
    compiled = False
    warm = args.rewarm if resumed else args.warmup
    span = [float(x) for x in args.anneal_span.split(",")] if args.anneal_span else ([0.0, 1.0] if args.anneal else None)
    budget = args.minutes * 60.0
    t0 = time.time()
    last_save = t0
    local = 0
    acc = torch.zeros((), device=device)
    acc_n = 0
    t_log = time.time()
    eager_rate = None
    fixed = None
    run = {"start_step": state["step"], "compile": bool(args.compile), "batch": args.batch, "lr": args.lr,
           "anneal": span, "weighting": args.weighting if weight is None else f"trunc<={args.w_max:g}"}
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget:
            break
        if args.compile and not compiled and local == 30:  # eager rate measured first, then compile
            eager_rate = acc_n / max(time.time() - t_log, 1e-9) if acc_n else None
            try:
                model = torch.compile(joint)
                compiled = True
            except Exception as e:  # keep training eagerly
                log(event="compile_failed", error=repr(e))
                args.compile = 0
        frac = elapsed / budget
        lr = args.lr * min(1.0, (local + 1) / warm)
        if span is not None:  # one decay split over runs of at most ~9 min (the device call limit)
            lr *= 1.0 - 0.95 * (span[0] + (span[1] - span[0]) * frac)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = draw()
        try:
            if weight is None:
                loss = loss_fn(model, batch)
                loss.backward()
            else:
                loss, wloss = loss_fn(model, batch, weight)
                wloss.backward()
        except Exception as e:
            if compiled:  # a compile error shows up at the first call: fall back to eager
                log(event="compile_failed", error=repr(e)[:500])
                model, compiled, args.compile = joint, False, 0
                opt.zero_grad(set_to_none=True)
                continue
            raise
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step = state["step"] + 1
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema, d)
            torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - d)
        state["step"] = step
        state["images"] += args.batch
        local += 1
        acc += loss.detach()
        acc_n += 1
        if local % args.log_every == 0 or local == 30:
            now = time.time()
            mean = float(acc / acc_n)
            rate = acc_n / (now - t_log)
            if not math.isfinite(mean):
                log(event="nonfinite_loss", step=step)
                raise SystemExit(2)
            state["history"].append([step, round(mean, 5), round(state["train_seconds"] + now - t0, 1)])
            log(event="train", step=step, loss=round(mean, 5), it_s=round(rate, 2), img_s=round(rate * args.batch),
                lr=lr, grad_norm=round(float(gn), 3), compiled=compiled, elapsed=round(now - t0, 1))
            acc.zero_()
            acc_n = 0
            t_log = now
        if time.time() - last_save >= args.save_every:
            save(args, joint, names, ema, state, t0, run, eager_rate)
            last_save = time.time()
            if args.check_roundtrip and fixed is None:
                fixed = roundtrip(args, joint, draw, len(tok.vocab), device)
    save(args, joint, names, ema, state, t0, run, eager_rate)
    log(event="done", step=state["step"], images=state["images"],
        train_seconds=round(state["train_seconds"] + time.time() - t0, 1), wall=round(time.time() - t_start, 1))


def save(args, joint, names, ema, state, t0, run, eager_rate):
    now = time.time()
    st = dict(state)
    st["train_seconds"] = state["train_seconds"] + (now - t0)
    r = dict(run, end_step=state["step"], seconds=round(now - t0, 1), eager_it_s=eager_rate,
             device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
    st["runs"] = state["runs"] + [r]
    st["size"] = args.size
    save_ckpt(args.out, args.size, joint, {n: e for n, e in zip(names, ema)}, st)
    log(event="saved", step=state["step"], seconds=round(now - t0, 1))


def roundtrip(args, joint, draw, vocab_size, device):
    """Reloads the checkpoint just written and checks weights and one loss match exactly."""
    params, ema_sd, md = load_ckpt(args.out, args.size)
    fresh = Joint(args.size, vocab_size)
    fresh.load_state_dict(params)
    fresh = fresh.to(device)
    fresh.set_attn("sdpa")
    same = all(torch.equal(params[k].to(device), v.float()) for k, v in joint.state_dict().items())
    batch = draw()
    with torch.no_grad():
        a, b = float(loss_fn(joint, batch)), float(loss_fn(fresh, batch))
    log(event="roundtrip", weights_equal=same, loss_live=a, loss_reloaded=b, ok=same and a == b,
        ema_keys=len(ema_sd), meta_step=md["step"])
    return True


if __name__ == "__main__":
    main()
