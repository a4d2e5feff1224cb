"""A PyTorch model or checkpoint -> an ONNX file (`export_onnx`), checked against PyTorch, and the cache of the
checkpoints' exports (`cached_export`). Needs PyTorch and onnx (the `train` extra); the files it writes run
without them (`runtime.onnx_runtime`)."""
from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..models import cdspn
from ..models.layout import RefinementLayout
from . import LOGGER_NAME
from .onnx_files import (
    INPUT_NAMES, META_ARCHITECTURE, META_CHECKPOINT_METADATA, META_CHECKPOINT_SHA256, META_KWARGS, META_REFINEMENT,
    OUTPUT_NAME, ExportError, file_sha256, onnx_cache_path,
)
from .onnx_runtime import OnnxRuntime, open_session, run_session
from .spec import DEFAULT_OPSET, KITTI_SIZE, Device

LOGGER = logging.getLogger(LOGGER_NAME)

# Example size traced for cached exports: H and W are dynamic axes, so a small trace serves every size.
# Not a multiple of 16 or 32, so that a model which pads "only when needed" traces its padding path.
CACHE_EXPORT_SIZE = (100, 330)
# export_onnx's self-check: a small input of another size than the example; tolerance in metres.
EXPORT_CHECK_SIZE = (37, 53)
EXPORT_CHECK_ATOL_M = 1e-3
EXPORT_CHECK_RTOL = 1e-4


class _DepthOnly(nn.Module):
    """Wraps a model so the exported graph has exactly (rgb, sparse_depth) -> depth."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor, sparse_depth: torch.Tensor) -> torch.Tensor:
        return self.model(rgb, sparse_depth)


def example_inputs(height: int, width: int, batch: int = 1, density: float = 0.05, seed: int = 0,
                   device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random (rgb [B,3,H,W] in 0..1, sparse [B,1,H,W] metres) with about `density` of pixels measured.

    The sparse map imitates a projected LiDAR scan: depths of 1..80 m on a random subset of pixels.
    """
    if height < 1 or width < 1 or batch < 1:
        raise ValueError(f"example size must be positive, got batch={batch} height={height} width={width}")
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.rand(batch, 3, height, width, generator=generator)
    depth = 1.0 + 79.0 * torch.rand(batch, 1, height, width, generator=generator)
    measured = torch.rand(batch, 1, height, width, generator=generator) < density
    sparse = torch.where(measured, depth, torch.zeros(()))
    return rgb.to(device), sparse.to(device)


def export_onnx(model_or_checkpoint_path: nn.Module | str | Path, out_path: str | Path,
                opset: int = DEFAULT_OPSET, dynamic_hw: bool = True,
                example_size: tuple[int, int] = KITTI_SIZE, check: bool = True, refinement: str = "graph") -> Path:
    """Export a model (in memory, or a checkpoint file) to ONNX with inputs "rgb", "sparse_depth" and
    output "depth"; batch is a dynamic axis, and so are height and width when `dynamic_hw`.

    refinement "graph": the whole network. "fused" (CDSPN only): the graph stops before DA-CSPN++'s
    propagation and returns its inputs (`cdspn.RefinementInputs`, outputs named by its layout, which the
    metadata records); `Engine` runs the propagation with `models.dacspn_cpu` (fused loops, several times
    faster on a CPU than the propagation as graph operators). Such a file needs this package to run.

    Uses the TorchScript-based exporter (`dynamo=False`), which needs no extra package. The graph is
    traced in fp32 on the CPU from a copy, so the caller's model is left untouched. The architecture
    name and its kwargs go into the ONNX metadata (`onnx_files.read_onnx_architecture`); exported from a
    checkpoint file, also the file's SHA-256 and its metadata, so that the engine runs the file in the
    checkpoint's place without PyTorch (`onnx_files.onnx_files_beside`). Returns the written path.

    With `check` (and dynamic H/W), the graph is run with onnxruntime on a small input of another size
    than the example and compared with PyTorch before the file is written: tracing records one path
    through the model, so a size-dependent Python branch (say, padding only when the size needs it)
    would otherwise yield a graph that fails or differs at other sizes. A mismatch raises ExportError.
    """
    import onnx

    from ..models.checkpoint import load_model

    if len(example_size) != 2 or min(example_size) < 1:
        raise ValueError(f"example_size must be (height, width) with positive values, got {example_size}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        raise ValueError(f"ONNX opset must be an integer >= 13, got {opset!r}")
    recorded = {}
    if isinstance(model_or_checkpoint_path, nn.Module):
        source = getattr(model_or_checkpoint_path, "module", model_or_checkpoint_path)  # unwrap DDP
        model = copy.deepcopy(source)
        architecture = getattr(source, "architecture", type(source).__name__)
        arch_kwargs = dict(getattr(source, "arch_kwargs", {}))
    else:
        model, checkpoint = load_model(model_or_checkpoint_path)
        architecture, arch_kwargs = checkpoint.architecture, checkpoint.kwargs
        recorded = {META_CHECKPOINT_SHA256: file_sha256(model_or_checkpoint_path),
                    META_CHECKPOINT_METADATA: json.dumps(checkpoint.metadata, sort_keys=True, default=str)}
    model = model.to(device="cpu", dtype=torch.float32).eval()
    layout = None
    if refinement == "fused":
        if not isinstance(model, cdspn.CDSPN):
            raise ValueError(f"refinement 'fused' needs a CDSPN (DA-CSPN++ refinement); {architecture} has none")
        wrapper = cdspn.RefinementInputs(model).eval()
        layout = wrapper.layout
        output_names = layout.names()
    elif refinement == "graph":
        wrapper = _DepthOnly(model).eval()
        output_names = [OUTPUT_NAME]
    else:
        raise ValueError(f"refinement must be 'graph' or 'fused' for an export, got {refinement!r}")
    rgb, sparse = example_inputs(*example_size)

    def axes(name: str) -> dict:
        # The refinement's inputs (other than "depth") lie on padded or feature grids: their own sizes.
        prefix = "" if name in (*INPUT_NAMES, OUTPUT_NAME) else f"{name}_"
        return {0: "batch", 2: f"{prefix}height", 3: f"{prefix}width"} if dynamic_hw else {0: "batch"}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings(record=True) as caught, torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("always")
            torch.onnx.export(
                wrapper, (rgb, sparse), str(tmp_path), dynamo=False, opset_version=opset,
                input_names=list(INPUT_NAMES), output_names=output_names,
                dynamic_axes={name: axes(name) for name in (*INPUT_NAMES, *output_names)},
                do_constant_folding=True,
            )
        # Tracer warnings mean a Python value was frozen from the example input: with dynamic H/W this
        # can bake in a padding amount, so surface them instead of dropping them with the rest.
        tracer_messages: dict[str, int] = {}
        for warning in caught:
            if issubclass(warning.category, torch.jit.TracerWarning):
                message = f"{warning.message} ({Path(warning.filename).name}:{warning.lineno})"
                tracer_messages[message] = tracer_messages.get(message, 0) + 1
            elif not issubclass(warning.category, DeprecationWarning):  # the legacy exporter's own notice
                LOGGER.debug("ONNX export of %s: %s", architecture, warning.message)
        for message, count in tracer_messages.items():
            LOGGER.warning("ONNX export of %s: %s%s", architecture, message, f" [x{count}]" if count > 1 else "")
        graph = onnx.load(str(tmp_path))
        meta = {META_ARCHITECTURE: architecture,
                META_KWARGS: json.dumps(arch_kwargs, sort_keys=True, default=str), **recorded}
        if layout is not None:
            meta[META_REFINEMENT] = json.dumps(layout.to_dict(), sort_keys=True)
        for key, value in meta.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        graph.producer_name = "depth_completion_ros"
        graph.producer_version = __version__
        onnx.save(graph, str(tmp_path))
        if check and dynamic_hw:
            _check_export(model, tmp_path, architecture, example_size, layout)
        tmp_path.replace(out_path)  # atomic: a reader never sees a half-written file
    finally:
        tmp_path.unlink(missing_ok=True)
    LOGGER.info("exported %s to %s (opset %d, %s H/W%s)", architecture, out_path, opset,
                "dynamic" if dynamic_hw else "fixed", ", propagation outside the graph" if layout else "")
    return out_path


def _check_export(model: nn.Module, onnx_path: Path, architecture: str, example_size: tuple[int, int],
                  layout: RefinementLayout | None = None) -> None:
    """Raise ExportError when the graph at `onnx_path` (with its propagation outside for a `layout`) fails or
    differs from `model` at another size."""
    height, width = EXPORT_CHECK_SIZE if tuple(example_size) != EXPORT_CHECK_SIZE else other_size(*example_size)
    rgb, sparse = example_inputs(height, width, batch=2, seed=1)
    with torch.inference_mode():
        reference = model(rgb, sparse)
    try:
        # Fatal-only logging: a failure is reported once, in the ExportError below.
        session = open_session(onnx_path, Device("cpu"), log_severity=4, spinning=layout is None)
        exported = run_session(session, layout, rgb.numpy(), sparse.numpy())
    except Exception as error:  # onnxruntime's error types do not share a useful base class
        raise ExportError(f"the ONNX graph of {architecture} traced at {example_size[0]}x{example_size[1]} "
                          f"fails at {height}x{width}: a size was probably frozen by tracing (see the tracer "
                          f"warnings); onnxruntime: {error}") from error
    reference = reference.numpy()
    if exported.shape != reference.shape:
        raise ExportError(f"the ONNX graph of {architecture} returns shape {exported.shape} for a {height}x{width} "
                          f"input, PyTorch {reference.shape}")
    difference = float(np.abs(exported - reference).max())
    tolerance = EXPORT_CHECK_ATOL_M + EXPORT_CHECK_RTOL * float(np.abs(reference).max())
    if not difference <= tolerance:  # also catches NaN
        raise ExportError(f"the ONNX graph of {architecture} traced at {example_size[0]}x{example_size[1]} differs "
                          f"from PyTorch by {difference:.3g} m at {height}x{width} (tolerance {tolerance:.3g} m): "
                          "a size-dependent branch was probably frozen by tracing")


def cached_export(checkpoint_path: str | Path, opset: int, remember_failure: bool, refinement: str = "graph",
                  sha256: str | None = None) -> Path:
    """The cached ONNX export of a checkpoint (`onnx_cache_path`), exported now when absent. With
    `remember_failure`, a failed export leaves `<cache>.failed` with its reason, and later calls raise that
    reason without exporting."""
    onnx_path = onnx_cache_path(checkpoint_path, opset, refinement, sha256=sha256)
    if onnx_path.is_file():
        return onnx_path
    failed = onnx_path.with_name(onnx_path.name + ".failed")
    if remember_failure and failed.is_file():
        raise ExportError(f"an earlier ONNX export failed ({failed}; delete it to retry): "
                          f"{failed.read_text(encoding='utf-8').strip()}")
    LOGGER.info("exporting %s to ONNX cache %s", checkpoint_path, onnx_path)
    try:
        export_onnx(checkpoint_path, onnx_path, opset=opset, example_size=CACHE_EXPORT_SIZE, refinement=refinement)
    except Exception as error:
        if remember_failure:
            try:
                failed.parent.mkdir(parents=True, exist_ok=True)
                failed.write_text(f"{type(error).__name__}: {error}\n", encoding="utf-8")
            except OSError:  # an unwritable cache only costs the retry
                pass
        raise
    return onnx_path


def refinements_beside(model: nn.Module) -> tuple[str, ...]:
    """The graphs a checkpoint ships beside it (`onnx_files.onnx_beside`): the whole network, and for a CDSPN
    also the graph that stops before DA-CSPN++'s propagation (numba's fused loops finish it)."""
    return ("graph", "fused") if isinstance(model, cdspn.CDSPN) else ("graph",)


def max_abs_difference_to_torch(model: nn.Module, onnx_path: str | Path, height: int, width: int,
                                seed: int = 0) -> float:
    """Largest |ONNX - PyTorch| depth (metres) over one random input of this size, both in fp32 on the CPU (the
    ONNX file as the engine runs it: a fused graph with its propagation)."""
    from . import resolve
    from .torch_runtime import TorchRuntime

    rgb, sparse = example_inputs(height, width, seed=seed)
    model = copy.deepcopy(getattr(model, "module", model))
    reference = TorchRuntime(resolve.for_model(model, device="cpu", precision="fp32"), model).run(rgb, sparse)
    exported = OnnxRuntime(resolve.for_onnx(onnx_path, device="cpu")).run(rgb.numpy(), sparse.numpy())
    return float(np.abs(reference.numpy() - exported).max())


def other_size(height: int, width: int) -> tuple[int, int]:
    """A size clearly different from (height, width) and not a multiple of common network strides,
    for checking that an export with dynamic H/W does not bake in the example's padding."""
    return max(height - height // 4 + 1, 9), max(width - width // 4 + 3, 11)


__all__ = ("CACHE_EXPORT_SIZE", "ExportError", "cached_export", "example_inputs", "export_onnx",
           "max_abs_difference_to_torch", "other_size")
