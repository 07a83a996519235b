"""Loads a scratchnet weights file into PyTorch's nn.Sequential twin of lenet5-bn with
strict name and shape checking, evaluates it on CIFAR-10 test_batch.bin, and prints the
loss and accuracy beside what `scratchnet eval` printed for the same file.

usage: .venv/bin/python tools/check_pytorch_load.py WEIGHTS DATA_DIR
(benches/compare-pytorch.sh installs the virtualenv; without it this script cannot run.)
"""

import sys

try:
    import numpy  # noqa: F401
    import safetensors  # noqa: F401
    import torch  # noqa: F401
except ImportError:
    sys.exit("this tool needs PyTorch: run benches/compare-pytorch.sh once to install it "
             "into .venv, then use .venv/bin/python")
import tomllib

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from pytorch_reference import lenet5_bn


def main():
    weights, data_dir = sys.argv[1], sys.argv[2]
    with safe_open(weights, framework="pt") as f:
        recipe = tomllib.loads(f.metadata()["scratchnet.recipe"])
    model = lenet5_bn()
    model.load_state_dict(load_file(weights), strict=True)
    model.eval()

    raw = np.fromfile(f"{data_dir}/test_batch.bin", dtype=np.uint8).reshape(-1, 3073)
    labels = torch.from_numpy(raw[:, 0].astype(np.int64))
    x = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32)) / 255.0
    norm = recipe.get("augment", {}).get("normalize")
    if norm:
        mean = torch.tensor(norm["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(norm["std"]).view(1, 3, 1, 1)
        x = (x - mean) / std
    with torch.no_grad():
        logits = model(x)
    smoothing = recipe.get("label_smoothing", 0.0)
    loss = F.cross_entropy(logits, labels, label_smoothing=smoothing).item()
    acc = 100.0 * (logits.argmax(1) == labels).float().mean().item()
    print(f"pytorch test_loss={loss:.4f} test_acc={acc:.2f} n={len(labels)}")


if __name__ == "__main__":
    main()
