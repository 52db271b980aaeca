"""ERM: one network, cross-entropy. The reference point every debiasing method beats."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch.nn.functional as F
from torch import nn

from ..models.spec import ModelSpec
from ..models import create_model
from .base import Algorithm, MethodConfig, OptimConfig, Phase, make_optimizer
from .registry import register_method


@dataclass
class ERMConfig(MethodConfig):
    NAME: ClassVar[str] = "erm"
    # The LfF/DFA Colored MNIST baseline: an MLP with 3 hidden layers (4 linear layers).
    model: ModelSpec = field(default_factory=lambda: ModelSpec(arch="mlp", depth=4, width=100))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, batch_size=256, epochs=100))


@register_method
class ERM(Algorithm):
    config_class = ERMConfig
    data_parallel = True

    def __init__(self, cfg: ERMConfig, input_shape, num_classes, num_train):
        super().__init__(cfg, input_shape, num_classes, num_train)
        self.backbone = create_model(cfg.model, input_shape)
        self.head = nn.Linear(self.backbone.out_dim, num_classes)

    def phases(self):
        return [Phase("erm", self.cfg.optim, monitor="erm", oracle_metric="unbiased", predictors=("erm",))]

    def start_phase(self, phase, train):
        self.optimizer = make_optimizer(self.parameters(), phase.optim)
        return None

    def update(self, batch):
        _, x, y, _ = batch
        loss = F.cross_entropy(self.predict(x), y)
        self.step(loss)
        return {"loss": loss.detach()}

    def predict(self, x):
        return self.head(self.backbone(x))

    def predictors(self):
        return {"erm": self.predict}
