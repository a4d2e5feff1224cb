"""The plain description of an inference engine (`EngineSpec`) and the choices that need no model: device,
precision, threads, backend "auto"'s table, DA-CSPN++'s refinement, ONNX Runtime's execution providers, and
whether PyTorch is installed at all.

No PyTorch here: `resolve_device` asks PyTorch about CUDA only where PyTorch is installed and a GPU driver is
present (`gpu_driver_present`), so that device "auto" on a CPU-only robot does not import it to be told "no".
Without PyTorch, onnxruntime-gpu (its CUDAExecutionProvider) is what runs on a GPU, and what is asked.
"""
from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..models.layout import architecture_size_multiple
from . import LOGGER_NAME

LOGGER = logging.getLogger(LOGGER_NAME)

PRECISIONS = ("auto", "fp32", "fp16")
BACKENDS = ("auto", "torch", "onnx")
REFINEMENTS = ("auto", "graph", "fused")
DEFAULT_OPSET = 17
KITTI_SIZE = (352, 1216)  # (height, width) of the usual bottom crop
TRAIN_EXTRA = "pip install 'depth_completion_ros[train]'"
# ONNX Runtime's execution providers, as `onnxruntime.get_available_providers()` names them.
ORT_TENSORRT = "TensorrtExecutionProvider"
ORT_CUDA = "CUDAExecutionProvider"
ORT_CPU = "CPUExecutionProvider"
# Architectures that ONNX Runtime runs faster than PyTorch on the CPU, with the evidence: median ms/frame
# at 1216x352, (PyTorch, ONNX Runtime), fp32, the same input, timed in turns by benchmarks/bench_inference.py
# (benchmarks/results/inference_cpu.json: a 2-core AMD EPYC, Zen 4). Every registered architecture was
# faster with ONNX Runtime there, in each of three runs (1.2-4.3x; the LSPKD teacher gains least).
# Backend "auto" takes ONNX Runtime on the CPU for these only; an architecture missing here keeps PyTorch
# (where PyTorch is installed: without it, ONNX Runtime runs everything).
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


# --------------------------------------------------------------------------- PyTorch, present or not

class PyTorchRequired(ImportError):
    """Something needs PyTorch (training, export, backend "torch", an untrained architecture, a checkpoint
    without an ONNX file exported from it) where it is not installed. The message says what and how to get it."""


def torch_installed() -> bool:
    """Whether PyTorch can be imported, found without importing it (an import costs ~0.2 GB and a second)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or half-imported installation
        return False


def require_torch(what: str):
    """The torch module, or PyTorchRequired saying that `what` needs it."""
    try:
        import torch
    except ImportError as error:
        raise PyTorchRequired(f"{what} needs PyTorch, which is not installed here ({error}): {TRAIN_EXTRA}") from None
    return torch


# --------------------------------------------------------------------------- device

class Device(str):
    """Where an engine runs: "cpu" or "cuda:N". A string, so that it needs no PyTorch and goes wherever PyTorch
    takes a device (`tensor.to(engine.device)`), with torch.device's `type` and `index`; it compares equal to
    the torch.device of the same name."""

    __slots__ = ()

    @property
    def type(self) -> str:
        return self.partition(":")[0]

    @property
    def index(self) -> int | None:
        index = self.partition(":")[2]
        return int(index) if index else None

    def __eq__(self, other) -> bool:
        if type(other).__name__ == "device" and not isinstance(other, str):  # a torch.device
            other = str(other)
        return str.__eq__(self, other)

    def __ne__(self, other) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = str.__hash__

    def __repr__(self) -> str:
        return f"Device({str(self)!r})"


def gpu_driver_present() -> bool:
    """False only where CUDA cannot run: on Linux, neither NVIDIA's driver library (libcuda.so.1, which every
    CUDA build of PyTorch and ONNX Runtime loads) opens nor ROCm's /dev/kfd exists. Elsewhere True (ask)."""
    if not sys.platform.startswith("linux"):
        return True
    if os.path.exists("/dev/kfd"):
        return True
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _cuda_devices() -> tuple[int | None, str]:
    """(CUDA devices visible, the runtime that sees them) or (None, why none): PyTorch's count where PyTorch is
    installed, else whether onnxruntime has its CUDA provider (onnxruntime-gpu; count unknown: 0 means "at least
    one")."""
    if not gpu_driver_present():
        return None, "no GPU driver"
    if torch_installed():
        torch = require_torch("asking for CUDA")
        if not torch.cuda.is_available():
            return None, "PyTorch sees no CUDA device"
        return torch.cuda.device_count(), "PyTorch"
    available = onnx_providers_available()
    if not available:
        return None, "neither PyTorch nor onnxruntime is installed"
    if ORT_CUDA not in available:
        return None, f"PyTorch is not installed and onnxruntime has no {ORT_CUDA} (onnxruntime-gpu has it)"
    return 0, "onnxruntime"


def resolve_device(requested: str = "auto") -> Device:
    """Map "auto", "cpu", "cuda" or "cuda:N" (or a torch.device) to a usable Device; CUDA falls back to the CPU
    with a warning."""
    if type(requested).__name__ == "device" and not isinstance(requested, str):  # a torch.device
        requested = str(requested)
    if not isinstance(requested, str):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {requested!r}")
    name = requested.strip().lower()
    if name == "cpu":
        return Device("cpu")
    if name != "auto" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {requested!r}")
    count, seen_by = _cuda_devices()
    if count is None:
        LOGGER.warning("CUDA is not available (device %r requested: %s); running on the CPU", requested, seen_by)
        return Device("cpu")
    index = int(name[5:]) if name.startswith("cuda:") else None
    if index is not None and count and index >= count:
        raise ValueError(f"device {requested!r} does not exist: {count} CUDA device(s) visible")
    if index is None:
        index = require_torch("asking for CUDA").cuda.current_device() if seen_by == "PyTorch" else 0
    return Device(f"cuda:{index}")


# --------------------------------------------------------------------------- precision, threads

def resolve_precision(requested: str, device: Device, backend: str = "torch",
                      providers: tuple[str, ...] | None = None) -> str:
    """Map "auto"/"fp32"/"fp16" to what will actually run on `device` with `backend`: "fp32" or "fp16", or for
    backend "onnx-int8" (a graph `quantization.quantize_onnx` wrote) "int8". Backend "onnx" on CUDA runs fp16
    only through TensorRT (`providers`: onnxruntime's, asked where None); everywhere else it runs fp32."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if backend == "onnx":
        if device.type == "cuda":
            available = onnx_providers_available() if providers is None else providers
            if gpu_provider(available) == ORT_TENSORRT:
                # TensorRT builds fp16 engines from the fp32 graph itself (trt_fp16_enable), inputs and outputs
                # staying float32.
                return "fp32" if requested == "fp32" else "fp16"
            # The CUDA provider runs the graph in the precision it holds (fp32): converting the graph to fp16
            # is not done here.
            if requested == "fp16":
                LOGGER.warning("the ONNX backend runs fp16 on CUDA only through TensorRT (onnxruntime has no %s); "
                               "precision 'fp16' falls back to fp32", ORT_TENSORRT)
            return "fp32"
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


# --------------------------------------------------------------------------- ONNX Runtime's providers

def onnx_providers_available() -> tuple[str, ...]:
    """The execution providers onnxruntime was built with (empty where it is not installed). A build's list, not
    a check of the machine: a GPU provider listed may still fail to load (`onnx_runtime.open_session` says so)."""
    try:
        import onnxruntime
    except ImportError:
        return ()
    return tuple(onnxruntime.get_available_providers())


def gpu_provider(available) -> str | None:
    """The provider ONNX Runtime runs a CUDA device with, of those `available`: TensorRT where onnxruntime has it
    (fastest, fp16 engines; it hands what it cannot build to the CUDA provider, so it needs that too), else
    CUDA; None where onnxruntime has no CUDA provider (the CPU package)."""
    if ORT_CUDA not in available:
        return None
    return ORT_TENSORRT if ORT_TENSORRT in available else ORT_CUDA


def gpu_providers(available, device: Device, precision: str = "fp32", cache_dir: str | Path | None = None) -> list:
    """The `providers` argument of `onnxruntime.InferenceSession` for `device`, from the providers `available`:
    on CUDA, TensorRT (fp16 engines when `precision` is "fp16"; engines cached in `cache_dir`, since a build takes
    seconds to minutes), then CUDA, then the CPU, each taking the nodes the one before it cannot; on the CPU,
    the CPU alone. Option names are ONNX Runtime's documented provider options."""
    if device.type != "cuda":
        return [ORT_CPU]
    index = device.index or 0
    providers = []
    if gpu_provider(available) == ORT_TENSORRT:
        options = {"device_id": index, "trt_fp16_enable": precision == "fp16"}
        if cache_dir is not None:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
        providers.append((ORT_TENSORRT, options))
    if ORT_CUDA in available:
        providers.append((ORT_CUDA, {"device_id": index}))
    return providers + [ORT_CPU]


def provider_names(providers) -> tuple[str, ...]:
    """The names of a `gpu_providers` list (its entries are names or (name, options))."""
    return tuple(entry if isinstance(entry, str) else entry[0] for entry in providers)


# --------------------------------------------------------------------------- backend and refinement

def onnx_runtime_available() -> str | None:
    """None when onnxruntime imports, else why not (for the backend choice's log line)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return f"onnxruntime is not installed ({error})"
    return None


def choose_backend(architecture: str, device: Device, providers: tuple[str, ...] | None = None,
                   precision: str = "auto") -> tuple[str, str]:
    """("torch" or "onnx", reason) for backend "auto". On CUDA: ONNX Runtime where onnxruntime has a GPU provider
    (`gpu_provider`: TensorRT, else CUDA; `providers`: onnxruntime's, asked where None), except that precision
    "fp16" without TensorRT keeps PyTorch (autocast) where it is installed; else PyTorch. Without PyTorch,
    ONNX Runtime. On the CPU, ONNX Runtime where it was measured faster for this architecture
    (`ONNX_FASTER_ON_CPU`) and is installed, else PyTorch."""
    has_torch = torch_installed()
    if device.type != "cpu":
        available = onnx_providers_available() if providers is None else tuple(providers)
    if device.type == "cuda":
        # Not a measured choice as on the CPU (no GPU timings behind ONNX_FASTER_ON_CPU): TensorRT's fused fp16
        # engines are what ONNX Runtime offers a GPU, and a robot with onnxruntime-gpu need not load PyTorch.
        # benchmarks/bench_gpu.py times both runtimes side by side.
        gpu = gpu_provider(available)
        if gpu == ORT_CUDA and precision == "fp16" and has_torch:
            return "torch", (f"PyTorch on {device}: precision fp16 requested, which ONNX Runtime runs only through "
                             f"{ORT_TENSORRT}, not in this onnxruntime")
        if gpu is not None:
            why = "fp16 engines where the precision allows" if gpu == ORT_TENSORRT else f"no {ORT_TENSORRT}: fp32"
            head = "PyTorch is not installed: " if not has_torch else ""
            return "onnx", f"{head}ONNX Runtime on {device} via {gpu} (onnxruntime-gpu is installed; {why})"
    if not has_torch:
        missing = onnx_runtime_available()
        if missing:
            return "torch", f"neither PyTorch nor ONNX Runtime can run it ({missing})"
        return "onnx", f"PyTorch is not installed: ONNX Runtime on {device}"
    if device.type != "cpu":
        has = "is not installed" if not available else f"has no {ORT_CUDA}"
        return "torch", f"PyTorch on {device.type}: onnxruntime {has} (onnxruntime-gpu runs ONNX on CUDA)"
    measured = ONNX_FASTER_ON_CPU.get(architecture)
    if measured is None:
        return "torch", f"ONNX Runtime is not measured faster than PyTorch for {architecture} on the CPU"
    missing = onnx_runtime_available()
    if missing:
        return "torch", f"{missing}; ONNX Runtime would be faster for {architecture} on the CPU"
    return "onnx", (f"ONNX Runtime on the CPU: measured {measured[0] / measured[1]:.1f}x faster than PyTorch "
                    f"for {architecture} ({measured[0]:.0f} vs {measured[1]:.0f} ms at 1216x352)")


def resolve_refinement(refinement: str, architecture: str, device: Device) -> str:
    """"graph" or "fused": where DA-CSPN++'s propagation runs (see `inference.Engine.from_checkpoint`). "fused"
    needs a CDSPN and numba; "auto" fuses a CDSPN on the CPU where numba compiles and runs, else keeps the graph."""
    from ..models import dacspn_cpu

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


# --------------------------------------------------------------------------- the description

@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine is, decided before anything is built (`resolve`), for one runtime to build
    (`onnx_runtime.OnnxRuntime`, `torch_runtime.TorchRuntime`).

    backend: "onnx" or "torch". device: where it runs. precision: "fp32", "fp16" (PyTorch: autocast; ONNX Runtime:
    TensorRT's fp16 engines) or "int8" (an int8 graph). refinement: "fused" (DA-CSPN++'s propagation outside the
    network, `models.dacspn_cpu`) or "graph". threads: CPU intra-op threads (None: the libraries' defaults).
    onnx_path: the graph ONNX Runtime runs. checkpoint_path: the checkpoint behind it (None for a model in memory or
    a bare ONNX file). backend_reason: "requested", or backend "auto"'s reason. export: onnx_path is the cache file
    of checkpoint_path, to be exported (PyTorch) before it runs. opset: of that export. fallback: backend "auto"
    chose ONNX Runtime where PyTorch is installed: a failure to export or open the graph builds the PyTorch engine
    instead (and a failed export is remembered beside the cache file). providers: backend "onnx": the execution
    providers to ask onnxruntime for, in order (`gpu_providers`; the session records which it got:
    `OnnxRuntime.providers`).
    """

    architecture: str
    backend: str
    device: Device
    precision: str
    kwargs: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    refinement: str = "graph"
    threads: int | None = None
    onnx_path: Path | None = None
    checkpoint_path: Path | None = None
    backend_reason: str = "requested"
    export: bool = False
    opset: int = DEFAULT_OPSET
    fallback: bool = False
    providers: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """What runs where, for a log line: e.g. "onnx on cuda:0 via TensorrtExecutionProvider" (the provider
        asked for first; `OnnxRuntime.summary` says the one the session got) or "torch on cpu"."""
        via = f" via {self.providers[0]}" if self.backend == "onnx" and self.providers else ""
        return f"{self.backend} on {self.device}{via}"

    @property
    def size_multiple(self) -> int:
        """The multiple the network pads its input to: an input of such a height or width costs no padding."""
        return architecture_size_multiple(self.architecture)
