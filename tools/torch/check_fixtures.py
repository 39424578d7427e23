"""Checks the fixtures: re-runs them through this implementation (f32/f16, math and SDPA
attention, CPU or CUDA) and, when diffusers' sources are importable, through diffusers'
own PixArtTransformer2DModel, schedulers and PixArtAlphaPipeline.

  python3 tools/torch/check_fixtures.py --fixtures tests/fixtures [--diffusers-src DIR] [--json OUT]

Prints one line per check: max |err| / RMS(reference). Exit code 0 always; read the lines.
"""

import argparse
import glob
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pixart import PixArtTransformer  # noqa: E402
from samplers import sample  # noqa: E402
from stio import load_file  # noqa: E402
from text_encoder import EmojiCaptionEncoder  # noqa: E402

RESULTS = []


def report(fixture, what, got, ref):
    got, ref = got.detach().double().cpu(), ref.double().cpu()
    rms = float(ref.pow(2).mean().sqrt())
    err = float((got - ref).abs().max())
    RESULTS.append({"fixture": fixture, "check": what, "max_abs_err": err, "ref_rms": rms, "rel": err / rms})
    print(f"{fixture:10s} {what:44s} max|err| {err:.3e}  rms {rms:.3e}  rel {err / rms:.3e}", flush=True)


def added(io, prefix, dtype, device):
    if f"{prefix}resolution" not in io:
        return None
    return {"resolution": io[f"{prefix}resolution"].to(device, dtype),
            "aspect_ratio": io[f"{prefix}aspect_ratio"].to(device, dtype)}


def check_self(folder, name, device):
    io = load_file(os.path.join(folder, "io.safetensors"))
    for dtype, impl in ((torch.float32, "math"), (torch.float32, "sdpa"), (torch.float16, "sdpa")):
        if dtype == torch.float16 and device == "cpu":
            continue
        m = PixArtTransformer.from_pretrained(os.path.join(folder, "transformer"), dtype).to(device).eval()
        m.attn_impl = impl
        g = lambda k: io[k].to(device, dtype)  # noqa: E731
        with torch.no_grad():
            out = m(g("hidden_states"), g("encoder_hidden_states"), g("timestep"),
                    added_cond_kwargs=added(io, "", dtype, device), encoder_attention_mask=g("encoder_attention_mask"))
        report(name, f"self forward {str(dtype)[6:]} {impl} {device}", out, io["output"])
        for tag, s in (("dpm", "dpm++2m"), ("ddim", "ddim")):
            with torch.no_grad():
                xT = sample(m, g("latents"), g("prompt_embeds"), g("prompt_attention_mask"),
                            g("negative_prompt_embeds"), g("negative_prompt_attention_mask"), steps=4,
                            guidance_scale=float(io["guidance_scale"][0]), sampler=s,
                            added_cond_kwargs=added(io, "sample_", dtype, device))
            report(name, f"self {tag} 4 steps {str(dtype)[6:]} {impl} {device}", xT, io[f"{tag}_latents"])
    te_dir = os.path.join(folder, "text_encoder")
    if os.path.isdir(te_dir):
        te = EmojiCaptionEncoder.from_pretrained(te_dir).to(device).eval()
        for impl in ("math", "sdpa"):
            te.attn_impl = impl
            with torch.no_grad():
                y = te(io["te_input_ids"].long().to(device), io["te_attention_mask"].long().to(device))
            keep = io["te_attention_mask"].bool()
            report(name, f"self text encoder (valid rows) {impl} {device}", y.cpu()[keep], io["te_output"][keep])


def check_diffusers(folder, name):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PixArtTransformer2DModel

    io = load_file(os.path.join(folder, "io.safetensors"))
    m = PixArtTransformer2DModel.from_pretrained(os.path.join(folder, "transformer")).to(torch.float64).eval()
    d = lambda k: io[k].to(torch.float64)  # noqa: E731
    ac = added(io, "", torch.float64, "cpu")
    with torch.no_grad():
        out = m(d("hidden_states"), encoder_hidden_states=d("encoder_hidden_states"), timestep=d("timestep"),
                added_cond_kwargs=ac, encoder_attention_mask=d("encoder_attention_mask")).sample
    report(name, "diffusers forward f64", out, io["output"])
    g = float(io["guidance_scale"][0])
    sac = added(io, "sample_", torch.float64, "cpu")
    if sac is not None:
        sac = {k: torch.cat([v, v]) for k, v in sac.items()}
    emb = torch.cat([d("negative_prompt_embeds"), d("prompt_embeds")])
    mask = torch.cat([d("negative_prompt_attention_mask"), d("prompt_attention_mask")])
    in_ch = m.config.in_channels
    for tag, sch in (("dpm", DPMSolverMultistepScheduler()), ("ddim", DDIMScheduler())):
        sch.set_timesteps(4)
        report(name, f"diffusers {tag} timesteps", sch.timesteps.double(), io[f"{tag}_timesteps"])
        lat = d("latents")
        for t in sch.timesteps:  # the PixArt pipeline's loop, line for line
            inp = sch.scale_model_input(torch.cat([lat] * 2), t)
            ct = t[None].expand(inp.shape[0])
            with torch.no_grad():
                o = m(inp, encoder_hidden_states=emb, encoder_attention_mask=mask, timestep=ct,
                      added_cond_kwargs=sac).sample
            u, c = o.chunk(2)
            o = u + g * (c - u)
            if m.config.out_channels // 2 == in_ch:
                o = o.chunk(2, dim=1)[0]
            lat = sch.step(o, t, lat, return_dict=False)[0]
        report(name, f"diffusers {tag} 4 steps (pipeline loop) f64", lat, io[f"{tag}_latents"])
    if sac is None:  # the real pipeline (it adds resolution conditions only for sample_size 128)
        try:
            from diffusers import PixArtAlphaPipeline

            for tag, sch in (("dpm", DPMSolverMultistepScheduler()), ("ddim", DDIMScheduler())):
                pipe = PixArtAlphaPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=m, scheduler=sch)
                pipe.set_progress_bar_config(disable=True)
                lat = d("latents")
                res = pipe(prompt=None, negative_prompt=None, prompt_embeds=d("prompt_embeds"),
                           prompt_attention_mask=d("prompt_attention_mask"),
                           negative_prompt_embeds=d("negative_prompt_embeds"),
                           negative_prompt_attention_mask=d("negative_prompt_attention_mask"),
                           latents=lat, height=lat.shape[2] * 8, width=lat.shape[3] * 8, num_inference_steps=4,
                           guidance_scale=g, output_type="latent", use_resolution_binning=False)
                report(name, f"diffusers PixArtAlphaPipeline {tag} f64", res.images, io[f"{tag}_latents"])
        except Exception as e:  # the loop above already checked the same math
            print(f"{name}: PixArtAlphaPipeline not run: {type(e).__name__}: {e}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="tests/fixtures")
    ap.add_argument("--diffusers-src", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    folders = sorted(glob.glob(os.path.join(args.fixtures, "pixart_*")))
    for f in folders:
        name = os.path.basename(f)[len("pixart_"):]
        for dev in ("cpu", "cuda") if device == "cuda" else ("cpu",):
            try:
                check_self(f, name, dev)
            except Exception as e:  # report and go on with the other fixtures
                print(f"{name}: self check on {dev} failed: {type(e).__name__}: {e}", flush=True)
    if args.diffusers_src:
        sys.path.insert(0, args.diffusers_src)
        try:
            import diffusers

            print(f"diffusers {diffusers.__version__} from {os.path.dirname(diffusers.__file__)}", flush=True)
            for f in folders:
                try:
                    check_diffusers(f, os.path.basename(f)[len("pixart_"):])
                except Exception as e:
                    import traceback

                    traceback.print_exc()
                    print(f"{f}: diffusers check failed: {type(e).__name__}: {e}", flush=True)
        except Exception as e:
            import traceback

            traceback.print_exc()
            print(f"diffusers check failed: {type(e).__name__}: {e}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(RESULTS, fh, indent=1)


if __name__ == "__main__":
    main()
