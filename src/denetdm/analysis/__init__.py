"""The paper's theory as measurements: effective rank and linear decodability."""
from .decodability import linear_probe
from .rank import effective_rank

__all__ = ["effective_rank", "linear_probe"]
