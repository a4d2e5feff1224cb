"""The project's checkpoint format: weights + architecture name + its kwargs + conventions + metadata.

Stored with `torch.save` as plain containers and tensors only, so it loads with `weights_only=True`
(no pickled code). `load_model(path)` rebuilds the network from the file alone.

PyTorch is imported by the functions that need it, so that `CheckpointError` is at hand without it.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

FORMAT_NAME = "depth_completion_ros.checkpoint"
FORMAT_VERSION = 1
INPUT_CONVENTION = {
    "rgb": "float RGB in 0..1, [B,3,H,W], normalised inside the model",
    "sparse_depth": "metres, 0 = no measurement, [B,1,H,W]",
    "output": "dense depth in metres, [B,1,H,W]",
}


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, of another format, or does not fit its architecture."""


@dataclass
class Checkpoint:
    architecture: str
    kwargs: dict
    state_dict: dict
    metadata: dict = field(default_factory=dict)
    input_convention: dict = field(default_factory=lambda: dict(INPUT_CONVENTION))


def save_checkpoint(path: str | Path, model: nn.Module, metadata: dict | None = None,
                    architecture: str | None = None, kwargs: dict | None = None) -> Path:
    """Save `model` (built by `build_model`, or name its `architecture`/`kwargs`) with free-form metadata.
    Metadata must be plain data (str, numbers, lists, dicts) so that the file loads with weights_only."""
    architecture = architecture or getattr(model, "architecture", None)
    if architecture is None:
        raise CheckpointError("model has no registered architecture name; build it with build_model()")
    kwargs = dict(getattr(model, "arch_kwargs", {}) if kwargs is None else kwargs)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "architecture": architecture,
        "kwargs": kwargs,
        "input_convention": dict(INPUT_CONVENTION),
        "metadata": dict(metadata or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    import torch

    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written checkpoint
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message advises weights_only=False, which would run code from the file: never do that.
        raise CheckpointError(f"{path}: not a readable checkpoint: corrupt, not a torch file, or holding objects "
                              f"other than tensors and plain containers (not loaded: that could run code)") from error
    except Exception as error:  # noqa: BLE001 - a corrupt file can fail inside torch.load in many ways
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a {FORMAT_NAME} file (a bare state_dict or another project's format?)")
    if payload.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('version')} is not supported "
                              f"(this build reads version {FORMAT_VERSION})")
    missing = [k for k in ("architecture", "kwargs", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return Checkpoint(
        architecture=payload["architecture"],
        kwargs=dict(payload["kwargs"]),
        state_dict=payload["state_dict"],
        metadata=dict(payload.get("metadata", {})),
        input_convention=dict(payload.get("input_convention", INPUT_CONVENTION)),
    )


def load_model(path: str | Path) -> tuple[nn.Module, Checkpoint]:
    """Rebuild the network named in the checkpoint and load its weights (strictly)."""
    checkpoint = load_checkpoint(path)
    return model_from_checkpoint(checkpoint, path), checkpoint


def model_from_checkpoint(checkpoint: Checkpoint, path: str | Path) -> nn.Module:
    """The network of a checkpoint already read from `path` (named in the errors), weights loaded strictly."""
    from .registry import build_model

    try:
        model = build_model(checkpoint.architecture, **checkpoint.kwargs)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot build {checkpoint.architecture!r} with "
                              f"{checkpoint.kwargs}: {error}") from error
    try:
        model.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit {checkpoint.architecture!r}: {error}") from error
    return model
