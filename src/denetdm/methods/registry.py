"""The method registry: `create_method`, `list_methods`, `method_config_class`."""
from __future__ import annotations

from ..registry import Registry

METHODS: Registry = Registry("method")


def register_method(cls):
    """Register an `Algorithm` subclass under its config's NAME."""
    return METHODS.register(cls.config_class.NAME)(cls)


def method_config_class(name: str) -> type:
    return METHODS.get(name).config_class


def create_method(cfg, input_shape, num_classes: int, num_train: int):
    """The method named by `cfg.method`, built for data of this shape."""
    return METHODS.get(cfg.method.NAME)(cfg.method, input_shape, num_classes, num_train)


def list_methods():
    return METHODS.names()
