"""Model-selection protocols, named and recorded next to every number.

- `proxy`: the epoch with the best mean accuracy over (class, bias-proxy prediction) groups on a
  split held out from the training set: the "bias-unsupervised validation" of uLA (NeurIPS 2023).
  The bias proxy is the method's own biased model (DeNetDM's deep branch, LfF's and DFA's biased
  model, JTT's ERM model); without one, a class is a group. A phase that trains the proxy itself
  keeps its last epoch. Label-free; the default.
- `last`: the final epoch of each phase. Label-free.
- `val`: the epoch with the best plain accuracy of the phase's monitored predictor on a
  validation split held out from the training set (same bias ratio). Label-free; the
  held-out images are not trained on.
- `oracle`: the epoch with the best bias-label metric on the *test* split, as the
  official code selects (stage 1: shallow-branch conflicting accuracy; stage 2: target
  unbiased accuracy). Only for comparing with the paper; always reported as oracle.
"""
from __future__ import annotations

import copy
from typing import Dict, Optional

from .methods.base import Phase

HELD_OUT = ("proxy", "val")  # the protocols that hold out a split of the training set

DESCRIPTIONS = {
    "proxy": "best mean accuracy over (class, bias-proxy prediction) groups on a held-out split of train (label-free)",
    "last": "last epoch (label-free)",
    "val": "best accuracy on a held-out split of the training distribution (label-free)",
    "oracle": "ORACLE: best test-split metric using bias labels (the official code's protocol)",
}


class Selector:
    """Tracks the best epoch of one phase and keeps a copy of its weights."""

    def __init__(self, protocol: str, phase: Phase, keep_weights: bool = True, proxy_metric: str = "pseudo_unbiased"):
        if protocol == "proxy" and phase.proxy == phase.monitor:
            protocol = "last"  # the phase trains the bias proxy: nothing to debias yet
        self.protocol, self.phase, self.keep_weights, self.proxy_metric = protocol, phase, keep_weights, proxy_metric
        self.best_score: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.best_state: Optional[dict] = None
        self.best_metrics: Optional[dict] = None
        self.best_candidate = 0  # of the phase's candidate settings (Algorithm.candidates), the kept one
        self.best_eligible = True  # whether the kept epoch passed the method's check (Algorithm.epoch_eligible)
        self.latest: Optional[float] = None  # the score of the last epoch observed (for the log)
        # The setting in training: its best epoch of each kind (eligible or not) and whether its latest
        # epoch passed; `close` decides which of them competes once the setting's last epoch is in.
        self.pending: Dict[bool, dict] = {}
        self.pending_last = True

    def score(self, metrics: Dict[str, Dict[str, Dict[str, float]]]) -> Optional[float]:
        if self.protocol == "proxy":
            held_out = metrics["val"][self.phase.monitor]
            # A phase without a bias proxy has no conflicting groups: its classes are the groups.
            value = held_out.get(self.proxy_metric, held_out["pseudo_unbiased"])
            return float("-inf") if value != value else value
        if self.protocol == "val":
            return metrics["val"][self.phase.monitor]["accuracy"]
        if self.protocol == "oracle":
            return metrics["test"][self.phase.monitor][self.phase.oracle_metric]
        return None

    def observe(self, epoch: int, metrics, model, candidate: int = 0, eligible: bool = True) -> None:
        """Score an epoch of the setting in training; `close` ends the setting."""
        if self.protocol == "last":
            self.best_epoch, self.best_candidate = epoch, candidate
            return
        score = self.latest = self.score(metrics)
        kept = self.pending.get(eligible)
        if kept is None or score > kept["score"]:
            self.pending[eligible] = {"score": score, "epoch": epoch, "metrics": metrics, "candidate": candidate,
                                      "state": copy.deepcopy(model.state_dict()) if self.keep_weights else None}
        self.pending_last = eligible

    def close(self) -> bool:
        """End the setting in training: its epochs count as eligible only if its last one is (a check that
        held for a few epochs and failed by the end does not vouch for them; unless the phase says
        otherwise, `Phase.eligible_needs_last`), and an eligible epoch beats every ineligible one; among
        either kind the higher score wins. Returns whether they counted."""
        if not self.pending:
            return self.best_eligible
        passed = self.pending_last if self.phase.eligible_needs_last else True in self.pending
        entry = self.pending[True] if passed else max(self.pending.values(), key=lambda e: e["score"])
        self.pending = {}
        if self.best_score is None or (passed, entry["score"]) > (self.best_eligible, self.best_score):
            self.best_score, self.best_epoch, self.best_metrics = entry["score"], entry["epoch"], entry["metrics"]
            self.best_candidate, self.best_eligible, self.best_state = entry["candidate"], passed, entry["state"]
        return passed

    def state(self) -> dict:
        """For a resume point; `load` puts it back."""
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_state": self.best_state,
                "best_metrics": self.best_metrics, "best_candidate": self.best_candidate,
                "best_eligible": self.best_eligible, "pending": self.pending, "pending_last": self.pending_last}

    def load(self, state: dict) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_state, self.best_metrics = state["best_state"], state["best_metrics"]
        self.best_candidate = state.get("best_candidate", 0)
        self.best_eligible = state.get("best_eligible", True)
        self.pending, self.pending_last = state.get("pending", {}), state.get("pending_last", True)

    def restore(self, model) -> None:
        """Load the selected weights before the next phase starts from them."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
            self.best_state = None
