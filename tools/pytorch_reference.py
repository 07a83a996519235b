"""PyTorch twin of scratchnet's benchmarks: the same lenet5-bn, the same v2 training step
(augmentation, label-smoothed loss, Adam with L2, EMA) at batch 50, evaluation of 10,000
images, and each conv layer forward + backward at its real shapes.

A development tool, not a test: run it through benches/compare-pytorch.sh, which installs
PyTorch into a local virtualenv. Prints one JSON object.
"""

import sys

try:
    import numpy  # noqa: F401
    import safetensors  # noqa: F401
    import torch  # noqa: F401
except ImportError:
    sys.exit("this tool needs PyTorch: run benches/compare-pytorch.sh once to install it "
             "into .venv, then use .venv/bin/python")
import argparse
import json
import statistics
import time


import torch
import torch.nn as nn
import torch.nn.functional as F


def lenet5_bn():
    # The network table of RECIPES.md, as an nn.Sequential whose indices name the tensors
    # of scratchnet's weights files.
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.BatchNorm2d(6), nn.Tanh(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.Tanh(), nn.AvgPool2d(2, 2),
        nn.Conv2d(16, 120, 5), nn.BatchNorm2d(120), nn.Tanh(), nn.Flatten(),
        nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )


MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)


def augment(images_u8, gen):
    """Reflection pad 2, random 32x32 crop, flip with p 0.4, scale, normalise: the v2
    transforms, done on the whole batch at once (faster than per-image transforms)."""
    x = images_u8.float()
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    n = x.shape[0]
    dy = torch.randint(0, 5, (n,), generator=gen)
    dx = torch.randint(0, 5, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.4
    out = torch.empty(n, 3, 32, 32)
    for i in range(n):
        crop = x[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        out[i] = crop.flip(-1) if flip[i] else crop
    return (out / 255.0 - MEAN) / STD


def median_ms(fn, iters, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def bench_step(iters, batch):
    gen = torch.Generator().manual_seed(0)
    model = lenet5_bn()
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.999))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    images = torch.randint(0, 256, (batch * 20, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (batch * 20,), generator=gen)
    state = {"i": 0}

    def step():
        j = (state["i"] % 20) * batch
        state["i"] += 1
        x = augment(images[j:j + batch], gen)
        y = labels[j:j + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        ema.update_parameters(model)

    model.train()
    return median_ms(step, iters)


def bench_eval(repeats):
    gen = torch.Generator().manual_seed(1)
    model = lenet5_bn().eval()
    images = torch.randint(0, 256, (10_000, 3, 32, 32), dtype=torch.uint8, generator=gen)

    def run():
        with torch.no_grad():
            for chunk in images.split(1000):
                x = (chunk.float() / 255.0 - MEAN) / STD
                model(x)

    return median_ms(run, repeats, warmup=1)


def bench_conv(iters, batch):
    rows = []
    shapes = [("conv0", 3, 6, 32, False), ("conv4", 6, 16, 14, True), ("conv8", 16, 120, 5, True)]
    for name, c, k, hw, input_grad in shapes:
        conv = nn.Conv2d(c, k, 5)
        x = torch.randn(batch, c, hw, hw, requires_grad=input_grad)
        out_hw = hw - 4
        macs = batch * k * c * 25 * out_hw * out_hw
        d_out = torch.randn(batch, k, out_hw, out_hw)

        def fwd_bwd():
            conv.zero_grad(set_to_none=True)
            if x.grad is not None:
                x.grad = None
            conv(x).backward(d_out)

        ms = median_ms(fwd_bwd, iters)
        flops = 2 * macs * (3 if input_grad else 2)
        rows.append({"layer": name, "ms": ms, "gflops": flops / (ms / 1e3) / 1e9})
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "step_ms": bench_step(args.iters, args.batch_size),
        "eval_ms": bench_eval(5),
        "conv": bench_conv(args.iters, args.batch_size),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
