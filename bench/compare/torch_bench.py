"""PyTorch (CPU, eager) train-step and predict throughput of fm's example models.

    /work/venv/bin/python bench/compare/torch_bench.py [--threads 1] [--models ...]

Prints one JSON line per (model, batch, mode), in fm-bench's format. The timed train step is the
usual loop: `zero_grad`, forward, `cross_entropy` on the logits (the fused form of softmax +
sparse categorical cross-entropy, as fm and Keras compute it), `backward`, `Adam.step`, and
`loss.item()`; predict is a forward pass with softmax under `torch.inference_mode()`. Images are
NCHW, PyTorch's native layout.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import MODELS, batches, median_seconds, parse_args, report, synthetic_batch  # noqa: E402


def build(name, nn):
    if name in ("digits_mlp", "mnist_mlp"):
        shape, _ = MODELS[name]
        inputs = shape[0] * shape[1]
        return nn.Sequential(nn.Flatten(), nn.Linear(inputs, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "digits_cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding="same"), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding="same"), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Conv2d(64, 128, 3, padding="same"), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.4),
            nn.Linear(128, 10),
        )
    if name == "mnist_cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, 64), nn.ReLU(),
            nn.Linear(64, 10),
        )
    raise ValueError(name)


def main():
    args = parse_args(__doc__)
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    backend = f"torch-{torch.__version__.split('+')[0]}"
    for name in args.models:
        for batch in batches(args, name):
            x, y = synthetic_batch(name, batch)
            if x.ndim == 4:  # NHWC -> NCHW
                x = x.transpose(0, 3, 1, 2).copy()
            x, y = torch.from_numpy(x), torch.from_numpy(y)
            model = build(name, torch.nn)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

            def train_step():
                model.train()
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                return loss.item()

            def predict():
                model.eval()
                with torch.inference_mode():
                    return torch.softmax(model(x), dim=-1)

            for mode in args.modes:
                call = {"train": train_step, "predict": predict}.get(mode)
                if call is None:
                    sys.exit(f"unknown mode {mode}")
                seconds = median_seconds(call, args.seconds, args.runs)
                report("torch", backend, args.threads, name, mode, batch, seconds)


if __name__ == "__main__":
    main()
