"""Use what a run trained: load its deployed model, predict on new images, export it.

`load_run(run_dir)` rebuilds the run's method from `checkpoints/final.pt` (which records the
data's input shape, class count and names, and normalisation) and wraps its deployed predictor with
that normalisation: a `DeployedModel` maps [0, 1] images (N, C, H, W) of the trained size to class
logits. `predict` reads an image, a folder of images, a CSV of paths or an .npz the way training
read its data; `export` writes TorchScript, ONNX or safetensors.
"""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .checkpoints import load_checkpoint
from .config import config_from_dict
from .data.base import NORMALIZATION
from .data.files import IMAGE_EXTENSIONS, _images_under
from .errors import DataError, RunFolderError
from .methods import create_method

EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")


class DeployedModel(nn.Module):
    """The run's deployed predictor behind its input normalisation; `class_names`, `input_shape` and
    `config` say what it expects and what it answers."""

    def __init__(self, method: nn.Module, normalize: str, input_shape: Sequence[int], class_names: List[str], config: dict):
        super().__init__()
        self.method = method
        mean, std = NORMALIZATION.get(normalize, ((0.0,) * input_shape[0], (1.0,) * input_shape[0]))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[:, None, None])
        self.input_shape, self.class_names, self.config = tuple(input_shape), list(class_names), config

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.predict((images - self.mean) / self.std)


def data_meta(splits) -> dict:
    """What a checkpoint needs to rebuild its method without the data: recorded in final.pt."""
    train = splits.train
    names = getattr(train, "class_names", None) or [str(c) for c in range(train.num_classes)]
    return {"input_shape": list(train.input_shape), "num_classes": train.num_classes, "num_train": len(train),
            "class_names": [str(n) for n in names]}


def load_run(path, device: str = "cpu") -> DeployedModel:
    """The deployed model of a finished run (its folder or its final.pt), in eval mode."""
    ckpt = load_checkpoint(Path(path))
    meta = ckpt.get("meta")
    if meta is None:
        raise RunFolderError(f"{path} was written before checkpoints recorded their data's shape; "
                             "train it again to predict or export with it (denetdm evaluate still works)")
    cfg = config_from_dict(ckpt["config"])
    method = create_method(cfg, tuple(meta["input_shape"]), meta["num_classes"], meta["num_train"])
    method.load_state_dict(ckpt["state_dict"])
    model = DeployedModel(method, cfg.data.normalize, meta["input_shape"], meta["class_names"], ckpt["config"])
    return model.to(device).eval()


def read_inputs(path: Path, input_shape: Sequence[int]) -> Tuple[List[str], torch.Tensor]:
    """Ids and [0, 1] images of the trained shape from an image file, a folder of images (recursively),
    a CSV with a `path` column (relative to the CSV's folder) or an .npz with an `x` array."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; give an image, a folder of images, a CSV with a path column or an .npz")
    if path.suffix == ".npz":
        from .data.user_data import npz_images

        x = npz_images(path)
        ids = [str(i) for i in range(len(x))]
        images = x.float() / 255.0
    else:
        if path.is_dir():
            files = _images_under(path)
        elif path.suffix.lower() == ".csv":
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if not rows or "path" not in rows[0]:
                raise DataError(f"{path} needs a header with a `path` column and at least one row")
            files = [Path(r["path"]) if Path(r["path"]).is_absolute() else path.parent / r["path"] for r in rows]
        else:
            files = [path]
        if not files:
            raise DataError(f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        ids = [str(f) for f in files]
        images = torch.stack([_read_image(f, input_shape) for f in files])
    if tuple(images.shape[1:]) != tuple(input_shape):
        raise DataError(f"{path}: images are {tuple(images.shape[1:])} but the model was trained on {tuple(input_shape)}")
    return ids, images


def _read_image(file: Path, input_shape: Sequence[int]) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms import functional as TF

    try:
        with Image.open(file) as im:  # resized as training's transforms resize (bilinear, antialiased)
            im = TF.resize(im.convert("L" if input_shape[0] == 1 else "RGB"), [input_shape[1], input_shape[2]])
            return TF.to_tensor(im)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the image {file} ({type(exc).__name__}); replace or remove it") from None


@torch.no_grad()
def predict(model: DeployedModel, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Class probabilities (N, K)."""
    device = model.mean.device
    return torch.cat([model(images[i:i + batch_size].to(device)).softmax(dim=1).cpu()
                      for i in range(0, len(images), batch_size)])


def write_predictions(out: Path, ids: Sequence[str], probs: torch.Tensor, class_names: Sequence[str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "prediction", *[f"p_{name}" for name in class_names]])
        for i, row in zip(ids, probs.tolist()):
            writer.writerow([i, class_names[int(np.argmax(row))], *[f"{p:.6f}" for p in row]])


def export(model: DeployedModel, fmt: str, out: Path) -> Path:
    """Write the deployed model as TorchScript, ONNX (input `images`, output `logits`, any batch size)
    or safetensors (its weights, with the config, classes and input shape as metadata)."""
    if fmt not in EXPORT_FORMATS:
        raise RunFolderError(f"unknown export format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, *model.input_shape, device=model.mean.device)
    if fmt == "torchscript":
        torch.jit.trace(model, example).save(str(out))
    elif fmt == "onnx":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated, and needs no extra package
            torch.onnx.export(model, (example,), str(out), input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    else:
        try:
            from safetensors.torch import save_file
        except ImportError:
            raise RunFolderError("safetensors is not installed; pip install 'denetdm[export]'") from None
        metadata = {"config": json.dumps(model.config), "class_names": json.dumps(model.class_names),
                    "input_shape": json.dumps(list(model.input_shape))}
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out), metadata=metadata)
    return out


def default_output(run: Path, fmt: Optional[str] = None) -> Path:
    run = Path(run)
    folder = run if run.is_dir() else run.parent
    suffix = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
    return folder / ("model" + suffix[fmt] if fmt else "predictions.csv")
