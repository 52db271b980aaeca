"""How often does DeNetDM's stage 1 fail to split on Colored MNIST? Many seeds at once on one GPU.

The package's stage 1, restated for S seeds trained side by side: every seed's deep branch, shallow
branch and head are stacked along a leading dimension and run as batched matrix products. Each seed
keeps what `denetdm.train` would give it: its initial weights (the package's `create_method` after
`seed_everything(seed)`), its own shuffling generator with drop_last batches, and Adam with coupled
L2 decay, which is elementwise, so one optimiser over the stacked weights updates each seed exactly
as its own optimiser would. Seed s here is the package's stage 1 at seed s, up to float rounding
(a test checks the stacked steps against the package's `update`).

Recorded per seed and epoch: the label-free fit of the training labels by the deep branch, the
shallow branch and both (what DeNetDM's split warning reads), and, with the bias labels, for
measurement only: the deep branch's aligned and the shallow branch's conflicting test accuracy
(cell means). Writes one JSON per run, updated after every ratio, so a cut-off run keeps its results.

    python benchmarks/stage1_split_rate.py --seeds 0-127 --ratios 0.01,0.05 [--epochs 100] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import denetdm
from denetdm.methods.base import make_optimizer
from denetdm.methods.denetdm import SPLIT_WARN_BELOW
from denetdm.metrics import summarize
from denetdm.training import machine_info, seed_everything, setup_runtime

HERE = Path(__file__).resolve().parent


class StackedMLP(nn.Module):
    """The Linear layers of one module per seed, weights stacked; each followed by a ReLU if `relu`
    (a branch body, Linear+ReLU throughout) or not (the head)."""

    def __init__(self, modules, relu: bool):
        super().__init__()
        layers = list(zip(*([m for m in module.modules() if isinstance(m, nn.Linear)] for module in modules)))
        self.weights = nn.ParameterList(nn.Parameter(torch.stack([l.weight.detach().t() for l in g])) for g in layers)
        self.biases = nn.ParameterList(nn.Parameter(torch.stack([l.bias.detach()[None] for l in g])) for g in layers)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, B, in) or (B, in), shared by every seed; returns (S, B, out)."""
        for w, b in zip(self.weights, self.biases):
            x = torch.baddbmm(b, x, w) if x.dim() == 3 else torch.matmul(x, w) + b
            if self.relu:
                x = torch.relu(x)
        return x


class StackedStage1(nn.Module):
    def __init__(self, methods):
        super().__init__()
        self.deep = StackedMLP([m.deep for m in methods], relu=True)
        self.shallow = StackedMLP([m.shallow for m in methods], relu=True)
        self.head = StackedMLP([m.head for m in methods], relu=False)

    def logits(self, x: torch.Tensor) -> dict:
        deep, shallow = self.deep(x), self.shallow(x)
        return {"deep": self.head(deep), "shallow": self.head(shallow), "poe": self.head(deep + shallow)}

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The sum over seeds of each seed's mean cross-entropy, so each seed gets its own gradient."""
        logits = self.head(self.deep(x) + self.shallow(x))
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / y.shape[1]

    def update(self, optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        """One step of every seed on its own batch: x (S, B, ...), y (S, B)."""
        loss = self.loss(x.flatten(2), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def build(cfg, seeds, train):
    """Each seed's initial stage-1 weights, as `denetdm.train` builds them."""
    methods = []
    for seed in seeds:
        seed_everything(seed)
        methods.append(denetdm.create_method(cfg, train.input_shape, train.num_classes, len(train)))
    return StackedStage1(methods)


@torch.no_grad()
def predictions(model: StackedStage1, split, chunk: int = 4096) -> dict:
    preds = {"deep": [], "shallow": [], "poe": []}
    for _, x, _, _ in split.batches(torch.arange(len(split)), chunk):
        for name, logits in model.logits(x.flatten(1)).items():
            preds[name].append(logits.argmax(-1))
    return {name: torch.cat(p, dim=1).cpu() for name, p in preds.items()}


def train_stage1(cfg, seeds, splits, device, epochs: int):
    train, test = splits.train, splits.test
    model = build(cfg, seeds, train).to(device)
    optim, n = cfg.method.stage1, len(seeds)
    optimizer = make_optimizer(model.parameters(), optim)
    shuffles = [torch.Generator().manual_seed(seed) for seed in seeds]
    steps = len(train) // optim.batch_size  # drop_last, as the package's stage 1
    curves = {k: [[] for _ in seeds] for k in ("deep_fit", "shallow_fit", "poe_fit", "deep_aligned", "shallow_conflicting")}
    train_y, test_y, test_bias = train.y.cpu(), test.y.cpu(), test.bias.cpu()
    started = time.time()
    for _ in range(epochs):
        orders = torch.stack([torch.randperm(len(train), generator=g)[:steps * optim.batch_size] for g in shuffles])
        # Step-major, seed-minor: each slice of n * batch_size indices holds every seed's batch of one step.
        order = orders.view(n, steps, optim.batch_size).transpose(0, 1).flatten()
        for _, x, y, _ in train.batches(order, n * optim.batch_size):
            model.update(optimizer, x.view(n, optim.batch_size, -1), y.view(n, optim.batch_size))
        fit = predictions(model, train)
        seen = predictions(model, test)
        for s in range(n):
            for name in ("deep", "shallow", "poe"):  # accuracy on the training labels: no bias labels
                curves[f"{name}_fit"][s].append(round(100 * (fit[name][s] == train_y).double().mean().item(), 2))
            deep, shallow = (summarize(seen[name][s], test_y, test_bias, test.num_classes, test.num_bias)
                             for name in ("deep", "shallow"))
            curves["deep_aligned"][s].append(round(deep["aligned"], 2))
            curves["shallow_conflicting"][s].append(round(shallow["conflicting"], 2))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return curves, time.time() - started


def wilson(k: int, n: int, z: float = 1.96) -> list:
    """95% Wilson interval of a proportion k/n, in percent."""
    p, d = k / n, 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(100 * (centre - half), 1), round(100 * (centre + half), 1)]


def summary(seeds, curves) -> dict:
    rows = []
    for s, seed in enumerate(seeds):
        last = {k: v[s][-1] for k, v in curves.items()}
        best = max(range(len(curves["shallow_conflicting"][s])), key=curves["shallow_conflicting"][s].__getitem__)
        rows.append({"seed": seed, "last_epoch": last, "warns": last["deep_fit"] < SPLIT_WARN_BELOW,
                     "oracle_epoch": best, "at_oracle_epoch": {k: v[s][best] for k, v in curves.items()}})
    def fails(row) -> bool:
        """With bias labels: a deep branch that misses a colour scores under 95% on aligned test images."""
        return row["last_epoch"]["deep_aligned"] < 95.0

    warned = [r for r in rows if r["warns"]]
    failed = [r for r in rows if fails(r)]
    both = [r for r in rows if r["warns"] == fails(r)]

    def mean(rs, key):
        return round(sum(r["last_epoch"][key] for r in rs) / len(rs), 2) if rs else None

    return {
        "seeds": len(rows),
        "warned_label_free": len(warned), "warned_percent_ci95": wilson(len(warned), len(rows)),
        "failed_bias_labelled": len(failed), "failed_percent_ci95": wilson(len(failed), len(rows)),
        "warning_agrees_with_bias_labelled_failure": len(both),
        "shallow_conflicting_last_mean": {"not_warned": mean([r for r in rows if not r["warns"]], "shallow_conflicting"),
                                          "warned": mean(warned, "shallow_conflicting")},
        "rows": rows,
    }


def parse_seeds(text: str) -> list:
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-127", help="e.g. 0-127 or 0,1,5-9")
    parser.add_argument("--ratios", default="0.01")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every seed, e.g. method.stage1.weight_decay=0")
    parser.add_argument("--out", default=str(HERE / "results" / "stage1_split_rate.json"))
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    report = {"what": "DeNetDM stage 1 (Colored MNIST paper setting) for many seeds: label-free training fit per branch "
                      "and bias-labelled test accuracies per epoch; `warns` = last-epoch deep-branch fit under the warning "
                      "threshold; `failed_bias_labelled` = last-epoch deep-branch aligned test accuracy under 95%",
              "warn_below": SPLIT_WARN_BELOW, "epochs": args.epochs, "ratios": {},
              "command": f"python benchmarks/stage1_split_rate.py --seeds {args.seeds} --ratios {args.ratios} "
                         f"--epochs {args.epochs} --device {args.device}" + "".join(f" --set {o}" for o in args.set)}
    for ratio in map(float, args.ratios.split(",")):
        cfg = denetdm.load_config("colored_mnist", [f"data.ratio={ratio}", f"method.stage1.epochs={args.epochs}",
                                                    f"device={args.device}", *args.set])
        device = setup_runtime(cfg)
        splits = denetdm.create_dataset(cfg.data, progress=False).to(device)
        curves, seconds = train_stage1(cfg, seeds, splits, device, args.epochs)
        report["ratios"][str(ratio)] = {"wall_s": round(seconds, 1), **summary(seeds, curves), "curves": curves}
        report["machine"] = machine_info(device)
        Path(args.out).write_text(json.dumps(report) + "\n")
        print(json.dumps({k: v for k, v in report["ratios"][str(ratio)].items() if k not in ("rows", "curves")}), flush=True)


if __name__ == "__main__":
    main()
