"""An exponential moving average of a method's weights over the steps of a phase (`method.<phase>.ema`).

Not in the paper. Adam at a constant learning rate leaves DeNetDM's stage-1 branches swinging from
one epoch to the next (the shallow branch's conflicting accuracy by 5 to 8 points on Colored MNIST);
the average is what evaluation, selection and the next phase read, while training goes on with the
live weights. torch's `AveragedModel` keeps the average; it averages the method's modules (not its
optimisers or data) and their buffers.
"""
from __future__ import annotations

from contextlib import contextmanager

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        """Built when a phase (or its next candidate setting) starts, after the method has replaced
        whatever modules it replaces (a fresh stage-2 target); none is replaced within a phase."""
        self.model = model
        self.modules = nn.ModuleDict(dict(model.named_children()))
        self.average = AveragedModel(self.modules, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    def update(self) -> None:
        """After each optimiser step."""
        self.average.update_parameters(self.modules)

    def load_into_model(self) -> None:
        self.model.load_state_dict(self.average.module.state_dict(), strict=False)

    @contextmanager
    def swapped_in(self):
        """The model holds the averaged weights inside the block and its live ones again after it."""
        live = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.load_into_model()
        try:
            yield
        finally:
            self.model.load_state_dict(live)

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)
