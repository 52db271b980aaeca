"""DeNetDM: debiasing by network depth modulation (NeurIPS 2024), as a library.

    import denetdm
    cfg = denetdm.load_config("colored_mnist_demo", ["data.ratio=0.05"])
    results = denetdm.train(cfg, "runs/my-run")
    model = denetdm.load_run("runs/my-run")        # [0, 1] images (N, C, H, W) -> logits; model.class_names
"""
import importlib

# Each name is imported on first use, so that `denetdm --help` starts without torch.
_HOMES = {
    "Config": ".config", "load_config": ".config", "list_presets": ".config",
    "create_dataset": ".data", "list_datasets": ".data",
    "DeployedModel": ".deploy", "load_run": ".deploy",
    "ConfigError": ".errors", "DataError": ".errors", "DenetdmError": ".errors", "RunFolderError": ".errors",
    "Algorithm": ".methods", "create_method": ".methods", "list_methods": ".methods",
    "summarize": ".metrics", "create_model": ".models", "list_models": ".models",
    "evaluate": ".training", "evaluate_checkpoint": ".training", "train": ".training",
}


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = [
    "Algorithm", "Config", "ConfigError", "DataError", "DenetdmError", "DeployedModel", "RunFolderError",
    "create_dataset", "create_method", "create_model", "evaluate", "evaluate_checkpoint",
    "list_datasets", "list_methods", "list_models", "list_presets", "load_config", "load_run", "summarize", "train",
]
