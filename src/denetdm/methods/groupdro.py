"""GroupDRO: distributionally robust optimisation over groups (Sagawa et al., ICLR 2020).

Groups are the (target, bias) cells. The method keeps a distribution q over groups and,
at each step, moves it by exponentiated gradient ascent toward the groups with the
highest loss in the batch, q_g <- q_g * exp(eta * L_g), renormalised; the network then
minimises sum_g q_g L_g. An optional generalisation adjustment C / sqrt(n_g) favours
small groups. Minibatches are group-balanced, as in the official experiments. It NEEDS
training bias labels: it is the supervised reference row in the debiasing tables, not a
label-free method.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..models.spec import ModelSpec
from ..errors import ConfigError
from .base import Algorithm, MethodConfig, OptimConfig, Phase, make_optimizer
from .lff import classifier
from .registry import register_method


@dataclass
class GroupDROConfig(MethodConfig):
    """Colored MNIST defaults. The GroupDRO paper and its code (kohpangwei/group_DRO)
    have no Colored MNIST setting, so the network and optimiser are the LfF Colored
    MNIST ERM protocol (alinlab/LfF `config.py`: MLP depth 4 width 100, Adam, lr 1e-3,
    weight decay 0, batch 256, 100 epochs) shared by every baseline here. The paper's
    strong L2 / early stopping were tuned for pretrained ResNets and BERT; none is set."""

    NAME: ClassVar[str] = "groupdro"
    model: ModelSpec = field(default_factory=lambda: ModelSpec(arch="mlp", depth=4, width=100))
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=100, batch_size=256)
    )
    step_size: float = 0.01  # eta: `--robust_step_size` default 0.01 (group_DRO `run_expt.py`; jtt's too)
    # C of the adjustment C / sqrt(n_g): `--generalization_adjustment` default "0.0" (off).
    generalization_adjustment: float = 0.0
    # Group-balanced minibatches: every README command of group_DRO runs `--robust` with
    # `--reweight_groups`, a WeightedRandomSampler (weights 1/n_g, with replacement, as many
    # draws per epoch as training samples). Here each step replaces the trainer's batch by a
    # fresh draw of the same size; epochs keep their number of steps. false = plain shuffling.
    reweight_groups: bool = True

    def validate(self) -> None:
        super().validate()
        if self.step_size < 0:
            raise ConfigError(f"method.step_size={self.step_size} must be >= 0")
        if self.generalization_adjustment < 0:
            raise ConfigError(f"method.generalization_adjustment={self.generalization_adjustment} must be >= 0")


@register_method
class GroupDRO(Algorithm):
    config_class = GroupDROConfig
    uses_bias_labels: ClassVar[bool] = True
    LAZY_BUFFERS: ClassVar[tuple] = ("group_weights", "group_counts")

    def __init__(self, cfg: GroupDROConfig, input_shape, num_classes, num_train):
        super().__init__(cfg, input_shape, num_classes, num_train)
        self.model = classifier(cfg.model, input_shape, num_classes)
        # Sized in start_phase: the number of bias values comes with the data.
        self.register_buffer("group_weights", torch.zeros(0))  # q
        self.register_buffer("group_counts", torch.zeros(0))  # n_g in the training split
        self.num_bias = 0
        self.train_split, self.draw_probs = None, None

    def phases(self):
        return [Phase("groupdro", self.cfg.optim, "groupdro", "unbiased", ("groupdro",))]

    def start_phase(self, phase, train):
        if not train.has_bias:
            raise ConfigError("GroupDRO needs bias labels for training and this dataset has none; choose a label-free method")
        self.num_bias = int(train.num_bias)
        num_groups = self.num_classes * self.num_bias
        device = self.group_weights.device
        self.group_weights = torch.full((num_groups,), 1.0 / num_groups, device=device)
        groups = (train.y * self.num_bias + train.bias).to(device)
        self.group_counts = torch.bincount(groups, minlength=num_groups).float()
        self.train_split = train
        # P(draw sample i) proportional to 1 / n_g(i): every present group equally likely.
        self.draw_probs = (1.0 / self.group_counts[groups]).cpu()
        self.optimizer = make_optimizer(self.model.parameters(), phase.optim)
        return None

    def balanced_batch(self, size: int):
        """A group-balanced batch drawn with replacement from the training split."""
        index = torch.multinomial(self.draw_probs, size, replacement=True)
        return next(iter(self.train_split.batches(index, size)))

    def group_losses(self, per_sample: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Mean loss of each group in the batch; 0 for groups absent from it (as in the official code)."""
        num_groups = len(self.group_weights)
        total = torch.zeros(num_groups, device=per_sample.device).index_add(0, groups, per_sample)
        count = torch.zeros_like(total).index_add_(0, groups, torch.ones_like(per_sample))  # bincount would sync
        return total / count.clamp_min(1.0)

    def update(self, batch):
        if self.cfg.reweight_groups:
            batch = self.balanced_batch(len(batch[0]))
        _, x, y, bias = batch
        per_sample = F.cross_entropy(self.model(x), y, reduction="none")
        group_loss = self.group_losses(per_sample, y * self.num_bias + bias)
        with torch.no_grad():
            adjusted = group_loss.detach()
            if self.cfg.generalization_adjustment > 0:
                # Groups empty in the training split would divide by zero; their count is floored at 1.
                adjusted = adjusted + self.cfg.generalization_adjustment / self.group_counts.clamp_min(1.0).sqrt()
            weights = self.group_weights * torch.exp(self.cfg.step_size * adjusted)
            self.group_weights.copy_(weights / weights.sum())
        # The official code adds the (constant) adjustment to this loss too; it has no gradient.
        loss = group_loss @ self.group_weights
        self.step(loss)
        values = torch.stack([loss.detach(), per_sample.detach().mean(), self.group_weights.max()]).unbind()
        return dict(zip(("loss", "loss_mean", "max_group_weight"), values))

    def predict(self, x):
        return self.model(x)

    def predictors(self):
        return {"groupdro": self.predict}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The group buffers are sized by the data: take the checkpoint's sizes before copying.
        for name in self.LAZY_BUFFERS:
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
