"""Times one PixArt-alpha-shaped DiT forward in PyTorch (fp32 with TF32 off, and fp16).

28 layers, hidden 1152 (16 heads x 72), patch 2, in_channels 4, sample_size 128 (4096 image
tokens), caption_channels 4096 with 120 caption tokens, out_channels 8 (learned sigma),
resolution/aspect-ratio conditions (the 1024-MS layout), batch 2 (the CFG batch), random
Gaussian weights. Attention through F.scaled_dot_product_attention, as diffusers'
AttnProcessor2_0. Writes BENCHMARKS.md's results JSON (+ a .md table).

  python3 tools/torch/bench_step.py --commit abc1234 --out-dir bench/results [--iters 20]
"""

import datetime
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pixart import PixArtConfig, PixArtTransformer  # noqa: E402
from results_format import peer_arg_parser, timing_row, write_torch_results  # noqa: E402

CFG = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
           cross_attention_dim=1152, sample_size=128, patch_size=2, caption_channels=4096)


def timed(model, inputs, warmup, iters):
    with torch.inference_mode():
        for _ in range(warmup):
            model(*inputs[:3], added_cond_kwargs=inputs[3], encoder_attention_mask=inputs[4])
        torch.cuda.synchronize()
        ms = []
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = model(*inputs[:3], added_cond_kwargs=inputs[3], encoder_attention_mask=inputs[4])
            b.record()
            torch.cuda.synchronize()
            ms.append(a.elapsed_time(b))
    return out, ms


def main():
    ap = peer_arg_parser(iters=20, warmup=5)
    ap.add_argument("--date", default=None)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda"
    torch.manual_seed(0)
    cfg = PixArtConfig.from_dict(CFG)
    model = PixArtTransformer(cfg)
    with torch.no_grad():  # Gaussian weights, std 1/sqrt(fan_in) (biases small)
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.02)
            elif not n.endswith("scale_shift_table"):
                p.normal_(0, p[0].numel() ** -0.5)
    model = model.to(dev).eval()
    model.attn_impl = "sdpa"
    g = torch.Generator(device=dev).manual_seed(1)
    b, L = 2, 120
    x = torch.randn(b, 4, 128, 128, device=dev, generator=g)
    y = torch.randn(b, L, 4096, device=dev, generator=g)
    t = torch.tensor([999.0, 999.0], device=dev)
    mask = torch.ones(b, L, device=dev)
    mask[:, 100:] = 0  # a padded caption, as T5 prompts are
    ac = {"resolution": torch.tensor([[1024.0, 1024.0]] * b, device=dev),
          "aspect_ratio": torch.tensor([[1.0]] * b, device=dev)}
    results = []
    out32, ms32 = timed(model, (x, y, t, ac, mask), args.warmup, args.iters)
    results.append(("fp32", ms32))
    model = model.half()
    h = lambda v: v.half()  # noqa: E731
    out16, ms16 = timed(model, (h(x), h(y), t, {k: h(v) for k, v in ac.items()}, h(mask)), args.warmup, args.iters)
    results.append(("fp16", ms16))
    diff = float((out16.float() - out32).abs().max() / out32.pow(2).mean().sqrt())
    name = torch.cuda.get_device_name(0)
    date = args.date or datetime.date.today().isoformat()
    params = sum(p.numel() for p in model.parameters())
    notes = (f"PixArt-alpha-shaped random model ({params / 1e6:.1f} M params): 28 layers, hidden 1152, "
             "16 heads x 72, 4096 image tokens, 120 caption tokens of 4096 (20 padded), batch 2; "
             "eager PyTorch, SDPA attention, fp32 with TF32 off; CUDA-event time per forward; "
             f"fp16 vs fp32 output max|diff|/rms {diff:.2e}")
    command = f"python3 tools/torch/bench_step.py --commit {args.commit} --iters {args.iters}"
    # The header and rows bench/results_file.ts writes (no Deno in this run: no deno field).
    rows = [timing_row(f"torch_step_pixart_alpha_{tag}", ms,
                       f"{len(ms)} CUDA-event samples of one forward after {args.warmup} warm-up")
            for tag, ms in results]
    extra = {"torch": torch.__version__, "cuda": torch.version.cuda, "notes": notes}
    doc, base = write_torch_results(args.out_dir, "torch_step", name, command, args.commit, rows, extra, date)
    print(json.dumps(doc, indent=2), flush=True)
    print(f"wrote {base}.json", flush=True)
    time.sleep(0)


if __name__ == "__main__":
    main()
