"""LfF: Learning from Failure (Nam et al., NeurIPS 2020).

Two networks of one architecture train side by side. The biased one minimises the
generalised cross-entropy (GCE), which amplifies its reliance on whatever is easiest,
i.e. the bias. The debiased one minimises cross-entropy weighted per sample by the
relative difficulty W(x) = L_b / (L_b + L_d): samples the biased network fails on
(bias-conflicting ones) get weights near 1, samples it fits get weights near 0. The
losses L_b, L_d are per-sample exponential moving averages of each network's CE,
normalised by the largest average in the sample's class. Only the debiased network
is deployed. No bias labels are used.

`generalized_ce` and `SampleLossEMA` are shared with DisEnt (`dfa.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..models.spec import ModelSpec
from ..errors import ConfigError
from ..models import create_model
from .base import Algorithm, MethodConfig, OptimConfig, Phase, make_optimizer, with_head
from .registry import register_method


def generalized_ce(logits: torch.Tensor, y: torch.Tensor, q: float) -> torch.Tensor:
    """Per-sample GCE in the gradient-equivalent form of the official LfF code.

    GCE(p, y) = (1 - p_y^q) / q has gradient p_y^q * grad(CE). The official code returns
    CE * p_y^q * q with p_y detached, i.e. q times that gradient; we keep its scaling,
    since every published learning rate was tuned with it.
    """
    p_y = F.softmax(logits, dim=1).gather(1, y.unsqueeze(1)).squeeze(1).detach()
    return F.cross_entropy(logits, y, reduction="none") * p_y.pow(q) * q


class SampleLossEMA(nn.Module):
    """Per-sample EMA of a loss, indexed by training-sample index, with class-wise max
    normalisation (LfF's `EMA`). A sample's first value is taken as is; afterwards
    ema <- alpha * ema + (1 - alpha) * loss. The class maximum runs over every training
    sample of the class (never-visited samples hold 0, so they never set it)."""

    def __init__(self, num_train: int, alpha: float):
        super().__init__()
        self.alpha = alpha
        self.register_buffer("value", torch.zeros(num_train))
        self.register_buffer("seen", torch.zeros(num_train))
        self.register_buffer("labels", torch.zeros(num_train, dtype=torch.long))

    def set_labels(self, y: torch.Tensor) -> None:
        if len(y) != len(self.labels):
            raise ConfigError(f"the training split has {len(y)} samples but the method was built for {len(self.labels)}")
        self.labels.copy_(y.to(self.labels.device))

    @torch.no_grad()
    def update(self, index: torch.Tensor, loss: torch.Tensor) -> None:
        keep = self.alpha * self.seen[index]
        self.value[index] = self.alpha * self.value[index] + (1.0 - keep) * loss.detach().float()
        self.seen[index] = 1.0

    @torch.no_grad()
    def class_max(self, num_classes: int) -> torch.Tensor:
        out = torch.zeros(num_classes, device=self.value.device)
        return out.scatter_reduce(0, self.labels, self.value, reduce="amax", include_self=True)

    @torch.no_grad()
    def normalized(self, index: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
        # The official code divides by the raw max; a class whose losses all underflow to
        # 0 would give 0/0 there, so the divisor is floored (the result is then 0, not NaN).
        return self.value[index] / self.class_max(num_classes)[y].clamp_min(1e-12)


def relative_difficulty(loss_b: torch.Tensor, loss_d: torch.Tensor) -> torch.Tensor:
    """W = L_b / (L_b + L_d + 1e-8) (LfF Eq. 3; the 1e-8 is the official code's)."""
    return loss_b / (loss_b + loss_d + 1e-8)


@dataclass
class LfFConfig(MethodConfig):
    """Colored MNIST defaults of the official code (alinlab/LfF `config.py`, named config
    `colored_mnist`, and `train.py`)."""

    NAME: ClassVar[str] = "lff"
    # `module/mlp.py`: Linear(2352,100)-ReLU x3 + Linear(100,10) = depth 4, width 100; both networks.
    model: ModelSpec = field(default_factory=lambda: ModelSpec(arch="mlp", depth=4, width=100))
    # `config.py`: Adam (`main_optimizer_tag`), lr 1e-3, weight decay 0, batch 256;
    # `main_num_steps = 235 * 100` with 235 = ceil(60000 / 256) steps per epoch (the loader
    # keeps the last partial batch) = 100 epochs of the 60,000-image train set.
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=100, batch_size=256)
    )
    q: float = 0.7  # GCE exponent: `GeneralizedCELoss(q=0.7)` in `module/loss.py` (paper Sec. 3: q = 0.7)
    ema_alpha: float = 0.7  # `EMA(..., alpha=0.7)` in `train.py` (paper: gamma = 0.7)

    def validate(self) -> None:
        super().validate()
        check_gce_ema(self)


def check_gce_ema(cfg) -> None:
    """The GCE exponent and the loss-EMA momentum shared by LfF and DisEnt."""
    if not 0.0 < cfg.q <= 1.0:
        raise ConfigError(f"method.q={cfg.q} must be in (0, 1]")
    if not 0.0 <= cfg.ema_alpha < 1.0:
        raise ConfigError(f"method.ema_alpha={cfg.ema_alpha} must be in [0, 1)")


def classifier(spec: ModelSpec, input_shape, num_classes: int) -> nn.Sequential:
    return with_head(create_model(spec, input_shape), num_classes)


@register_method
class LfF(Algorithm):
    config_class = LfFConfig

    def __init__(self, cfg: LfFConfig, input_shape, num_classes, num_train):
        super().__init__(cfg, input_shape, num_classes, num_train)
        self.biased = classifier(cfg.model, input_shape, num_classes)
        self.debiased = classifier(cfg.model, input_shape, num_classes)
        self.ema_b = SampleLossEMA(num_train, cfg.ema_alpha)
        self.ema_d = SampleLossEMA(num_train, cfg.ema_alpha)
        self.optimizer_b = self.optimizer_d = None

    def phases(self):
        return [Phase("lff", self.cfg.optim, "lff_debiased", "unbiased", ("lff_debiased", "lff_biased"),
                      proxy="lff_biased")]

    def start_phase(self, phase, train):
        self.ema_b.set_labels(train.y)
        self.ema_d.set_labels(train.y)
        # Two Adam optimisers, one per network, as in the official `train.py`.
        self.optimizer_b = make_optimizer(self.biased.parameters(), phase.optim)
        self.optimizer_d = make_optimizer(self.debiased.parameters(), phase.optim)
        return None

    def sample_weights(self, index: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The debiased network's per-sample weights from the current EMA buffers."""
        loss_b = self.ema_b.normalized(index, y, self.num_classes)
        loss_d = self.ema_d.normalized(index, y, self.num_classes)
        return relative_difficulty(loss_b, loss_d)

    def update(self, batch):
        index, x, y, _ = batch
        logits_b, logits_d = self.biased(x), self.debiased(x)
        ce_b = F.cross_entropy(logits_b, y, reduction="none")
        ce_d = F.cross_entropy(logits_d, y, reduction="none")
        self.ema_b.update(index, ce_b)
        self.ema_d.update(index, ce_d)
        weight = self.sample_weights(index, y)  # computed under no_grad: a constant
        loss_b = generalized_ce(logits_b, y, self.cfg.q).mean()
        loss_d = (ce_d * weight).mean()
        loss = loss_b + loss_d
        self.step(loss, self.optimizer_b, self.optimizer_d)
        values = torch.stack([loss, loss_b, loss_d, weight.mean()]).detach()
        return dict(zip(("loss", "loss_biased", "loss_debiased", "weight"), values.unbind()))

    def predict(self, x):
        return self.debiased(x)

    def predictors(self):
        return {"lff_debiased": self.debiased, "lff_biased": self.biased}
