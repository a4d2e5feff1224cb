"""The checkpoints shipped with the package (`models/*.pt`, each with a model card `*.md` and its ONNX files
`*.onnx`, `*.fused.onnx` for a CDSPN, written by `dcros export --beside`) and the resolution of a user's model
choice: "default", a shipped model's name, a checkpoint path, a registered architecture (untrained: for timing
only; needs PyTorch), or a classical baseline ("baseline:nearest", "baseline:morphological").

A shipped model runs without PyTorch: the engine finds the ONNX files beside its checkpoint, in whichever of
`model_dirs` it is installed (they travel together: setup.py installs all of models/), and runs them when they
record the checkpoint's SHA-256 (`runtime.onnx_files.onnx_files_beside`)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

LOGGER = logging.getLogger(__name__)
PACKAGE = "depth_completion_ros"
DEFAULT_MODEL = "cdspn_x32_synth"


def model_dirs() -> list[Path]:
    """Where shipped checkpoints (and their ONNX files) live: the source tree's models/ (editable installs and
    checkouts), the ament share folder (colcon installs), and the pip data prefix."""
    candidates = [Path(__file__).resolve().parent.parent / "models", Path(sys.prefix) / "share" / PACKAGE / "models"]
    try:  # a colcon install: share/<package>/models under the package's prefix
        from ament_index_python.packages import get_package_share_directory

        candidates.insert(0, Path(get_package_share_directory(PACKAGE)) / "models")
    except Exception:  # noqa: BLE001 - ament is absent outside ROS or the package is not installed
        pass
    return [d for d in dict.fromkeys(candidates) if d.is_dir()]


def shipped_checkpoints() -> dict[str, Path]:
    """{name: path} of every shipped checkpoint (name = file stem), first location wins."""
    found: dict[str, Path] = {}
    for folder in model_dirs():
        for path in sorted(folder.glob("*.pt")):
            found.setdefault(path.stem, path)
    return found


def default_checkpoint_path() -> Path:
    shipped = shipped_checkpoints()
    if DEFAULT_MODEL not in shipped:
        raise FileNotFoundError(f"the default model {DEFAULT_MODEL}.pt is not installed "
                                f"(looked in: {', '.join(map(str, model_dirs())) or 'no models folder'})")
    return shipped[DEFAULT_MODEL]


def checkpoint_of(model: str, shipped: dict[str, Path] | None = None) -> Path | None:
    """The checkpoint file `model` names ("default", a shipped model's name or a .pt path), else None."""
    shipped = shipped_checkpoints() if shipped is None else shipped
    if model in ("", "default"):
        return default_checkpoint_path()
    if model in shipped:
        return shipped[model]
    if Path(model).suffix in (".pt", ".pth") or Path(model).is_file():
        return Path(model)
    return None


def resolve_engine(model: str = "default", device: str = "auto", precision: str = "auto", backend: str = "auto",
                   onnx_path: str | None = None, threads: int | None = 0, refinement: str = "auto"):
    """An `inference.Engine` for "default", a shipped model name, a checkpoint path or a registered name.

    backend "auto" (the default of the node and the command line) lets `inference.choose_backend` pick
    the runtime for a checkpoint; an untrained registered architecture has no checkpoint to export and
    runs on PyTorch. threads: 0 = the cores available to the process (see `inference.resolve_threads`).
    refinement: where DA-CSPN++'s propagation runs (`Engine.from_checkpoint`): "auto", "graph" or "fused".
    A checkpoint runs without PyTorch through the ONNX files exported from it beside it (the shipped models
    have them); a registered architecture needs PyTorch.
    """
    from .inference import Engine
    from .runtime.spec import TRAIN_EXTRA, torch_installed

    shipped = shipped_checkpoints()
    if model.startswith("baseline:"):
        from .baselines import BaselineEngine

        return BaselineEngine(model.split(":", 1)[1])
    path = checkpoint_of(model, shipped)
    if path is not None:
        return Engine.from_checkpoint(path, device=device, precision=precision, backend=backend,
                                      onnx_path=onnx_path, threads=threads, refinement=refinement)
    known = (f"not a checkpoint file, shipped model ({', '.join(sorted(shipped)) or 'none installed'}), "
             "registered architecture")
    baselines = "baseline (baseline:nearest, baseline:morphological)"
    if not torch_installed():
        raise ValueError(f"unknown model {model!r}: {known} or {baselines}; the registered architectures "
                         f"(untrained) need PyTorch, which is not installed here: {TRAIN_EXTRA}")
    from .models import list_models

    if model not in list_models():
        raise ValueError(f"unknown model {model!r}: {known} ({', '.join(list_models())}) or {baselines}")
    LOGGER.warning("model %r is an untrained architecture (random weights): its depth is meaningless; "
                   "use it for timing only", model)
    reason = "requested"
    if backend == "auto":
        reason = "an untrained registered architecture runs on PyTorch (no checkpoint to export)"
        LOGGER.info("backend auto: torch (%s)", reason)
    return Engine.from_name(model, device=device, precision=precision, threads=threads, backend_reason=reason)
