"""Methods, one file each, in the `Algorithm` contract of `base.py`."""
from . import denetdm, dfa, erm, groupdro, jtt, lc, lff  # noqa: F401  (registration)
from .base import Algorithm, Phase
from .registry import create_method, list_methods, method_config_class, register_method

__all__ = ["Algorithm", "Phase", "create_method", "list_methods", "method_config_class", "register_method"]
