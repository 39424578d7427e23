"""PyTorch's time for the sd-vae decoder (the peer of bench/vae_bench.ts): the same module graph
as tools/torch/make_vae_fixtures.py's independent decoder (conv2d, group_norm, interpolate,
scaled_dot_product_attention), random weights at sd-vae's shape, one image, on CUDA: fp32 with
TF32 off (`torch_vae_decode_sd_{512,1024}_fp32`) and fp16 (`..._fp16`), CUDA-event time per decode.

  python3 tools/torch/bench_vae.py --commit <hash> --out-dir bench/results
"""

import datetime
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_vae_fixtures import decode, random_weights  # noqa: E402
from results_format import peer_arg_parser, timing_row, write_torch_results  # noqa: E402

CFG = dict(block_out_channels=[128, 256, 512, 512], layers_per_block=2, norm_num_groups=32, latent_channels=4,
           scaling_factor=0.18215, shift_factor=None, use_post_quant_conv=True)


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ms.append(a.elapsed_time(b))
    return ms


def main():
    ap = peer_arg_parser()
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    g = torch.Generator().manual_seed(5)
    w = {k: v.cuda() for k, v in random_weights(CFG, g, legacy=False).items()}
    rows = []
    with torch.no_grad():
        for h in (64, 128):
            z = torch.randn(1, 4, h, h, generator=g).cuda()
            for tag, dt in (("fp32", torch.float32), ("fp16", torch.float16)):
                # Cast once, outside the timed decode (decode's own casts are then no-ops).
                wd = {k: v.to(dt) for k, v in w.items()}
                zd = z.to(dt)
                ms = timed(lambda: decode(zd, wd, CFG, False, dt), args.warmup, args.iters)
                rows.append(timing_row(f"torch_vae_decode_sd_{h * 8}_{tag}", ms,
                                       f"{len(ms)} CUDA-event samples of one decode after {args.warmup} warm-up"))
    name = torch.cuda.get_device_name(0)
    date = datetime.date.today().isoformat()
    notes = ("sd-vae decoder ([128, 256, 512, 512], 2 layers a block, 32 groups), random weights, one image; "
             "eager PyTorch (cuDNN convolutions, SDPA), fp32 with TF32 off, and fp16")
    command = f"python3 tools/torch/bench_vae.py --commit {args.commit}"
    extra = {"torch": torch.__version__, "cuda": torch.version.cuda, "notes": notes}
    doc, _ = write_torch_results(args.out_dir, "torch_vae", name, command, args.commit, rows, extra, date)
    print(json.dumps(doc, indent=2), flush=True)


if __name__ == "__main__":
    main()
