"""The `denetdm` command: train, evaluate, predict, export, benchmark, report, tune, analyze, list, config."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from .errors import DenetdmError, one_line


DEFAULT_PRESET = "colored_mnist"


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default=DEFAULT_PRESET, help="preset name or YAML path (default: colored_mnist)")
    parser.add_argument("--data-dir", help="raw data root (default: $DENETDM_DATA or ~/.cache/denetdm/data)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--selection", help="proxy (default, label-free) | last | val | oracle (oracle reads test bias labels)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.ratio=0.05")


def _overrides(args) -> List[str]:
    """The KEY=VALUE overrides, with the shortcut options appended as overrides of their own."""
    overrides = list(args.overrides)
    for flag, key in (("data_dir", "data.root"), ("device", "device"), ("seed", "seed"), ("selection", "selection")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return overrides


def _load(args):
    from .config import load_config

    return load_config(args.preset, _overrides(args))


def cmd_train(args) -> int:
    from .estimate import format_estimate
    from .training import TRAIN_FIT_TITLE, default_run_dir, format_table, read_run_config, train

    if args.resume:
        if args.out or _overrides(args) or args.preset != DEFAULT_PRESET:
            raise DenetdmError("--resume RUN_DIR takes the config and folder of that run; drop --preset, --out and overrides")
        out, preset = Path(args.resume), ""
        cfg = read_run_config(out)
    else:
        cfg, preset = _load(args), args.preset
        out = Path(args.out) if args.out else default_run_dir(args.preset)
    results = train(cfg, out, quiet=args.quiet, preset=preset, resume=bool(args.resume),
                    start_from=Path(args.start_from) if args.start_from else None)
    from .distributed import WORLD

    if not WORLD.main:  # under torchrun, rank 0 reports
        return 0
    fit = {name: m for phase in results["train_fit"].values() for name, m in phase.items()}
    lines = [format_table(results["test"], cfg.selection), format_table(fit, cfg.selection, title=TRAIN_FIT_TITLE)]
    if results.get("estimate"):
        lines.append(format_estimate(results["estimate"]))
    for phase, entry in results.get("candidates", {}).items():  # settings ranked by the selection score
        eligible = entry.get("eligible", [True] * len(entry["settings"]))
        scores = ", ".join(f"{setting} {score:.2f}" + ("" if ok else " (held-out split check failed at its last epoch, ranked last)")
                           for setting, score, ok in zip(entry["settings"], entry["scores"], eligible))
        lines.append(f"{phase}: kept {entry['settings'][entry['chosen']]} (best selection score per setting: {scores})")
    lines.append(f"selected epochs: {results['selected_epochs']}; wall time {results['wall_time_s']:.0f} s; run folder: {out}")
    print("\n".join(lines))
    with open(out / "log.txt", "a") as fh:  # the run folder keeps what was printed
        fh.write("\n".join(lines) + "\n")
    return 0


def cmd_evaluate(args) -> int:
    from .estimate import format_estimate
    from .training import TRAIN_FIT_TITLE, evaluate_checkpoint, format_table

    cfg, results = evaluate_checkpoint(Path(args.checkpoint), args.data_dir, args.device or "auto", args.quiet, args.split)
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.split == "estimate":
        print(format_estimate(results))
    else:
        print(format_table(results, cfg.selection, title=TRAIN_FIT_TITLE if args.split == "train" else ""))
    return 0


def cmd_predict(args) -> int:
    from .deploy import default_output, load_run, predict, read_inputs, write_predictions

    model = load_run(Path(args.run), device=args.device or "cpu")
    ids, images = read_inputs(Path(args.input), model.input_shape)
    probs = predict(model, images)
    out = Path(args.out) if args.out else default_output(args.run)
    write_predictions(out, ids, probs, model.class_names)
    counts = {name: int((probs.argmax(1) == k).sum()) for k, name in enumerate(model.class_names)}
    print(f"{len(ids)} predictions in {out}; per class: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_export(args) -> int:
    from .deploy import default_output, export, load_run

    out = export(load_run(Path(args.run)), args.format, Path(args.out) if args.out else default_output(args.run, args.format))
    print(f"exported the deployed model ({args.format}) to {out}")
    return 0


def cmd_benchmark(args) -> int:
    from .benchmark import ABLATIONS, parse_list, parse_params, plan, plan_ablation, run_benchmark
    from .reports import write_ablation_report

    if args.launcher != "submitit" and (args.cluster or args.slurm):
        raise DenetdmError("--cluster and --slurm go with --launcher submitit")
    selections = parse_list(args.selections, str, "selections")
    if args.ablation:
        seeds = parse_list(args.seeds, int, "seeds") if args.seeds else None
        specs = plan_ablation(args.ablation, seeds, selections, args.dataset, args.overrides)
    else:
        specs = plan(
            parse_list(args.methods, str, "methods"), parse_list(args.ratios, float, "ratios") if args.ratios else None,
            parse_list(args.seeds or "0,1,2", int, "seeds"), selections, args.dataset, args.overrides, args.epochs,
        )
    records = run_benchmark(Path(args.out), specs, args.overrides, args.workers, args.quiet, args.launcher,
                            args.cluster, parse_params(args.slurm, "slurm"))
    if args.launcher == "print":  # stdout holds the commands only
        return 0
    if args.ablation:
        write_ablation_report(Path(args.out), args.ablation, ABLATIONS[args.ablation], [r for r in records if r.get("variant")])
        print((Path(args.out) / f"{args.ablation}.md").read_text())
        return 0
    print((Path(args.out) / "table.md").read_text())
    print(f"{len(records)} runs in {Path(args.out) / 'results.jsonl'}; plot: {Path(args.out) / 'accuracy_vs_ratio.png'}")
    return 0


def cmd_report(args) -> int:
    from .run_report import write_report

    print(write_report(Path(args.dir), Path(args.out) if args.out else None))
    return 0


def cmd_tune(args) -> int:
    from .tuning import format_ranking, parse_grid, tune

    summary = tune(args.preset, parse_grid(args.grid), _overrides(args), Path(args.out), quiet=args.quiet)
    print(format_ranking(summary))
    print(f"ranking and runs: {Path(args.out) / 'tune.json'}")
    return 0


def cmd_analyze(args) -> int:
    from .analysis import experiments as ex
    from .benchmark import parse_list

    cfg = _load(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.analysis == "rank":
        models = parse_list(args.models or "mlp:3,mlp:5", str, "models")
        iterations = parse_list(args.iterations or "0,25,50,100,200", int, "iterations")
        result = ex.run_rank(cfg, models, iterations, seed=cfg.seed, lr=args.lr, batch_size=args.batch_size)
        ex.plot_rank(result, out / "rank_per_layer")
        path = ex.save(result, out, "rank")
        for space, r in {"input": result["theorem1"]["input"], **{f"{m} features@{s}": f
                         for m, fs in result["features"].items() for s, f in fs.items()}}.items():
            print(f"effective rank, {space}: aligned {r['aligned']['mean']:.2f} vs conflicting {r['conflicting']['mean']:.2f}")
    else:
        setting = dict(ex.FIGURES.get(args.figure, {})) if args.figure else {}
        mode = args.mode or setting.get("mode", "init")
        models = parse_list(args.models, str, "models") if args.models else setting.get("models", ["mlp:3", "mlp:5"])
        iterations = parse_list(args.iterations, int, "iterations") if args.iterations else setting.get("iterations", [0])
        seeds = parse_list(args.seeds, int, "seeds") if args.seeds else setting.get("seeds", [cfg.seed])
        result = ex.run_decodability(cfg, mode, models, iterations, seeds, lr=args.lr, batch_size=args.batch_size)
        name = f"decodability_fig{args.figure}" if args.figure else f"decodability_{mode}"
        ex.plot_decodability(result, out / name, f"{name} ({cfg.data.name}, {cfg.data.ratio:g} conflicting)")
        path = ex.save(result, out, name)
        for label, c in result["curves"].items():
            print(f"{label}: core {[round(v, 1) for v in c['core']]}  bias {[round(v, 1) for v in c['bias']]}")
    print(f"wrote {path} and its plots")
    return 0


def cmd_list(args) -> int:
    from . import list_datasets, list_methods, list_models, list_presets

    tables = {"methods": list_methods, "models": list_models, "datasets": list_datasets, "presets": list_presets}
    for name in [args.what] if args.what else tables:
        print(f"{name}: {', '.join(tables[name]())}")
    return 0


def cmd_config(args) -> int:
    from .config import to_yaml

    print(to_yaml(_load(args)), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .analysis.figures import FIGURES

    parser = argparse.ArgumentParser(prog="denetdm", description="DeNetDM: debiasing by network depth modulation")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a method end to end and print its test table")
    _config_args(p)
    p.add_argument("--out", help="run folder (default: runs/<preset>-<time>); never overwritten")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="go on with an unfinished (killed, failed) run from its last finished epoch")
    p.add_argument("--start-from", metavar="ORACLE_START", help="an oracle run: take over the phases another run of "
                   "its config trained, from that run's checkpoints/oracle_start.pt (denetdm benchmark prints these)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="recompute the test table from a checkpoint or run folder")
    p.add_argument("checkpoint")
    p.add_argument("--data-dir")
    p.add_argument("--device")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--split", choices=("test", "train", "estimate"), default="test",
                   help="train: how well each predictor fits the training labels (label-free); estimate: the "
                        "label-free estimate of the deployed model, recomputed")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="class probabilities of a run's deployed model on new images")
    p.add_argument("run", help="run folder (or its final.pt)")
    p.add_argument("input", help="an image, a folder of images, a CSV with a path column, or an .npz with x")
    p.add_argument("--out", help="CSV to write (default: RUN/predictions.csv)")
    p.add_argument("--device")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write a run's deployed model as ONNX, TorchScript or safetensors")
    p.add_argument("run", help="run folder (or its final.pt)")
    p.add_argument("--format", choices=("onnx", "torchscript", "safetensors"), default="onnx")
    p.add_argument("--out", help="file to write (default: RUN/model.<ext>)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("benchmark", help="methods x ratios x seeds, resumable, with tables beside the paper's")
    p.add_argument("--methods", default="denetdm,erm")
    p.add_argument("--ratios", help="comma list of conflicting fractions (default 0.005,0.01,0.02,0.05 where the "
                   "dataset has one to set)")
    p.add_argument("--epochs", type=int, default=0, help="cut every phase of every method to at most N epochs "
                   "(a quick look or a smoke test; 0 keeps the presets' schedules)")
    p.add_argument("--seeds", help="comma list (default 0,1,2; an ablation's own default)")
    p.add_argument("--selections", default="proxy,last,oracle")
    p.add_argument("--ablation", choices=["table5", "table9"], help="the paper's depth ablations instead of a method grid")
    p.add_argument("--dataset", default="colored_mnist", help="a dataset, or custom_arrays / custom_images for your "
                   "own data (with data.path=...); presets are <method>_<dataset> (DeNetDM: <dataset>)")
    p.add_argument("--workers", type=int, default=1, help="runs at once; CPU threads are split between them")
    p.add_argument("--launcher", choices=["local", "submitit", "print"], default="local",
                   help="local: train here; submitit: a job per run (SLURM), waited for and collected; print: one "
                   "denetdm train line per pending run, nothing trained (rerun with local to collect them)")
    p.add_argument("--cluster", choices=["slurm", "local"], help="submitit's cluster (default: slurm where sbatch is "
                   "found, else local processes)")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="a submitit parameter, repeatable: timeout_min=600 (submitit's default is 5 min on SLURM), "
                   "slurm_partition=gpu, gpus_per_node=1, cpus_per_task=8, mem_gb=32")
    p.add_argument("--out", default="runs/benchmark", help="results folder; rerunning continues where it stopped")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="applied to every run, e.g. device=cpu")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("report", help="an HTML (and Markdown) page of a run or benchmark folder: config, selection, "
                       "tables, curves, group heatmap")
    p.add_argument("dir", metavar="RUN_OR_BENCHMARK_DIR", help="the --out folder of denetdm train or denetdm benchmark")
    p.add_argument("--out", help="folder for report.html, report.md and their figures (default: the folder itself)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("tune", help="rank a small hyperparameter grid by the label-free proxy score")
    _config_args(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a hyperparameter and its values; repeat for a grid (e.g. --grid method.shallow.depth=2,3)")
    p.add_argument("--out", default="runs/tune", help="results folder; rerunning the same grid continues")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("analyze", help="the paper's analyses: linear decodability and effective rank")
    analyses = p.add_subparsers(dest="analysis", required=True)
    for name, text in (("decodability", "linear probes of core and bias attributes (Figures 2-4)"),
                       ("rank", "effective rank per layer, and aligned vs conflicting (Theorem 1)")):
        q = analyses.add_parser(name, help=text)
        _config_args(q)
        q.add_argument("--models", help="comma list, e.g. mlp:3,mlp:5 or resnet20,cnn3")
        q.add_argument("--iterations", help="comma list of training steps to measure at")
        q.add_argument("--lr", type=float, default=1e-3)
        q.add_argument("--batch-size", type=int, default=64)
        q.add_argument("--out", default="runs/analysis")
        if name == "decodability":
            q.add_argument("--figure", choices=sorted(FIGURES),
                           help="the settings of a paper figure (2a, 2b, 3, 4)")
            q.add_argument("--mode", choices=["init", "erm", "denetdm"], help="untrained nets, ERM training, DeNetDM stage 1")
            q.add_argument("--seeds", help="comma list")
        q.set_defaults(func=cmd_analyze)

    p = sub.add_parser("list", help="list methods, models, datasets or presets")
    p.add_argument("what", nargs="?", choices=["methods", "models", "datasets", "presets"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("config", help="print the resolved config of a preset plus overrides")
    _config_args(p)
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes a positional list in one run only, so KEY=VALUE overrides written after an option
    # (`... threads=1 --out X key=value`) come back unparsed: they are overrides all the same.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    try:
        return args.func(args)
    except DenetdmError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)  # a file name may hold a newline: still one line
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a read-only folder: nothing partial is left (writes are atomic)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; free space or fix the permissions, then rerun "
              "(an unfinished run goes on with denetdm train --resume RUN_DIR)", file=sys.stderr)
        return 2
    finally:
        if "denetdm.distributed" in sys.modules:  # a torchrun rank leaves its process group cleanly
            sys.modules["denetdm.distributed"].teardown()


if __name__ == "__main__":
    sys.exit(main())
