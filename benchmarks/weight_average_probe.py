"""Does an average of the weights help DeNetDM? A probe that decided `method.stage1.ema` of the custom presets.

Takes a committed Colored MNIST run's config (its data, seed and hold-out) and trains one phase of it
afresh: `stage1` from fresh weights, or `stage2` from the run's stage-1 checkpoint. Beside the live
weights it keeps exponential moving averages (decays per step, e.g. 0.999,0.9999) and, after every
epoch, reads each on the test split (with bias labels: measurement only) and on the hold-out (the
label-free `proxy` score). Writes one JSON of per-epoch rows.

    python benchmarks/weight_average_probe.py stage1 benchmarks/results/cmnist_proxy/runs/denetdm_r0.01_s1_proxy out.json 0.999,0.9999 60
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch

from denetdm.averaging import WeightAverage
from denetdm.training import create_dataset, create_method, evaluate, read_run_config, seed_everything

STAGE = {  # which predictors each stage reports, the one it is selected on, and its drop_last
    "stage1": (["stage1_deep", "stage1_shallow"], "stage1_shallow", True),
    "stage2": (["stage2_target"], "stage2_target", False),
}


def main() -> None:
    stage, run, out, decays = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), [float(d) for d in sys.argv[4].split(",")]
    epochs = int(sys.argv[5]) if len(sys.argv) > 5 else 100
    names, monitor, drop_last = STAGE[stage]
    torch.set_num_threads(1)
    cfg = read_run_config(run)
    seed_everything(cfg.seed)
    splits = create_dataset(cfg.data, with_val=True, progress=False)
    model = create_method(cfg, splits.train.input_shape, splits.train.num_classes, len(splits.train))
    if stage == "stage2":
        model.load_state_dict(torch.load(run / "checkpoints" / "stage1.pt", weights_only=True)["state_dict"])
    phase = model.phases()[0 if stage == "stage1" else 1]
    model.start_phase(phase, splits.train)
    averages = [WeightAverage(model, decay) for decay in decays]
    shuffle = torch.Generator().manual_seed(cfg.seed)
    rows = []
    for epoch in range(epochs):
        model.train()
        for batch in splits.train.batches(torch.randperm(len(splits.train), generator=shuffle), 64, drop_last=drop_last):
            model.update(batch)
            for average in averages:
                average.update()
        row = {"epoch": epoch}
        for key, average in [("live", None)] + [(f"ema{d}", a) for d, a in zip(decays, averages)]:
            with average.swapped_in() if average is not None else contextlib.nullcontext():
                test = evaluate(model, splits.test, names)
                val = evaluate(model, splits.val, [monitor], use_bias=False, pseudo=True, proxy="stage1_deep")
            row[key] = {**{f"{n}_{k}": test[n][k] for n in names for k in ("aligned", "conflicting", "unbiased")},
                        "proxy_score": val[monitor]["pseudo_unbiased"]}
        rows.append(row)
        out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "rows": rows}))
        print(epoch, {k: round(v[f"{monitor}_conflicting"], 2) for k, v in row.items() if k != "epoch"}, flush=True)


if __name__ == "__main__":
    main()
