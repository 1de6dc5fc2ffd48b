#!/usr/bin/env bash
# Train the eight shipped flows at once, one process per dataset, on the best device.
#
#   scripts/pretrain_all.sh OUT_DIR [SECONDS] [-- ARGS for python -m flowedu.pretrain]
#   scripts/pretrain_all.sh flowedu/pretrained 540 -- --steps 20000 --seeds 2
#   scripts/pretrain_all.sh flowedu/pretrained/spline 900 -- --model spline --steps 15000
#
# A 2D flow is too small to keep a GPU busy: one training run mostly waits for the CPU to
# launch kernels, so eight runs side by side finish far sooner than eight in a row. Each
# run writes OUT_DIR/<dataset>.safetensors when it ends and OUT_DIR/<dataset>.log as it goes; runs
# still going after SECONDS (default 540) are stopped and leave no checkpoint, so a GPU
# booked for a few minutes still keeps every run that finished. Prints the README's table.
# Needs only Python with torch and numpy (no install): it runs the package from this tree.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: scripts/pretrain_all.sh OUT_DIR [SECONDS] [-- ARGS]}"
shift
LIMIT=540
if [[ $# -gt 0 && $1 != "--" ]]; then
  LIMIT="$1"
  shift
fi
[[ $# -gt 0 && $1 == "--" ]] && shift
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
names=$("$PYTHON" -c "from flowedu.datasets import NAMES; print(*NAMES)") || exit 1

pids=()
for name in $names; do
  timeout "$LIMIT" "$PYTHON" -m flowedu.pretrain --datasets "$name" --out "$OUT" "$@" \
    >"$OUT/$name.log" 2>&1 &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=$((failed + 1))
done

head -n 1 "$OUT/$(echo "$names" | cut -d' ' -f1).log"
echo "| dataset | test NLL | true entropy | gap | seconds |"
echo "| --- | --- | --- | --- | --- |"
for name in $names; do
  grep -h "^| $name |" "$OUT/$name.log" || echo "| $name | did not finish: see $OUT/$name.log |"
done
exit $((failed > 0))
