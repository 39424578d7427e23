#!/usr/bin/env bash
# Packs the fidelity dataset small enough to travel beside .gpu/ in a device call: the folder
# tools/torch/train/prepare_data.ts writes (emoji_meta.json + emoji64.u8.gz, 5.6 MiB) recompressed
# with xz (4.0 MiB) into .cache/emoji_xz/. On the device, unpack it before the command that scores
# fidelity (the loader reads the gzip'd form):
#   mkdir -p .cache/emoji_train && xz -dc .cache/emoji_xz/emoji64.u8.xz | gzip -1 >.cache/emoji_train/emoji64.u8.gz &&
#   xz -dc .cache/emoji_xz/emoji_meta.json.xz >.cache/emoji_train/emoji_meta.json
# then pass --dataset .cache/emoji_train (ablation.ts) or WEBDIT_EMOJI_DATASET=.cache/emoji_train.
# Usage (repo root): bash tools/gpu/pack_emoji_data.sh; carry .cache/emoji_xz beside .gpu.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deno run -A tools/torch/train/prepare_data.ts --out "$tmp/train" --prompts "$tmp/prompts.txt" >&2
mkdir -p .cache/emoji_xz
gunzip -c "$tmp/train/emoji64.u8.gz" | xz -9e -T0 >.cache/emoji_xz/emoji64.u8.xz
xz -9e -c "$tmp/train/emoji_meta.json" >.cache/emoji_xz/emoji_meta.json.xz
echo "packed the fidelity dataset -> .cache/emoji_xz ($(du -sh .cache/emoji_xz | cut -f1))"
