"""Backend "onnx": an `EngineSpec`'s ONNX file run by ONNX Runtime, numpy in and out. A graph that stops before
DA-CSPN++'s propagation (`refinement` "fused") is finished by `models.dacspn_cpu`'s fused loops (numba).

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
from .onnx_files import INPUT_NAMES, OUTPUT_NAME, read_onnx_refinement
from .spec import Device, EngineSpec

LOGGER = logging.getLogger(LOGGER_NAME)


def open_session(onnx_path: Path, device: Device, log_severity: int = 3, threads: int | None = None,
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
    # No memory pattern: from the second run on, ONNX Runtime allocates the planned pattern as one block while the
    # arena still holds the first run's chunks, so the process keeps both (measured at 1242x375, one engine in a
    # process, 6 frames: default CDSPN peak 1640 -> 1079 MiB and 647 -> 610 ms a frame; lite 1223 -> 871 MiB,
    # 259 -> 270 ms). The arena stays: without it every run allocates afresh (default 837 ms a frame).
    options.enable_mem_pattern = False
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
    names = [node.name for node in session.get_inputs()]
    if names != list(INPUT_NAMES):
        raise ValueError(f"{onnx_path}: ONNX inputs are {names}, expected {list(INPUT_NAMES)} "
                         "(export it with `dcros export`)")
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


class OnnxRuntime:
    """Runs `spec.onnx_path` (which exists) with ONNX Runtime on `spec.device` with `spec.threads`."""

    def __init__(self, spec: EngineSpec):
        self.spec = spec
        self.layout = fused_layout(spec.onnx_path)
        self.session = open_session(spec.onnx_path, spec.device, threads=spec.threads, spinning=self.layout is None)
        self.workspace = None
        if self.layout is not None:
            from ..models import dacspn_cpu

            self.workspace = dacspn_cpu.Workspace()  # the propagation's planes, reused frame to frame
        self._workspace_lock = threading.Lock()

    @property
    def model(self):
        return None

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
                               f"{rgb.shape[3]} (BxHxW) input (a graph exported with fixed H/W accepts only "
                               f"its example size): {error}") from error
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
