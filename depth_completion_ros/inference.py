"""The deployable inference engine: model loading, device and precision choice, ONNX export and run.

`Engine` turns (RGB image, sparse depth) into dense depth with any registered model, on CUDA or CPU,
in fp32 or fp16 autocast, through PyTorch or onnxruntime, behind one `predict` call:

    engine = Engine.from_checkpoint("models/cdspn_x32.pt")      # device and precision chosen for you
    dense = engine.predict(rgb_uint8_hxwx3, sparse_hxw_metres)  # (H, W) float32 metres

How it is built, one way down (`runtime` package): the settings are resolved once into a plain description,
`runtime.spec.EngineSpec` (`runtime.resolve`), which one runtime builds: `runtime.onnx_runtime` (ONNX Runtime +
numba, no PyTorch) or `runtime.torch_runtime` (PyTorch); `runtime.export` writes ONNX files (PyTorch, onnx).
`engine.spec` is the description. This module imports no PyTorch: a robot without it runs the shipped models
through their ONNX files.

Choices made here, so callers need not repeat them:

- device "auto" uses CUDA where it is available (asked of PyTorch where PyTorch is installed and a GPU driver
  is present, else of onnxruntime's CUDA provider), else the CPU with a logged warning. Asking for "cuda"
  where CUDA is absent also falls back to the CPU with a warning instead of failing, so one launch file serves
  a laptop and a robot; check `engine.device` (a `runtime.spec.Device`: "cpu" or "cuda:N", with `.type`) when
  the difference matters.
- precision "auto" is fp16 autocast on CUDA and fp32 on the CPU. "fp16" on the CPU falls back to fp32
  with a warning: half-precision convolutions on the CPU are slow or unsupported, and bf16 would change
  the numbers without a reliable speed-up on CPUs without bf16 units. The output is float32 always.
- the ONNX backend runs the fp32 graph (precision "fp16" falls back to fp32 with a warning, except on CUDA
  through TensorRT, which builds fp16 engines from it), or an int8 graph given as `onnx_path` (`dcros export
  --int8`, `quantization.py`; `engine.precision` is then "int8").
  Without an explicit `onnx_path`, `Engine.from_checkpoint(..., backend="onnx")` runs the ONNX file exported
  from the checkpoint that lies beside it (`<stem>.onnx`, `<stem>.fused.onnx`: the shipped models have them;
  `runtime.onnx_files`), else exports the checkpoint once to a cache file keyed by its content hash (see
  `onnx_cache_path`) and reuses it afterwards.
- backend "auto" (`choose_backend`) runs on CUDA ONNX Runtime where onnxruntime-gpu is installed (its TensorRT,
  else CUDA execution provider; `engine.providers` says which the session got), else PyTorch; on the CPU ONNX
  Runtime for the architectures measured faster with it (`ONNX_FASTER_ON_CPU`) when onnxruntime is installed;
  an export or session failure falls back to PyTorch. Without PyTorch, ONNX Runtime runs everything that has an
  ONNX file. The choice and its reason are logged and kept in `engine.backend_reason`; `engine.backend` names
  the runtime that actually runs.
- PyTorch is imported only where it is needed: backend "torch", a model in memory or an untrained registered
  architecture (`from_model`, `from_name`), a checkpoint that no ONNX file describes, and export. Where it is
  needed and missing, `PyTorchRequired` (an ImportError) says so and how to install it.
- refinement "auto" (a CDSPN on the CPU, numba running): the network stops before DA-CSPN++'s propagation
  (ONNX Runtime: the graph ends there; PyTorch: `forward(refinement_inputs=True)`), which `models.dacspn_cpu`
  runs as fused loops (same depth to float rounding; 1.3-1.8x the whole graph end to end,
  `benchmarks/results/cpu_speed.md`). `engine.refinement` says "fused" or "graph".
- threads: 0 ("auto") uses the cores this process may run on (`available_cores`, affinity-aware) for
  PyTorch's intra-op pool (set around each call, so other torch work in the process keeps its own
  setting) or ONNX Runtime's intra-op pool, with one inter-op thread; a positive number overrides it;
  None leaves the libraries' own defaults.
- sparse depth values that are NaN or infinite count as "no measurement" (0), matching REP 118's NaN
  convention for invalid depth.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .runtime import LOGGER_NAME, resolve
from .runtime.inputs import numpy_batch as _check_numpy_inputs  # noqa: F401 - benchmarks/error_breakdown.py
from .runtime.onnx_files import (  # noqa: F401 - the engine's public names, kept here
    INPUT_NAMES, OUTPUT_NAME, ExportError, model_code_digest, onnx_cache_path, read_onnx_architecture,
    read_onnx_metadata, read_onnx_refinement,
)
from .runtime.onnx_runtime import OnnxRuntime
from .runtime.spec import (  # noqa: F401 - the engine's public names, kept here
    BACKENDS, DEFAULT_OPSET, KITTI_SIZE, ONNX_FASTER_ON_CPU, REFINEMENTS, Device, EngineSpec, PyTorchRequired,
    available_cores, choose_backend, onnx_runtime_available, require_torch, resolve_device, resolve_precision,
    resolve_threads,
)

LOGGER = logging.getLogger(LOGGER_NAME)
# What `runtime.export` provides (it imports PyTorch): loaded on first use by `__getattr__`.
_EXPORT_NAMES = ("CACHE_EXPORT_SIZE", "example_inputs", "export_onnx", "max_abs_difference_to_torch", "other_size")


def __getattr__(name: str):
    if name in _EXPORT_NAMES:
        from .runtime import export

        return getattr(export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_tensor(value) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only where PyTorch is loaded
    return torch is not None and isinstance(value, torch.Tensor)


class Engine:
    """Runs a depth-completion model for inference: (RGB, sparse depth) -> dense depth in metres.

    Build it with `from_checkpoint`, `from_model`, `from_name` or `from_onnx` (or `build` an `EngineSpec`).
    """

    def __init__(self, spec: EngineSpec, runtime):
        self._spec = spec
        self._runtime = runtime

    # ----- constructors

    @classmethod
    def build(cls, spec: EngineSpec, checkpoint=None) -> "Engine":
        """The engine a spec with a file behind it describes (`runtime.resolve`): ONNX Runtime for backend "onnx"
        (exporting the cache file first where the spec says so), PyTorch for "torch" (`checkpoint`: its
        contents where already read)."""
        if spec.backend == "onnx":
            if spec.export:
                from .runtime.export import cached_export

                cached_export(spec.checkpoint_path, spec.opset, remember_failure=spec.fallback,
                              refinement=spec.refinement)
            return cls(spec, OnnxRuntime(spec))
        from .runtime.torch_runtime import TorchRuntime, model_from_spec

        return cls(spec, TorchRuntime(spec, model_from_spec(spec, checkpoint)))

    @classmethod
    def from_model(cls, model, device: str = "auto", precision: str = "auto", threads: int | None = None,
                   backend_reason: str = "requested") -> "Engine":
        """Wrap a PyTorch model in memory (e.g. freshly trained). The engine takes it over: it is moved to the
        engine's device and put in eval mode (call `model.train()` again before more training).
        `threads`: CPU threads of its calls (0 = the cores available, None = torch's current setting)."""
        from .runtime.torch_runtime import TorchRuntime

        model = getattr(model, "module", model)  # unwrap DistributedDataParallel
        spec = resolve.for_model(model, device=device, precision=precision, threads=threads,
                                 backend_reason=backend_reason)
        return cls(spec, TorchRuntime(spec, model))

    @classmethod
    def from_name(cls, name: str, device: str = "auto", precision: str = "auto", seed: int = 0,
                  threads: int | None = None, backend_reason: str = "requested", **model_kwargs) -> "Engine":
        """An untrained registered model (for benchmarks and tests); `seed` fixes its initial weights."""
        torch = require_torch(f"the untrained registered architecture {name!r}")
        from .models import build_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(name, **model_kwargs)
        return cls.from_model(model, device=device, precision=precision, threads=threads,
                              backend_reason=backend_reason)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", precision: str = "auto",
                        backend: str = "torch", onnx_path: str | Path | None = None,
                        opset: int = DEFAULT_OPSET, threads: int | None = None,
                        refinement: str = "auto") -> "Engine":
        """Load a project checkpoint (architecture, kwargs and weights come from the file).

        backend "onnx": runs `onnx_path` with onnxruntime (it must exist and, when it carries architecture
        metadata, match the checkpoint); without `onnx_path`, the ONNX file exported from the checkpoint that
        lies beside it (`<stem>.onnx`, `<stem>.fused.onnx`), else the checkpoint exported once to
        `onnx_cache_path(path, opset)`, the cached file reused on later loads.
        backend "auto": `choose_backend` decides (an explicit `onnx_path` counts as a request for ONNX
        Runtime on the CPU); when the ONNX path fails (export, graph check, session), it logs why and
        loads the checkpoint into PyTorch. A failed cache export is remembered beside the cache file
        (`<cache>.failed`, delete it to retry) so that later loads do not pay for the export again.
        threads: CPU threads (0 = the cores available to the process, None = the libraries' defaults).
        refinement: "fused" runs a CDSPN up to DA-CSPN++'s propagation (ONNX Runtime: the graph stops
        there; PyTorch: `forward(refinement_inputs=True)`) and the propagation with `models.dacspn_cpu`
        (same depth to float rounding, several times faster on a CPU); "graph" the whole network in the
        runtime; "auto" fuses for a CDSPN on the CPU when numba runs. An explicit `onnx_path` runs as it was
        exported.
        Without PyTorch, a checkpoint runs only through an ONNX file exported from it (PyTorchRequired else).
        """
        spec, checkpoint = resolve.for_checkpoint(path, device=device, precision=precision, backend=backend,
                                                  onnx_path=onnx_path, opset=opset, threads=threads,
                                                  refinement=refinement)
        if not spec.fallback:
            if backend == "auto":
                LOGGER.info("backend auto: %s (%s)", spec.backend, spec.backend_reason)
            return cls.build(spec, checkpoint)
        try:
            engine = cls.build(spec, checkpoint)
        except Exception as error:  # noqa: BLE001 - export and onnxruntime errors share no base class
            reason = f"ONNX Runtime failed for {Path(path).name}, PyTorch instead: {error}"
            LOGGER.warning("backend auto: %s", reason)
            spec, checkpoint = resolve.for_checkpoint(path, device=spec.device, precision=precision,
                                                      backend="torch", threads=spec.threads, refinement=refinement)
            return cls.build(replace(spec, backend_reason=reason), checkpoint)
        LOGGER.info("backend auto: onnx (%s)", spec.backend_reason)
        return engine

    @classmethod
    def from_onnx(cls, onnx_path: str | Path, device: str = "auto", threads: int | None = None) -> "Engine":
        """Run an ONNX file written by `export_onnx` on its own (metadata: the checkpoint's, where the file was
        exported from one, else empty)."""
        spec = resolve.for_onnx(onnx_path, device=device, threads=threads)
        return cls(spec, OnnxRuntime(spec))

    # ----- properties

    @property
    def spec(self) -> EngineSpec:
        """The description this engine was built from (`runtime.spec.EngineSpec`)."""
        return self._spec

    @property
    def runtime(self):
        """The runtime that predicts (`runtime.onnx_runtime.OnnxRuntime` or `runtime.torch_runtime.TorchRuntime`)."""
        return self._runtime

    @property
    def architecture(self) -> str:
        """Registered model name (or the class name for an unregistered model)."""
        return self._spec.architecture

    @property
    def kwargs(self) -> dict:
        """Arguments the architecture was built with."""
        return dict(self._spec.kwargs)

    @property
    def metadata(self) -> dict:
        """Free-form metadata stored in the checkpoint (empty for models from memory)."""
        return dict(self._spec.metadata)

    @property
    def device(self) -> Device:
        """Where inference runs (after any CUDA -> CPU fallback): "cpu" or "cuda:N", with `.type` and `.index`."""
        return self._spec.device

    @property
    def precision(self) -> str:
        """"fp32", "fp16" (autocast, or TensorRT's engines) or "int8" (an int8 graph), after any fallback (an
        ONNX session that did not get TensorRT runs fp32)."""
        return getattr(self._runtime, "precision", self._spec.precision)

    @property
    def providers(self) -> tuple[str, ...]:
        """Backend "onnx": the execution providers the session got, in order (e.g. TensorRT, CUDA, CPU); else ()."""
        return tuple(getattr(self._runtime, "providers", ()))

    @property
    def backend(self) -> str:
        """"torch" or "onnx"."""
        return self._spec.backend

    @property
    def backend_reason(self) -> str:
        """Why this backend runs: "requested", or backend "auto"'s reason (see `choose_backend`)."""
        return self._spec.backend_reason

    @property
    def threads(self) -> int | None:
        """CPU intra-op threads of this engine's calls (None: the libraries' defaults)."""
        return self._spec.threads

    @property
    def size_multiple(self) -> int:
        """The multiple the network pads its input to: an input of such a height or width costs no padding."""
        return self._spec.size_multiple

    @property
    def onnx_path(self) -> Path | None:
        """The ONNX file behind the "onnx" backend, else None."""
        return self._spec.onnx_path

    @property
    def refinement(self) -> str:
        """"fused" when DA-CSPN++'s propagation runs outside the network (`models.dacspn_cpu`), else "graph"
        (inside the network, whichever runtime runs it)."""
        return "graph" if self._runtime.layout is None else "fused"

    @property
    def model(self):
        """The torch model behind the "torch" backend, else None."""
        return self._runtime.model

    def __repr__(self) -> str:
        threads = "" if self.threads is None else f", threads={self.threads}"
        fused = "" if self.refinement == "graph" else ", refinement='fused'"
        via = f", provider={self.providers[0]!r}" if self.providers and self.device.type == "cuda" else ""
        return (f"Engine(architecture={self.architecture!r}, backend={self.backend!r}, "
                f"device={str(self.device)!r}{via}, precision={self.precision!r}{threads}{fused})")

    # ----- inference

    def predict(self, rgb, sparse):
        """Dense depth in metres from an RGB image and sparse depth (metres, 0 = no measurement).

        numpy: rgb (H,W,3) uint8 0..255 or float 0..1, sparse (H,W) float -> (H,W) float32 numpy.
        torch: rgb [B,3,H,W] float 0..1, sparse [B,1,H,W] float -> [B,1,H,W] float32 on `self.device`.
        NaN/inf in sparse count as no measurement. Raises ValueError naming the problem for bad input.
        """
        if isinstance(rgb, np.ndarray):
            return self._runtime.predict(rgb, sparse)
        if _is_tensor(rgb):
            return self._runtime.predict_tensor(rgb, sparse)
        raise ValueError(f"rgb must be a numpy array or a torch tensor, got {type(rgb).__name__}")

    def warmup(self, height: int, width: int, runs: int = 2, batch: int = 1) -> None:
        """Run `runs` predictions on random input of this size (kernel selection, allocator, caches),
        so that the first real frame is not slow."""
        if runs < 0:
            raise ValueError(f"warm-up runs must be >= 0, got {runs}")
        self._runtime.warmup(height, width, runs, batch)


# Besides these, `_EXPORT_NAMES` (PyTorch) import from here on first use.
__all__: Sequence[str] = ("Engine", "EngineSpec", "Device", "ExportError", "PyTorchRequired", "read_onnx_architecture",
                          "onnx_cache_path", "resolve_device", "resolve_precision", "resolve_threads",
                          "available_cores", "choose_backend", "ONNX_FASTER_ON_CPU", "INPUT_NAMES", "OUTPUT_NAME")
