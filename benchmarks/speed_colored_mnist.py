"""Seconds per epoch of DeNetDM on Colored MNIST (paper setting, 1%), for comparison with the
official code's timings on the same kind of 2-core CPU (shared/docs/official-baseline.md), and against
the dense FLOP floor measured in the same process: an epoch's FLOPs (counted by torch's
FlopCounterMode on one training step and one evaluation batch of each phase) over the rate of a large
fp32 matmul on the same threads. Also the peak resident memory of the run: it trains in a child
process (`denetdm train`), so that what this script itself loads does not count.

Run it alone on the machine: timings on 2 cores are very sensitive to other jobs.

    python benchmarks/speed_colored_mnist.py [--epochs 5] [--threads 0] [--device cpu] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import denetdm
from denetdm.methods import create_method

HERE = Path(__file__).resolve().parent
# Official code, per epoch, 2 threads, num_workers=0 (official-baseline.md section 3.1).
OFFICIAL = {"stage1_train_s": 10.84, "stage1_train_plus_eval_s": 30.84, "stage2_train_plus_eval_s": 13.77,
            "full_run_s": 4472}


def matmul_rate(n: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of the best of `repeats` fp32 n x n matmuls: the machine's dense rate on these threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def epoch_flops(cfg, splits) -> dict:
    """Per phase: the FLOPs of one epoch's training steps and of its evaluation (every logged predictor
    on the test and held-out splits), from one counted step and one counted batch."""
    train = splits.train
    model = create_method(cfg, train.input_shape, train.num_classes, len(train))
    out = {}
    for phase in model.phases():
        model.start_phase(phase, train)
        size = phase.optim.batch_size
        steps = len(train) // size if phase.drop_last else -(-len(train) // size)
        batch = next(train.batches(torch.arange(size), size))
        step = flops(lambda: model.update(batch))
        with torch.no_grad():
            per_sample = flops(lambda: model.predict_many(batch[1], list(phase.predictors))) / size
        evaluated = sum(len(s) for s in (splits.test, splits.val) if s is not None)
        out[phase.name] = {"train": step * steps, "eval": per_sample * evaluated}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--out", default=str(HERE / "results" / "speed_colored_mnist.json"))
    args = parser.parse_args()
    overrides = [f"method.stage1.epochs={args.epochs}", f"method.stage2.epochs={args.epochs}",
                 f"threads={args.threads}", f"device={args.device}"]
    cfg = denetdm.load_config("colored_mnist", overrides)
    splits = denetdm.create_dataset(cfg.data, with_val=True, progress=False)  # the cache is built outside the timing
    torch.set_num_threads(args.threads or torch.get_num_threads())
    rate = matmul_rate()
    counted = epoch_flops(cfg, splits)
    del splits
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "denetdm.cli", "train", "--preset", "colored_mnist", "--out",
                        str(Path(tmp) / "run"), "-q", *overrides], check=True, stdout=subprocess.DEVNULL)
        results = json.loads((Path(tmp) / "run" / "results.json").read_text())
        records = [json.loads(l) for l in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    ends = [r["time_s"] for r in records]
    per_phase: dict = {}
    for r, start, end in zip(records, [0.0] + ends[:-1], ends):
        per_phase.setdefault(r["phase"], []).append(round(end - start, 2))
    median = {p: statistics.median(t[1:]) for p, t in per_phase.items()}
    projected = 100 * median["stage1"] + 100 * median["stage2"]
    report = {
        "what": "seconds per epoch, training (937/938 steps of 64) plus evaluation of every predictor on the 10k test split",
        "epochs_per_stage": args.epochs, "per_epoch_s": per_phase, "median_s": median,
        "projected_100_plus_100_epochs_s": round(projected), "official_code": OFFICIAL,
        "speedup_per_stage1_epoch_incl_eval": round(OFFICIAL["stage1_train_plus_eval_s"] / median["stage1"], 1),
        "speedup_per_stage2_epoch_incl_eval": round(OFFICIAL["stage2_train_plus_eval_s"] / median["stage2"], 1),
        "projected_speedup_full_run": round(OFFICIAL["full_run_s"] / projected, 1),
        "matmul_gflops_per_s": round(rate / 1e9, 1),
        "epoch_gflop": {p: {k: round(v / 1e9, 1) for k, v in c.items()} for p, c in counted.items()},
        "floor_s": {p: round(c["train"] / rate, 3) for p, c in counted.items()},
        "ratio_to_training_floor": {p: round(median[p] / (c["train"] / rate), 2) for p, c in counted.items()},
        "ratio_to_training_plus_eval_floor": {p: round(median[p] / ((c["train"] + c["eval"]) / rate), 2)
                                              for p, c in counted.items()},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),  # the run's
        "machine": results["machine"],
        "command": f"python benchmarks/speed_colored_mnist.py --epochs {args.epochs} --threads {args.threads} --device {args.device}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("median_s", "projected_100_plus_100_epochs_s", "projected_speedup_full_run",
                                             "ratio_to_training_floor", "peak_rss_gb")}))


if __name__ == "__main__":
    main()
