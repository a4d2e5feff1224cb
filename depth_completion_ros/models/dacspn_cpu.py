"""DA-CSPN++ propagation on the CPU as fused loops (numba): the arithmetic of `dacspn.DACSPN.refine`, one
pass over the image per iteration instead of one per neighbour tap.

Why: as a graph of standard operators (ONNX Runtime, PyTorch) each of the k*k - 1 taps of every iteration
is a slice, a multiply and an add over the whole image, so the refinement streams ~8 full planes through
memory per tap and is memory-bound: half of the shipped CDSPN's CPU time. Here a thread walks the image
row by row and sums all taps of a row while that row is in cache (one read of each affinity plane and
of the depth rows it needs, one write), about 6x faster than ONNX Runtime's graph at 1216x256.

The guidance arrives raw on its feature grid (1/d of the depth grid for a stage of dilation d, as
`DACSPN.raw_guidance_on_features` returns it); it is normalised there and nearest-up-sampled row by row
inside the loops, so the up-sampled planes are never stored. Same operations in the same order as the graph
(multiply, then add, tap by tap; no fused multiply-add): results agree with PyTorch to float32
rounding of the sums (~1e-6 relative), as ONNX Runtime's do.

numba compiles the loops on first use (about 3 s) and caches them on disk; `available()` says whether it
is installed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .dacspn import RefinementLayout

try:  # numba is a dependency of the package; without it the engine keeps the whole-graph refinement
    import numba
    from numba import njit, prange
    _IMPORT_ERROR = None
except ImportError as error:  # pragma: no cover - exercised only where numba is missing
    numba = None
    _IMPORT_ERROR = error


def available() -> str | None:
    """None when the fused refinement can run, else why not."""
    return None if _IMPORT_ERROR is None else f"numba is not importable ({_IMPORT_ERROR})"


if numba is not None:
    @njit(parallel=True, cache=True)
    def _propagate(initial, anchor, centre, weights, sparse, tap_rows, tap_cols, radius, iterations, scale):
        """`dacspn.propagate_normalized` for one image: initial, anchor, sparse [H, W]; centre [H>>s, W>>s];
        weights [taps, H>>s, W>>s] (s = `scale`, the guidance grid's log2 factor); tap offsets in pixels."""
        height, width = initial.shape
        taps = weights.shape[0]
        padded = np.empty((height + 2 * radius, width + 2 * radius), np.float32)
        depth = initial.copy()
        out = np.empty((height, width), np.float32)
        for _ in range(iterations):
            for y in prange(height + 2 * radius):  # replicate padding
                source = depth[min(max(y - radius, 0), height - 1)]
                row = padded[y]
                for x in range(radius):
                    row[x] = source[0]
                    row[width + radius + x] = source[width - 1]
                for x in range(width):
                    row[radius + x] = source[x]
            # One guidance row serves 2**scale depth rows: its weights are up-sampled once for all of them.
            for guidance_row in prange(height >> scale):
                expanded = np.empty(width, np.float32)
                first = guidance_row << scale
                for tap in range(taps):
                    if scale == 0:
                        weight = weights[tap, guidance_row]
                    else:
                        source = weights[tap, guidance_row]
                        for x in range(width):
                            expanded[x] = source[x >> scale]
                        weight = expanded
                    offset = radius + tap_cols[tap]
                    for y in range(first, first + (1 << scale)):
                        row = out[y]
                        neighbour = padded[y + radius + tap_rows[tap]]
                        if tap == 0:
                            for x in range(width):
                                row[x] = weight[x] * neighbour[x + offset]
                        else:
                            for x in range(width):
                                row[x] = row[x] + weight[x] * neighbour[x + offset]
                centre_row = centre[guidance_row]
                for y in range(first, first + (1 << scale)):
                    row = out[y]
                    anchor_row = anchor[y]
                    sparse_row = sparse[y]
                    for x in range(width):
                        value = centre_row[x >> scale] * anchor_row[x] + row[x]
                        row[x] = sparse_row[x] if sparse_row[x] > 0 else value
            depth, out = out, depth
        return depth

    @njit(parallel=True, cache=True)
    def _normalize(raw, eps):
        """`dacspn.normalize_affinities` for one image: raw [taps, h, w] -> (neighbours [taps, h, w], centre [h, w])."""
        taps, height, width = raw.shape
        neighbours = np.empty_like(raw)
        centre = np.empty((height, width), np.float32)
        for y in prange(height):
            scale = np.zeros(width, np.float32)
            for tap in range(taps):
                for x in range(width):
                    scale[x] += abs(raw[tap, y, x])
            total = np.zeros(width, np.float32)
            for x in range(width):
                scale[x] = max(scale[x], eps)
            for tap in range(taps):
                for x in range(width):
                    value = raw[tap, y, x] / scale[x]
                    neighbours[tap, y, x] = value
                    total[x] += value
            for x in range(width):
                centre[y, x] = np.float32(1.0) - total[x]
        return neighbours, centre

    @njit(parallel=True, cache=True)
    def _mix(results, weights, sparse, scale):
        """sum_k weights[k] * results[k] (weights on the guidance grid), then the sparse depth selected back."""
        count, height, width = results.shape
        out = np.empty((height, width), np.float32)
        for y in prange(height):
            guidance_row = y >> scale
            row = out[y]
            for x in range(width):
                row[x] = weights[0, guidance_row, x >> scale] * results[0, y, x]
            for k in range(1, count):
                for x in range(width):
                    row[x] = row[x] + weights[k, guidance_row, x >> scale] * results[k, y, x]
            sparse_row = sparse[y]
            for x in range(width):
                if sparse_row[x] > 0:
                    row[x] = sparse_row[x]
        return out


def tap_offsets(kernel_size: int, dilation: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the neighbour taps, row-major with the centre left out (the channel order
    of the affinities, as `dacspn._tap_slices`)."""
    centre = kernel_size // 2
    offsets = [((ky - centre) * dilation, (kx - centre) * dilation)
               for ky in range(kernel_size) for kx in range(kernel_size) if not (ky == centre and kx == centre)]
    rows, cols = zip(*offsets)
    return np.asarray(rows, np.int64), np.asarray(cols, np.int64)


def refine(coarse: np.ndarray, sparse: np.ndarray, guidance: Sequence[tuple[Sequence[np.ndarray], np.ndarray]],
           layout: RefinementLayout, threads: int | None = None) -> np.ndarray:
    """`DACSPN.refine` after `DACSPN.raw_guidance_on_features`, on numpy arrays: coarse and sparse [B,1,H,W]
    metres (sparse: 0 = none, already cleaned), guidance per stage ([raw affinities [B,k*k-1,h,w] per kernel
    size], kernel-size weights [B,K,h,w]) on the stage's feature grid, h = H/d. Returns refined depth
    [B,1,H,W]. `threads`: numba threads for this call (None: numba's default, the cores)."""
    if _IMPORT_ERROR is not None:
        raise RuntimeError(available())
    dilations, kernel_sizes = layout.dilations, layout.kernel_sizes
    if len(guidance) != len(dilations):
        raise ValueError(f"guidance has {len(guidance)} stages, the refinement has {len(dilations)}")
    batch, _, height, width = coarse.shape
    offsets = {(k, d): tap_offsets(k, d) for d in dilations for k in kernel_sizes}
    eps = np.float32(layout.eps)
    previous_threads = numba.get_num_threads()
    if threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        refined = np.empty_like(coarse, dtype=np.float32)
        for b in range(batch):
            valid_sparse = np.ascontiguousarray(sparse[b, 0], dtype=np.float32)
            previous = np.ascontiguousarray(coarse[b, 0], dtype=np.float32)
            for dilation, (affinities, mixture) in zip(dilations, guidance):
                scale = _log2_factor(height, mixture.shape[-2], width, mixture.shape[-1])
                results = np.empty((len(kernel_sizes), height, width), np.float32)
                for index, (kernel_size, raw) in enumerate(zip(kernel_sizes, affinities)):
                    rows, cols = offsets[kernel_size, dilation]
                    if raw.shape[1] != len(rows):
                        raise ValueError(f"{raw.shape[1]} affinity channels for kernel size {kernel_size}")
                    neighbours, centre = _normalize(np.ascontiguousarray(raw[b], dtype=np.float32), eps)
                    results[index] = _propagate(previous, previous, centre, neighbours, valid_sparse, rows, cols,
                                                (kernel_size // 2) * dilation, layout.iterations, scale)
                previous = _mix(results, np.ascontiguousarray(mixture[b]), valid_sparse, scale)
            refined[b, 0] = previous
        return refined
    finally:
        numba.set_num_threads(previous_threads)


def depth_from_refinement_inputs(flat: Sequence[np.ndarray], layout: RefinementLayout, height: int, width: int,
                                 threads: int | None = None) -> np.ndarray:
    """What a CDSPN returns, from its `cdspn.RefinementInputs` outputs (in `layout.names()` order): the
    refined depth clamped at 0 and cropped to the input's height x width, [B,1,H,W] float32."""
    coarse, sparse, guidance = layout.unflatten(flat)
    refined = refine(coarse, sparse, guidance, layout, threads)
    return np.maximum(refined[..., :height, :width], np.float32(0.0))


def _log2_factor(height: int, grid_height: int, width: int, grid_width: int) -> int:
    """s with grid = depth grid / 2**s exactly (the nearest up-sampling the loops do by shifting)."""
    for scale in range(4):
        if grid_height << scale == height and grid_width << scale == width:
            return scale
    raise ValueError(f"guidance grid {grid_height}x{grid_width} is not the depth grid {height}x{width} "
                     "divided by 1, 2, 4 or 8")
