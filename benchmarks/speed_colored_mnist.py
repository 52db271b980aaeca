"""Seconds per epoch of DeNetDM on Colored MNIST (paper setting, 1%), for comparison with the
official code's timings on the same kind of 2-core CPU (shared/docs/official-baseline.md).

Run it alone on the machine: timings on 2 cores are very sensitive to other jobs.

    python benchmarks/speed_colored_mnist.py [--epochs 5] [--threads 0] [--device cpu] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import denetdm

HERE = Path(__file__).resolve().parent
# Official code, per epoch, 2 threads, num_workers=0 (official-baseline.md section 3.1).
OFFICIAL = {"stage1_train_s": 10.84, "stage1_train_plus_eval_s": 30.84, "stage2_train_plus_eval_s": 13.77,
            "full_run_s": 4472}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--out", default=str(HERE / "results" / "speed_colored_mnist.json"))
    args = parser.parse_args()
    cfg = denetdm.load_config("colored_mnist", [f"method.stage1.epochs={args.epochs}",
                                                f"method.stage2.epochs={args.epochs}", f"threads={args.threads}",
                                                f"device={args.device}"])
    denetdm.create_dataset(cfg.data, progress=False)  # build the cache outside the timing
    with tempfile.TemporaryDirectory() as tmp:
        results = denetdm.train(cfg, Path(tmp) / "run", quiet=True)
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
        "machine": results["machine"],
        "command": f"python benchmarks/speed_colored_mnist.py --epochs {args.epochs} --threads {args.threads} --device {args.device}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("median_s", "projected_100_plus_100_epochs_s", "projected_speedup_full_run")}))


if __name__ == "__main__":
    main()
