#!/usr/bin/env bash
# One device call of the emoji-model / reference work (run from the repo root on the GPU machine).
#   bash tools/torch/gpu_session.sh first COMMIT   fixtures + checks + torch step bench + training start
#   bash tools/torch/gpu_session.sh train          resume the sizes (SIZES="a c", default "a b") from .train/ckpt, train
#   bash tools/torch/gpu_session.sh final          resume, train with LR annealing, export + fidelity
#   bash tools/torch/gpu_session.sh eval           export + fidelity from .train/ckpt
# Everything that comes back is written flat under $OUT (at most 8 files).
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
phase=$1
commit=${2:-unknown}
start=$(date +%s)
limit=${LIMIT_S:-565}            # the whole command must end before the 600 s call limit
final_eval_s=${FINAL_EVAL_S:-100} # kept free for export + fidelity in the final phase
W=/tmp/work
mkdir -p "$W" "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
echo "phase $phase, commit $commit, $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, safetensors; print('torch', torch.__version__, 'safetensors', safetensors.__version__, torch.cuda.get_device_name(0))"

left() { echo $((limit - ($(date +%s) - start))); }

train_both() { # $1 = seconds of training, $2.. extra args
  local secs=$1; shift
  local mins
  mins=$(python3 -c "print(max(0.5, $secs / 60))")
  echo "training both sizes for $mins min: $*"
  local pids=()
  for s in ${SIZES:-a b}; do
    local lr_var="LR_${s^^}" extra_var="EXTRA_${s^^}"
    # shellcheck disable=SC2086  # EXTRA_A / EXTRA_B: per-size extra flags, split on spaces
    python3 tools/torch/train/train.py --size $s --data .train --out "$OUT" --minutes "$mins" \
      ${!lr_var:+--lr ${!lr_var}} ${!extra_var:-} "$@" > "$OUT/train_$s.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"  # not a bare wait: that would also wait for the tee above
  tail -n 4 "$OUT/train_a.log" "$OUT/train_b.log"
}

fixtures_and_checks() { # -> $W/misc/{fixtures, check_fixtures.json, check.log}
  mkdir -p "$W/misc/fixtures" /tmp/ref
  python3 tools/torch/make_fixtures.py --out "$W/misc/fixtures" > "$W/misc/check.log" 2>&1 || echo "FIXTURES FAILED"
  local dsrc=""
  [ -f .ref/diffusers_src.tar.xz ] && tar xJf .ref/diffusers_src.tar.xz -C /tmp/ref && dsrc=/tmp/ref/src
  timeout 200 python3 tools/torch/check_fixtures.py --fixtures "$W/misc/fixtures" ${dsrc:+--diffusers-src $dsrc} \
    --json "$W/misc/check_fixtures.json" >> "$W/misc/check.log" 2>&1 || echo "CHECK FAILED"
}

case $phase in
first)
  mkdir -p "$W/fixtures" "$W/bench" /tmp/ref
  python3 tools/torch/make_fixtures.py --out "$W/fixtures" || echo "FIXTURES FAILED"
  tar xJf .ref/diffusers_src.tar.xz -C /tmp/ref 2>/dev/null && dsrc=/tmp/ref/src || dsrc=""
  timeout 120 python3 tools/torch/check_fixtures.py --fixtures "$W/fixtures" ${dsrc:+--diffusers-src $dsrc} \
    --json "$W/check_fixtures.json" || echo "CHECK FAILED"
  timeout 150 python3 tools/torch/bench_step.py --commit "$commit" --out-dir "$W/bench" || echo "BENCH FAILED"
  tar czf "$OUT/misc.tar.gz" -C "$W" .
  train_both $(( $(left) - 45 )) --check-roundtrip 1
  ;;
train)
  train_both $(( $(left) - 45 )) --resume .train/ckpt
  ;;
final)
  fixtures_and_checks &  # CPU work beside the training
  fpid=$!
  train_both $(( $(left) - final_eval_s - 45 )) --resume .train/ckpt --anneal 1
  wait $fpid
  mkdir -p "$W/models"
  timeout $(( $(left) - 10 )) python3 tools/torch/train/finish.py --ckpt "$OUT" --out "$W/models" || echo "FINISH FAILED"
  tar czf "$OUT/final.tar.gz" -C "$W" models misc
  ;;
eval)  # export + fidelity only, from the checkpoints in .train/ckpt
  mkdir -p "$W/models"
  timeout $(( $(left) - 10 )) python3 tools/torch/train/finish.py --ckpt .train/ckpt --out "$W/models" || echo "FINISH FAILED"
  tar czf "$OUT/final.tar.gz" -C "$W" models
  ;;
*)
  echo "unknown phase $phase"; exit 2 ;;
esac
rm -f "$OUT"/*.tmp
echo "phase $phase done in $(( $(date +%s) - start )) s"
ls -la "$OUT"
