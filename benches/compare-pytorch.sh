#!/usr/bin/env bash
# Compare scratchnet with PyTorch on this machine: one v2 training step at batch 50
# (augmentation, loss, backward, Adam, EMA), the evaluation of 10,000 images, and each
# conv layer's forward + backward. Both run with the same thread count, in turn, several
# rounds; the ratios of the medians are printed (below 1: scratchnet is faster).
#
# A development tool, not a test. It installs torch, safetensors and numpy into .venv
# (a few GB with PyTorch's CUDA libraries; needs the package registry once).
# usage: benches/compare-pytorch.sh [--threads N] [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2
rounds=3
while [ $# -gt 0 ]; do
    case $1 in
        --threads) threads=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

venv=.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, safetensors, numpy" 2>/dev/null; then
    echo "installing torch safetensors numpy into $venv ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch safetensors numpy
fi
cargo build --release --quiet --bin scratchnet
bin=target/release/scratchnet

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
for round in $(seq "$rounds"); do
    "$venv/bin/python" tools/pytorch_reference.py --threads "$threads" > "$results/torch-$round.json"
    "$bin" bench step --json --threads "$threads" --iters 200 > "$results/step-$round.json"
    "$bin" bench eval --json --threads "$threads" > "$results/eval-$round.json"
    "$bin" bench conv --json --threads "$threads" > "$results/conv-$round.json"
done

"$venv/bin/python" - "$results" "$rounds" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name: [json.load(open(f"{d}/{name}-{r}.json")) for r in range(1, rounds + 1)]
torch, step, ev, conv = load("torch"), load("step"), load("eval"), load("conv")
med = statistics.median
t_step, s_step = med(t["step_ms"] for t in torch), med(s["step_ms"] for s in step)
t_eval, s_eval = med(t["eval_ms"] for t in torch), med(s["eval_ms"] for s in ev)
print(f"torch {torch[0]['torch_version']}, threads {torch[0]['threads']}, medians of {rounds} rounds")
print(f"train step (batch 50): torch {t_step:.2f} ms, scratchnet {s_step:.2f} ms, ratio {s_step / t_step:.2f}")
print(f"  per 50,000-image epoch: torch {t_step * 1000 / 1e3:.1f} s, scratchnet {s_step * 1000 / 1e3:.1f} s")
print(f"eval 10,000 images: torch {t_eval:.0f} ms, scratchnet {s_eval:.0f} ms, ratio {s_eval / t_eval:.2f}")
for layer in ("conv0", "conv4", "conv8"):
    t_ms = med(next(r["ms"] for r in t["conv"] if r["layer"] == layer) for t in torch)
    t_gf = med(next(r["gflops"] for r in t["conv"] if r["layer"] == layer) for t in torch)
    s_rows = [next(r for r in c["conv"] if r["layer"] == layer and r["pass"] == "forward+backward"
                   and r["default"]) for c in conv]
    s_ms, s_gf = med(r["ms"] for r in s_rows), med(r["gflops"] for r in s_rows)
    print(f"{layer} forward+backward: torch {t_ms:.3f} ms ({t_gf:.1f} GFLOP/s), "
          f"scratchnet {s_ms:.3f} ms ({s_gf:.1f} GFLOP/s, {s_rows[0]['algorithm']}), "
          f"time ratio {s_ms / t_ms:.2f}")
PY
