#!/usr/bin/env bash
# Same seed, same bits, on the real CIFAR-10 images (issue 4), small enough for CI:
#   1. a v2 run with 1 thread and with 2 threads ends in byte-identical weights and
#      metrics.csv rows equal but for the seconds column;
#   2. a v2 run stopped after epoch 1 and resumed to epoch 2 ends byte-identical to the
#      uninterrupted run.
# usage: tests/real_data_reproducibility.sh BINARY DATA_DIR
set -euo pipefail

bin=$1
data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--recipe v2 --data "$data" --train-limit 2000 --val-size 500 --seed 11)

# metrics.csv without its seconds column.
strip_seconds() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") s = i }
             { out = ""; for (i = 1; i <= NF; i++) if (i != s) out = out $i ","; print out }' "$1"
}

same_run() {
    local a=$1 b=$2 what=$3
    for f in last.safetensors best.safetensors state.safetensors; do
        cmp "$a/$f" "$b/$f" || { echo "FAIL: $what: $f differs" >&2; exit 1; }
    done
    diff <(strip_seconds "$a/metrics.csv") <(strip_seconds "$b/metrics.csv") \
        || { echo "FAIL: $what: metrics.csv differs" >&2; exit 1; }
    echo "ok: $what"
}

"$bin" train "${common[@]}" --epochs 2 --threads 1 --out "$work/t1" > "$work/t1.log"
"$bin" train "${common[@]}" --epochs 2 --threads 2 --out "$work/t2" > "$work/t2.log"
same_run "$work/t1" "$work/t2" "real data, 1 thread vs 2 threads"

"$bin" train "${common[@]}" --epochs 1 --threads 2 --out "$work/r" > "$work/r1.log"
"$bin" train --resume "$work/r" --epochs 2 --threads 1 > "$work/r2.log"
same_run "$work/t1" "$work/r" "real data, resumed after epoch 1 vs uninterrupted"
