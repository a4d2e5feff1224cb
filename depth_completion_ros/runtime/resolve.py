"""Settings -> `EngineSpec`: every choice of an engine made once, in order, before anything is built.

For a checkpoint (`for_checkpoint`):
1. device and threads (`spec.resolve_device`, `spec.resolve_threads`);
2. what describes the checkpoint (architecture, kwargs, metadata): an ONNX file exported from it that lies
   beside it (`onnx_files.onnx_files_beside`: the shipped models are installed so), read without PyTorch; else
   the checkpoint itself, which PyTorch reads;
3. the backend: as requested, or for "auto" `spec.choose_backend` (an explicit onnx_path on the CPU counts as a
   request for ONNX Runtime; on CUDA, ONNX Runtime where onnxruntime-gpu is installed; without PyTorch, ONNX
   Runtime);
4. backend "torch": the refinement (`spec.resolve_refinement`) and the precision;
5. backend "onnx": the graph: onnx_path where given; else the file beside the checkpoint for the refinement
   chosen; else (PyTorch installed) the cache of exports, exported when the engine is built; then the
   precision (the graph's: fp32 or int8; fp16 on CUDA through TensorRT) and the execution providers to ask
   onnxruntime for (`spec.gpu_providers`).

PyTorch is imported here only to read a checkpoint that no ONNX file describes (and by `spec.resolve_device`
to ask about CUDA where a GPU driver is present).
"""
from __future__ import annotations

import logging
from pathlib import Path

from . import LOGGER_NAME
from .onnx_files import (
    META_CHECKPOINT_SHA256, architecture_of, checkpoint_metadata_of, file_sha256, onnx_beside, onnx_cache_path,
    onnx_files_beside, precision_backend, read_onnx_metadata, refinement_of,
)
from .spec import (
    BACKENDS, DEFAULT_OPSET, REFINEMENTS, TRAIN_EXTRA, Device, EngineSpec, PyTorchRequired, choose_backend,
    gpu_providers, onnx_providers_available, onnx_runtime_available, provider_names, require_torch, resolve_device,
    resolve_precision, resolve_refinement, resolve_threads, torch_installed,
)

LOGGER = logging.getLogger(LOGGER_NAME)


class _Checkpoint:
    """A checkpoint file and what is known of it, each read at most once: its SHA-256, the ONNX files exported
    from it beside it, and (PyTorch) its contents (`loaded`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {self.path}")
        self.sha256 = file_sha256(self.path)
        self.beside = onnx_files_beside(self.path, self.sha256)
        self.loaded = None

    def load(self, what: str | None = None):
        """The checkpoint's contents (`models.checkpoint.Checkpoint`), read by PyTorch; `what` needs them (for
        the error where PyTorch is missing)."""
        if self.loaded is None:
            require_torch(what or f"checkpoint {self.path} (no ONNX file exported from it lies beside it as "
                                  f"{onnx_beside(self.path).name})")
            from ..models.checkpoint import load_checkpoint

            self.loaded = load_checkpoint(self.path)
        return self.loaded

    def describe(self) -> tuple[str, dict, dict]:
        """(architecture, kwargs, metadata): from an ONNX file beside it where there is one, else the checkpoint."""
        if self.beside:
            _, meta = next(iter(self.beside.values()))
            architecture, kwargs = architecture_of(meta)
            return architecture, kwargs, checkpoint_metadata_of(meta)
        loaded = self.load()
        return loaded.architecture, loaded.kwargs, loaded.metadata


def for_checkpoint(path: str | Path, device: str = "auto", precision: str = "auto", backend: str = "torch",
                   onnx_path: str | Path | None = None, opset: int = DEFAULT_OPSET, threads: int | None = None,
                   refinement: str = "auto"):
    """(EngineSpec, the checkpoint's contents where they were read, else None) for a checkpoint file; see
    `inference.Engine.from_checkpoint` for the arguments."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if refinement not in REFINEMENTS:
        raise ValueError(f"refinement must be one of {', '.join(REFINEMENTS)}, got {refinement!r}")
    device = resolve_device(device)
    threads = resolve_threads(threads)
    source = _Checkpoint(path)
    onnx_path = Path(onnx_path) if onnx_path is not None else None
    reason, fallback = "requested", False
    if backend == "auto":
        backend, reason, onnx_path = _auto_backend(source, device, onnx_path, precision, refinement)
        fallback = backend == "onnx" and torch_installed()
    if backend == "torch":
        loaded = source.load(f"backend 'torch' ({'requested' if reason == 'requested' else reason}) for "
                             f"checkpoint {source.path}")
        return EngineSpec(architecture=loaded.architecture, backend="torch", device=device,
                          precision=resolve_precision(precision, device, "torch"), kwargs=loaded.kwargs,
                          metadata=loaded.metadata,
                          refinement=resolve_refinement(refinement, loaded.architecture, device), threads=threads,
                          checkpoint_path=source.path, backend_reason=reason, opset=opset), loaded
    if onnx_path is not None:
        meta = read_onnx_metadata(onnx_path)
        architecture, kwargs, metadata = _describe_with(source, onnx_path, meta)
        graph, refinement, export = onnx_path, "fused" if refinement_of(meta) is not None else "graph", False
    else:
        architecture, kwargs, metadata = source.describe()
        graph, refinement, export = _graph_of(source, resolve_refinement(refinement, architecture, device),
                                              refinement, opset)
        meta = {} if export else read_onnx_metadata(graph)
        if reason != "requested" and any(graph == beside for beside, _ in source.beside.values()):
            reason += f"; runs {graph.name}, exported from the checkpoint"
    precision, providers = _onnx_precision(precision, device, meta)
    return EngineSpec(architecture=architecture, backend="onnx", device=device, precision=precision,
                      kwargs=kwargs, metadata=metadata, refinement=refinement, threads=threads, onnx_path=graph,
                      checkpoint_path=source.path, backend_reason=reason, export=export, opset=opset,
                      fallback=fallback, providers=providers), source.loaded


def _onnx_precision(requested: str, device: Device, meta: dict) -> tuple[str, tuple[str, ...]]:
    """(precision, execution providers) of an ONNX graph with metadata `meta` on `device`. onnxruntime is asked
    for its providers on CUDA only: on the CPU the answer is the CPU's provider whatever it holds."""
    available = onnx_providers_available() if device.type == "cuda" else ()
    precision = resolve_precision(requested, device, precision_backend(meta), available)
    return precision, provider_names(gpu_providers(available, device, precision))


def _auto_backend(source: _Checkpoint, device, onnx_path: Path | None, precision: str,
                  refinement: str) -> tuple[str, str, Path | None]:
    """(backend, reason, the onnx_path to run) for backend "auto"."""
    if onnx_path is not None and device.type == "cpu":
        missing = onnx_runtime_available()
        return ("torch", f"onnx_path given but {missing}", onnx_path) if missing else (
            "onnx", f"ONNX Runtime on the CPU: onnx_path {onnx_path} given", onnx_path)
    backend, reason = choose_backend(source.describe()[0], device, precision=precision)
    if onnx_path is not None and backend == "torch":
        LOGGER.info("backend auto: onnx_path %s is not used on %s", onnx_path, device)
    elif (onnx_path is not None and refinement != "fused"
          and refinement_of(read_onnx_metadata(onnx_path)) is not None):
        # A fused graph leaves DA-CSPN++'s propagation to numba on the CPU, its inputs crossing the bus every
        # frame: on a GPU the whole graph runs (beside the checkpoint, or exported).
        LOGGER.info("backend auto: onnx_path %s stops before DA-CSPN++'s propagation (run on the CPU); on %s the "
                    "whole graph runs instead", onnx_path, device)
        onnx_path = None
    return backend, reason, onnx_path


def _describe_with(source: _Checkpoint, onnx_path: Path, meta: dict) -> tuple[str, dict, dict]:
    """(architecture, kwargs, metadata) for a checkpoint run as an explicit `onnx_path`: the file's own record
    where it was exported from this checkpoint, else the checkpoint's, which must be of the file's architecture."""
    if meta.get(META_CHECKPOINT_SHA256) == source.sha256:
        architecture, kwargs = architecture_of(meta)
        return architecture, kwargs, checkpoint_metadata_of(meta)
    described = source.describe()
    stored, _ = architecture_of(meta)
    if stored is not None and stored != described[0]:
        raise ValueError(f"{onnx_path} holds {stored!r} but checkpoint {source.path} is {described[0]!r}")
    return described


def _graph_of(source: _Checkpoint, wanted: str, requested: str, opset: int) -> tuple[Path, str, bool]:
    """(ONNX file, its refinement, whether it must be exported first) for refinement `wanted` of a checkpoint:
    the file beside it, else the cache of exports; without PyTorch, for refinement "auto", the whole graph
    beside it where the fused one is missing."""
    if wanted in source.beside:
        return source.beside[wanted][0], wanted, False
    if torch_installed():
        cache = onnx_cache_path(source.path, opset, wanted, sha256=source.sha256)
        return cache, wanted, not cache.is_file()
    if wanted == "fused" and requested == "auto" and "graph" in source.beside:
        LOGGER.info("no fused ONNX file beside %s and no PyTorch to export one: the whole graph runs", source.path)
        return source.beside["graph"][0], "graph", False
    raise PyTorchRequired(f"checkpoint {source.path} has no ONNX file {onnx_beside(source.path, wanted).name} "
                          f"beside it, and exporting one needs PyTorch, which is not installed here: {TRAIN_EXTRA}")


def for_onnx(onnx_path: str | Path, device: str = "auto", threads: int | None = None) -> EngineSpec:
    """The EngineSpec of an ONNX file on its own (architecture, kwargs and, where it records them, the checkpoint's
    metadata from the file)."""
    onnx_path = Path(onnx_path)
    meta = read_onnx_metadata(onnx_path)
    architecture, kwargs = architecture_of(meta)
    device = resolve_device(device)
    precision, providers = _onnx_precision("auto", device, meta)
    return EngineSpec(architecture=architecture or onnx_path.stem, backend="onnx", device=device,
                      precision=precision, kwargs=kwargs, metadata=checkpoint_metadata_of(meta),
                      refinement="fused" if refinement_of(meta) is not None else "graph",
                      threads=resolve_threads(threads), onnx_path=onnx_path, providers=providers)


def for_model(model, device: str = "auto", precision: str = "auto", threads: int | None = None,
              backend_reason: str = "requested") -> EngineSpec:
    """The EngineSpec of a PyTorch model in memory (backend "torch", the whole network)."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    device = resolve_device(device)
    return EngineSpec(architecture=getattr(model, "architecture", type(model).__name__), backend="torch",
                      device=device, precision=resolve_precision(precision, device),
                      kwargs=dict(getattr(model, "arch_kwargs", {})), threads=resolve_threads(threads),
                      backend_reason=backend_reason)
