"""Model registry: every network is built by name, so a checkpoint needs only (name, kwargs, weights)."""
from __future__ import annotations

from typing import Callable

import torch
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


def _register_architectures() -> None:
    """Import the architecture modules, whose decorators fill the registry (idempotent)."""
    from . import cdspn, lspkd  # noqa: F401


def list_models() -> list[str]:
    _register_architectures()
    return sorted(_FACTORIES)


def describe_model(name: str) -> str:
    _check_name(name)
    return _DESCRIPTIONS[name]


def _check_name(name: str) -> None:
    _register_architectures()
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. The result remembers `architecture` and `arch_kwargs` for checkpoints."""
    _check_name(name)
    model = _FACTORIES[name](**kwargs)
    model.architecture = name
    model.arch_kwargs = dict(kwargs)
    return model


def check_inputs(rgb: torch.Tensor, sparse: torch.Tensor) -> None:
    """The inputs every registered network takes: rgb [B,3,H,W] and sparse depth [B,1,H,W], floating point."""
    if torch.jit.is_tracing():  # shape checks would be frozen into an exported graph
        return
    if not isinstance(rgb, torch.Tensor) or not isinstance(sparse, torch.Tensor):
        raise ValueError("rgb and sparse must be torch tensors")
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must be [B, 3, H, W], got shape {tuple(rgb.shape)}")
    if sparse.dim() != 4 or sparse.shape[1] != 1:
        raise ValueError(f"sparse depth must be [B, 1, H, W], got shape {tuple(sparse.shape)}")
    if rgb.shape[0] != sparse.shape[0] or rgb.shape[-2:] != sparse.shape[-2:]:
        raise ValueError(f"rgb {tuple(rgb.shape)} and sparse {tuple(sparse.shape)} differ in batch or size")
    if not rgb.is_floating_point() or not sparse.is_floating_point():
        raise ValueError(f"rgb and sparse must be floating point, got {rgb.dtype} and {sparse.dtype}")
