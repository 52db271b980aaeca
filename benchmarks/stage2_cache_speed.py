"""Seconds per stage-2 training epoch of DeNetDM on Colored MNIST (1%), with the frozen experts'
outputs computed once per stage 2 (the default where the training split is not augmented) against
computing them in every step, alternating the two epoch by epoch in one process, so that the
machine's drift (large on shared 2-core VMs) falls on both alike. Training steps only, no
evaluation; `build_s` is the one pass over the training split that fills the cache.

    python benchmarks/stage2_cache_speed.py [--rounds 3] [--threads 0] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import denetdm
from denetdm.methods import create_method

HERE = Path(__file__).resolve().parent


def epoch_seconds(model, train, batch_size: int, generator) -> float:
    order = torch.randperm(len(train), generator=generator)
    start = time.perf_counter()
    for batch in train.batches(order, batch_size):
        model.update(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="pairs of epochs (cached, per step) per distillation weight")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "results" / "stage2_cache_speed.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"what": __doc__.split("\n\n")[0].replace("\n", " "), "threads": torch.get_num_threads(), "runs": {}}
    data = denetdm.load_config("colored_mnist", ["device=cpu"]).data  # one dataset serves both weights
    splits = denetdm.create_dataset(data, with_val=True, progress=False)
    for weight in (1.0, 0.0):
        cfg = denetdm.load_config("colored_mnist", ["device=cpu", f"method.distill_weight={weight}"])
        torch.manual_seed(0)
        model = create_method(cfg, splits.train.input_shape, splits.train.num_classes, len(splits.train))
        stage1, stage2 = model.phases()
        model.start_phase(stage1, splits.train)
        start = time.perf_counter()
        model.start_phase(stage2, splits.train)
        build = time.perf_counter() - start
        cache, times = model.frozen_outputs, {"cached": [], "per_step": []}
        model.train()
        generator = torch.Generator().manual_seed(0)
        for _ in range(args.rounds):
            for kind in times:
                model.frozen_outputs = cache if kind == "cached" else None
                times[kind].append(round(epoch_seconds(model, splits.train, stage2.optim.batch_size, generator), 3))
        median = {k: statistics.median(v) for k, v in times.items()}
        report["runs"][f"distill_weight={weight:g}"] = {
            "epoch_s": times, "median_s": median, "build_s": round(build, 3),
            "speedup": round(median["per_step"] / median["cached"], 2)}
    report["command"] = f"python benchmarks/stage2_cache_speed.py --rounds {args.rounds} --threads {args.threads}"
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v["median_s"] | {"speedup": v["speedup"]} for k, v in report["runs"].items()}))


if __name__ == "__main__":
    main()
