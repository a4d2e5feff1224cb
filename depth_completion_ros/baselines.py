"""Classical, no-learning depth completion: the floor every network is compared with.

Both functions take a sparse (H, W) depth image in metres (0 = no return) and return a dense (H, W)
float32 image with no zero wherever the input holds at least one value. They need numpy, scipy (the
nearest fill's distance transform) and OpenCV (the morphology).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def _check_sparse(sparse) -> tuple[np.ndarray, np.ndarray]:
    sparse = np.asarray(sparse)
    if sparse.ndim != 2:
        raise ValueError(f"sparse depth must be a 2-D (H, W) image, got shape {sparse.shape}")
    depth = sparse.astype(np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    return np.where(valid, depth, np.float32(0)), valid


def nearest_fill(sparse: np.ndarray) -> np.ndarray:
    """Each pixel takes the depth of the nearest valid input pixel (Euclidean distance in pixels).

    Valid inputs are kept exactly. An input without any valid pixel gives all zeros.
    """
    depth, valid = _check_sparse(sparse)
    if not valid.any():
        return depth
    # The EDT of "not valid" returns, for every pixel, the coordinates of its nearest valid pixel.
    rows, cols = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return depth[rows, cols]


def _diamond(radius: int) -> np.ndarray:
    offsets = np.abs(np.arange(-radius, radius + 1))
    return ((offsets[:, None] + offsets[None, :]) <= radius).astype(np.uint8)


_SQUARE_5 = np.ones((5, 5), np.uint8)
_SQUARE_7 = np.ones((7, 7), np.uint8)
_SQUARE_31 = np.ones((31, 31), np.uint8)


def _fill_empty(inverted: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Empty (0) pixels take the largest value within the kernel's window (= the nearest depth there)."""
    import cv2

    return np.where(inverted > 0, inverted, cv2.dilate(inverted, kernel))


def morphological_fill(
    sparse: np.ndarray,
    max_depth: float = 100.0,
    extend_to_top: bool = True,
    keep_input: bool = True,
) -> np.ndarray:
    """An IP-Basic-style classical fill (after Ku, Harakeh & Waslander, "In Defense of Classical Image
    Processing: Fast Depth Completion on the CPU", CRV 2018), with OpenCV's morphology as the paper uses.

    Steps, on inverted depth (max_depth + 1 - d, so near points have large values and 0 stays "empty";
    grey dilation then prefers the nearer surface at occlusion edges, as the paper argues):
      1. dilate with a 5x5 diamond kernel: each return grows into a small blob;
      2. close with a 5x5 square: joins neighbouring blobs and fills the small holes between them;
      3. fill the remaining empty pixels from a 7x7 dilation (small holes);
      4. extend each column's topmost value up to the image top (no LiDAR above the scan; optional);
      5. fill the remaining empty pixels from a 31x31 dilation (large holes), then by nearest neighbour
         (guarantees no hole is left wherever the input holds any value);
      6. smooth: a 5x5 median filter (removes the blocky steps of the dilations) then a 5x5 Gaussian
         blur (sigma 1 px, the light smoothing the paper applies last);
      7. invert back to metres.
    Inputs farther than `max_depth` are clipped to it while filling. With `keep_input` (default) the valid
    input pixels keep their exact measured depth in the output. An input without any valid pixel gives
    all zeros. OpenCV (not scipy.ndimage) because its separable/van Herk max filters and 5x5 median
    are several times faster on these sizes (benchmarks/bench_fills.py).
    """
    import cv2

    if not np.isfinite(max_depth) or max_depth <= 0:
        raise ValueError(f"max_depth must be a positive number of metres, got {max_depth}")
    depth, valid = _check_sparse(sparse)
    if not valid.any():
        return depth
    ceiling = np.float32(max_depth + 1.0)
    inverted = np.where(valid, ceiling - np.minimum(depth, np.float32(max_depth)), np.float32(0))

    inverted = cv2.dilate(inverted, _diamond(2))
    inverted = cv2.morphologyEx(inverted, cv2.MORPH_CLOSE, _SQUARE_5)
    inverted = _fill_empty(inverted, _SQUARE_7)

    if extend_to_top:
        filled = inverted > 0
        has_value = filled.any(axis=0)
        top_row = np.argmax(filled, axis=0)  # first filled row of each column
        top_value = inverted[top_row, np.arange(inverted.shape[1])]
        above_top = (np.arange(inverted.shape[0])[:, None] < top_row[None, :]) & has_value[None, :]
        inverted = np.where(above_top, top_value[None, :], inverted)

    inverted = _fill_empty(inverted, _SQUARE_31)
    if not (inverted > 0).all():
        inverted = nearest_fill(inverted)

    # Replicated borders: the image edge holds no zeros that would pull the filters towards "empty".
    inverted = cv2.medianBlur(np.ascontiguousarray(inverted, dtype=np.float32), 5)
    inverted = cv2.GaussianBlur(inverted, (5, 5), sigmaX=1.0, borderType=cv2.BORDER_REPLICATE)

    # Median and Gaussian filters stay inside the range of their inputs, so depths stay within the input's.
    dense = (ceiling - inverted).astype(np.float32)
    if keep_input:
        dense = np.where(valid, depth, dense)
    return dense


BASELINES = {"nearest": nearest_fill, "morphological": morphological_fill}


class BaselineEngine:
    """A classical fill behind the `inference.Engine` interface (`predict`, `device`, `architecture`), so a
    baseline runs through the very same pipeline, bag replay and report as the networks."""

    backend = "numpy"
    precision = "fp32"

    def __init__(self, method: str = "morphological"):
        if method not in BASELINES:
            raise ValueError(f"unknown baseline {method!r}; choose one of {', '.join(BASELINES)}")
        from .runtime.spec import Device

        self.method = method
        self.architecture = f"baseline:{method}"
        self.kwargs: dict = {}
        self.metadata = {"description": (BASELINES[method].__doc__ or "").strip().splitlines()[0]}
        self.device = Device("cpu")

    def __repr__(self) -> str:
        return f"BaselineEngine({self.method!r})"

    def predict(self, rgb, sparse):
        """numpy (H, W) sparse -> (H, W) dense; torch [B,1,H,W] -> [B,1,H,W] (the image is not used; PyTorch only
        where the caller passes tensors)."""
        fill = BASELINES[self.method]
        if isinstance(sparse, np.ndarray):
            return fill(sparse)
        import torch

        dense = [fill(s[0].detach().float().cpu().numpy()) for s in sparse]
        return torch.from_numpy(np.stack(dense)[:, None])
