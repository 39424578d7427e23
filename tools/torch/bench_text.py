"""PyTorch's time for the text encoders (the peer of bench/text_encoder_bench.ts): transformers'
T5EncoderModel at T5-v1.1-XXL's shape (PixArt-α/Σ's and FLUX's) and CLIPTextModel at CLIP-L's
(FLUX's pooled prompt), random weights, on CUDA, eager: fp32 with TF32 off (`..._fp32`) and bf16
(`..._bf16`, as FLUX ships T5), CUDA-event time per encode, the same token counts:
`torch_t5_xxl_encode_120x2` (a prompt and its "" negative, masked), `torch_t5_xxl_encode_512`,
`torch_clip_l_encode_77`.

  python3 tools/torch/bench_text.py --commit <hash> --out-dir bench/results
"""

import datetime
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vae import timed  # noqa: E402
from results_format import peer_arg_parser, timing_row, write_torch_results  # noqa: E402


def main():
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    ap = peer_arg_parser()
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    t5cfg = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                     feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False, use_cache=False)
    clipcfg = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                             num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
    rows = []
    with torch.no_grad():
        for tag, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            with torch.device("cuda"):
                t5 = T5EncoderModel(t5cfg).to(dt).eval()
                clip = CLIPTextModel(clipcfg).to(dt).eval()
            cases = []
            for B, L in ((2, 120), (1, 512)):
                ids = torch.randint(0, 32128, (B, L), device="cuda")
                mask = None
                if B > 1:  # the prompt keeps 30 tokens, its "" negative 1
                    mask = torch.zeros(B, L, dtype=torch.long, device="cuda")
                    mask[0, :30] = 1
                    mask[1, :1] = 1
                name = f"torch_t5_xxl_encode_{L}x{B}" if B > 1 else f"torch_t5_xxl_encode_{L}"
                cases.append((name, lambda i=ids, m=mask: t5(i, attention_mask=m)))
            cids = torch.randint(0, 49408, (1, 77), device="cuda")
            cases.append(("torch_clip_l_encode_77", lambda: clip(cids)))
            for name, fn in cases:
                ms = timed(fn, args.warmup, args.iters)
                rows.append(timing_row(f"{name}_{tag}", ms, f"{len(ms)} CUDA-event samples after {args.warmup} warm-up"))
            del t5, clip
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(0)
    date = datetime.date.today().isoformat()
    notes = ("transformers T5EncoderModel (T5-v1.1-XXL shape) and CLIPTextModel (CLIP-L), random weights, eager "
             "(the attention implementation transformers picks), fp32 with TF32 off, and bf16")
    command = f"python3 tools/torch/bench_text.py --commit {args.commit}"
    import transformers
    extra = {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
             "notes": notes}
    doc, _ = write_torch_results(args.out_dir, "torch_text_encoder", name, command, args.commit, rows, extra, date)
    print(json.dumps(doc, indent=2), flush=True)


if __name__ == "__main__":
    main()
