"""Backend "torch": an `EngineSpec`'s network run by PyTorch on CUDA or the CPU, fp32 or fp16 autocast; on the
CPU a CDSPN's DA-CSPN++ propagation may run fused (`refinement` "fused": `forward(refinement_inputs=True)`, then
`models.dacspn_cpu`). Takes numpy frames (converted on the device, uint8 divided by 255 there) and batched
tensors."""
from __future__ import annotations

import contextlib
import logging
import threading

import numpy as np
import torch
from torch import nn

from ..models.layout import RefinementLayout
from . import LOGGER_NAME
from .inputs import check_numpy_inputs, check_torch_inputs, example_arrays
from .spec import EngineSpec

LOGGER = logging.getLogger(LOGGER_NAME)
_interop_configured = False


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


@contextlib.contextmanager
def torch_threads(threads: int | None):
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


def model_from_spec(spec: EngineSpec, checkpoint=None) -> nn.Module:
    """The network of a spec with a checkpoint: from `checkpoint` where the resolution already read it."""
    from ..models.checkpoint import load_checkpoint, model_from_checkpoint

    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(spec.checkpoint_path)
    return model_from_checkpoint(checkpoint, spec.checkpoint_path)


class TorchRuntime:
    """Runs `model` as `spec` says. The runtime takes the model over: moved to the device (channels-last) and put
    in eval mode."""

    def __init__(self, spec: EngineSpec, model: nn.Module):
        self.spec = spec
        self.device = torch.device(spec.device)
        self.model = model
        model.eval()
        # channels-last suits cuDNN and oneDNN alike (measured 1.3x on CDSPN on the CPU, 2.5x on its backbone).
        model.to(self.device, memory_format=torch.channels_last)
        _configure_torch_interop(spec.threads)
        self.layout = RefinementLayout.of(model.refinement) if spec.refinement == "fused" else None
        self.workspace = None
        if self.layout is not None:
            from ..models import dacspn_cpu

            self.workspace = dacspn_cpu.Workspace()  # the propagation's planes, reused frame to frame
        self._workspace_lock = threading.Lock()

    def predict(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        """One (H,W,3) image and (H,W) sparse depth -> (H,W) float32 numpy depth. A uint8 image goes to the device
        as it is and becomes float there (a quarter of the transfer)."""
        sparse = check_numpy_inputs(rgb, sparse)
        rgb = np.ascontiguousarray(rgb)
        if not rgb.flags.writeable:  # a zero-copy view of a message buffer: torch wraps only writable memory
            rgb = rgb.copy()
        rgb_tensor = torch.from_numpy(rgb).to(self.device, non_blocking=True).permute(2, 0, 1).unsqueeze(0)
        rgb_tensor = rgb_tensor.float().div_(255.0) if rgb.dtype == np.uint8 else rgb_tensor.float()
        sparse_tensor = torch.from_numpy(np.ascontiguousarray(sparse)).to(self.device)[None, None]
        return self.run(rgb_tensor, sparse_tensor)[0, 0].cpu().numpy()

    def predict_tensor(self, rgb: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """Batched tensors -> [B,1,H,W] float32 on the engine's device."""
        check_torch_inputs(rgb, sparse)
        return self.run(rgb, torch.nan_to_num(sparse, nan=0.0, posinf=0.0, neginf=0.0))

    def run(self, rgb: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        memory_format = torch.channels_last
        rgb = rgb.to(self.device, dtype=torch.float32, non_blocking=True).contiguous(memory_format=memory_format)
        sparse = sparse.to(self.device, dtype=torch.float32, non_blocking=True).contiguous(memory_format=memory_format)
        fp16 = self.spec.precision == "fp16"
        with torch.inference_mode(), torch_threads(self.spec.threads if self.device.type == "cpu" else None), \
                torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=fp16):
            if self.layout is not None:
                return self._run_fused(rgb, sparse)
            output = self.model(rgb, sparse)
        if isinstance(output, (tuple, list)):  # a model that always returns (depth, features)
            output = output[0]
        output = output.float().contiguous()
        self._synchronize()
        return output

    def _run_fused(self, rgb: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        from ..models import dacspn_cpu

        flat = self.layout.flatten(*self.model(rgb, sparse, refinement_inputs=True))
        with self._workspace_lock:
            depth = dacspn_cpu.depth_from_refinement_inputs([tensor.float().cpu().numpy() for tensor in flat],
                                                            self.layout, rgb.shape[2], rgb.shape[3],
                                                            self.spec.threads, self.workspace)
        output = torch.from_numpy(depth).to(self.device)
        self._synchronize()
        return output

    def _synchronize(self) -> None:
        # Results are complete when predict returns, so callers may time it and read it at once.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def warmup(self, height: int, width: int, runs: int, batch: int) -> None:
        rgb, sparse = (torch.from_numpy(array).to(self.device) for array in example_arrays(height, width, batch))
        for _ in range(runs):
            self.run(rgb, sparse)
