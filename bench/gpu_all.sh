#!/usr/bin/env bash
# Reproduces every GPU figure of issues 2, 3, 5, 6, 7, 9 and 10 on an NVIDIA machine, by the
# recipe of shared/design/BENCHMARKS.md, in parts that each fit one device call (≤ 10 min):
#
#   bash ../shared/gpu/prep.sh                      # here, once: .gpu/ (deno, Vulkan loader, node_modules)
#   # on the GPU machine, from the project root (the tree has no .git there: pass the commit):
#   WEBDIT_COMMIT=<short hash> bash bench/gpu_all.sh gemm qgemm rotq
#   bash bench/gpu_all.sh list                      # the parts, what each writes, its estimated time
#
# Each part runs one bench with WEBDIT_BENCH_WRITE=1 (results in bench/results/<device>/<date>_<what>.{json,md})
# and logs to $WEBDIT_LOG_DIR (default /tmp/webdit-gpu). When $OUT is set (the device tool's output folder) the
# new results files and the logs are copied there after every part — flat, as <device>_<file>, or as one
# gpu_results.tar.gz when they are more than 8 files. A failing part does not stop the next; the exit status is
# the number of failed parts.
#
# Environment: WEBDIT_COMMIT (required without .git), WEBDIT_GPU_BUDGET_S (seconds for all parts, e.g.
# 560 inside a 600 s device call), WEBDIT_EMOJI_DATASET (folder with emoji.json and
# img/google/64/, or the 5 MiB folder tools/torch/train/prepare_data.ts writes, e.g. .train, for the fidelity
# rows; skipped without it), WEBDIT_QUANT_WORKERS (host workers quantizing the
# random models; default every core), WEBDIT_FLUX_DEPTH (default 2,4), WEBDIT_EMOJI_IN_FLIGHT (e.g. 1,2,4: the
# emoji image also at those sampling-loop depths), WEBDIT_LOG_DIR, WEBDIT_RESULTS_DIR. Every WEBDIT_* knob
# exported to the benches (not the bookkeeping ones) is recorded in each results file's command.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

# part | minutes on one H200, measured 2026-11-27 with the protocol only (~: estimated) | what it writes |
# figures (issue)
PARTS=(
  "gemm|~1|gemm|gemm_f32_4096, gemm_f16_4096, ort_matmul_f32_4096, tfjs_matmul_f32_4096 (2)"
  "qgemm|1|qgemm|gemm_{f32,w4a8,w8a8}_4096x1152x4608, gemm_{w4a8_g32,w4a4,w4a4_g16asym}_4096x1152x4608, gemm_{f32,w4a16}_64x1152x4608, gemm_w4a16_4096, ort_matmulnbits_w4_4096 (5)"
  "rotq|1|rotq|rotq_hadamard_4096x1152, rotq_outlier_4096x1152 (+ _a4g16asym), center_{mean,midrange}_4096x1152 beside the W4A8 GEMM (6)"
  "attention|2.5|attention|attn_dense_f16_4096_d{64,72,128}, attn_paro_d{50,30,20}_int{8,4}_4096_d64, 1024 tokens (7)"
  "step|3|step|step_pixart_alpha_{f32,f16,w4a8_tlq_ars,w4a8_tlq_ars_paro30_int8} (3, 9)"
  "block|0.5|block|block_pixart_alpha_f32, tfjs_block_pixart_alpha_f32 (9)"
  "torch|0.5|torch_step|torch_step_pixart_alpha_{fp32,fp16} (3, 9)"
  "flux|1.2|flux_step|step_flux_{f32,f16} at depth 2+4 and 1+2, full-depth estimate (10)"
  "flux_quant|~4|flux_step_quant|step_flux_w4a8_tlq_ars{,_paro30_int8} at WEBDIT_FLUX_DEPTH (default 2+4; the 2026-11-27 file: 1+2) (10)"
  "loop|~1|loop|loop_pixart_alpha_f32_inflight{1,4}{,_event_loop_gap}: the sampling loop at PixArt-α scale (README)"
  "emoji|~1|emoji|emoji_s_gpu_image_20step{,_f16}, emoji_s_fidelity_fp32 with WEBDIT_EMOJI_DATASET (README)"
  "ablation|~5|ablation|the default plugin matrix on the bundled model: PSNR/SSIM/cosine/fidelity, ms/step, bytes (5, 6, 7, 9)"
  "step_f16act|~3|step_f32_w4a8_paro|optional: step_pixart_alpha_f32 beside the quantized rows with f16 activations (…_f16)"
  "profile|~1|profile|optional: GPU time of each launch of the rotq and 64-row/W4A8 GEMM paths (timestamp-query; a diagnostic)"
  "low_rank|1.5|low_rank|optional: the --low-rank branch beside the W4A8 GEMM: unfused (low_rank_r{16,32}_…), each GEMM alone, fused (gemm_w4a8_lr32_…), at 2048x128x128 and 4096x1152x4608 (README)"
  "row_chunks|~2|row_chunks|optional: step_pixart_alpha_{f32,f16} whole and under a 128 MiB binding limit (…_ffn_chunks2: the feed-forward in row chunks; README)"
  "vae|~2|vae|optional: vae_decode_sd_{512,1024}: the sd-vae decoder, one image (README)"
  "text|~2|text_encoder|optional: t5_xxl_encode_{120x2,512}, clip_l_encode_77: the text encoders of real checkpoints (README)"
  "torch_text|~1|torch_text_encoder|optional: their PyTorch peers, torch_t5_xxl_encode_…_{fp32,bf16} (README)"
)
# Suggested device calls, each within one 10-minute command (the first measured at 7.8 min).
CALLS=("attention rotq torch step qgemm block" "flux flux_quant emoji" "ablation gemm")

list() {
  echo "parts (minutes on one H200, ~ where estimated; results file; figures and issue):"
  for p in "${PARTS[@]}"; do
    IFS='|' read -r name min what figs <<<"$p"
    printf '  %-11s %5s min  <date>_%s  %s\n' "$name" "$min" "$what" "$figs"
  done
  echo "suggested device calls:"
  for c in "${CALLS[@]}"; do echo "  bash bench/gpu_all.sh $c"; done
}

if [ $# -eq 0 ] || [ "$1" = "list" ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  list
  exit 0
fi
want=("$@")
if [ "$1" = "all" ]; then # only where one command may run ~25 min; the optional parts left out
  want=()
  for p in "${PARTS[@]}"; do [[ "$p" == *"|optional:"* ]] || want+=("${p%%|*}"); done
fi
for w in "${want[@]}"; do
  ok=0
  for p in "${PARTS[@]}"; do [ "${p%%|*}" = "$w" ] && ok=1; done
  if [ $ok = 0 ]; then
    echo "unknown part '$w'" >&2
    list >&2
    exit 64
  fi
done

if [ -z "${WEBDIT_COMMIT:-}" ]; then
  WEBDIT_COMMIT=$(git rev-parse --short HEAD 2>/dev/null) || {
    echo "set WEBDIT_COMMIT=<short hash>: this tree has no .git" >&2
    exit 64
  }
fi
# Only the harness protocol times the cases (not Deno.bench as well): half the device time.
export WEBDIT_COMMIT WEBDIT_BENCH_WRITE=1 WEBDIT_BENCH_PROTOCOL_ONLY=1
# Parts stop at this many seconds after the start (default: no limit), so the results of the
# parts that ran, and a part's rows written so far, are copied to $OUT before a device call's
# own limit kills everything.
deadline=$((SECONDS + ${WEBDIT_GPU_BUDGET_S:-1000000}))

logdir=${WEBDIT_LOG_DIR:-/tmp/webdit-gpu}
mkdir -p "$logdir"
if [ -f .gpu/env.sh ] && { [ -e /usr/local/nvidia ] || command -v nvidia-smi >/dev/null; }; then
  # The GPU machine: unpack the Vulkan loader, deno and node_modules (env.sh touches / : only there).
  # shellcheck disable=SC1091
  source .gpu/env.sh >"$logdir/env.txt" 2>&1
  cat "$logdir/env.txt"
  if ! grep -q 'webgpu adapter: ' "$logdir/env.txt" || grep -q 'webgpu adapter: none' "$logdir/env.txt"; then
    echo "no WebGPU adapter: see BENCHMARKS.md (the Vulkan loader from .gpu/)" >&2
    exit 69
  fi
else
  echo "not the GPU machine (or no .gpu/env.sh: run 'bash ../shared/gpu/prep.sh' before sending the" \
    "tree): using the local deno and adapter" >&2
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
# The driver goes into every results file (bench/harness.ts resultsHeader).
if [ -z "${WEBDIT_GPU_DRIVER:-}" ] && command -v nvidia-smi >/dev/null; then
  WEBDIT_GPU_DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)
  export WEBDIT_GPU_DRIVER="NVIDIA ${WEBDIT_GPU_DRIVER}"
fi
results=${WEBDIT_RESULTS_DIR:-bench/results}
stamp="$logdir/.start"
touch "$stamp"
sleep 1 # results written in this second count as new

# The WEBDIT_* knobs exported to the benches, as typed before the command (e.g. "WEBDIT_FLUX_DEPTH=1,2 "):
# those that change what is measured; not the bookkeeping (commit, write, budget, folders, driver) nor
# WEBDIT_BENCH_FILTER, which bench/results_file.ts commandLine() records itself.
knobs() {
  local v out=""
  while IFS= read -r v; do
    case "$v" in
      WEBDIT_COMMIT | WEBDIT_BENCH_WRITE | WEBDIT_BENCH_PROTOCOL_ONLY | WEBDIT_BENCH_COMMAND | \
        WEBDIT_BENCH_FILTER | WEBDIT_BENCH_DATE | WEBDIT_GPU_BUDGET_S | WEBDIT_LOG_DIR | \
        WEBDIT_RESULTS_DIR | WEBDIT_GPU_DRIVER) continue ;;
    esac
    if [[ "${!v}" =~ ^[A-Za-z0-9_.,/:+=-]*$ ]]; then out+="$v=${!v} "; else out+="$v=$(printf '%q' "${!v}") "; fi
  done < <(compgen -e | grep '^WEBDIT_' | sort)
  printf '%s' "$out"
}

# Copies this invocation's new results files and logs to $OUT (flat, or one tarball past 8 files).
collect() {
  [ -n "${OUT:-}" ] || return 0
  mkdir -p "$OUT"
  local files=() f
  while IFS= read -r f; do files+=("$f"); done < <(find "$results" -type f -newer "$stamp" | sort)
  local logs=("$logdir"/gpu_*.log)
  rm -f "$OUT"/gpu_results.tar.gz "$OUT"/*_20??-??-??_* "$OUT"/gpu_*.log
  if [ $((${#files[@]} + ${#logs[@]})) -le 8 ]; then
    for f in "${files[@]}"; do
      local slug
      slug=$(basename "$(dirname "$f")")
      cp "$f" "$OUT/${slug}_$(basename "$f")"
    done
    cp "${logs[@]}" "$OUT/" 2>/dev/null
  else
    tar -czf "$OUT/gpu_results.tar.gz" "${files[@]}" -C "$logdir" $(cd "$logdir" && ls gpu_*.log)
  fi
}

run_part() {
  local part=$1 cmd
  case "$part" in
    gemm) cmd="deno bench -A --no-check bench/gemm_bench.ts" ;;
    qgemm) cmd="deno bench -A --no-check bench/qgemm_bench.ts" ;;
    rotq) cmd="deno bench -A --no-check bench/rotq_bench.ts" ;;
    low_rank) cmd="deno bench -A --no-check bench/low_rank_bench.ts" ;;
    attention) cmd="deno bench -A --no-check bench/attention_bench.ts" ;;
    step) cmd="deno bench -A --no-check bench/step_bench.ts" ;;
    step_f16act) cmd="env WEBDIT_QUANT_ACT=f16 WEBDIT_STEP_ROWS=f32,w4a8,paro deno bench -A --no-check bench/step_bench.ts" ;;
    profile) cmd="deno run -A --no-check bench/profile_kernels.ts --write" ;;
    block) cmd="deno bench -A --no-check bench/block_bench.ts" ;;
    torch) cmd="python3 tools/torch/bench_step.py --commit $WEBDIT_COMMIT --iters 20 --out-dir $results" ;;
    flux) cmd="env WEBDIT_FLUX_QUANT=0 deno bench -A --no-check bench/flux_step_bench.ts" ;;
    flux_quant) cmd="env WEBDIT_FLUX_DTYPES=none deno bench -A --no-check bench/flux_step_bench.ts" ;;
    ablation)
      cmd="deno run -A bench/ablation.ts --out $results"
      if [ -n "${WEBDIT_EMOJI_DATASET:-}" ] && { [ -f "$WEBDIT_EMOJI_DATASET/emoji.json" ] || [ -f "$WEBDIT_EMOJI_DATASET/emoji_meta.json" ]; }; then
        cmd="$cmd --dataset $WEBDIT_EMOJI_DATASET"
      fi
      ;;
    loop) cmd="deno run -A --no-check bench/loop_bench.ts --write" ;;
    row_chunks) cmd="deno bench -A --no-check bench/row_chunks_bench.ts" ;;
    vae) cmd="deno bench -A --no-check bench/vae_bench.ts" ;;
    text) cmd="deno bench -A --no-check bench/text_encoder_bench.ts" ;;
    torch_text) cmd="python3 tools/torch/bench_text.py --commit $WEBDIT_COMMIT --out-dir $results" ;;
    emoji)
      cmd="deno run -A bench/emoji_bench.ts"
      [ -n "${WEBDIT_EMOJI_IN_FLIGHT:-}" ] && cmd="$cmd --in-flight $WEBDIT_EMOJI_IN_FLIGHT"
      if [ -n "${WEBDIT_EMOJI_DATASET:-}" ] && { [ -f "$WEBDIT_EMOJI_DATASET/emoji.json" ] || [ -f "$WEBDIT_EMOJI_DATASET/emoji_meta.json" ]; }; then
        cmd="$cmd --fidelity --dataset $WEBDIT_EMOJI_DATASET"
      else
        echo "emoji: no WEBDIT_EMOJI_DATASET (emoji.json + img/google/64/, or the .train folder): timing rows only" >&2
      fi
      ;;
  esac
  export WEBDIT_BENCH_COMMAND="$(knobs)bash bench/gpu_all.sh $part (= WEBDIT_BENCH_WRITE=1 $cmd)"
  echo "=== $part: $cmd ($(date -u +%H:%M:%S) UTC)"
  local t0=$SECONDS
  local left=$((deadline - SECONDS))
  if [ "$left" -le 10 ]; then
    echo "=== $part: skipped, WEBDIT_GPU_BUDGET_S is spent"
    return 1
  fi
  # shellcheck disable=SC2086
  timeout -k 5 "$left" $cmd 2>&1 | tee "$logdir/gpu_$part.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $part: exit $rc after $((SECONDS - t0)) s"
  return "$rc"
}

failed=0
for part in "${want[@]}"; do
  run_part "$part" || failed=$((failed + 1))
  collect
done
echo "done: ${#want[@]} part(s), $failed failed; results under $results/ (new since $(date -u -r "$stamp" +%H:%M:%S) UTC)"
exit "$failed"
