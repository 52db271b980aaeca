"""Can a stage-1 recipe change give the deep branch the bias where the shallow one learns it faster?

For Colored MNIST and each MNIST bias-suite dataset (1%, seed 0), DeNetDM's stage 1 is trained for a
few epochs under recipe variants, and after each epoch the test split is read against its bias labels:
the deep branch's aligned and conflicting accuracy (a bias reader is ~100 / ~0), the shallow branch's
conflicting accuracy (what stage 2 distils), and the deep branch's fit of the training labels (what
the label-free split check sees). Variants: the paper; a slower shallow branch
(`method.shallow_lr_scale`); the deep branch trained alone for the first N steps (`warmup`), and
then also frozen (`warmup_freeze`), neither of which is a package option. Writes
benchmarks/results/stage1_recipes.json.

    python benchmarks/stage1_recipes.py [--epochs 8] [--datasets ...]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from denetdm.config import load_config
from denetdm.data import create_dataset
from denetdm.methods import create_method
from denetdm.training import evaluate, seed_everything

HERE = Path(__file__).resolve().parent
DATASETS = ("colored_mnist", "mnist_background", "mnist_patch", "mnist_stripes", "mnist_corruption")
VARIANTS = {
    "paper": [], "shallow_lr_scale=0.1": ["method.shallow_lr_scale=0.1"],
    "shallow_lr_scale=0.03": ["method.shallow_lr_scale=0.03"], "shallow_lr_scale=0.01": ["method.shallow_lr_scale=0.01"],
    "warmup=300": [], "warmup=300_freeze": [],
    # Adam's coupled L2 decay shrinks a branch whose gradients have faded (the deep one, once the shallow
    # branch fits everything) at about the learning rate per step: does the deep branch die of it?
    "stage1_wd=0": ["method.stage1.weight_decay=0"], "stage1_wd=1e-4": ["method.stage1.weight_decay=1e-4"],
    "stage1_wd=0+shallow_lr_scale=0.1": ["method.stage1.weight_decay=0", "method.shallow_lr_scale=0.1"],
}


def stage1(dataset: str, variant: str, splits, epochs: int) -> list:
    cfg = load_config("colored_mnist", [f"data.name={dataset}", "device=cpu", *VARIANTS[variant]])
    seed_everything(cfg.seed)
    model = create_method(cfg, splits.train.input_shape, splits.train.num_classes, len(splits.train))
    phase = model.phases()[0]
    model.start_phase(phase, splits.train)
    warmup = 300 if variant.startswith("warmup") else 0
    shuffle = torch.Generator().manual_seed(cfg.seed)
    rows, steps = [], 0
    for epoch in range(epochs):
        model.train()
        for batch in splits.train.batches(torch.randperm(len(splits.train), generator=shuffle), 64, drop_last=True):
            if steps < warmup:  # the deep branch (and the head) alone
                _, x, y, _ = batch
                model.step(F.cross_entropy(model.head(model.deep(x)), y))
            else:
                if variant.endswith("freeze"):
                    model.deep.requires_grad_(False)
                model.update(batch)
            steps += 1
        test = evaluate(model, splits.test, phase.predictors)
        fit = evaluate(model, splits.train, ["stage1_deep"], use_bias=False)
        rows.append({"epoch": epoch, "deep_aligned": test["stage1_deep"]["aligned"],
                     "deep_conflicting": test["stage1_deep"]["conflicting"],
                     "shallow_conflicting": test["stage1_shallow"]["conflicting"],
                     "deep_train_fit": fit["stage1_deep"]["accuracy"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=str(HERE / "results" / "stage1_recipes.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = {"what": __doc__.splitlines()[0], "ratio": 0.01, "seed": 0, "epochs": args.epochs, "runs": []}
    for dataset in args.datasets.split(","):
        splits = create_dataset(load_config("colored_mnist", [f"data.name={dataset}"]).data, progress=False)
        for variant in args.variants.split(","):
            rows = stage1(dataset, variant, splits, args.epochs)
            out["runs"].append({"dataset": dataset, "variant": variant, "epochs": rows})
            print(dataset, variant, json.dumps(rows[-1]), flush=True)
            Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
