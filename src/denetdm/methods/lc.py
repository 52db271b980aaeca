"""LC: logit correction (Liu et al., "Avoiding spurious correlations via logit correction", ICLR 2023).

Two networks train side by side. The biased one minimises GCE (as LfF's), so it fits the
easy spurious attribute; its argmax is each sample's pseudo bias label a. A (class,
pseudo-bias) table P[y, a] keeps a moving average, over the samples of each group, of the
biased network's probability of the true class: an estimate of the prior p(y | a). The
main network minimises cross-entropy on its logits plus log P[:, a] (logit adjustment).
For a bias-aligned sample the true class already gets a large prior, so the loss is small;
for a bias-conflicting one the prior is small and the loss stays large until the network's
own logit makes up for it, so the minimiser targets group-balanced accuracy. Group MixUp
mixes every sample with a random same-class sample from a pseudo-minority group (y != a),
and mixes the priors with the same ratio. The main network's plain logits are deployed.
No bias labels are used.

Follows the official code (shengliu66/LC): `learner.py` `train_ours` (its Colored MNIST
branch), `util.py` `EMA_squre`, `module/lc_loss/loss.py` and `group_mixup.py`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..models.spec import ModelSpec
from ..errors import ConfigError
from .base import Algorithm, MethodConfig, OptimConfig, Phase, make_optimizer, with_head
from .dfa import encoder
from .lff import check_gce_ema, generalized_ce
from .registry import register_method

AVG_TYPES = ("mv", "mv_batch", "batch")


@dataclass
class LCConfig(MethodConfig):
    """Defaults of the official code (shengliu66/LC `train.py` defaults and `learner.py`); its
    README gives no Colored MNIST command, so every value here is a default."""

    STEP_COUNTED: ClassVar[tuple] = ("curr_step", "lr_decay_step")
    NAME: ClassVar[str] = "lc"
    # `module/mlp.py` MLP_DISENTANGLE (the `cmnist` model): Linear(2352,100)-ReLU-Linear(100,100)-ReLU-
    # Linear(100,16)-ReLU, then Linear(16, 10); both networks. Here: an MLP backbone of depth 3
    # followed by Linear(100, feature_dim)-ReLU (DisEnt's `encoder`) and a linear head.
    model: ModelSpec = field(default_factory=lambda: ModelSpec(arch="mlp", depth=3, width=100))
    feature_dim: int = 16  # 0 puts the head on the backbone's features directly
    # `train.py`: lr 1e-3, weight decay 0, `--num_epochs` 300 (the loop runs epochs; `--num_steps`
    # is unused); `learner.py`: Adam, batch 256 for cmnist (overrides `--batch_size`), drop_last.
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=300, batch_size=256)
    )
    bias_lr_ratio: float = 0.1  # `learner.py`: the biased network's Adam runs at lr * 0.1
    q: float = 0.7  # GCE q: `--q` default
    lambda_dis_align: float = 1.0  # weight of the biased network's GCE: `--lambda_dis_align` default
    tau: float = 1.0  # `--tau`: temperature of the biased softmax that feeds the prior table
    eta: float = 1.0  # prior exponent: `LogitCorrectionLoss(eta=1.0)` in `learner.py`
    ema_alpha: float = 0.995  # momentum of the prior table: `--ema_alpha` default
    avg_type: str = "mv"  # `--avg_type`: mv | mv_batch | batch (see `GroupPrior`)
    # Divide each pseudo-bias column of P by its sum: the official ResNet branches do, its
    # MLP (cmnist) branch does not. Inside the log this is a per-sample shift, ~no effect.
    normalize_prior: bool = False
    group_mixup: bool = True  # off: the main network sees the batch unmixed (an ablation)
    curr_step: int = 0  # `--curr_step`: sigmoid ramp-up length of the MixUp strength (0: none)
    use_lr_decay: bool = False  # `--use_lr_decay` flag, off by default
    lr_decay_step: int = 10000  # `--lr_decay_step` (StepLR step_size, both networks)
    lr_gamma: float = 0.1  # `--lr_gamma`

    def validate(self) -> None:
        super().validate()
        check_gce_ema(self)
        if self.avg_type not in AVG_TYPES:
            raise ConfigError(f"method.avg_type={self.avg_type!r} is unknown; choose one of: {', '.join(AVG_TYPES)}")
        if self.tau <= 0 or self.eta < 0 or self.bias_lr_ratio <= 0 or self.lambda_dis_align < 0:
            raise ConfigError("method.tau and bias_lr_ratio must be > 0, eta and lambda_dis_align >= 0")
        if self.curr_step < 0 or self.lr_decay_step < 1 or not 0.0 < self.lr_gamma <= 1.0:
            raise ConfigError("method.curr_step must be >= 0, lr_decay_step >= 1 and lr_gamma in (0, 1]")
        if self.feature_dim < 0:
            raise ConfigError("method.feature_dim must be >= 0")


def logit_correction(prior: torch.Tensor, eta: float) -> torch.Tensor:
    """The additive correction log(prior^eta + 1e-4) (`LogitCorrectionLoss`; the 1e-4 is its)."""
    return torch.log(prior.pow(eta) + 1e-4)


def sigmoid_rampup(step: int, length: int) -> float:
    """exp(-5 (1 - t)^2) with t = min(step / length, 1); 1 when length is 0 (official `util.py`)."""
    if length == 0:
        return 1.0
    phase = 1.0 - min(max(step, 0), length) / length
    return math.exp(-5.0 * phase * phase)


class GroupPrior(nn.Module):
    """P[y, a]: the biased network's probability of class y, averaged over the samples of
    class y with pseudo bias a (official `EMA_squre`). `avg_type`:
    - mv: per-sample EMA in batch order, P <- alpha P + (1 - alpha) p; a cell's first value is
      taken as is. Vectorised: a cell updated by p_1..p_k becomes
      alpha^k P0 + (1 - alpha) sum_j alpha^(k-j) p_j, with P0 = p_1 for a cell never seen.
    - mv_batch: EMA of the batch's per-cell mean, P <- alpha P + (1 - alpha) mean.
    - batch: the batch's per-cell mean alone (absent cells become 0).
    The per-cell mean is sum / (count + 1e-4), as the official code."""

    def __init__(self, num_classes: int, alpha: float, avg_type: str):
        super().__init__()
        self.alpha, self.avg_type = alpha, avg_type
        self.register_buffer("value", torch.zeros(num_classes, num_classes))
        self.register_buffer("seen", torch.zeros(num_classes, num_classes, dtype=torch.bool))

    def reset(self) -> None:
        self.value.zero_()
        self.seen.zero_()

    @torch.no_grad()
    def update(self, p_true: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> None:
        c = self.value.shape[0]
        cell = y * c + a
        counts = torch.zeros(c * c, dtype=torch.long, device=cell.device).index_add_(0, cell, torch.ones_like(cell))
        flat, seen, p = self.value.view(-1), self.seen.view(-1), p_true.float()
        if self.avg_type == "mv":
            order = torch.argsort(cell, stable=True)
            starts = torch.cumsum(counts, 0) - counts
            rank = torch.empty_like(cell)
            rank[order] = torch.arange(len(cell), device=cell.device) - starts[cell[order]]
            power = (counts[cell] - 1 - rank).float()  # later samples weigh more
            total = torch.zeros_like(flat).index_add_(0, cell, (1.0 - self.alpha) * self.alpha**power * p)
            first = torch.zeros_like(flat).index_add_(0, cell, torch.where(rank == 0, p, torch.zeros_like(p)))
            start = torch.where(seen, flat, first)
            new = torch.where(counts > 0, self.alpha ** counts.float() * start + total, flat)
        else:
            mean = torch.zeros_like(flat).index_add_(0, cell, p) / (counts + 1e-4)
            new = self.alpha * flat + (1.0 - self.alpha) * mean if self.avg_type == "mv_batch" else mean
        flat.copy_(new)
        seen |= counts > 0


def group_mixup_partners(y: torch.Tensor, a: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each sample's MixUp partner, always of its own class: a uniform draw (with replacement)
    from the class's pseudo-minority samples (y != a) in the batch, or, when the class has
    none, a random permutation within the class (official `group_mixup.py`)."""
    n = len(y)
    minority = y != a
    order = torch.argsort(torch.where(minority, y, y + num_classes), stable=True)  # minority first, by class
    m_count = torch.zeros(num_classes, dtype=torch.long, device=y.device).index_add_(0, y, minority.long())
    m_start = torch.cumsum(m_count, 0) - m_count
    draw = (torch.rand(n, device=y.device) * m_count[y]).long()
    draw = torch.minimum(draw, (m_count[y] - 1).clamp_min(0))  # float rounding can reach the count
    from_minority = order[(m_start[y] + draw).clamp_max(n - 1)]
    within = torch.empty_like(y)  # a random bijection inside each class
    within[torch.argsort(y, stable=True)] = torch.argsort(y.float() + 0.5 * torch.rand(n, device=y.device))
    return torch.where(m_count[y] > 0, from_minority, within)


@register_method
class LC(Algorithm):
    config_class = LCConfig

    def __init__(self, cfg: LCConfig, input_shape, num_classes, num_train):
        super().__init__(cfg, input_shape, num_classes, num_train)
        self.main = with_head(encoder(cfg, input_shape), num_classes)  # the official model_l
        self.biased = with_head(encoder(cfg, input_shape), num_classes)  # model_b
        self.prior = GroupPrior(num_classes, cfg.ema_alpha, cfg.avg_type)
        self.optimizer_main = self.optimizer_b = None
        self.schedulers = []
        self.iteration = 0  # the official loop's `step`, counted from 0

    def phases(self):
        return [Phase("lc", self.cfg.optim, "lc", "unbiased", ("lc", "lc_biased"), drop_last=True, proxy="lc_biased")]

    def start_phase(self, phase, train):
        self.prior.reset()
        self.optimizer_main = make_optimizer(self.main.parameters(), phase.optim)
        biased_optim = dataclasses.replace(phase.optim, lr=phase.optim.lr * self.cfg.bias_lr_ratio)
        self.optimizer_b = make_optimizer(self.biased.parameters(), biased_optim)
        self.schedulers = []
        if self.cfg.use_lr_decay:
            # The official loop calls StepLR.step() before optimizer.step(), so iteration s runs at
            # lr * gamma^((s + 1) // step_size): one iteration ahead of the usual order.
            step, gamma = self.cfg.lr_decay_step, self.cfg.lr_gamma
            self.schedulers = [
                torch.optim.lr_scheduler.LambdaLR(opt, lambda i: gamma ** ((i + 1) // step))
                for opt in (self.optimizer_main, self.optimizer_b)
            ]
        self.iteration = 0
        return None

    def priors(self, a: torch.Tensor) -> torch.Tensor:
        """Row i: P[:, a_i], the prior of every class given sample i's pseudo bias."""
        table = self.prior.value
        if self.cfg.normalize_prior:
            table = table / table.sum(0, keepdim=True).clamp_min(1e-12)
        return table[:, a].t()

    def update(self, batch):
        _, x, y, _ = batch
        logits_b = self.biased(x)
        # The official per-sample EMA of these probabilities has alpha 0: the current values.
        probs = F.softmax(logits_b.detach() / self.cfg.tau, dim=1)
        a = probs.argmax(1)  # pseudo bias labels
        self.prior.update(probs.gather(1, y[:, None]).squeeze(1), y, a)
        prior = self.priors(a)
        if self.cfg.group_mixup:
            # lam ~ U(1 - 2s, 1 - s), s = 0.5 * ramp: with no ramp-up lam ~ U(0, 0.5), so the
            # partner dominates. `train.py`'s `--alpha` (16) is never read by the official code.
            s = 0.5 * sigmoid_rampup(self.iteration, self.cfg.curr_step)
            lam = (1.0 - 2.0 * s) + s * torch.rand((), device=x.device)
            partner = group_mixup_partners(y, a, self.num_classes)
            x = lam * x + (1.0 - lam) * x[partner]
            prior = lam * prior + (1.0 - lam) * prior[partner]
        else:
            lam = torch.ones((), device=x.device)
        # Partners share the label, so the official lam * LC(y_a) + (1 - lam) * LC(y_b) is LC(y).
        loss_lc = F.cross_entropy(self.main(x) + logit_correction(prior, self.cfg.eta), y)
        loss_b = generalized_ce(logits_b, y, self.cfg.q).mean()
        loss = loss_lc + self.cfg.lambda_dis_align * loss_b
        self.step(loss, self.optimizer_main, self.optimizer_b)
        for scheduler in self.schedulers:
            scheduler.step()
        self.iteration += 1
        values = torch.stack([loss, loss_lc, loss_b, lam, (y != a).float().mean()]).detach().unbind()
        return dict(zip(("loss", "loss_lc", "loss_biased", "lam", "pseudo_minority"), values))

    def predict(self, x):
        return self.main(x)

    def predictors(self):
        return {"lc": self.main, "lc_biased": self.biased}
