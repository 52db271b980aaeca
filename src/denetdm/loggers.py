"""Optional per-epoch loggers beside `metrics.jsonl` (which every run writes and resume relies on):
`csv` (metrics.csv, one row per logged value: easy to read into a data frame while a run goes on) and
`tensorboard` (event files under tb/). Chosen with `loggers=csv,tensorboard`; none is required."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

from .errors import ConfigError

LOGGERS = ("csv", "tensorboard")
KEYS = ("phase", "attempt", "epoch")


def parse_loggers(text: str) -> List[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"loggers={text!r}: unknown {', '.join(unknown)}; choose from {', '.join(LOGGERS)} "
                          "(comma-separated, or empty for metrics.jsonl only)")
    if "tensorboard" in names:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("loggers=tensorboard needs tensorboard: pip install tensorboard") from None
    return names


def scalars(record: dict) -> Iterator[Tuple[str, float]]:
    """A metrics record's numbers as (dotted name, value): train_loss, test.stage2_target.unbiased, ..."""
    def walk(prefix: str, value) -> Iterator[Tuple[str, float]]:
        if isinstance(value, dict):
            for key, sub in value.items():
                yield from walk(f"{prefix}.{key}" if prefix else key, sub)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield prefix, float(value)

    yield from walk("", {k: v for k, v in record.items() if k not in KEYS})


class CSVLogger:
    """metrics.csv in long form (phase, attempt, epoch, name, value), rebuilt from metrics.jsonl when a
    run resumes, so that it never holds the epochs the resume point dropped."""

    def __init__(self, out: Path):
        self.path = out / "metrics.csv"
        jsonl = out / "metrics.jsonl"
        records = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.is_file() else []
        with open(self.path, "w", newline="") as fh:
            csv.writer(fh).writerow([*KEYS, "name", "value"])
        for record in records:
            self.log(record)

    def log(self, record: dict) -> None:
        with open(self.path, "a", newline="") as fh:
            writer = csv.writer(fh)
            head = [record["phase"], record.get("attempt", 0), record["epoch"]]
            writer.writerows([*head, name, value] for name, value in scalars(record))

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Scalars tagged <phase>/<name>, stepped by the epoch; one run of event files per run folder."""

    def __init__(self, out: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / "tb"))

    def log(self, record: dict) -> None:
        for name, value in scalars(record):
            self.writer.add_scalar(f"{record['phase']}/{name}", value, record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def create_loggers(text: str, out: Path) -> List:
    kinds: Dict[str, type] = {"csv": CSVLogger, "tensorboard": TensorBoardLogger}
    return [kinds[name](out) for name in parse_loggers(text)]
