"""DeNetDM: debiasing by network depth modulation (NeurIPS 2024), as a library.

    import denetdm
    cfg = denetdm.load_config("colored_mnist_demo", ["data.ratio=0.05"])
    results = denetdm.train(cfg, "runs/my-run")
    model = denetdm.load_run("runs/my-run")        # [0, 1] images (N, C, H, W) -> logits; model.class_names
"""
from .config import Config, load_config, list_presets
from .data import create_dataset, list_datasets
from .deploy import DeployedModel, load_run
from .errors import ConfigError, DataError, DenetdmError, RunFolderError
from .methods import Algorithm, create_method, list_methods
from .metrics import summarize
from .models import create_model, list_models
from .training import evaluate, evaluate_checkpoint, train

__version__ = "0.1.0"
__all__ = [
    "Algorithm", "Config", "ConfigError", "DataError", "DenetdmError", "DeployedModel", "RunFolderError",
    "create_dataset", "create_method", "create_model", "evaluate", "evaluate_checkpoint",
    "list_datasets", "list_methods", "list_models", "list_presets", "load_config", "load_run", "summarize", "train",
]
