"""The paper's theory as measurements: effective rank and linear decodability."""
import importlib

__all__ = ["effective_rank", "linear_probe"]
_HOMES = {"effective_rank": ".rank", "linear_probe": ".decodability"}


def __getattr__(name):  # imported on first use, so that the CLI starts without torch
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
