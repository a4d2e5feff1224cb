"""Model registry: every network is built by name, so a checkpoint needs only (name, kwargs, weights)."""
from __future__ import annotations

from typing import Callable

from torch import nn

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str = "") -> Callable:
    """Decorator for a factory `f(**kwargs) -> nn.Module` registered under `name`."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _FACTORIES:
            raise ValueError(f"model name {name!r} is registered twice")
        _FACTORIES[name] = factory
        doc_lines = (factory.__doc__ or "").strip().splitlines()
        _DESCRIPTIONS[name] = description or (doc_lines[0] if doc_lines else "")
        return factory

    return decorate


def list_models() -> list[str]:
    return sorted(_FACTORIES)


def describe_model(name: str) -> str:
    _check_name(name)
    return _DESCRIPTIONS[name]


def _check_name(name: str) -> None:
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. The result remembers `architecture` and `arch_kwargs` for checkpoints."""
    _check_name(name)
    model = _FACTORIES[name](**kwargs)
    model.architecture = name
    model.arch_kwargs = dict(kwargs)
    return model
