"""Backend "onnx": an `EngineSpec`'s ONNX file run by ONNX Runtime, numpy in and out. A graph that stops before
DA-CSPN++'s propagation (`refinement` "fused") is finished by `models.dacspn_cpu`'s fused loops (numba). On CUDA
the session asks for TensorRT, then CUDA, then the CPU (`spec.gpu_providers`), and records which it got.

No PyTorch: a robot runs the shipped models with onnxruntime, numba and numpy. Batched torch tensors are
accepted where the caller has PyTorch (it is then loaded) and converted at the border.
"""
from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import numpy as np

from ..models.layout import RefinementLayout
from . import LOGGER_NAME
from .inputs import check_torch_inputs, example_arrays, numpy_batch
from .onnx_files import INPUT_NAMES, OUTPUT_NAME, cache_root, file_sha256, read_onnx_refinement
from .spec import ORT_CPU, ORT_CUDA, ORT_TENSORRT, Device, EngineSpec, gpu_provider, gpu_providers, provider_names

LOGGER = logging.getLogger(LOGGER_NAME)


def tensorrt_cache_dir(onnx_path: Path, precision: str) -> Path:
    """Where TensorRT's engines of `onnx_path` in `precision` are cached: beside the cache of exports, under
    `onnx_files.cache_root()`/tensorrt/<digest of the file>-<precision>. ONNX Runtime names an engine by the graph's
    file name and node names, not its weights, so two checkpoints of one architecture exported under one name would
    share an engine: the digest keeps them apart."""
    return cache_root() / "tensorrt" / f"{file_sha256(onnx_path)[:16]}-{precision}"


# The CPU sessions' arena, one per process, registered in onnxruntime's environment (`shared_cpu_arena`): its first
# region, 1 GiB of address space, holds a frame's tensors, whose freed chunks merge and are reused there. The
# session's own arena (the default) grows by further regions (1, 2, 4 ... MiB, or the request), and a chunk never
# spans two regions, so the tensor of one region cannot be reused for a larger one: at 1242x375 its regions add up
# to twice what is alive at once. Only the pages that frames touch are resident. Measured (benchmarks/onnx_memory.py,
# engine process, 1242x375, 2 threads; results/onnx_memory*.md): peak RSS default CDSPN 1054 -> 790 MiB, lite
# 845 -> 727 MiB, time per frame unchanged within noise (runs differ by up to 7 % on the shared machine; medians of
# 6 side-by-side runs: +1.6 %, -1.5 %), same output bit for bit; 115-171 MiB less for the default at 1216x352,
# 1242x256, 640x480 and 1242x192, for the lite 42 and 123 MiB less at 1242x192 and 1216x352 but 19 MiB more at
# 1242x256 and 640x480. Not adopted: regions of exactly the request (arena_extend_strategy kSameAsRequested, also
# with max_dead_bytes_per_chunk 1 MiB): 1052 MiB; no arena: 870 MiB but +40 % time (each tensor mapped and
# page-faulted anew); the memory pattern: 983 MiB (-19 % time); no NCHWc layout: 764 MiB but +20 % time (and not
# the same output bit for bit).
CPU_ARENA = {"arena_extend_strategy": 0, "initial_chunk_size_bytes": 1 << 30}
_cpu_arena_lock = threading.Lock()
_cpu_arena: bool | None = None  # None: not registered yet; False: this onnxruntime cannot


def shared_cpu_arena() -> bool:
    """Register `CPU_ARENA` as onnxruntime's environment allocator for CPU memory, once per process (a second
    registration would replace the first, and the sessions using it would keep theirs: two regions); True when
    it is registered, so that a session may use it (session config "session.use_env_allocators" = "1")."""
    global _cpu_arena
    with _cpu_arena_lock:
        if _cpu_arena is None:
            import onnxruntime as ort

            try:
                info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
                ort.create_and_register_allocator(info, ort.OrtArenaCfg(dict(CPU_ARENA)))
                _cpu_arena = True
            except (AttributeError, RuntimeError, TypeError) as error:  # an onnxruntime without the API
                LOGGER.info("onnxruntime's shared CPU arena is not available (%s): sessions keep their own", error)
                _cpu_arena = False
        return _cpu_arena


def open_session(onnx_path: Path, device: Device, log_severity: int = 3, threads: int | None = None,
                 spinning: bool = True, precision: str = "fp32", providers: tuple[str, ...] | None = None):
    """An onnxruntime session: on CUDA through TensorRT, CUDA and the CPU (those of them onnxruntime has, in that
    order, `spec.gpu_providers`; TensorRT in fp16 when `precision` is "fp16"), else on the CPU. `providers`:
    the names to choose from (None: all that onnxruntime has). The providers the session got are
    `session.get_providers()`; a GPU provider asked for and not got (its libraries or the GPU missing:
    onnxruntime then goes on without it) is logged as a warning. `log_severity`: onnxruntime's own logging
    threshold (3 = errors, 4 = fatal only); `threads`: intra-op threads (None: onnxruntime's default), with
    one inter-op thread. `spinning=False` for a graph whose propagation runs outside (`read_onnx_refinement`):
    idle intra-op threads that spin after a run would hold the cores the propagation needs next (measured: its
    time 86 -> 66 ms, lite CDSPN, 2 cores). Not adopted: spinning during a run and stopping at its end
    ("session.force_spinning_stop"): the graph alone 1-8 % faster in one-off A/B runs, but in the node the threads
    spinning between operators starve the executor that takes in the next messages (reduced overload runs,
    `test_robustness.py`'s, 4 each: the output age's p90 121-248 ms and p99 125-621 ms, against 111-145 and
    115-168 without spinning). A CPU session allocates from the process's shared arena
    (`shared_cpu_arena`, `CPU_ARENA`)."""
    import onnxruntime as ort

    available = [name for name in ort.get_available_providers() if providers is None or name in providers]
    cache = None
    if device.type == "cuda" and gpu_provider(available) == ORT_TENSORRT:
        cache = tensorrt_cache_dir(onnx_path, precision)
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a read-only home: TensorRT still runs, rebuilding its engines at each start
            LOGGER.warning("TensorRT engines are not cached (%s)", error)
            cache = None
    requested = gpu_providers(available, device, precision, cache)
    if device.type == "cuda" and gpu_provider(available) is None:
        LOGGER.warning("onnxruntime has no %s (installed: %s); running ONNX on the CPU", ORT_CUDA,
                       ", ".join(ort.get_available_providers()))
    options = ort.SessionOptions()
    options.log_severity_level = log_severity  # the providers' notices are not actionable
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No memory pattern: from the second run on, ONNX Runtime allocates the planned pattern as one block while the
    # arena still holds the first run's chunks, so the process keeps both (measured at 1242x375, one engine in a
    # process, 6 frames: default CDSPN peak 1640 -> 1079 MiB and 647 -> 610 ms a frame; lite 1223 -> 871 MiB,
    # 259 -> 270 ms). The arena stays: without it every run allocates afresh (default 837 ms a frame).
    options.enable_mem_pattern = False
    if device.type == "cpu" and shared_cpu_arena():
        options.add_session_config_entry("session.use_env_allocators", "1")
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=requested)
    names = [node.name for node in session.get_inputs()]
    if names != list(INPUT_NAMES):
        raise ValueError(f"{onnx_path}: ONNX inputs are {names}, expected {list(INPUT_NAMES)} "
                         "(export it with `dcros export`)")
    got = session.get_providers()
    missing = [name for name in provider_names(requested) if name != ORT_CPU and name not in got]
    if missing:
        LOGGER.warning("onnxruntime did not load %s for %s (its libraries or the GPU are missing); %s runs via %s%s",
                       " and ".join(missing), device, onnx_path.name, got[0] if got else ORT_CPU,
                       " in fp32" if ORT_TENSORRT in missing and precision == "fp16" else "")
    return session


def run_session(session, layout: RefinementLayout | None, rgb: np.ndarray, sparse: np.ndarray,
                finish=None) -> np.ndarray:
    """Depth [B,1,H,W] from an onnxruntime session of an `export_onnx` graph: its output, or with a
    refinement `layout` its outputs propagated by `finish(outputs, height, width)` (default:
    `dacspn_cpu.depth_from_refinement_inputs` with fresh buffers)."""
    feeds = {INPUT_NAMES[0]: rgb, INPUT_NAMES[1]: sparse}
    if layout is None:
        return session.run([OUTPUT_NAME], feeds)[0]
    flat = session.run(layout.names(), feeds)
    if finish is None:
        from ..models import dacspn_cpu

        return dacspn_cpu.depth_from_refinement_inputs(flat, layout, rgb.shape[2], rgb.shape[3])
    return finish(flat, rgb.shape[2], rgb.shape[3])


def fused_layout(onnx_path: Path) -> RefinementLayout | None:
    """The refinement layout of a fused graph, checked to be runnable here; None for a whole graph."""
    layout = read_onnx_refinement(onnx_path)
    if layout is not None:
        from ..models import dacspn_cpu

        if dacspn_cpu.available() is not None:
            raise RuntimeError(f"{onnx_path} leaves DA-CSPN++'s propagation to numba: {dacspn_cpu.available()}")
    return layout


def failure_hint(error: BaseException) -> str:
    """What most likely went wrong in a failed run, for its error message: memory (ONNX Runtime's arena, or numpy's
    allocations, refused: the process's memory or address-space limit, or the host's) or else the input size."""
    if isinstance(error, MemoryError) or "Failed to allocate memory" in str(error):
        return ("out of memory: the frame's tensors did not fit in the memory this process may use; fewer rows "
                "(roi 'auto' or 'bottom') or the lite model need less")
    return "a graph exported with fixed H/W accepts only its example size"


class OnnxRuntime:
    """Runs `spec.onnx_path` (which exists) with ONNX Runtime on `spec.device` with `spec.threads`."""

    def __init__(self, spec: EngineSpec):
        self.spec = spec
        self.layout = fused_layout(spec.onnx_path)
        self.session = open_session(spec.onnx_path, spec.device, threads=spec.threads, spinning=self.layout is None,
                                    precision=spec.precision, providers=spec.providers or None)
        # What the session got, which may be less than the spec asked for (`open_session` warns then): without
        # TensorRT, fp16 was not to be had (the CUDA and CPU providers run the fp32 graph).
        self.providers = tuple(self.session.get_providers())
        self.precision = spec.precision
        if spec.precision == "fp16" and ORT_TENSORRT not in self.providers:
            self.precision = "fp32"
        LOGGER.info("%s (%s)", self.summary, spec.onnx_path.name)
        self.workspace = None
        if self.layout is not None:
            from ..models import dacspn_cpu

            self.workspace = dacspn_cpu.Workspace()  # the propagation's planes, reused frame to frame
        self._workspace_lock = threading.Lock()

    @property
    def model(self):
        return None

    @property
    def provider(self) -> str:
        """The execution provider that runs the graph, or as much of it as it can (the session's first)."""
        return self.providers[0] if self.providers else ORT_CPU

    @property
    def summary(self) -> str:
        """E.g. "onnx on cuda:0 via TensorrtExecutionProvider", as the session got it."""
        return f"onnx on {self.spec.device} via {self.provider}"

    def __repr__(self) -> str:
        return f"OnnxRuntime({self.summary}, precision={self.precision!r}, {self.spec.onnx_path.name!r})"

    def predict(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        """One (H,W,3) image and (H,W) sparse depth -> (H,W) float32 depth."""
        return self.run(*numpy_batch(rgb, sparse))[0, 0]

    def predict_tensor(self, rgb, sparse):
        """Batched torch tensors -> [B,1,H,W] float32 on the engine's device (onnxruntime takes host arrays)."""
        torch = sys.modules["torch"]  # loaded: the caller passed a tensor
        check_torch_inputs(rgb, sparse)
        sparse = torch.nan_to_num(sparse, nan=0.0, posinf=0.0, neginf=0.0)
        output = torch.from_numpy(self.run(rgb.detach().float().cpu().numpy(), sparse.detach().float().cpu().numpy()))
        output = output.to(str(self.spec.device))
        if self.spec.device.type == "cuda":
            torch.cuda.synchronize(str(self.spec.device))
        return output

    def run(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        """float32 rgb [B,3,H,W], sparse [B,1,H,W] -> depth [B,1,H,W]."""
        try:
            output = run_session(self.session, self.layout, rgb.astype(np.float32, copy=False),
                                 sparse.astype(np.float32, copy=False), self._finish_fused)
        except Exception as error:  # onnxruntime's error types do not share a useful base class
            runtime = "onnxruntime" if self.layout is None else "onnxruntime or the fused refinement"
            raise RuntimeError(f"{self.spec.onnx_path}: {runtime} failed on a {rgb.shape[0]}x{rgb.shape[2]}x"
                               f"{rgb.shape[3]} (BxHxW) input ({failure_hint(error)}): {error}") from error
        return np.asarray(output, dtype=np.float32)

    def _finish_fused(self, flat: list[np.ndarray], height: int, width: int) -> np.ndarray:
        """The propagation of a fused graph in its reused buffers (one call at a time)."""
        from ..models import dacspn_cpu

        with self._workspace_lock:
            return dacspn_cpu.depth_from_refinement_inputs(flat, self.layout, height, width,
                                                           self.spec.threads, self.workspace)

    def warmup(self, height: int, width: int, runs: int, batch: int) -> None:
        rgb, sparse = example_arrays(height, width, batch=batch, seed=0)
        for _ in range(runs):
            self.run(rgb, sparse)
