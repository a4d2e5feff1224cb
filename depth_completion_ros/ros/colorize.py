"""Depth -> bgr8 false colour for viewing (depth/image_colorized), with a 256-entry turbo lookup table.

The table is computed once from the published polynomial approximation of Google's turbo colormap
(A. Mikhailov, 2019), so the hot path is a clip, a scale and one fancy-indexing lookup: no OpenCV or
matplotlib at runtime.
"""
from __future__ import annotations

import numpy as np

# Coefficients of the turbo approximation: channel(t) = sum_k c_k t^k, k = 0..5, t in [0, 1].
_TURBO_COEFFICIENTS = np.array([
    [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],  # red
    [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],  # green
    [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],  # blue
])


def turbo_lut(size: int = 256) -> np.ndarray:
    """(size, 3) uint8 RGB turbo colormap, dark blue (index 0) to dark red (index size - 1)."""
    t = np.linspace(0.0, 1.0, size)
    powers = t[:, None] ** np.arange(6)[None, :]
    rgb = np.clip(powers @ _TURBO_COEFFICIENTS.T, 0.0, 1.0)
    return np.round(rgb * 255.0).astype(np.uint8)


# The first entries of turbo fade to near-black (where the polynomial is also least accurate); they would
# read as "no depth", so the far end stops at a clear blue.
_FAR_START = 16
# Reversed and in BGR order: index 0 (near) is dark red, the last colour (far) is blue; one black entry
# after it is where pixels without depth point.
_BGR_NEAR_TO_FAR = np.ascontiguousarray(turbo_lut()[_FAR_START:][::-1, ::-1])
_COLOURS = len(_BGR_NEAR_TO_FAR)
_LUT_WITH_BLACK = np.vstack([_BGR_NEAR_TO_FAR, np.zeros((1, 3), dtype=np.uint8)])


def colorize_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """(H, W) depth in metres -> (H, W, 3) uint8 BGR: near (min_depth) red, far (max_depth) blue, linear
    in depth and clipped to the range; no depth (NaN, inf, <= 0) is black."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be 2-D (H, W), got shape {depth.shape}")
    if not max_depth > min_depth:
        raise ValueError(f"max_depth ({max_depth}) must be greater than min_depth ({min_depth})")
    depth = depth.astype(np.float32, copy=False)
    valid = np.isfinite(depth) & (depth > 0)
    # float32 arithmetic in place, rounding by +0.5 before the truncating cast: ~3x faster than float64.
    index = (depth - np.float32(min_depth)) * np.float32((_COLOURS - 1) / (max_depth - min_depth))
    index += np.float32(0.5)
    np.clip(index, 0, _COLOURS - 1, out=index)
    index[~valid] = _COLOURS  # also replaces NaN before the cast
    return _LUT_WITH_BLACK.take(index.astype(np.intp), axis=0)
