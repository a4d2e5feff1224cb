"""A classical dense prior computed inside the network: IP-Basic's morphological fill as tensor operations.

`baselines.morphological_fill` is the package's IP-Basic-style fill (Ku, Harakeh & Waslander, CRV 2018)
in OpenCV, the fastest way to run it on its own on a CPU. A network that anchors its refinement to such a
fill needs it *inside* its graph instead: batched, on the network's device, and in the ONNX export, so that
every backend (PyTorch CPU/CUDA, ONNX Runtime) computes the same thing. `morphological_prior` is that fill
in PyTorch operations that export to ONNX (max pooling, a fixed convolution, selects):

  1. on inverted depth (max_depth + 1 - d; near points large, 0 = empty), dilate with a 5x5 diamond
     (two 3x3 crosses), so grey dilation prefers the nearer surface at occlusion edges;
  2. close with a 5x5 square (joins neighbouring blobs);
  3. fill the still-empty pixels from 7x7, then 15x15, then 31x31 dilations (square max filters are
     separable: a row then a column max pool);
  4. a 5x5 Gaussian blur (sigma 1 px, borders replicated);
  5. back to metres; valid input pixels keep their measured depth exactly.

It leaves out the fill's 5x5 median (no ONNX operator; measured on the held-out synthetic drive it changes
MAE by < 1 mm and iRMSE by 0.02 1/km) and its extension of each column up to the image top; pixels farther
than the dilations reach stay 0 ("no prior"), and the network falls back to its own depth there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PRIOR_MAX_DEPTH = 100.0  # metres; farther inputs are clipped while filling, as in the OpenCV fill
HOLE_FILL_KERNELS = (7, 15, 31)
_GAUSSIAN_SIGMA = 1.0
_GAUSSIAN_SIZE = 5


def _max_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square size x size grey dilation, as a row max pool then a column max pool (same result, far fewer
    comparisons); outside the image counts as -inf (max pooling's padding)."""
    x = F.max_pool2d(x, (1, size), stride=1, padding=(0, size // 2))
    return F.max_pool2d(x, (size, 1), stride=1, padding=(size // 2, 0))


def _cross_dilation(x: torch.Tensor) -> torch.Tensor:
    """Grey dilation with the 3x3 cross (the centre and its 4 neighbours)."""
    return torch.maximum(F.max_pool2d(x, (1, 3), stride=1, padding=(0, 1)),
                         F.max_pool2d(x, (3, 1), stride=1, padding=(1, 0)))


def _gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    offsets = torch.arange(_GAUSSIAN_SIZE, dtype=x.dtype, device=x.device) - _GAUSSIAN_SIZE // 2
    taps = torch.exp(-offsets ** 2 / (2 * _GAUSSIAN_SIGMA ** 2))
    taps = taps / taps.sum()
    half = _GAUSSIAN_SIZE // 2
    x = F.pad(x, (half, half, half, half), mode="replicate")
    x = F.conv2d(x, taps.view(1, 1, 1, -1))
    return F.conv2d(x, taps.view(1, 1, -1, 1))


def morphological_prior(sparse: torch.Tensor, max_depth: float = PRIOR_MAX_DEPTH) -> torch.Tensor:
    """sparse [B,1,H,W] metres (<= 0 or NaN = no return) -> dense prior [B,1,H,W] metres, 0 where no return
    lies within reach of the dilations (about 30 px). Valid inputs are kept exactly."""
    # Not while tracing: the check would be frozen into an exported graph.
    if not torch.jit.is_tracing() and (sparse.dim() != 4 or sparse.shape[1] != 1):
        raise ValueError(f"sparse depth must be [B, 1, H, W], got shape {tuple(sparse.shape)}")
    valid = sparse > 0  # False for NaN too
    zero = torch.zeros_like(sparse)
    ceiling = max_depth + 1.0
    inverted = torch.where(valid, ceiling - sparse.clamp(max=max_depth), zero)
    inverted = _cross_dilation(_cross_dilation(inverted))
    inverted = -_max_filter(-_max_filter(inverted, 5), 5)  # closing
    for size in HOLE_FILL_KERNELS:
        inverted = torch.where(inverted > 0, inverted, _max_filter(inverted, size))
    filled = inverted > 0
    # Blurring across the edge of the filled area would pull depths towards the empty side's 0.
    blurred = _gaussian_blur(torch.where(filled, inverted, _max_filter(inverted, 5)))
    dense = torch.where(filled, ceiling - blurred, zero)
    return torch.where(valid, sparse, dense)
