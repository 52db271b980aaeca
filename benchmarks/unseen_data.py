"""DeNetDM and the baselines on biased datasets no recipe here was tuned on, through a user's interface.

Each dataset is written as an .npz (`x`, `y`, `bias`, `split`) and trained with
`denetdm train --preset <preset> data.path=FILE.npz` and nothing else, as a new user would: the
default presets, `proxy` selection, the bias labels read only to score the test split. The datasets
were fixed before any run on them (they differ from Colored MNIST and the MNIST bias suite in the
number of classes, channels, image size and kind of bias):

- `bin_brightness`: 1 x 28 x 28 grey MNIST, 2 classes (digits 0-4 / 5-9), the bias a dark or light
  background; 1% conflicting in train, 50% in test.
- `color5_32`: 3 x 32 x 32 MNIST digits 0-4 (5 classes), the bias one of five foreground colours;
  2% conflicting in train, 80% in test (uniform over colours).

    python benchmarks/unseen_data.py [--datasets bin_brightness,color5_32] [--seeds 0] [--presets custom_arrays,lff_custom_arrays,erm_custom_arrays]
        [--workers 2] [--out benchmarks/results/unseen_data] [--set KEY=VALUE ...] [--data FOLDER_OF_NPZ]

Runs whose folder holds a finished run are read, not trained again; rows of earlier invocations into
the same --out stay in its table, and each invocation's command is added to its commands.txt.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from denetdm.data.base import data_root
from denetdm.data.spec import DataConfig
from denetdm.data.mnist import load_mnist

HERE = Path(__file__).resolve().parent
PALETTE5 = np.array([[1, 0.2, 0.2], [0.2, 1, 0.2], [0.2, 0.3, 1], [1, 1, 0.2], [1, 0.2, 1]])


def bin_brightness(x, y, conflicting, rng):
    cls = (y >= 5).astype(np.int64)
    bias = np.where(rng.random(len(cls)) < conflicting, 1 - cls, cls)
    level = np.where(bias == 0, 0.15, 0.45)[:, None, None] + rng.normal(0, 0.03, (len(cls), 1, 1))
    fg = x / 255.0
    return np.clip(fg + (1 - fg) * level, 0, 1)[:, None], cls, bias


def color5_32(x, y, conflicting, rng):
    keep = y < 5
    x, cls = x[keep], y[keep]
    flip = rng.random(len(cls)) < conflicting
    bias = np.where(flip, (cls + rng.integers(1, 5, len(cls))) % 5, cls)
    colour = np.clip(PALETTE5[bias] + rng.normal(0, 0.02, (len(cls), 3)), 0, 1)
    images = (x / 255.0)[:, None] * colour[:, :, None, None]
    return np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2))), cls, bias


DATASETS = {"bin_brightness": (bin_brightness, 0.01, 0.5), "color5_32": (color5_32, 0.02, 0.8)}


def write_dataset(name: str, path: Path) -> None:
    build, train_conflicting, test_conflicting = DATASETS[name]
    rng = np.random.default_rng(0)
    parts = []
    for split, conflicting in (("train", train_conflicting), ("test", test_conflicting)):
        x, y = (t.numpy() for t in load_mnist(data_root(DataConfig()), split, progress=False))
        images, cls, bias = build(x, y, conflicting, rng)
        parts.append(((images * 255).round().astype(np.uint8), cls, bias, np.full(len(cls), 0 if split == "train" else 2)))
    x, y, bias, split = (np.concatenate(a) for a in zip(*parts))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y, bias=bias, split=split)


def train(data: Path, preset: str, seed: int, run: Path, overrides=()) -> dict:
    if not (run / "results.json").is_file():
        cmd = [sys.executable, "-m", "denetdm.cli", "train", "--preset", preset, f"data.path={data}", "--seed", str(seed),
               "--out", str(run), "-q", "threads=1", *overrides]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    results = json.loads((run / "results.json").read_text())
    deployed = results["test"][results["deployed"]]
    return {"preset": preset, "seed": seed, "run": f"runs/{run.name}", "selection": results["selection"],
            **{k: round(deployed[k], 2) for k in ("unbiased", "conflicting", "aligned")},
            "estimate_unbiased": round(results["estimate"].get("unbiased", float("nan")), 2),
            "warnings": len(results["warnings"]), "wall_time_s": results["wall_time_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--presets", default="custom_arrays,lff_custom_arrays,erm_custom_arrays")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "unseen_data"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every run")
    parser.add_argument("--data", help="the folder holding the datasets' .npz (default: OUT/runs/data)")
    args = parser.parse_args()
    out = Path(args.out)
    jobs = []
    for name in args.datasets.split(","):
        if name not in DATASETS:
            parser.error(f"unknown dataset {name!r}; choose from: {', '.join(DATASETS)}")
        data = Path(args.data or out / "runs" / "data") / f"{name}.npz"  # git-ignored; rebuilt the same from MNIST
        if not data.is_file():
            write_dataset(name, data)
        jobs += [(name, data, p, int(s)) for p in args.presets.split(",") for s in args.seeds.split(",")]
    with ThreadPoolExecutor(args.workers) as pool:
        rows = list(pool.map(lambda j: {"dataset": j[0], **train(j[1], j[2], j[3], out / "runs" / f"{j[0]}_{j[2]}_s{j[3]}", args.set)}, jobs))
    # Rows of earlier invocations into the same folder stay (a run is keyed by dataset, preset, seed),
    # and each invocation's command is kept, so the folder's table regenerates from its commands.txt.
    key = lambda r: (r["dataset"], r["preset"], r["seed"])
    done = {key(r) for r in rows}
    earlier = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else []
    rows = sorted(rows + [r for r in earlier if key(r) not in done], key=key)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    command = (f"python benchmarks/unseen_data.py --datasets {args.datasets} --seeds {args.seeds} --presets {args.presets}"
               + "".join(f" --set {o}" for o in args.set) + f" --out {os.path.relpath(out.resolve(), HERE.parent)}")
    commands = (out / "commands.txt").read_text().splitlines() if (out / "commands.txt").is_file() else []
    (out / "commands.txt").write_text("\n".join(dict.fromkeys([*commands, command])) + "\n")
    lines = ["| dataset | preset | seed | unbiased | conflicting | aligned | estimate (unbiased) | warnings | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {r['preset']} | {r['seed']} | {r['unbiased']:.2f} | {r['conflicting']:.2f} | "
              f"{r['aligned']:.2f} | {r['estimate_unbiased']:.2f} | {r['warnings']} | {r['wall_time_s']:.0f} |" for r in rows]
    (out / "table.md").write_text("Test split, the deployed model, `proxy` selection (label-free). Regenerate with the "
                                  "command(s) in `commands.txt` (a run whose folder holds a finished run is read, not trained).\n\n"
                                  + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
