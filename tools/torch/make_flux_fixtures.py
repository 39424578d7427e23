"""Writes the FLUX test vectors under tests/fixtures/flux_<name>/ (f32, small).

Each fixture: transformer/config.json + weights (random, realistic scale; flux_schnell's in two
shards with an index, as large diffusers checkpoints come), scheduler/scheduler_config.json (as
FLUX.1-dev / -schnell ship it), io.safetensors (inputs and expected outputs under diffusers'
names), README.md. Reference math runs in float64 on the CPU from the f32 values stored in the
files; results are rounded to f32, so the vectors do not depend on the machine.

  python3 tools/torch/make_flux_fixtures.py --out tests/fixtures
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flux import FluxConfig, FluxTransformer, init_random, pack_latents, position_ids, unpack_latents  # noqa: E402
from stio import save_file  # noqa: E402

STEPS = 4

# FLUX.1's scheduler configs (FlowMatchEulerDiscreteScheduler).
DEV_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
                 "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
                 "use_dynamic_shifting": True}
SCHNELL_SCHEDULER = dict(DEV_SCHEDULER, shift=1.0, use_dynamic_shifting=False)

FIXTURES = {
    "dev": dict(
        cfg=dict(in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16, num_attention_heads=3,
                 joint_attention_dim=24, pooled_projection_dim=12, guidance_embeds=True, axes_dims_rope=[4, 6, 6]),
        hw=(6, 10), L=7, timestep=[0.9045, 0.0375], guidance=[3.5, 1.25], sample_guidance=3.5,
        scheduler=DEV_SCHEDULER, shards=1,
        about="FLUX.1-dev-like (guidance_embeds true): 2 double + 2 single blocks, 3 heads x head_dim 16 "
              "(axes_dims_rope 4, 6, 6), in_channels 16 (4 latent channels), non-square latent 6 x 10 "
              "(packed grid 3 x 5 = 15 image tokens), 7 text tokens of 24 channels, pooled 12, batch 2; "
              "scheduler with dynamic shifting (mu from the 15-token image sequence)",
    ),
    "schnell": dict(
        cfg=dict(in_channels=8, num_layers=1, num_single_layers=3, attention_head_dim=20, num_attention_heads=2,
                 joint_attention_dim=20, pooled_projection_dim=8, guidance_embeds=False, axes_dims_rope=[4, 8, 8]),
        hw=(4, 8), L=5, timestep=[1.0, 0.5], guidance=None, sample_guidance=None,
        scheduler=SCHNELL_SCHEDULER, shards=2,
        about="FLUX.1-schnell-like (no guidance embedder): 1 double + 3 single blocks, 2 heads x head_dim 20 "
              "(axes_dims_rope 4, 8, 8), in_channels 8 (2 latent channels), latent 4 x 8 (packed grid "
              "2 x 4), 5 text tokens of 20 channels, pooled 8, batch 2; fixed shift 1; weights in two shards "
              "with diffusion_pytorch_model.safetensors.index.json",
    ),
}


def rnd(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float32)


def f64(t):
    return t.to(torch.float64)


def calculate_shift(image_seq_len, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15):
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * m + (base_shift - m * base_seq_len)


def flow_schedule(steps, sched, image_seq_len):
    """The FLUX pipeline's schedule: sigmas = linspace(1, 1/N, N) as float32 numpy, shifted by
    exp(mu) / (exp(mu) + (1/s - 1)) (dynamic) or shift s / (1 + (shift - 1) s) (static) in float32
    numpy arithmetic; timesteps = sigmas * 1000 (float32); a terminal sigma 0 appended."""
    s = np.linspace(1.0, 1 / steps, steps).astype(np.float32)
    mu = calculate_shift(image_seq_len, sched["base_image_seq_len"], sched["max_image_seq_len"],
                         sched["base_shift"], sched["max_shift"])
    if sched["use_dynamic_shifting"]:
        e = math.exp(mu)
        s = e / (e + (1 / s - 1) ** 1.0)
    else:
        shift = sched["shift"]
        s = shift * s / (1 + (shift - 1) * s)
    assert s.dtype == np.float32
    sigmas = torch.from_numpy(np.ascontiguousarray(s)).float()
    timesteps = sigmas * sched["num_train_timesteps"]
    return timesteps, torch.cat([sigmas, torch.zeros(1)]), mu


def flow_sample(model, latents, prompt_embeds, pooled, guidance, sched, steps):
    """The FluxPipeline loop (no true CFG): packed latents, model(timestep = t / 1000), Euler
    x <- x + (sigma_next - sigma) v in float64 from the f32 sigmas. latents [B, C, H, W] unpacked."""
    b, c, hh, ww = latents.shape
    img_ids = position_ids(0, hh // 2, ww // 2)
    txt_ids = torch.zeros(prompt_embeds.shape[1], 3)
    timesteps, sigmas, mu = flow_schedule(steps, sched, (hh // 2) * (ww // 2))
    x = pack_latents(latents)
    g = None if guidance is None else torch.full([b], guidance, dtype=torch.float32)
    traj = []
    for i, t in enumerate(timesteps):
        tm = t.expand(b).float() / 1000  # f32, as the pipeline divides
        with torch.no_grad():
            v = model(x, prompt_embeds, pooled, tm, img_ids, txt_ids, guidance=g)
        x = x + f64(sigmas[i + 1] - sigmas[i]) * v
        traj.append(unpack_latents(x, hh, ww))
    return unpack_latents(x, hh, ww), timesteps, sigmas, mu, torch.stack(traj)


def build(name, spec, out_root, seed):
    gen = torch.Generator().manual_seed(seed)
    cfg = FluxConfig.from_dict(spec["cfg"])
    model = FluxTransformer(cfg)
    init_random(model, gen)
    folder = os.path.join(out_root, f"flux_{name}")
    model = model.to(torch.float32)
    model.save_pretrained(os.path.join(folder, "transformer"), shards=spec["shards"])
    os.makedirs(os.path.join(folder, "scheduler"), exist_ok=True)
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(spec["scheduler"], f, indent=2)
        f.write("\n")
    model = model.to(torch.float64).eval()

    hh, ww = spec["hw"]
    h, w = hh // 2, ww // 2
    C = cfg.in_channels // 4
    L, J, P = spec["L"], cfg.joint_attention_dim, cfg.pooled_projection_dim
    io = {}
    meta = {"generator": "tools/torch/make_flux_fixtures.py", "torch": torch.__version__, "fixture": name,
            "latent_height": str(hh), "latent_width": str(ww), "num_inference_steps": str(STEPS),
            "scheduler": json.dumps(spec["scheduler"])}

    # ---- forward vector (batch 2), packed as diffusers' forward takes it
    lat = rnd(gen, 2, C, hh, ww)
    x = pack_latents(lat)
    y = rnd(gen, 2, L, J)
    pooled = rnd(gen, 2, P)
    t = torch.tensor(spec["timestep"], dtype=torch.float32)
    g = torch.tensor(spec["guidance"], dtype=torch.float32) if spec["guidance"] else None
    img_ids, txt_ids = position_ids(0, h, w), torch.zeros(L, 3)
    with torch.no_grad():
        out = model(f64(x), f64(y), f64(pooled), t, img_ids, txt_ids, guidance=g)
    io.update({"hidden_states": x, "encoder_hidden_states": y, "pooled_projections": pooled, "timestep": t,
               "img_ids": img_ids, "txt_ids": txt_ids})
    if g is not None:
        io["guidance"] = g
    io["output"] = out.to(torch.float32)

    # ---- 4-step flow-matching Euler run, as FluxPipeline (no true CFG)
    lat = rnd(gen, 2, C, hh, ww)
    pe, pp = rnd(gen, 2, L, J), rnd(gen, 2, P)
    xT, ts, sig, mu, traj = flow_sample(model, f64(lat), f64(pe), f64(pp), spec["sample_guidance"],
                                        spec["scheduler"], STEPS)
    io.update({"latents": lat, "prompt_embeds": pe, "pooled_prompt_embeds": pp, "flow_timesteps": ts,
               "flow_sigmas": sig, "mu": torch.tensor([mu], dtype=torch.float32),
               "flow_latents": xT.to(torch.float32), "flow_trajectory": traj.to(torch.float32)})
    if spec["sample_guidance"] is not None:
        io["guidance_scale"] = torch.tensor([spec["sample_guidance"]], dtype=torch.float32)
    save_file(io, os.path.join(folder, "io.safetensors"), metadata=meta)
    write_readme(folder, name, spec, io, mu)
    return folder, io


WHAT = {
    "hidden_states": "forward input, packed latents [B, (H/2)(W/2), in_channels] (diffusers' forward argument)",
    "encoder_hidden_states": "forward T5 embeddings [B, L, joint_attention_dim]",
    "pooled_projections": "forward pooled CLIP embedding [B, pooled_projection_dim]",
    "timestep": "forward timestep in [0, 1] (the pipeline's t / 1000) [B]",
    "guidance": "forward guidance scale (the model multiplies by 1000) [B]",
    "img_ids": "image position ids (0, row, col) [(H/2)(W/2), 3]",
    "txt_ids": "text position ids (zeros) [L, 3]",
    "output": "forward output, packed [B, (H/2)(W/2), out_channels]",
    "latents": "initial noise of the flow run, unpacked [B, C, H, W] (the pipeline packs it)",
    "prompt_embeds": "flow run prompt_embeds [B, L, joint_attention_dim]",
    "pooled_prompt_embeds": "flow run pooled_prompt_embeds [B, pooled_projection_dim]",
    "guidance_scale": "flow run guidance_scale (guidance embedder) [1]",
    "flow_timesteps": "scheduler timesteps sigma * 1000, float32 [steps]",
    "flow_sigmas": "scheduler sigmas with the terminal 0 [steps + 1]",
    "mu": "calculate_shift(image_seq_len) (used only with dynamic shifting) [1]",
    "flow_latents": "final latents, unpacked [B, C, H, W]",
    "flow_trajectory": "latents after each step, unpacked [steps, B, C, H, W]",
}


def write_readme(folder, name, spec, io, mu):
    rms = lambda t: float(t.double().pow(2).mean().sqrt())  # noqa: E731
    sharded = spec["shards"] > 1
    lines = [f"# flux_{name}", "", f"Test vectors for FluxTransformer2DModel: {spec['about']}.", "",
             "Written by `tools/torch/make_flux_fixtures.py` (independent PyTorch implementation from the "
             "equations, `tools/torch/flux.py`); reference math in float64 from the stored f32 values, results "
             "rounded to f32. Weights are random: linear ~ N(0, 1/fan_in) (adaLN linears x 0.5, proj_out x 0.1), "
             "biases ~ N(0, 0.1^2), RMSNorm weights ~ 1 + N(0, 0.2^2).", "",
             "Timestep and guidance: the model embeds f32(1000 * t) (and f32(1000 * g)), t = f32(timestep / 1000) "
             "as the pipeline passes it; the sinusoids are computed in float64 (diffusers: f32). RoPE angles in "
             "float64, cos/sin rounded to f32, as diffusers (freqs_dtype float64).", "",
             "- `transformer/config.json` and " + (
                 "`transformer/diffusion_pytorch_model-0000{1,2}-of-00002.safetensors` + "
                 "`diffusion_pytorch_model.safetensors.index.json`" if sharded else
                 "`transformer/diffusion_pytorch_model.safetensors`") + ": the model in diffusers layout (f32).",
             f"- `scheduler/scheduler_config.json`: FlowMatchEulerDiscreteScheduler as FLUX.1-{name} ships it.",
             "- `io.safetensors`: inputs and expected outputs, all f32 (metadata `latent_height`, `latent_width`):",
             "", "| tensor | shape | what |", "| --- | --- | --- |"]
    for k, v in io.items():
        lines.append(f"| `{k}` | {list(v.shape)} | {WHAT.get(k, '')} |")
    ts = [round(float(v), 4) for v in io["flow_timesteps"]]
    lines += ["", f"Flow run: {STEPS} steps of FluxPipeline's loop without true CFG (batch of 2 independent "
              f"images), sigmas np.linspace(1, 1/{STEPS}, {STEPS}) shifted "
              + (f"dynamically (mu = calculate_shift({io['img_ids'].shape[0]}) = {mu:.6f})" if
                 spec["scheduler"]["use_dynamic_shifting"] else f"by the fixed shift {spec['scheduler']['shift']}")
              + f": timesteps {ts}.",
              "", f"RMS: output {rms(io['output']):.4g}, flow_latents {rms(io['flow_latents']):.4g}. Issue 10 "
              "tolerances (as PixArt's): max abs error <= 1e-4 x RMS (f32), <= 1e-2 x RMS (f16).", ""]
    with open(os.path.join(folder, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    for i, (name, spec) in enumerate(FIXTURES.items()):
        if args.only and name != args.only:
            continue
        folder, io = build(name, spec, args.out, seed=2000 + i)
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(folder) for f in fs)
        print(f"{folder}: {size} bytes; output rms {io['output'].double().pow(2).mean().sqrt():.4f}, "
              f"flow rms {io['flow_latents'].double().pow(2).mean().sqrt():.4f}, timesteps "
              f"{io['flow_timesteps'].tolist()}")


if __name__ == "__main__":
    main()
