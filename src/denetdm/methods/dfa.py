"""DisEnt ("DFA"): Learning Debiased Representation via Disentangled Feature
Augmentation (Lee et al., NeurIPS 2021).

An intrinsic encoder E_i and a bias encoder E_b each give a feature vector; two linear
classifiers read the concatenation z = [z_i, z_b]. The intrinsic classifier C_i sees
[z_i, detached z_b] and the bias classifier C_b sees [detached z_i, z_b], so each
encoder is trained only through its own classifier. C_b (with E_b) minimises GCE, as
LfF's biased network; C_i (with E_i) minimises CE weighted by LfF's relative
difficulty W = L_b / (L_b + L_d), from per-sample loss EMAs normalised by class max
(Eq. 1-2). After `curr_step` iterations, z_b is permuted within the batch to build
"swapped" features [z_i, z_b~] labelled y for C_i (weighted as the original sample)
and y~ for C_b (GCE) (Eq. 3), added with weight lambda_swap (Eq. 4). The deployed
prediction is C_i([z_i, z_b]), as the official evaluation (`evaluate_ours`) uses.
No bias labels are used.
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
from .base import Algorithm, MethodConfig, OptimConfig, Phase, make_optimizer
from .lff import SampleLossEMA, check_gce_ema, generalized_ce, relative_difficulty
from .registry import register_method


@dataclass
class DFAConfig(MethodConfig):
    """Colored MNIST defaults of the official code (kakaoenterprise/Learning-Debiased-
    Disentangled: `scripts/run_cmnist_ours.sh`, `train.py` defaults, `learner.py`)."""

    STEP_COUNTED: ClassVar[tuple] = ("curr_step", "lr_decay_step")
    NAME: ClassVar[str] = "dfa"
    # `module/mlp.py` MLP_DISENTANGLE: Linear(2352,100)-ReLU-Linear(100,100)-ReLU-Linear(100,16)-ReLU
    # per encoder, and a Linear(32, 10) classifier on [z_i, z_b]. Here: an MLP backbone of
    # depth 3 (two hidden layers of 100) followed by a Linear(100, feature_dim)-ReLU layer.
    model: ModelSpec = field(default_factory=lambda: ModelSpec(arch="mlp", depth=3, width=100))
    feature_dim: int = 16  # 0 uses the backbone's features directly
    # Script: `--lr=0.01`; `train.py`: weight decay 0; `learner.py`: Adam, batch 256 for
    # cmnist, `drop_last=True`; `--num_steps` default 500 * 100 = 50,000 iterations =
    # 50,000 / 234 (= 60000 // 256) = 213.7, rounded up to 214 epochs of the 60,000-image
    # train set (50,076 steps).
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(optimizer="adam", lr=0.01, weight_decay=0.0, epochs=214, batch_size=256)
    )
    q: float = 0.7  # GCE q: `--q` default 0.7; `learner.py` builds GeneralizedCELoss(q=0.7)
    ema_alpha: float = 0.7  # `--ema_alpha` default 0.7
    lambda_dis_align: float = 10.0  # script `--lambda_dis_align=10` (Eq. 2)
    lambda_swap_align: float = 10.0  # script `--lambda_swap_align=10` (Eq. 3)
    lambda_swap: float = 1.0  # script `--lambda_swap=1` (Eq. 4)
    curr_step: int = 10000  # script `--curr_step=10000`: swapping starts at step index > curr_step
    use_lr_decay: bool = True  # script `--use_lr_decay`
    lr_decay_step: int = 10000  # script `--lr_decay_step=10000` (StepLR step_size)
    lr_gamma: float = 0.5  # script `--lr_gamma=0.5`
    # Multiplies the inputs. The official CMNIST pipeline reads PNGs with ToTensor ([0, 1])
    # and its MLP divides by 255 again, so its inputs lie in [0, 1/255]; 1/255 mimics that.
    # The default 1 feeds [0, 1] inputs, like LfF and every other method here.
    input_scale: float = 1.0

    def validate(self) -> None:
        super().validate()
        check_gce_ema(self)
        if self.curr_step < 0 or self.lr_decay_step < 1 or not 0.0 < self.lr_gamma <= 1.0:
            raise ConfigError("method.curr_step must be >= 0, lr_decay_step >= 1 and lr_gamma in (0, 1]")
        if self.feature_dim < 0 or self.input_scale <= 0:
            raise ConfigError("method.feature_dim must be >= 0 and method.input_scale > 0")


def encoder(cfg: DFAConfig, input_shape) -> nn.Module:
    backbone = create_model(cfg.model, input_shape)
    if cfg.feature_dim == 0:
        return backbone
    net = nn.Sequential(backbone, nn.Linear(backbone.out_dim, cfg.feature_dim), nn.ReLU())
    net.out_dim = cfg.feature_dim
    return net


@register_method
class DFA(Algorithm):
    config_class = DFAConfig

    def __init__(self, cfg: DFAConfig, input_shape, num_classes, num_train):
        super().__init__(cfg, input_shape, num_classes, num_train)
        self.enc_i, self.enc_b = encoder(cfg, input_shape), encoder(cfg, input_shape)  # E_i, E_b
        dim = self.enc_i.out_dim + self.enc_b.out_dim
        self.head_i, self.head_b = nn.Linear(dim, num_classes), nn.Linear(dim, num_classes)  # C_i, C_b
        self.ema_b = SampleLossEMA(num_train, cfg.ema_alpha)  # of C_b's CE
        self.ema_d = SampleLossEMA(num_train, cfg.ema_alpha)  # of C_i's CE
        self.optimizer_i = self.optimizer_b = None
        self.schedulers = []
        self.iteration = 0  # the official loop's `step`, counted from 0

    def phases(self):
        return [Phase("dfa", self.cfg.optim, "dfa", "unbiased", ("dfa", "dfa_bias"), drop_last=True, proxy="dfa_bias")]

    def start_phase(self, phase, train):
        self.ema_b.set_labels(train.y)
        self.ema_d.set_labels(train.y)
        # Two Adam optimisers: (E_i, C_i) and (E_b, C_b), as `learner.py` builds for model_l / model_b.
        self.optimizer_i = make_optimizer(list(self.enc_i.parameters()) + list(self.head_i.parameters()), phase.optim)
        self.optimizer_b = make_optimizer(list(self.enc_b.parameters()) + list(self.head_b.parameters()), phase.optim)
        self.schedulers = []
        if self.cfg.use_lr_decay:
            self.schedulers = [
                torch.optim.lr_scheduler.StepLR(opt, step_size=self.cfg.lr_decay_step, gamma=self.cfg.lr_gamma)
                for opt in (self.optimizer_i, self.optimizer_b)
            ]
        self.iteration = 0
        return None

    def features(self, x):
        x = x * self.cfg.input_scale if self.cfg.input_scale != 1.0 else x
        return self.enc_i(x), self.enc_b(x)

    def swapping(self) -> bool:
        """Whether the current iteration adds the swap loss (official: `step > curr_step`)."""
        return self.iteration > self.cfg.curr_step

    def update(self, batch):
        index, x, y, _ = batch
        z_i, z_b = self.features(x)
        # Each classifier's gradient reaches only its own encoder.
        logits_i = self.head_i(torch.cat([z_i, z_b.detach()], dim=1))
        logits_b = self.head_b(torch.cat([z_i.detach(), z_b], dim=1))
        ce_i = F.cross_entropy(logits_i, y, reduction="none")
        ce_b = F.cross_entropy(logits_b, y, reduction="none")
        self.ema_d.update(index, ce_i)
        self.ema_b.update(index, ce_b)
        weight = relative_difficulty(
            self.ema_b.normalized(index, y, self.num_classes), self.ema_d.normalized(index, y, self.num_classes)
        )
        loss_dis_i = (ce_i * weight).mean()  # Eq. 2: W(z) CE(C_i(z), y)
        loss_dis_b = generalized_ce(logits_b, y, self.cfg.q).mean()  # Eq. 2: GCE(C_b(z), y)
        loss = loss_dis_i + self.cfg.lambda_dis_align * loss_dis_b
        swap_i = swap_b = torch.zeros((), device=x.device)
        swapping = self.swapping()
        if swapping:
            perm = torch.randperm(len(y), device=y.device)
            z_b_swap, y_swap = z_b[perm], y[perm]
            swap_logits_i = self.head_i(torch.cat([z_i, z_b_swap.detach()], dim=1))
            swap_logits_b = self.head_b(torch.cat([z_i.detach(), z_b_swap], dim=1))
            swap_i = (F.cross_entropy(swap_logits_i, y, reduction="none") * weight).mean()  # Eq. 3, label y
            swap_b = generalized_ce(swap_logits_b, y_swap, self.cfg.q).mean()  # Eq. 3, label y~
            loss = loss + self.cfg.lambda_swap * (swap_i + self.cfg.lambda_swap_align * swap_b)  # Eq. 4
        self.step(loss, self.optimizer_i, self.optimizer_b)
        # The official loop steps its StepLR schedulers from iteration curr_step on.
        if self.iteration >= self.cfg.curr_step:
            for scheduler in self.schedulers:
                scheduler.step()
        self.iteration += 1
        values = torch.stack([loss, loss_dis_i, loss_dis_b, swap_i, swap_b, weight.mean()]).detach().unbind()
        keys = ("loss", "loss_dis_intrinsic", "loss_dis_bias", "loss_swap_intrinsic", "loss_swap_bias", "weight")
        out = dict(zip(keys, values))
        out["swapping"] = float(swapping)
        return out

    def _logits(self, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
        z_i, z_b = self.features(x)
        return head(torch.cat([z_i, z_b], dim=1))

    def predict(self, x):
        return self._logits(self.head_i, x)

    def predictors(self):
        return {"dfa": self.predict, "dfa_bias": lambda x: self._logits(self.head_b, x)}
