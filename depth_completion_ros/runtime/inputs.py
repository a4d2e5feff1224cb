"""The engine's input checks, for numpy frames and (where the caller has PyTorch) batched tensors, and random
example inputs for warm-ups. numpy only: torch is touched only when a tensor is passed, so it is loaded."""
from __future__ import annotations

import numpy as np


def check_numpy_inputs(rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    """Validate one (H,W,3) RGB image (uint8 0..255 or float 0..1) and one (H,W) sparse depth map in metres;
    return the sparse depth as float32 with NaN/inf as 0 (no measurement, REP 118's NaN convention)."""
    if not isinstance(sparse, np.ndarray):
        raise ValueError(f"rgb is a numpy array, so sparse depth must be one too, got {type(sparse).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be an (H, W, 3) RGB image, got shape {rgb.shape}")
    if sparse.ndim != 2:
        raise ValueError(f"sparse depth must be an (H, W) map in metres, got shape {sparse.shape}")
    if rgb.shape[:2] != sparse.shape:
        raise ValueError(f"rgb is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but sparse depth is "
                         f"{sparse.shape[0]}x{sparse.shape[1]}: they must be the same size")
    if np.issubdtype(rgb.dtype, np.floating):
        # A float image in 0..255 is the commonest mistake; it would silently produce garbage depth.
        if rgb.size and float(np.nanmax(rgb)) > 1.0 + 1e-3:
            raise ValueError(f"float rgb must lie in 0..1, got values up to {float(np.nanmax(rgb)):.4g} "
                             "(pass uint8 for 0..255 images)")
    elif rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 (0..255) or float (0..1), got dtype {rgb.dtype}")
    if not np.issubdtype(sparse.dtype, np.floating):
        raise ValueError(f"sparse depth must be float metres, got dtype {sparse.dtype} "
                         "(convert KITTI uint16 PNG values with value / 256)")
    sparse_float = np.nan_to_num(sparse.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    if sparse_float.size and float(sparse_float.min()) < 0.0:
        raise ValueError(f"sparse depth must be >= 0 metres (0 = no measurement), got {float(sparse_float.min()):.4g}")
    return sparse_float


def numpy_batch(rgb: np.ndarray, sparse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One checked frame as a batch of one: float32 rgb [1,3,H,W] in 0..1 (uint8 divided by 255, as PyTorch
    divides), sparse [1,1,H,W] metres."""
    sparse_float = check_numpy_inputs(rgb, sparse)
    if rgb.dtype == np.uint8:
        rgb_float = rgb.astype(np.float32) / np.float32(255.0)
    else:
        rgb_float = rgb.astype(np.float32, copy=False)
    return np.ascontiguousarray(rgb_float.transpose(2, 0, 1)[None]), np.ascontiguousarray(sparse_float[None, None])


def check_torch_inputs(rgb, sparse) -> None:
    """Validate batched tensors rgb [B,3,H,W] float 0..1 and sparse [B,1,H,W] float metres."""
    import torch

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


def example_arrays(height: int, width: int, batch: int = 1, density: float = 0.05,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 (rgb [B,3,H,W] in 0..1, sparse [B,1,H,W] metres, 1..80 m on about `density` of the
    pixels), the numpy counterpart of `export.example_inputs`, for warm-ups."""
    if height < 1 or width < 1 or batch < 1:
        raise ValueError(f"example size must be positive, got batch={batch} height={height} width={width}")
    rng = np.random.default_rng(seed)
    rgb = rng.random((batch, 3, height, width), dtype=np.float32)
    depth = 1.0 + 79.0 * rng.random((batch, 1, height, width), dtype=np.float32)
    sparse = np.where(rng.random((batch, 1, height, width)) < density, depth, np.float32(0)).astype(np.float32)
    return rgb, sparse
