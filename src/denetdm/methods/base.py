"""The method contract (DomainBed's `Algorithm`): `update(batch) -> dict` and `predict(x)`.

A method declares its training phases (one for ERM, two for DeNetDM's stages); the
trainer runs them in order, calling `start_phase` before each. Every method exposes
named predictors (a branch read alone, a product of experts, the deployed model) so
that each can be evaluated, and says which one model selection should score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from .. import distributed
from ..errors import ConfigError

@dataclass
class OptimConfig:
    """One training phase's optimiser and schedule (no LR schedule, as in the paper)."""

    optimizer: str = "adam"  # adam | sgd; weight decay is the coupled L2 term, as in the official code
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only; Adam uses its default betas
    epochs: int = 100
    batch_size: int = 64
    # Not in the paper (0 is faithful): the decay per step of an exponential moving average of the
    # phase's weights, which evaluation, selection and the next phase read instead of the live ones
    # (averaging.py). 0.999 averages over about 1000 steps.
    ema: float = 0.0


Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Phase:
    name: str
    optim: OptimConfig
    monitor: str  # the predictor that model selection scores in this phase
    oracle_metric: str  # what `oracle` selection maximises on the test split
    predictors: Tuple[str, ...]  # the predictors worth logging during this phase
    drop_last: bool = False
    # The predictor whose predictions stand in for bias labels in `proxy` selection (the method's
    # biased model); None: classes are the groups. The monitor itself: the phase keeps its last epoch.
    proxy: Optional[str] = None
    # Whether a setting's eligible epochs (Algorithm.epoch_eligible) count only if its last epoch is
    # eligible too (`Selector.close`); False: any eligible epoch beats every ineligible one.
    eligible_needs_last: bool = True


class MethodConfig:
    """Base of every method's config dataclass; `NAME` is its registry name."""

    NAME: ClassVar[str] = ""
    # Settings counted in optimiser steps, which a shortened schedule scales with its phase.
    STEP_COUNTED: ClassVar[Tuple[str, ...]] = ()

    def validate(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, OptimConfig):
                check_optim(value, f"method.{name}")


def check_optim(optim: OptimConfig, path: str) -> None:
    if optim.optimizer not in ("adam", "sgd"):
        raise ConfigError(f"{path}.optimizer={optim.optimizer!r} is unknown; use adam or sgd")
    if optim.lr <= 0 or optim.batch_size < 1 or optim.epochs < 0:
        raise ConfigError(f"{path} needs lr > 0, batch_size >= 1 and epochs >= 0")
    if not 0.0 <= optim.ema < 1.0:
        raise ConfigError(f"{path}.ema={optim.ema} must be in [0, 1); 0 turns the weight average off, 0.999 is typical")


_FUSED_ADAM = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)


def make_optimizer(params: Iterable[nn.Parameter], optim: OptimConfig,
                   scaled: Sequence[Tuple[Iterable[nn.Parameter], float]] = ()) -> torch.optim.Optimizer:
    """One optimiser for `params` at `optim.lr`, plus each `(parameters, factor)` of `scaled` at
    `factor * optim.lr` in a group of its own."""
    params = [p for p in params if p.requires_grad]
    groups = [{"params": [p for p in ps if p.requires_grad], "lr": optim.lr * factor} for ps, factor in scaled]
    everything = params + [p for g in groups for p in g["params"]]
    params = [{"params": params}, *groups] if groups else params
    if optim.optimizer == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    # The fused kernel is the same update in one pass over memory: 5x faster on CPU here.
    fused = _FUSED_ADAM and all(p.device.type in ("cpu", "cuda") for p in everything)
    return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=fused or None)


def with_head(backbone: nn.Module, num_classes: int) -> nn.Sequential:
    """A backbone and a linear classifier over its `out_dim` features."""
    return nn.Sequential(backbone, nn.Linear(backbone.out_dim, num_classes))


class Algorithm(nn.Module):
    """Subclasses set `config_class` and implement the methods below."""

    config_class: ClassVar[type]
    uses_bias_labels: ClassVar[bool] = False  # True: training reads the batch's bias labels (GroupDRO)
    # True: a step depends only on its batch, so torchrun ranks can share it (distributed.py).
    data_parallel: ClassVar[bool] = False

    def __init__(self, cfg, input_shape: Tuple[int, ...], num_classes: int, num_train: int):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.candidate = 0  # which of `candidates(phase)` the phase trains now

    def phases(self) -> List[Phase]:
        raise NotImplementedError

    def start_phase(self, phase: Phase, train) -> Optional[torch.Tensor]:
        """Prepare a phase (optimiser, freezing). May return the indices to sample from
        (with repeats, for up-sampling methods); None means every training index once."""
        raise NotImplementedError

    def update(self, batch) -> Dict[str, torch.Tensor]:
        """One optimisation step on a batch `(index, x, y, bias)`; bias is never read. Returns the
        values to log as detached 0-dim tensors: left on the device, so a step never waits for the
        GPU; the loop reads them once per epoch."""
        raise NotImplementedError

    def predictors(self) -> Dict[str, Predictor]:
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the deployed model."""
        raise NotImplementedError

    def predict_many(self, x: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Logits of several predictors on one batch; a method whose predictors share branches computes
        each branch once (evaluation reads every predictor after every epoch)."""
        predictors = self.predictors()
        return {name: predictors[name](x) for name in names}

    def phase_warnings(self, phase: str, train_fit: Dict[str, Dict[str, float]]) -> List[str]:
        """Label-free checks of a finished phase, from its predictors' fit of the training labels
        (`train_fit`: predictor -> accuracy summary); each message is shown and kept in the results."""
        return []

    def proxy_caveat(self) -> Optional[str]:
        """Why the bias proxy's groups should not be read as bias groups, where a label-free check
        found a reason (None: no reason known). Shown with the estimate."""
        return None

    def candidates(self, phase: str) -> List[dict]:
        """Settings to train the phase under, one after the other from the same start, all scored by
        the run's selection protocol, the best (setting, epoch) kept; `candidate` is the one training.
        One (the default): the phase trains once."""
        return [{}]

    def epoch_eligible(self, phase: str, held_out: Dict[str, Dict[str, float]]) -> bool:
        """Whether an epoch of a phase may be selected, from its predictors' label-free metrics on the
        held-out split. An ineligible epoch is kept only where no setting of the phase has an eligible
        one, and a setting's epochs count as eligible only if its last epoch is (`Selector.close`)."""
        return True

    def restart_phase(self, phase: str, restarts_so_far: int) -> bool:
        """Called when a phase other than the last ends with warnings: reinitialise what the phase
        trains and return True to train it again, or False to go on as it is."""
        return False

    def train_state(self) -> dict:
        """What a phase carries beside `state_dict()`: plain values (counters, rates), optimisers and
        learning-rate schedulers; every such attribute, so a method's own need no code to resume."""
        state = {"values": {}, "optimizers": {}, "schedulers": {}}
        for name, value in vars(self).items():
            if isinstance(value, torch.optim.Optimizer):
                state["optimizers"][name] = value.state_dict()
            elif isinstance(value, list) and value and all(isinstance(v, LRScheduler) for v in value):
                state["schedulers"][name] = [v.state_dict() for v in value]
            elif isinstance(value, (bool, int, float, str)) and name != "training":
                state["values"][name] = value
        return state

    def load_train_state(self, state: dict) -> None:
        """Put back `train_state()`: the values always, the optimisers and schedulers once `start_phase`
        has built them (the trainer calls this before `start_phase`, which may read the values, and after)."""
        for name, value in state["values"].items():
            setattr(self, name, value)
        for name, saved in state["optimizers"].items():
            if isinstance(getattr(self, name, None), torch.optim.Optimizer):
                getattr(self, name).load_state_dict(saved)
        for name, saved in state["schedulers"].items():
            for scheduler, entry in zip(getattr(self, name, None) or [], saved):
                scheduler.load_state_dict(entry)

    def step(self, loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
        """One backward pass of `loss`, then a step of each optimiser (the method's `optimizer` if none
        is given; LfF, DFA and LC train two networks with one each)."""
        optimizers = optimizers or (self.optimizer,)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(p for o in optimizers for group in o.param_groups for p in group["params"])
        for optimizer in optimizers:
            optimizer.step()
        distributed.sync_buffers(self)
