"""Writes loss_curve.svg and README.md (the model card) into an exported emoji model folder.

Plain Python (no torch): reads losses.json, fidelity.json, samples.json and the configs that
finish.py wrote.   python3 tools/torch/train/model_card.py models/emoji-s-a [models/emoji-s-b ...]
"""

import json
import math
import os
import sys


def load(folder, name):
    with open(os.path.join(folder, name)) as f:
        return json.load(f)


def loss_svg(history, runs, title, w=640, h=360):
    """A hand-written SVG line chart of the logged loss (log y axis), resumes marked."""
    ml, mr, mt, mb = 64, 16, 34, 44
    xs = [p[0] for p in history]
    ys = [p[1] for p in history]
    x0, x1 = 0, max(xs)
    lo = 10 ** math.floor(math.log10(min(ys)))
    hi = 10 ** math.ceil(math.log10(max(ys)))
    px = lambda x: ml + (x - x0) / (x1 - x0) * (w - ml - mr)  # noqa: E731
    py = lambda y: mt + (math.log10(hi) - math.log10(y)) / (math.log10(hi) - math.log10(lo)) * (h - mt - mb)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    d = lo
    while d <= hi * 1.0001:  # decades and their 2x/5x minor lines
        for m in (1, 2, 5):
            v = d * m
            if lo <= v <= hi:
                y = py(v)
                major = m == 1
                out.append(f'<line x1="{ml}" x2="{w - mr}" y1="{y:.1f}" y2="{y:.1f}" '
                           f'stroke="{"#bbb" if major else "#eee"}"/>')
                out.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        d *= 10
    step = 10 ** math.floor(math.log10(max(x1, 1)))
    if x1 / step < 4:
        step /= 2
    t = 0
    while t <= x1:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{h - mb}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{h - mb + 16}" text-anchor="middle">{int(t)}</text>')
        t += step
    for r in runs[1:]:  # a resumed run starts here (optimizer state re-warmed)
        x = px(r["start_step"])
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{h - mb}" stroke="#d62728" '
                   'stroke-dasharray="4 3"/>')
        out.append(f'<text x="{x + 4:.1f}" y="{mt + 12}" fill="#d62728">resume</text>')
    pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
    out.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{w - ml - mr}" height="{h - mt - mb}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{(ml + w - mr) / 2}" y="{h - 8}" text-anchor="middle">training step (batch 256)</text>')
    out.append(f'<text x="14" y="{(mt + h - mb) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(mt + h - mb) / 2})">MSE loss (epsilon), mean of 50 steps</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def card(folder):
    losses = load(folder, "losses.json")
    fid = load(folder, "fidelity.json")
    tcfg = load(folder, "transformer/config.json")
    ecfg = load(folder, "text_encoder/config.json")
    vocab = load(folder, "tokenizer/vocab.json")
    samples = load(folder, "samples.json") if os.path.exists(os.path.join(folder, "samples.json")) else None
    size = fid["size"]
    name = os.path.basename(os.path.normpath(folder))
    with open(os.path.join(folder, "loss_curve.svg"), "w") as f:
        f.write(loss_svg(losses["history"], losses["runs"], f"{name}: training loss"))
    hidden = tcfg["num_attention_heads"] * tcfg["attention_head_dim"]
    d = ecfg["d_model"]
    n_dit = _dit_params(tcfg)
    n_te = ecfg["vocab_size"] * d + ecfg["max_length"] * d + ecfg["num_layers"] * (12 * d * d + 13 * d) + 2 * d
    runs = losses["runs"]
    gpus = sorted({r.get("device", "GPU") for r in runs})
    gpu = " / ".join(gpus)
    steps, imgs, secs = losses["step"], losses["images"], losses["train_seconds"]
    rows = "\n".join(f"| {g} | {v['fidelity_pct']:.1f} % |" for g, v in fid["by_guidance"].items())
    best = fid["by_guidance"][str(fid["best_guidance"])]
    cats = "\n".join(f"| {c} | {p:.0f} % |" for c, p in sorted(best["per_category_pct"].items()))
    lr_runs = "; ".join(f"steps {r['start_step']}–{r['end_step']} on {r.get('device', 'GPU')}: LR {r['lr']:g}"
                        f"{_anneal_text(r.get('anneal'))}, loss weighting "
                        f"{r.get('weighting', 'eps')}, {r['seconds'] / 60:.1f} min" for r in runs)
    best_pct = fid["by_guidance"][str(fid["best_guidance"])]["fidelity_pct"]
    status = ""
    if best_pct < 70:
        status = (f"\n> **Status: undertrained.** Prompt fidelity is {best_pct:.1f} % at best, far below the "
                  "issue's ≥ 70 % target: after ~15 minutes of (shared) GPU training the model draws the "
                  "right colours and coarse shapes per category (faces → yellow discs, hearts → coloured "
                  "blobs, flags → rectangles) but not the individual emoji. The files are complete and in "
                  "the final layout so the runtime can be built and tested on them; retrain before "
                  "shipping (see *Next training run*).\n")
    grid = ""
    if samples:
        grid = (f"\n![samples](samples.png)\n\n`samples.png`: 20-step DPM-Solver++ 2M, guidance {samples['guidance']}, "
                f"seed {samples['seed']} (torch CPU generator, one batch), rows of {samples['columns']}, prompts in "
                "order: " + "; ".join(samples["prompts"]) + ".\n")
    text = f"""# {name}: a small PixArt-architecture text-to-emoji model (draft card)

webdit's bundled model candidate **{size.upper()}**: a caption encoder plus a pixel-space
PixArt-α DiT that draws 64×64 emoji from short English names ("grinning face", "red apple").
Trained from scratch by `tools/torch/train` ({gpu}).
{status}
## Data and licence
- Images: the 1,911 base emoji (no skin-tone variations) of the npm package
  `emoji-datasource-google@16.0.0`, 64×64 PNGs composited on white
  (`round((c·a + 255·(255 − a)) / 255)`), scaled to [−1, 1].
- The artwork is **Noto Emoji by Google, licensed under the Apache License 2.0**
  (https://github.com/googlefonts/noto-emoji); the emoji-datasource metadata (names, short
  names, categories) is © Cal Henderson, MIT licence. These weights are derived from that
  artwork and are distributed under Apache-2.0 with this attribution; images the model
  draws resemble Noto emoji.
- Captions (lowercase words): the emoji's name (sampled half the time), each short name
  (`flag-br` → "flag br"), and the name followed by the subcategory words; 10 % of the
  captions are replaced by the unconditional `<null>` for classifier-free guidance.

## Architecture
| part | configuration |
| --- | --- |
| denoiser (`transformer/`, diffusers `PixArtTransformer2DModel`) | pixel space, in/out 3 channels (epsilon), sample 64, patch 2 → 1,024 tokens; hidden {hidden} = {tcfg['num_attention_heads']} heads × {tcfg['attention_head_dim']}; {tcfg['num_layers']} layers; FF 4×; caption_channels {tcfg['caption_channels']}; adaLN-single; no resolution conditions; {n_dit / 1e6:.2f} M parameters |
| caption encoder (`text_encoder/`) | token + learned position embeddings (16), {ecfg['num_layers']} pre-LN transformer layers (d {d}, {ecfg['num_heads']} heads, MLP 4d, GELU-tanh), final LayerNorm, key-padding mask; {n_te / 1e6:.2f} M parameters; the exact definition is in `text_encoder/config.json` |
| tokenizer (`tokenizer/`) | NFKD, combining marks dropped, lowercase, runs of `[a-z0-9]`; `<pad>` 0, `<null>` 1, `<unk>` 2; at most 16 tokens |
| sampling | DPM-Solver++ 2M (`scheduler/`), 20 steps, CFG with `<null>` as the negative caption, guidance {fid['best_guidance']:g} (`model_index.json`) |

Weights are stored in fp16 (EMA of the training weights).

## Training
Epsilon prediction on the DDPM schedule (1000 steps, linear betas 1e-4…0.02), uniform t,
joint training of caption encoder and denoiser, bf16 autocast, AdamW (β 0.9/0.99, no weight
decay), grad-norm clip 1, batch 256, EMA 0.999, PixArt-style init (zeroed cross-attention
outputs and head). Runs of at most ~9 minutes, resumed from fp32 checkpoints without the
optimizer state (LR re-warmed over 200 steps); the last run decays the LR linearly to 5 %.
Both candidate sizes trained at the same time on the one GPU.

- {steps:,} steps, {imgs:,} images seen ({imgs / 1911:.0f} epochs), {secs / 60:.1f} min of (shared) GPU time.
- Runs: {lr_runs}.

![loss curve](loss_curve.svg)

## Prompt fidelity (in PyTorch, fp32 from the fp16 weights)
Share of generated images whose nearest dataset emoji (pixel MSE at 64×64 on white) is the
prompted one; {fid['prompts']} prompts from `bench/prompts/emoji_fidelity.txt` (names spread over all
categories) × {fid['seeds']} seeds, 20-step DPM-Solver++ 2M with CFG.

| guidance | fidelity |
| --- | --- |
{rows}

Per category at guidance {fid['best_guidance']:g}:

| category | fidelity |
| --- | --- |
{cats}

One 20-step image with CFG takes {fid['torch_fp32_image_20step_s'] * 1000:.0f} ms in PyTorch fp32 (eager, TF32 off) on
the {fid['device']}.
{grid}
## Next training run
`python3 tools/torch/train/train.py --size {size} --init-from models/{name} --out OUT ...` continues
from these weights (their EMA becomes the new start; the optimizer re-warms). What the first
runs showed: both sizes together ran at ~3.1–3.9k images/s each (batch 256, `torch.compile`,
bf16); size A diverged slowly at LR 5e-4 (loss 0.017 → 0.026 over its last 1,200 steps) and
its second run used the truncated-SNR weighting (epsilon MSE × clamp(1/SNR, 1, 10)), which
raised its epsilon loss and left speckle; size B with plain epsilon MSE at LR 5e-4 was stable
but flat at ~0.013 from step 5k to 11k. With the identity of an emoji decided at high noise
(t ≳ 600, where epsilon MSE is tiny and gives little gradient), expect fidelity to need far
more steps than these 11k: train one size alone (twice the images/s), for an hour or more.

## Vocabulary and limits
- {len(vocab) - 3:,} words (+3 special tokens): only words that occur in the emoji names,
  short names and subcategories. Anything else is `<unk>` (the runtime warns and names it);
  plural/inflected forms exist only where the names use them.
- The model is trained to reproduce the dataset's emoji, not to compose new ones ("blue
  apple" is not a blue apple). Names shared by several emoji (e.g. "man in tuxedo") are
  ambiguous, and some emoji share one image (e.g. the French flag of St Martin and of
  Clipperton Island); the fidelity prompt list leaves both kinds out.
- 64×64 pixels only (no resolution conditioning).
"""
    with open(os.path.join(folder, "README.md"), "w") as f:
        f.write(text)


def _anneal_text(a):
    """A run's LR schedule: train.py logs True/False, or [A, B] for --anneal-span."""
    if isinstance(a, list):
        if a == [0.0, 1.0]:
            return " annealed to 5 %"
        f = lambda x: f"{1 - 0.95 * x:.3g}"  # noqa: E731
        return f" decayed from ×{f(a[0])} to ×{f(a[1])} (fractions {a[0]:g}–{a[1]:g} of one decay to 5 %)"
    return " annealed to 5 %" if a else ""


def _dit_params(c):
    d = c["num_attention_heads"] * c["attention_head_dim"]
    p, ci, co, cc = c["patch_size"], c["in_channels"], c["out_channels"], c["caption_channels"]
    blk = 2 * (4 * d * d + 4 * d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 6 * d
    return (ci * p * p * d + d + (256 * d + d) + (d * d + d) + (d * 6 * d + 6 * d) + (cc * d + d) + (d * d + d)
            + c["num_layers"] * blk + 2 * d + d * p * p * co + p * p * co)


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        card(folder)
        print(f"wrote {folder}/README.md, loss_curve.svg")
