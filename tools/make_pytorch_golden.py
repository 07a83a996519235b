"""Writes crates/tensor/tests/fixtures/lenet5_bn_pytorch.safetensors: one training-mode
forward and backward of lenet5-bn in PyTorch, the reference the Rust test
`pytorch_golden.rs` holds scratchnet to.

The file holds the network's tensors before the step (state_dict names), a batch of 8
inputs and labels, the logits, the label-smoothed (0.05) mean loss, the gradient of every
parameter (`grad.<name>`) and the batch-norm running statistics after the forward pass
(`after.<name>`). Rerun it only to change the reference:
    .venv/bin/python tools/make_pytorch_golden.py
"""

import sys

try:
    import numpy  # noqa: F401
    import safetensors  # noqa: F401
    import torch  # noqa: F401
except ImportError:
    sys.exit("this tool needs PyTorch: run benches/compare-pytorch.sh once to install it "
             "into .venv, then use .venv/bin/python")
import torch
import torch.nn as nn
from safetensors.torch import save_file

sys.path.insert(0, "tools")
from pytorch_reference import lenet5_bn  # noqa: E402

OUT = "crates/tensor/tests/fixtures/lenet5_bn_pytorch.safetensors"


def main():
    torch.manual_seed(2026)
    model = lenet5_bn().train()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    logits = model(x)
    loss = nn.CrossEntropyLoss(label_smoothing=0.05)(logits, labels)
    loss.backward()
    tensors = {f"before.{k}": v for k, v in before.items()}
    tensors.update({f"grad.{k}": p.grad for k, p in model.named_parameters()})
    tensors.update({f"after.{k}": v for k, v in model.state_dict().items() if "running" in k})
    tensors["input"] = x
    tensors["labels"] = labels
    tensors["logits"] = logits.detach()
    tensors["loss"] = loss.detach().reshape(1)
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT,
              metadata={"torch_version": torch.__version__})
    print(f"wrote {OUT} (torch {torch.__version__}, loss {loss.item():.6f})")


if __name__ == "__main__":
    main()
