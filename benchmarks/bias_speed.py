"""Which network learns a bias first? DeNetDM needs the deep branch to take the bias before the
shallow one does. For Colored MNIST and each MNIST bias-suite dataset, train the deep (5-layer) and
the shallow (3-layer) MLP of the Colored MNIST preset alone (ERM, the stage-1 optimiser) and record,
after a few steps, how often their predictions on the test split match the bias label and the class
label, and which branch takes the bias in a product of experts (DeNetDM stage 1) after as many steps.
Writes benchmarks/results/bias_speed.json.

    python benchmarks/bias_speed.py [--steps 10,30,100,300] [--ratio 0.01]
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
from denetdm.models import create_model

HERE = Path(__file__).resolve().parent
DATASETS = ("colored_mnist", "mnist_background", "mnist_patch", "mnist_stripes", "mnist_corruption")


@torch.no_grad()
def agreement(predict, test) -> dict:
    pred = torch.cat([predict(x).argmax(1) for _, x, _, _ in test.batches(torch.arange(len(test)), 2048)])
    return {"bias": round(100.0 * (pred == test.bias).float().mean().item(), 2),
            "class": round(100.0 * (pred == test.y).float().mean().item(), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="10,30,100,300")
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--out", default=str(HERE / "results" / "bias_speed.json"))
    args = parser.parse_args()
    steps = sorted(int(s) for s in args.steps.split(","))
    torch.set_num_threads(1)
    rows = []
    for dataset in DATASETS:
        cfg = load_config("colored_mnist", [f"data.name={dataset}", f"data.ratio={args.ratio}", "device=cpu"])
        splits = create_dataset(cfg.data, progress=False)
        row = {"dataset": dataset}
        for name, spec in (("deep_alone", cfg.method.deep), ("shallow_alone", cfg.method.shallow)):
            torch.manual_seed(cfg.seed)
            body = create_model(spec, splits.train.input_shape)
            head = torch.nn.Linear(body.out_dim, 10)

            def forward(x, body=body, head=head):
                return head(body(x))

            row[name] = _train_and_read(cfg, splits, forward, [*body.parameters(), *head.parameters()], steps)
        torch.manual_seed(cfg.seed)
        model = create_method(cfg, splits.train.input_shape, 10, len(splits.train))
        model.start_phase(model.phases()[0], splits.train)
        predictors = model.predictors()
        row["poe_stage1"] = _train_and_read(cfg, splits, predictors["stage1_poe"],
                                            [p for m in (model.deep, model.shallow, model.head) for p in m.parameters()],
                                            steps, read={"deep": predictors["stage1_deep"], "shallow": predictors["stage1_shallow"]})
        rows.append(row)
        print(json.dumps(row))
    Path(args.out).write_text(json.dumps({"what": __doc__.splitlines()[0], "ratio": args.ratio, "steps": steps,
                                          "agreement_with_test_labels_pct": rows}, indent=1))


def _train_and_read(cfg, splits, forward, params, steps, read=None) -> dict:
    """Train `forward` with the stage-1 optimiser; at each of `steps`, how its predictions (or those of
    the `read` predictors) agree with the test split's bias and class labels."""
    torch.manual_seed(cfg.seed)
    opt = torch.optim.Adam(params, lr=cfg.method.stage1.lr, weight_decay=cfg.method.stage1.weight_decay)
    order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(cfg.seed))
    batches = splits.train.batches(order, cfg.method.stage1.batch_size, drop_last=True)
    out = {}
    for step in range(1, max(steps) + 1):
        _, x, y, _ = next(batches)
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in steps:
            out[str(step)] = ({name: agreement(p, splits.test) for name, p in read.items()} if read
                              else agreement(forward, splits.test))
    return out


if __name__ == "__main__":
    main()
