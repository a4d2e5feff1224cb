"""The deployable inference engine: model loading, device and precision choice, ONNX export and run.

`Engine` turns (RGB image, sparse depth) into dense depth with any registered model, on CUDA or CPU,
in fp32 or fp16 autocast, through PyTorch or onnxruntime, behind one `predict` call:

    engine = Engine.from_checkpoint("models/cdspn_x32.pt")      # device and precision chosen for you
    dense = engine.predict(rgb_uint8_hxwx3, sparse_hxw_metres)  # (H, W) float32 metres

Choices made here, so callers need not repeat them:

- device "auto" uses CUDA when PyTorch sees it, else the CPU with a logged warning. Asking for "cuda"
  where CUDA is absent also falls back to the CPU with a warning instead of failing, so one launch
  file serves a laptop and a robot; check `engine.device` when the difference matters.
- precision "auto" is fp16 autocast on CUDA and fp32 on the CPU. "fp16" on the CPU falls back to fp32
  with a warning: half-precision convolutions on the CPU are slow or unsupported, and bf16 would change
  the numbers without a reliable speed-up on CPUs without bf16 units. The output is float32 always.
- the ONNX backend runs the fp32 graph (precision "fp16" falls back to fp32 with a warning), or an int8
  graph given as `onnx_path` (`dcros export --int8`, `quantization.py`; `engine.precision` is then
  "int8"). Without an explicit `onnx_path`, `Engine.from_checkpoint(..., backend="onnx")` exports the
  checkpoint once to a cache file keyed by the checkpoint's content hash (see `onnx_cache_path`) and
  reuses it afterwards.
- backend "auto" (`choose_backend`) runs PyTorch on CUDA, and on the CPU ONNX Runtime for the
  architectures measured faster with it (`ONNX_FASTER_ON_CPU`) when onnxruntime and onnx are installed;
  an export or session failure falls back to PyTorch. The choice and its reason are logged and kept in
  `engine.backend_reason`; `engine.backend` names the runtime that actually runs.
- refinement "auto" (a CDSPN on the CPU, numba running): the network stops before DA-CSPN++'s propagation
  (ONNX Runtime: the cached export ends there; PyTorch: `forward(refinement_inputs=True)`), which
  `models.dacspn_cpu` runs as fused loops (same depth to float rounding; 1.3-1.8x the whole graph end to
  end, `benchmarks/results/cpu_speed.md`). `engine.refinement` says "fused" or "graph".
- threads: 0 ("auto") uses the cores this process may run on (`available_cores`, affinity-aware) for
  PyTorch's intra-op pool (set around each call, so other torch work in the process keeps its own
  setting) or ONNX Runtime's intra-op pool, with one inter-op thread; a positive number overrides it;
  None leaves the libraries' own defaults.
- sparse depth values that are NaN or infinite count as "no measurement" (0), matching REP 118's NaN
  convention for invalid depth.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from . import __version__
from .models import build_model
from .models import cdspn, lspkd
from .models.checkpoint import load_checkpoint, load_model, model_from_checkpoint
from .models.dacspn import RefinementLayout

LOGGER = logging.getLogger(__name__)

INPUT_NAMES = ("rgb", "sparse_depth")
OUTPUT_NAME = "depth"
DEFAULT_OPSET = 17
KITTI_SIZE = (352, 1216)  # (height, width) of the usual bottom crop
# Example size traced for cached exports: H and W are dynamic axes, so a small trace serves every size.
# Not a multiple of 16 or 32, so that a model which pads "only when needed" traces its padding path.
CACHE_EXPORT_SIZE = (100, 330)
# export_onnx's self-check: a small input of another size than the example; tolerance in metres.
EXPORT_CHECK_SIZE = (37, 53)
EXPORT_CHECK_ATOL_M = 1e-3
EXPORT_CHECK_RTOL = 1e-4
_ONNX_META_ARCHITECTURE = "depth_completion_ros.architecture"
_ONNX_META_KWARGS = "depth_completion_ros.kwargs"
# Present in a graph that stops before DA-CSPN++'s propagation (`refinement="fused"`): its RefinementLayout.
_ONNX_META_REFINEMENT = "depth_completion_ros.refinement_outside"
REFINEMENTS = ("auto", "graph", "fused")
_PRECISIONS = ("auto", "fp32", "fp16")
_BACKENDS = ("auto", "torch", "onnx")
# Architectures that ONNX Runtime runs faster than PyTorch on the CPU, with the evidence: median ms/frame
# at 1216x352, (PyTorch, ONNX Runtime), fp32, the same input, timed in turns by benchmarks/bench_inference.py
# (benchmarks/results/inference_cpu.json: a 2-core AMD EPYC, Zen 4). Every registered architecture was
# faster with ONNX Runtime there, in each of three runs (1.2-4.3x; the LSPKD teacher gains least).
# Backend "auto" takes ONNX Runtime on the CPU for these only; an architecture missing here keeps PyTorch.
# A table, not a timing at start-up: a measurement at warm-up would cost an export and several frames of
# each runtime at every start, and on a busy machine it would pick by the load of the moment.
ONNX_FASTER_ON_CPU: dict[str, tuple[float, float]] = {
    "cdspn_x32": (1749.0, 1077.0),
    "cdspn_x64": (3158.0, 1695.0),
    "cdspn_x96": (6023.0, 2578.0),
    "lspkd_student": (760.0, 472.0),
    "lspkd_student_nyu": (228.0, 101.0),
    "lspkd_teacher": (3509.0, 2796.0),
}
# Size multiple the networks pad their input to (their total stride); 32 for an unknown one.
_SIZE_MULTIPLES = (("cdspn_", cdspn.STRIDE_MULTIPLE), ("lspkd_", lspkd.SIZE_MULTIPLE))
DEFAULT_SIZE_MULTIPLE = 32
_interop_configured = False


# --------------------------------------------------------------------------- device and precision

def resolve_device(requested: str | torch.device = "auto") -> torch.device:
    """Map "auto", "cpu", "cuda" or "cuda:N" to a usable torch.device; CUDA falls back to CPU with a warning."""
    if isinstance(requested, torch.device):
        requested = str(requested)
    if not isinstance(requested, str):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {requested!r}")
    name = requested.strip().lower()
    if name == "cpu":
        return torch.device("cpu")
    if name != "auto" and not (name == "cuda" or name.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {requested!r}")
    if not torch.cuda.is_available():
        LOGGER.warning("CUDA is not available (device %r requested); running on the CPU", requested)
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device())
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {requested!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def resolve_precision(requested: str, device: torch.device, backend: str = "torch") -> str:
    """Map "auto"/"fp32"/"fp16" to what will actually run ("fp32" or "fp16") on `device` with `backend`."""
    if requested not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, got {requested!r}")
    if backend == "onnx":
        if requested == "fp16":
            LOGGER.warning("the ONNX backend runs the fp32 graph; precision 'fp16' falls back to fp32")
        return "fp32"
    if backend == "onnx-int8":  # the graph's own precision (`quantization.quantize_onnx`) decides
        if requested == "fp16":
            LOGGER.warning("the ONNX graph is int8; precision 'fp16' does not apply")
        return "int8"
    if requested == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if requested == "fp16" and device.type != "cuda":
        LOGGER.warning("fp16 is not used on the CPU (slow or unsupported convolutions); running in fp32")
        return "fp32"
    return requested


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask (taskset, cpusets), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int | None:
    """0 -> the cores available to the process; n >= 1 -> n; None -> None (library defaults)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be 0 (the cores available), a positive integer or None, got {threads!r}")
    return threads or available_cores()


def _configure_torch_interop(threads: int | None) -> None:
    """One inter-op thread: a single network runs its operators one after another, so a second pool
    would only hold idle threads. Torch accepts this once, before any inter-op work."""
    global _interop_configured
    if threads is None or _interop_configured:
        return
    _interop_configured = True
    if torch.get_num_interop_threads() == 1:
        return
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError as error:  # already started: harmless, the eager models do not use it
        LOGGER.debug("inter-op threads stay at %d: %s", torch.get_num_interop_threads(), error)


def onnx_runtime_available() -> str | None:
    """None when onnxruntime and onnx import, else why not (for the backend choice's log line)."""
    for name in ("onnxruntime", "onnx"):
        try:
            __import__(name)
        except ImportError as error:
            return f"{name} is not installed ({error})"
    return None


def architecture_size_multiple(architecture: str) -> int:
    """The multiple a network pads its input height and width to (its total stride)."""
    for prefix, multiple in _SIZE_MULTIPLES:
        if architecture.startswith(prefix):
            return multiple
    return DEFAULT_SIZE_MULTIPLE


def choose_backend(architecture: str, device: torch.device) -> tuple[str, str]:
    """("torch" or "onnx", reason) for backend "auto": PyTorch on CUDA; on the CPU, ONNX Runtime where it
    was measured faster for this architecture (`ONNX_FASTER_ON_CPU`) and is installed, else PyTorch."""
    if device.type != "cpu":
        return "torch", f"PyTorch on {device.type} (auto takes ONNX Runtime on the CPU only)"
    measured = ONNX_FASTER_ON_CPU.get(architecture)
    if measured is None:
        return "torch", f"ONNX Runtime is not measured faster than PyTorch for {architecture} on the CPU"
    missing = onnx_runtime_available()
    if missing:
        return "torch", f"{missing}; ONNX Runtime would be faster for {architecture} on the CPU"
    return "onnx", (f"ONNX Runtime on the CPU: measured {measured[0] / measured[1]:.1f}x faster than PyTorch "
                    f"for {architecture} ({measured[0]:.0f} vs {measured[1]:.0f} ms at 1216x352)")


# --------------------------------------------------------------------------- input checks

def _check_numpy_inputs(rgb: np.ndarray, sparse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate one (H,W,3) RGB image and one (H,W) sparse depth map; return float32 [1,3,H,W], [1,1,H,W]."""
    if not isinstance(sparse, np.ndarray):
        raise ValueError(f"rgb is a numpy array, so sparse depth must be one too, got {type(sparse).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be an (H, W, 3) RGB image, got shape {rgb.shape}")
    if sparse.ndim != 2:
        raise ValueError(f"sparse depth must be an (H, W) map in metres, got shape {sparse.shape}")
    if rgb.shape[:2] != sparse.shape:
        raise ValueError(f"rgb is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but sparse depth is "
                         f"{sparse.shape[0]}x{sparse.shape[1]}: they must be the same size")
    if rgb.dtype == np.uint8:
        rgb_float = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    elif np.issubdtype(rgb.dtype, np.floating):
        rgb_float = rgb.astype(np.float32, copy=False)
        # A float image in 0..255 is the commonest mistake; it would silently produce garbage depth.
        if rgb_float.size and float(np.nanmax(rgb_float)) > 1.0 + 1e-3:
            raise ValueError(f"float rgb must lie in 0..1, got values up to {float(np.nanmax(rgb_float)):.4g} "
                             "(pass uint8 for 0..255 images)")
    else:
        raise ValueError(f"rgb must be uint8 (0..255) or float (0..1), got dtype {rgb.dtype}")
    if not np.issubdtype(sparse.dtype, np.floating):
        raise ValueError(f"sparse depth must be float metres, got dtype {sparse.dtype} "
                         "(convert KITTI uint16 PNG values with value / 256)")
    sparse_float = np.nan_to_num(sparse.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    if sparse_float.size and float(sparse_float.min()) < 0.0:
        raise ValueError(f"sparse depth must be >= 0 metres (0 = no measurement), got {float(sparse_float.min()):.4g}")
    rgb_batch = np.ascontiguousarray(rgb_float.transpose(2, 0, 1)[None])
    sparse_batch = np.ascontiguousarray(sparse_float[None, None])
    return rgb_batch, sparse_batch


def _check_torch_inputs(rgb: torch.Tensor, sparse: torch.Tensor) -> None:
    """Validate batched tensors rgb [B,3,H,W] float 0..1 and sparse [B,1,H,W] float metres."""
    if not isinstance(sparse, torch.Tensor):
        raise ValueError(f"rgb is a torch tensor, so sparse depth must be one too, got {type(sparse).__name__}")
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb tensor must be [B, 3, H, W], got shape {tuple(rgb.shape)}")
    if sparse.ndim != 4 or sparse.shape[1] != 1:
        raise ValueError(f"sparse depth tensor must be [B, 1, H, W], got shape {tuple(sparse.shape)}")
    if rgb.shape[0] != sparse.shape[0]:
        raise ValueError(f"rgb has batch size {rgb.shape[0]} but sparse depth has {sparse.shape[0]}")
    if rgb.shape[2:] != sparse.shape[2:]:
        raise ValueError(f"rgb is {rgb.shape[2]}x{rgb.shape[3]} (HxW) but sparse depth is "
                         f"{sparse.shape[2]}x{sparse.shape[3]}: they must be the same size")
    if not rgb.is_floating_point():
        raise ValueError(f"rgb tensor must be float in 0..1, got dtype {rgb.dtype}")
    if not sparse.is_floating_point():
        raise ValueError(f"sparse depth tensor must be float metres, got dtype {sparse.dtype}")


# --------------------------------------------------------------------------- ONNX export

class ExportError(ValueError):
    """An exported ONNX graph does not reproduce the PyTorch model (e.g. a size frozen by tracing)."""


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
    name and its kwargs go into the ONNX metadata (`read_onnx_architecture`). Returns the written path.

    With `check` (and dynamic H/W), the graph is run with onnxruntime on a small input of another size
    than the example and compared with PyTorch before the file is written: tracing records one path
    through the model, so a size-dependent Python branch (say, padding only when the size needs it)
    would otherwise yield a graph that fails or differs at other sizes. A mismatch raises ExportError.
    """
    import onnx

    if len(example_size) != 2 or min(example_size) < 1:
        raise ValueError(f"example_size must be (height, width) with positive values, got {example_size}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        raise ValueError(f"ONNX opset must be an integer >= 13, got {opset!r}")
    if isinstance(model_or_checkpoint_path, nn.Module):
        source = getattr(model_or_checkpoint_path, "module", model_or_checkpoint_path)  # unwrap DDP
        model = copy.deepcopy(source)
        architecture = getattr(source, "architecture", type(source).__name__)
        arch_kwargs = dict(getattr(source, "arch_kwargs", {}))
    else:
        model, checkpoint = load_model(model_or_checkpoint_path)
        architecture, arch_kwargs = checkpoint.architecture, checkpoint.kwargs
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
        meta = {_ONNX_META_ARCHITECTURE: architecture,
                _ONNX_META_KWARGS: json.dumps(arch_kwargs, sort_keys=True, default=str)}
        if layout is not None:
            meta[_ONNX_META_REFINEMENT] = json.dumps(layout.to_dict(), sort_keys=True)
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
        session = _onnx_session(onnx_path, torch.device("cpu"), log_severity=4, spinning=layout is None)
        exported = _run_session(session, layout, rgb.numpy(), sparse.numpy())
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


def _run_session(session, layout: RefinementLayout | None, rgb: np.ndarray, sparse: np.ndarray,
                 finish=None) -> np.ndarray:
    """Depth [B,1,H,W] from an onnxruntime session of an `export_onnx` graph: its output, or with a
    refinement `layout` its outputs propagated by `finish(outputs, height, width)` (default:
    `dacspn_cpu.depth_from_refinement_inputs` with fresh buffers)."""
    feeds = {INPUT_NAMES[0]: rgb, INPUT_NAMES[1]: sparse}
    if layout is None:
        return session.run([OUTPUT_NAME], feeds)[0]
    flat = session.run(layout.names(), feeds)
    if finish is None:
        from .models import dacspn_cpu

        return dacspn_cpu.depth_from_refinement_inputs(flat, layout, rgb.shape[2], rgb.shape[3])
    return finish(flat, rgb.shape[2], rgb.shape[3])


def read_onnx_refinement(onnx_path: str | Path) -> RefinementLayout | None:
    """The refinement layout of a graph exported with `refinement="fused"`, else None."""
    meta = read_onnx_metadata(onnx_path)
    if _ONNX_META_REFINEMENT not in meta:
        return None
    return RefinementLayout.from_dict(json.loads(meta[_ONNX_META_REFINEMENT]))


def read_onnx_metadata(onnx_path: str | Path) -> dict:
    """The metadata properties ({key: value}) of an ONNX file."""
    import onnx

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    graph = onnx.load(str(onnx_path), load_external_data=False)
    return {entry.key: entry.value for entry in graph.metadata_props}


def read_onnx_architecture(onnx_path: str | Path) -> tuple[str | None, dict]:
    """(architecture name, kwargs) stored by `export_onnx` in an ONNX file; (None, {}) for other files."""
    meta = read_onnx_metadata(onnx_path)
    kwargs = json.loads(meta[_ONNX_META_KWARGS]) if _ONNX_META_KWARGS in meta else {}
    return meta.get(_ONNX_META_ARCHITECTURE), kwargs


def _onnx_precision_backend(onnx_path: str | Path) -> str:
    """"onnx-int8" for a graph `quantization.quantize_onnx` wrote, else "onnx" (for `resolve_precision`)."""
    from .quantization import META_PRECISION

    return "onnx-int8" if read_onnx_metadata(onnx_path).get(META_PRECISION) == "int8" else "onnx"


def model_code_digest(folder: str | Path | None = None) -> str:
    """SHA-256 (first 16 hex digits) of the network code (`depth_completion_ros/models/*.py`, or `folder`'s):
    an exported graph depends on it as much as on the weights."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent / "models"
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def onnx_cache_path(checkpoint_path: str | Path, opset: int = DEFAULT_OPSET, refinement: str = "graph") -> Path:
    """Where `Engine.from_checkpoint(backend="onnx")` keeps the exported graph of a checkpoint (for
    `refinement` "fused", the graph without the propagation, see `export_onnx`).

    `$DCROS_CACHE_DIR`, else `$XDG_CACHE_HOME/depth_completion_ros`, else `~/.cache/depth_completion_ros`;
    the file name holds the checkpoint's SHA-256, the opset, the package version and a digest of the
    network code, so a changed checkpoint, a new release or changed network code (an editable install)
    never reuses a stale graph.
    """
    checkpoint_path = Path(checkpoint_path)
    digest = hashlib.sha256()
    with open(checkpoint_path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    root = os.environ.get("DCROS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "depth_completion_ros")
    name = (f"{checkpoint_path.stem}-{digest.hexdigest()[:16]}-opset{opset}-v{__version__}"
            f"-code{model_code_digest()}{'-fused' if refinement == 'fused' else ''}.onnx")
    return Path(root) / "onnx" / name


def _onnx_session(onnx_path: Path, device: torch.device, log_severity: int = 3, threads: int | None = None,
                  spinning: bool = True):
    """An onnxruntime session on CUDA when `device` is CUDA and the CUDA provider exists, else on the CPU.
    `log_severity`: onnxruntime's own logging threshold (3 = errors, 4 = fatal only); `threads`: intra-op
    threads (None: onnxruntime's default), with one inter-op thread. `spinning=False` for a graph whose
    propagation runs outside (`read_onnx_refinement`): idle intra-op threads that spin after a run would
    hold the cores the propagation needs next (measured: its time 86 -> 66 ms, lite CDSPN, 2 cores)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" in available:
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        else:
            LOGGER.warning("onnxruntime has no CUDAExecutionProvider (installed: %s); running ONNX on the CPU",
                           ", ".join(available))
    options = ort.SessionOptions()
    options.log_severity_level = log_severity  # the providers' notices are not actionable
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
    names = [node.name for node in session.get_inputs()]
    if names != list(INPUT_NAMES):
        raise ValueError(f"{onnx_path}: ONNX inputs are {names}, expected {list(INPUT_NAMES)} "
                         "(export it with `dcros export`)")
    return session


# --------------------------------------------------------------------------- the engine

class Engine:
    """Runs a depth-completion model for inference: (RGB, sparse depth) -> dense depth in metres.

    Build it with `from_checkpoint`, `from_model`, `from_name` or `from_onnx`, not directly.
    """

    def __init__(self, *, model: nn.Module | None, session: Any | None, device: torch.device,
                 precision: str, backend: str, architecture: str, kwargs: dict, metadata: dict,
                 onnx_path: Path | None = None, threads: int | None = None, backend_reason: str = "requested",
                 refinement_layout: RefinementLayout | None = None):
        if (model is None) == (session is None):
            raise ValueError("an Engine needs exactly one of a torch model or an onnxruntime session")
        self._model = model
        self._session = session
        self._device = device
        self._precision = precision
        self._backend = backend
        self._architecture = architecture
        self._kwargs = dict(kwargs)
        self._metadata = dict(metadata)
        self._onnx_path = onnx_path
        self._threads = threads
        self._backend_reason = backend_reason
        self._refinement_layout = refinement_layout
        self._workspace = None
        if refinement_layout is not None:
            from .models import dacspn_cpu

            self._workspace = dacspn_cpu.Workspace()  # the propagation's planes, reused frame to frame
        self._workspace_lock = threading.Lock()
        if model is not None:
            model.eval()
            # channels-last suits cuDNN and oneDNN alike (measured 1.3x on CDSPN on the CPU, 2.5x on its backbone).
            model.to(device, memory_format=torch.channels_last)
            _configure_torch_interop(threads)

    # ----- constructors

    @classmethod
    def from_model(cls, model: nn.Module, device: str | torch.device = "auto",
                   precision: str = "auto", threads: int | None = None,
                   backend_reason: str = "requested") -> "Engine":
        """Wrap a model in memory (e.g. freshly trained). The engine takes it over: it is moved to the
        engine's device and put in eval mode (call `model.train()` again before more training).
        `threads`: CPU threads of its calls (0 = the cores available, None = torch's current setting)."""
        model = getattr(model, "module", model)  # unwrap DistributedDataParallel
        torch_device = resolve_device(device)
        return cls(model=model, session=None, device=torch_device,
                   precision=resolve_precision(precision, torch_device), backend="torch",
                   architecture=getattr(model, "architecture", type(model).__name__),
                   kwargs=dict(getattr(model, "arch_kwargs", {})), metadata={}, threads=resolve_threads(threads),
                   backend_reason=backend_reason)

    @classmethod
    def from_name(cls, name: str, device: str | torch.device = "auto", precision: str = "auto",
                  seed: int = 0, threads: int | None = None, backend_reason: str = "requested",
                  **model_kwargs) -> "Engine":
        """An untrained registered model (for benchmarks and tests); `seed` fixes its initial weights."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(name, **model_kwargs)
        return cls.from_model(model, device=device, precision=precision, threads=threads,
                              backend_reason=backend_reason)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", precision: str = "auto",
                        backend: str = "torch", onnx_path: str | Path | None = None,
                        opset: int = DEFAULT_OPSET, threads: int | None = None,
                        refinement: str = "auto") -> "Engine":
        """Load a project checkpoint (architecture, kwargs and weights come from the file).

        backend "onnx": runs `onnx_path` with onnxruntime (it must exist and, when it carries
        architecture metadata, match the checkpoint); without `onnx_path` the checkpoint is exported
        once to `onnx_cache_path(path, opset)` and the cached file is reused on later loads.
        backend "auto": `choose_backend` decides (an explicit `onnx_path` counts as a request for ONNX
        Runtime on the CPU); when the ONNX path fails (export, graph check, session), it logs why and
        loads the checkpoint into PyTorch. A failed cache export is remembered beside the cache file
        (`<cache>.failed`, delete it to retry) so that later loads do not pay for the export again.
        threads: CPU threads (0 = the cores available to the process, None = the libraries' defaults).
        refinement: "fused" runs a CDSPN up to DA-CSPN++'s propagation (ONNX Runtime: the cached export
        stops there; PyTorch: `forward(refinement_inputs=True)`) and the propagation with
        `models.dacspn_cpu` (same depth to float rounding, several times faster on a CPU); "graph" the
        whole network in the runtime; "auto" fuses for a CDSPN on the CPU when numba runs. An explicit
        `onnx_path` runs as it was exported.
        """
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(_BACKENDS)}, got {backend!r}")
        torch_device = resolve_device(device)
        threads = resolve_threads(threads)
        reason = "requested"
        checkpoint = load_checkpoint(path)  # read once, whichever runtime runs it
        if backend == "auto":
            backend, reason = choose_backend(checkpoint.architecture, torch_device)
            if onnx_path is not None and torch_device.type == "cpu":
                missing = onnx_runtime_available()
                backend, reason = ("torch", f"onnx_path given but {missing}") if missing else (
                    "onnx", f"ONNX Runtime on the CPU: onnx_path {onnx_path} given")
            elif onnx_path is not None:
                LOGGER.info("backend auto: onnx_path %s is not used on %s", onnx_path, torch_device)
            if backend == "onnx":
                try:
                    engine = cls._onnx_from_checkpoint(path, checkpoint, torch_device, precision, onnx_path, opset,
                                                       threads, reason, remember_failure=True, refinement=refinement)
                    LOGGER.info("backend auto: onnx (%s)", reason)
                    return engine
                except Exception as error:  # noqa: BLE001 - export and onnxruntime errors share no base class
                    reason = f"ONNX Runtime failed for {Path(path).name}, PyTorch instead: {error}"
                    LOGGER.warning("backend auto: %s", reason)
                    backend = "torch"
            else:
                LOGGER.info("backend auto: torch (%s)", reason)
        if backend == "torch":
            model = model_from_checkpoint(checkpoint, path)
            fused = _resolve_refinement(refinement, checkpoint.architecture, torch_device) == "fused"
            return cls(model=model, session=None, device=torch_device,
                       precision=resolve_precision(precision, torch_device, "torch"), backend="torch",
                       architecture=checkpoint.architecture, kwargs=checkpoint.kwargs,
                       metadata=checkpoint.metadata, threads=threads, backend_reason=reason,
                       refinement_layout=RefinementLayout.of(model.refinement) if fused else None)
        return cls._onnx_from_checkpoint(path, checkpoint, torch_device, precision, onnx_path, opset,
                                         threads, reason, remember_failure=False, refinement=refinement)

    @classmethod
    def _onnx_from_checkpoint(cls, path, checkpoint, torch_device: torch.device, precision: str,
                              onnx_path: str | Path | None, opset: int, threads: int | None, reason: str,
                              remember_failure: bool, refinement: str = "auto") -> "Engine":
        if onnx_path is None:
            refinement = _resolve_refinement(refinement, checkpoint.architecture, torch_device)
            onnx_path = _cached_export(path, opset, remember_failure, refinement)
        elif refinement not in REFINEMENTS:
            raise ValueError(f"refinement must be one of {', '.join(REFINEMENTS)}, got {refinement!r}")
        onnx_path = Path(onnx_path)
        stored_architecture, _ = read_onnx_architecture(onnx_path)
        if stored_architecture is not None and stored_architecture != checkpoint.architecture:
            raise ValueError(f"{onnx_path} holds {stored_architecture!r} but checkpoint {path} is "
                             f"{checkpoint.architecture!r}")
        layout = _usable_refinement(onnx_path)
        session = _onnx_session(onnx_path, torch_device, threads=threads, spinning=layout is None)
        return cls(model=None, session=session, device=torch_device,
                   precision=resolve_precision(precision, torch_device, _onnx_precision_backend(onnx_path)),
                   backend="onnx", architecture=checkpoint.architecture, kwargs=checkpoint.kwargs,
                   metadata=checkpoint.metadata, onnx_path=onnx_path, threads=threads, backend_reason=reason,
                   refinement_layout=layout)

    @classmethod
    def from_onnx(cls, onnx_path: str | Path, device: str | torch.device = "auto",
                  threads: int | None = None) -> "Engine":
        """Run an ONNX file written by `export_onnx` without its checkpoint (metadata stays empty)."""
        onnx_path = Path(onnx_path)
        architecture, kwargs = read_onnx_architecture(onnx_path)
        torch_device = resolve_device(device)
        threads = resolve_threads(threads)
        layout = _usable_refinement(onnx_path)
        session = _onnx_session(onnx_path, torch_device, threads=threads, spinning=layout is None)
        return cls(model=None, session=session, device=torch_device,
                   precision=resolve_precision("auto", torch_device, _onnx_precision_backend(onnx_path)),
                   backend="onnx", architecture=architecture or onnx_path.stem,
                   kwargs=kwargs, metadata={}, onnx_path=onnx_path, threads=threads, refinement_layout=layout)

    # ----- properties

    @property
    def architecture(self) -> str:
        """Registered model name (or the class name for an unregistered model)."""
        return self._architecture

    @property
    def kwargs(self) -> dict:
        """Arguments the architecture was built with."""
        return dict(self._kwargs)

    @property
    def metadata(self) -> dict:
        """Free-form metadata stored in the checkpoint (empty for models from memory)."""
        return dict(self._metadata)

    @property
    def device(self) -> torch.device:
        """Where inference runs (after any CUDA -> CPU fallback)."""
        return self._device

    @property
    def precision(self) -> str:
        """"fp32" or "fp16" (autocast), after any fallback."""
        return self._precision

    @property
    def backend(self) -> str:
        """"torch" or "onnx"."""
        return self._backend

    @property
    def backend_reason(self) -> str:
        """Why this backend runs: "requested", or backend "auto"'s reason (see `choose_backend`)."""
        return self._backend_reason

    @property
    def threads(self) -> int | None:
        """CPU intra-op threads of this engine's calls (None: the libraries' defaults)."""
        return self._threads

    @property
    def size_multiple(self) -> int:
        """The multiple the network pads its input to: an input of such a height or width costs no padding."""
        return architecture_size_multiple(self._architecture)

    @property
    def onnx_path(self) -> Path | None:
        """The ONNX file behind the "onnx" backend, else None."""
        return self._onnx_path

    @property
    def refinement(self) -> str:
        """"fused" when DA-CSPN++'s propagation runs outside the ONNX graph (`models.dacspn_cpu`), else
        "graph" (inside the network, whichever runtime runs it)."""
        return "graph" if self._refinement_layout is None else "fused"

    @property
    def model(self) -> nn.Module | None:
        """The torch model behind the "torch" backend, else None."""
        return self._model

    def __repr__(self) -> str:
        threads = "" if self._threads is None else f", threads={self._threads}"
        fused = "" if self._refinement_layout is None else ", refinement='fused'"
        return (f"Engine(architecture={self._architecture!r}, backend={self._backend!r}, "
                f"device={str(self._device)!r}, precision={self._precision!r}{threads}{fused})")

    # ----- inference

    def predict(self, rgb: np.ndarray | torch.Tensor, sparse: np.ndarray | torch.Tensor):
        """Dense depth in metres from an RGB image and sparse depth (metres, 0 = no measurement).

        numpy: rgb (H,W,3) uint8 0..255 or float 0..1, sparse (H,W) float -> (H,W) float32 numpy.
        torch: rgb [B,3,H,W] float 0..1, sparse [B,1,H,W] float -> [B,1,H,W] float32 on `self.device`.
        NaN/inf in sparse count as no measurement. Raises ValueError naming the problem for bad input.
        """
        if isinstance(rgb, np.ndarray):
            rgb_batch, sparse_batch = _check_numpy_inputs(rgb, sparse)
            if self._session is not None:
                return self._run_onnx(rgb_batch, sparse_batch)[0, 0]
            output = self._run_torch(torch.from_numpy(rgb_batch), torch.from_numpy(sparse_batch))
            return output[0, 0].cpu().numpy()
        if isinstance(rgb, torch.Tensor):
            _check_torch_inputs(rgb, sparse)
            sparse = torch.nan_to_num(sparse, nan=0.0, posinf=0.0, neginf=0.0)
            if self._session is not None:
                # onnxruntime takes host arrays; the result goes back to the engine's device.
                output = self._run_onnx(rgb.detach().float().cpu().numpy(), sparse.detach().float().cpu().numpy())
                output = torch.from_numpy(output).to(self._device)
                self._synchronize()
                return output
            return self._run_torch(rgb, sparse)
        raise ValueError(f"rgb must be a numpy array or a torch tensor, got {type(rgb).__name__}")

    def _run_torch(self, rgb: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        memory_format = torch.channels_last
        rgb = rgb.to(self._device, dtype=torch.float32, non_blocking=True).contiguous(memory_format=memory_format)
        sparse = sparse.to(self._device, dtype=torch.float32, non_blocking=True).contiguous(memory_format=memory_format)
        with torch.inference_mode(), _torch_threads(self._threads if self._device.type == "cpu" else None), \
                torch.autocast(device_type=self._device.type, dtype=torch.float16, enabled=self._precision == "fp16"):
            if self._refinement_layout is not None:
                return self._run_torch_fused(rgb, sparse)
            output = self._model(rgb, sparse)
        if isinstance(output, (tuple, list)):  # a model that always returns (depth, features)
            output = output[0]
        output = output.float().contiguous()
        self._synchronize()
        return output

    def _run_torch_fused(self, rgb: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        flat = self._refinement_layout.flatten(*self._model(rgb, sparse, refinement_inputs=True))
        depth = self._finish_fused([tensor.float().cpu().numpy() for tensor in flat], rgb.shape[2], rgb.shape[3])
        output = torch.from_numpy(depth).to(self._device)
        self._synchronize()
        return output

    def _finish_fused(self, flat: list[np.ndarray], height: int, width: int) -> np.ndarray:
        """The propagation of a fused engine in its reused buffers (one call at a time)."""
        from .models import dacspn_cpu

        with self._workspace_lock:
            return dacspn_cpu.depth_from_refinement_inputs(flat, self._refinement_layout, height, width,
                                                           self._threads, self._workspace)

    def _run_onnx(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        try:
            output = _run_session(self._session, self._refinement_layout, rgb.astype(np.float32, copy=False),
                                  sparse.astype(np.float32, copy=False), self._finish_fused)
        except Exception as error:  # onnxruntime's error types do not share a useful base class
            runtime = "onnxruntime" if self._refinement_layout is None else "onnxruntime or the fused refinement"
            raise RuntimeError(f"{self._onnx_path}: {runtime} failed on a {rgb.shape[0]}x{rgb.shape[2]}x"
                               f"{rgb.shape[3]} (BxHxW) input (a graph exported with fixed H/W accepts only "
                               f"its example size): {error}") from error
        return np.asarray(output, dtype=np.float32)

    def _synchronize(self) -> None:
        # Results are complete when predict returns, so callers may time it and read it at once.
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def warmup(self, height: int, width: int, runs: int = 2, batch: int = 1) -> None:
        """Run `runs` predictions on random input of this size (kernel selection, allocator, caches),
        so that the first real frame is not slow."""
        if runs < 0:
            raise ValueError(f"warm-up runs must be >= 0, got {runs}")
        rgb, sparse = example_inputs(height, width, batch=batch, seed=0)
        for _ in range(runs):
            self.predict(rgb.to(self._device), sparse.to(self._device))


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """torch's intra-op threads set to `threads` for the duration (None: untouched), then restored."""
    previous = torch.get_num_threads()
    change = threads is not None and threads != previous
    if change:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(previous)


def _cached_export(checkpoint_path: str | Path, opset: int, remember_failure: bool, refinement: str = "graph") -> Path:
    """The cached ONNX export of a checkpoint, exported now when absent. With `remember_failure`, a failed
    export leaves `<cache>.failed` with its reason, and later calls raise that reason without exporting."""
    onnx_path = onnx_cache_path(checkpoint_path, opset, refinement)
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


def _resolve_refinement(refinement: str, architecture: str, device: torch.device) -> str:
    """"graph" or "fused" for a cached export (see `Engine.from_checkpoint`)."""
    from .models import dacspn_cpu

    if refinement not in REFINEMENTS:
        raise ValueError(f"refinement must be one of {', '.join(REFINEMENTS)}, got {refinement!r}")
    is_cdspn = architecture.startswith("cdspn_")
    if refinement == "fused":
        if not is_cdspn:
            raise ValueError(f"refinement 'fused' needs a CDSPN (DA-CSPN++ refinement); {architecture} has none")
        if dacspn_cpu.available() is not None:
            raise RuntimeError(f"refinement 'fused': {dacspn_cpu.available()}")
        return "fused"
    if refinement == "auto" and is_cdspn and device.type == "cpu":
        missing = dacspn_cpu.available()
        if missing is None:
            return "fused"
        LOGGER.info("DA-CSPN++ propagation stays in the ONNX graph: %s", missing)
    return "graph"


def _usable_refinement(onnx_path: Path) -> RefinementLayout | None:
    """The refinement layout of a fused graph, checked to be runnable here; None for a whole graph."""
    layout = read_onnx_refinement(onnx_path)
    if layout is not None:
        from .models import dacspn_cpu

        if dacspn_cpu.available() is not None:
            raise RuntimeError(f"{onnx_path} leaves DA-CSPN++'s propagation to numba: {dacspn_cpu.available()}")
    return layout


def max_abs_difference_to_torch(model: nn.Module, onnx_path: str | Path, height: int, width: int,
                                seed: int = 0) -> float:
    """Largest |ONNX - PyTorch| depth (metres) over one random input of this size, both in fp32 on the CPU."""
    rgb, sparse = example_inputs(height, width, seed=seed)
    reference = Engine.from_model(copy.deepcopy(getattr(model, "module", model)), device="cpu",
                                  precision="fp32").predict(rgb, sparse)
    exported = Engine.from_onnx(onnx_path, device="cpu").predict(rgb, sparse)
    return float((reference - exported).abs().max())


def other_size(height: int, width: int) -> tuple[int, int]:
    """A size clearly different from (height, width) and not a multiple of common network strides,
    for checking that an export with dynamic H/W does not bake in the example's padding."""
    return max(height - height // 4 + 1, 9), max(width - width // 4 + 3, 11)


__all__: Sequence[str] = ("Engine", "ExportError", "export_onnx", "read_onnx_architecture", "onnx_cache_path",
                          "resolve_device", "resolve_precision", "resolve_threads", "available_cores",
                          "choose_backend", "ONNX_FASTER_ON_CPU", "example_inputs",
                          "max_abs_difference_to_torch", "other_size", "INPUT_NAMES", "OUTPUT_NAME")
