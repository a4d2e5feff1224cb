"""DA-CSPN++ propagation on the CPU as fused loops (numba): the arithmetic of `dacspn.DACSPN.refine`, one
pass over the image per iteration instead of one per neighbour tap.

Why: as a graph of standard operators (ONNX Runtime, PyTorch) each of the k*k - 1 taps of every iteration
is a slice, a multiply and an add over the whole image, so the refinement streams ~8 full planes through
memory per tap and is memory-bound: half of the shipped CDSPN's CPU time. Here a thread sums all taps of a
row while that row is in cache, and runs all iterations over its band of rows as a wavefront, so that each
affinity row is read from memory once per frame instead of once per iteration (`_propagate`): about 2x the
loops that took the image an iteration at a time, and those were about 6x ONNX Runtime's graph at 1216x256.

The guidance arrives raw on its feature grid (1/d of the depth grid for a stage of dilation d, as
`DACSPN.raw_guidance_on_features` returns it) and is only read: each row is normalised there and
nearest-up-sampled once into a small ring that the iterations share, so the up-sampled planes are never stored.
Same operations in the same order as the graph (multiply, then add, tap by tap; no fused multiply-add): results
agree with PyTorch to float32 rounding of the sums (~1e-6 relative), as ONNX Runtime's do.

numba compiles the loops on first use (5-15 s) and caches them on disk; `available()` says whether they
run here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .layout import RefinementLayout

try:  # numba is a dependency of the package; without it the engine keeps the whole-graph refinement
    import numba
    from numba import njit, prange
    _IMPORT_ERROR = None
except ImportError as error:  # pragma: no cover - exercised only where numba is missing
    numba = None
    _IMPORT_ERROR = error


_self_test: str | None | bool = False  # False: not run yet in this process


def available() -> str | None:
    """None when the fused refinement runs here, else why not: numba must import, and the loops must
    compile and run on a tiny input (checked once per process, ~3 s on first use, then from numba's disk
    cache), so that an engine never finds out at its first frame."""
    global _self_test
    if _IMPORT_ERROR is not None:
        return f"numba is not importable ({_IMPORT_ERROR})"
    if _self_test is False:
        try:
            layout = RefinementLayout((2, 1), (3,), 1)
            flat = [np.ones((1, 1, 4, 4), np.float32), np.zeros((1, 1, 4, 4), np.float32),
                    np.zeros((1, 8, 2, 2), np.float32), np.ones((1, 1, 2, 2), np.float32),
                    np.zeros((1, 8, 4, 4), np.float32), np.ones((1, 1, 4, 4), np.float32)]
            if not np.array_equal(depth_from_refinement_inputs(flat, layout, 4, 4), flat[0]):
                raise RuntimeError("zero guidance did not return the coarse depth")
            _self_test = None
        except Exception as error:  # noqa: BLE001 - numba's compile errors share no useful base class
            _self_test = f"numba cannot compile or run the propagation loops ({type(error).__name__}: {error})"
    return _self_test


def _compiled(function):
    """numba's parallel compilation of `function`, cached on disk (next to this file, else in the user's
    cache folder); without any writable cache location it compiles at every start instead of failing."""
    try:
        return njit(parallel=True, cache=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(parallel=True)(function)


if numba is not None:
    @_compiled
    def _propagate(initial, anchor, raw, eps, sparse, tap_rows, tap_cols, radius, iterations, scale, bands, rings,
                   result):
        """`dacspn.normalize_affinities` then `dacspn.propagate_normalized` for one image into `result`: initial,
        anchor, sparse [H, W]; raw affinities [taps, H>>s, W>>s] (s = `scale`, the guidance grid's log2 factor;
        read only; taps a multiple of 4); tap offsets in pixels. Scratch of the n bands (`band_scratch`): `bands`
        [n, 2, rows, W + 2r], `rings` [n, slots, taps + 1, W].

        The image is cut into n bands of rows, one per thread, and a band runs all iterations as a wavefront:
        iteration t works `lag` guidance rows behind iteration t-1, whose rows it needs are then fresh in cache.
        Taken an iteration at a time, each iteration streamed all weight planes from memory again (a frame's are
        100 MB and more), which made the loops memory-bound. The first iteration to reach a guidance row
        normalises it and up-samples it to the depth grid into a ring of slots, where the later iterations find
        it; iterations alternate between a band's two row buffers, padded by replication as the image's border.
        A band also computes, in its earlier iterations, the rows beyond its edges that its last iteration needs.
        """
        height, width = initial.shape
        taps, units, grid_width = raw.shape
        if iterations == 0:
            result[:] = initial
            return
        unit = 1 << scale  # depth rows per guidance row
        lag = (radius + unit - 1) >> scale  # `_lag`, which numba cannot call
        count = bands.shape[0]
        slots = rings.shape[1]
        per_band = (units + count - 1) // count
        for band in prange(count):
            low = band * per_band
            high = min(units, low + per_band)
            if low >= high:
                continue
            base = max(0, low - iterations * lag)  # the first guidance row of the band's row buffers
            scratch = bands[band]
            ring = rings[band]
            for y in range(base * unit, min(units, high + iterations * lag) * unit):  # iteration 0
                source = initial[y]
                row = scratch[0, y - base * unit]
                for x in range(radius):
                    row[x] = source[0]
                    row[width + radius + x] = source[width - 1]
                for x in range(width):
                    row[radius + x] = source[x]
            norm = np.empty(grid_width, np.float32)
            total = np.empty(grid_width, np.float32)
            values = np.empty(grid_width, np.float32)
            first_step = max(0, low - (iterations - 1) * lag)
            last_step = min(units, high + (iterations - 1) * lag) + (iterations - 1) * lag
            for step in range(first_step, last_step):
                for iteration in range(1, iterations + 1):
                    guidance_row = step - (iteration - 1) * lag
                    reach = (iterations - iteration) * lag  # rows beyond the band this iteration computes
                    if guidance_row < max(0, low - reach) or guidance_row >= min(units, high + reach):
                        continue
                    slot = ring[guidance_row % slots]
                    if iteration == 1:  # normalise: neighbour weights = raw / max(sum |raw|, eps), centre 1 - sum
                        norm[:] = 0
                        total[:] = 0
                        for tap in range(taps):
                            for x in range(grid_width):
                                norm[x] += abs(raw[tap, guidance_row, x])
                        for x in range(grid_width):
                            norm[x] = max(norm[x], eps)
                        for tap in range(taps + 1):
                            if tap < taps:
                                for x in range(grid_width):
                                    values[x] = raw[tap, guidance_row, x] / norm[x]
                                    total[x] += values[x]
                            else:
                                for x in range(grid_width):
                                    values[x] = np.float32(1.0) - total[x]
                            target = slot[tap]
                            if scale == 0:
                                target[:] = values
                            else:
                                for x in range(width):
                                    target[x] = values[x >> scale]
                    previous = scratch[(iteration - 1) % 2]
                    first = guidance_row << scale
                    for y in range(first, first + unit):
                        if iteration == iterations:
                            row = result[y, 0:width]
                        else:
                            row = scratch[iteration % 2, y - base * unit, radius:radius + width]
                        # Four taps per pass over the row (an odd kernel has a multiple of 8): the row is loaded
                        # and stored once for four products, and the sum is still taken tap by tap in order (the
                        # same float32 roundings as one tap at a time).
                        for tap in range(0, taps, 4):
                            # Slices, so that the loops index with x alone: an index that may be negative
                            # (x + offset) makes numba wrap it around per element, which stops vectorization.
                            n0 = previous[min(max(y + tap_rows[tap], 0), height - 1) - base * unit,
                                          radius + tap_cols[tap]:radius + tap_cols[tap] + width]
                            n1 = previous[min(max(y + tap_rows[tap + 1], 0), height - 1) - base * unit,
                                          radius + tap_cols[tap + 1]:radius + tap_cols[tap + 1] + width]
                            n2 = previous[min(max(y + tap_rows[tap + 2], 0), height - 1) - base * unit,
                                          radius + tap_cols[tap + 2]:radius + tap_cols[tap + 2] + width]
                            n3 = previous[min(max(y + tap_rows[tap + 3], 0), height - 1) - base * unit,
                                          radius + tap_cols[tap + 3]:radius + tap_cols[tap + 3] + width]
                            w0 = slot[tap]
                            w1 = slot[tap + 1]
                            w2 = slot[tap + 2]
                            w3 = slot[tap + 3]
                            if tap == 0:
                                for x in range(width):
                                    row[x] = w0[x] * n0[x] + w1[x] * n1[x] + w2[x] * n2[x] + w3[x] * n3[x]
                            else:
                                for x in range(width):
                                    row[x] = row[x] + w0[x] * n0[x] + w1[x] * n1[x] + w2[x] * n2[x] + w3[x] * n3[x]
                        centre_row = slot[taps]
                        anchor_row = anchor[y]
                        sparse_row = sparse[y]
                        for x in range(width):
                            value = centre_row[x] * anchor_row[x] + row[x]
                            row[x] = sparse_row[x] if sparse_row[x] > 0 else value
                        if iteration < iterations:
                            padded = scratch[iteration % 2, y - base * unit]
                            for x in range(radius):
                                padded[x] = row[0]
                                padded[width + radius + x] = row[width - 1]

    @_compiled
    def _mix(results, weights, sparse, scale, out):
        """out = sum_k weights[k] * results[k] (weights on the guidance grid), the sparse depth selected back."""
        count, height, width = results.shape
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


def _lag(radius: int, scale: int) -> int:
    """Guidance rows that iteration t of `_propagate` trails t-1 by: its rows depend on t-1's +- `radius` depth
    rows, and a guidance row spans 2**`scale` of them (the loops compute the same)."""
    return (radius + (1 << scale) - 1) >> scale


def band_count(height: int, radius: int, scale: int, iterations: int, threads: int) -> int:
    """How many bands of rows `_propagate` cuts the image into: one per thread, but each band at least three times
    as tall as the rows that its earlier iterations compute beyond each of its edges (iterations x lag), so that the
    rows computed twice stay under about a third of a band's work however many threads there are."""
    return max(1, min(threads, (height >> scale) // max(1, 3 * iterations * _lag(radius, scale))))


def band_scratch(workspace: "Workspace", height: int, width: int, taps: int, radius: int, scale: int,
                 iterations: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`_propagate`'s scratch for `count` bands, in `workspace`: per band two buffers of its rows and of the
    rows beyond its edges that its iterations compute, `radius` columns of padding each side; and a ring of the
    normalised, up-sampled weights (taps and centre) of the guidance rows that iterations share."""
    units = height >> scale
    lag = _lag(radius, scale)
    per_band = -(-units // count)
    rows = min(units, per_band + 2 * iterations * lag) << scale
    slots = max(1, (iterations - 1) * lag + 1)  # a row is normalised at step u and last used at u + (T-1) lag
    return (workspace.plane("bands", (count, 2, rows, width + 2 * radius)),
            workspace.plane("rings", (count, slots, taps + 1, width)))


def tap_offsets(kernel_size: int, dilation: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the neighbour taps, row-major with the centre left out (the channel order
    of the affinities, as `dacspn._tap_slices`)."""
    centre = kernel_size // 2
    offsets = [((ky - centre) * dilation, (kx - centre) * dilation)
               for ky in range(kernel_size) for kx in range(kernel_size) if not (ky == centre and kx == centre)]
    rows, cols = zip(*offsets)
    return np.asarray(rows, np.int64), np.asarray(cols, np.int64)


class Workspace:
    """Planes reused from call to call (by name). A frame of the default CDSPN needs ~23 MB of them (1242x375);
    allocated per frame they are mapped and page-faulted anew each time, which cost more than the propagation
    itself (measured: the normalisation of one 48-plane affinity map 18-410 ms fresh, against a few ms in reused
    memory). A name keeps one buffer, as large as the largest plane asked of it, and hands out its first elements
    as the shape asked for: planes of another size (the bands' scratch of each kernel size and stage, a region of
    interest that moves from frame to frame) reuse it instead of replacing it. Not for concurrent calls: one per engine,
    used under its lock."""

    def __init__(self):
        self._buffers: dict[str, np.ndarray] = {}

    def plane(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A C-contiguous float32 array of `shape` in the buffer `name` (its contents are left over)."""
        size = int(np.prod(shape, dtype=np.int64))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[name] = np.empty(size, np.float32)
        return buffer[:size].reshape(shape)

    @property
    def nbytes(self) -> int:
        """The bytes the buffers hold."""
        return sum(buffer.nbytes for buffer in self._buffers.values())


def refine(coarse: np.ndarray, sparse: np.ndarray, guidance: Sequence[tuple[Sequence[np.ndarray], np.ndarray]],
           layout: RefinementLayout, threads: int | None = None, workspace: Workspace | None = None) -> np.ndarray:
    """`DACSPN.refine` after `DACSPN.raw_guidance_on_features`, on numpy arrays: coarse and sparse [B,1,H,W]
    metres (sparse: 0 = none, already cleaned), guidance per stage ([raw affinities [B,k*k-1,h,w] per kernel
    size], kernel-size weights [B,K,h,w]) on the stage's feature grid, h = H/d. Returns refined depth
    [B,1,H,W] (in `workspace` memory when one is given: valid until its next use). The guidance is only read.
    `threads`: numba threads for this call (None: numba's default, the cores)."""
    if _IMPORT_ERROR is not None:
        raise RuntimeError(available())
    dilations, kernel_sizes = layout.dilations, layout.kernel_sizes
    if any(k < 3 or k % 2 == 0 for k in kernel_sizes):
        raise ValueError(f"kernel sizes {kernel_sizes}: DA-CSPN++'s kernels are odd, at least 3")
    if len(guidance) != len(dilations):
        raise ValueError(f"guidance has {len(guidance)} stages, the refinement has {len(dilations)}")
    workspace = workspace or Workspace()
    batch, _, height, width = coarse.shape
    offsets = {(k, d): tap_offsets(k, d) for d in dilations for k in kernel_sizes}
    eps = np.float32(layout.eps)
    previous_threads = numba.get_num_threads()
    if threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        refined = workspace.plane("refined", (batch, 1, height, width))
        results = workspace.plane("results", (len(kernel_sizes), height, width))
        threads_now = numba.get_num_threads()
        for b in range(batch):
            valid_sparse = np.ascontiguousarray(sparse[b, 0], dtype=np.float32)
            previous = np.ascontiguousarray(coarse[b, 0], dtype=np.float32)
            for stage, (dilation, (affinities, mixture)) in enumerate(zip(dilations, guidance)):
                scale = _log2_factor(height, mixture.shape[-2], width, mixture.shape[-1])
                for index, (kernel_size, raw) in enumerate(zip(kernel_sizes, affinities)):
                    rows, cols = offsets[kernel_size, dilation]
                    if raw.shape[1] != len(rows):
                        raise ValueError(f"{raw.shape[1]} affinity channels for kernel size {kernel_size}")
                    radius = (kernel_size // 2) * dilation
                    bands, rings = band_scratch(
                        workspace, height, width, len(rows), radius, scale, layout.iterations,
                        band_count(height, radius, scale, layout.iterations, threads_now))
                    _propagate(previous, previous, np.ascontiguousarray(raw[b], dtype=np.float32), eps, valid_sparse,
                               rows, cols, radius, layout.iterations, scale, bands, rings, results[index])
                last = stage == len(dilations) - 1
                output = refined[b, 0] if last else workspace.plane(f"stage{stage % 2}", (height, width))
                _mix(results, np.ascontiguousarray(mixture[b], dtype=np.float32), valid_sparse, scale, output)
                previous = output
        return refined
    finally:
        numba.set_num_threads(previous_threads)


def depth_from_refinement_inputs(flat: Sequence[np.ndarray], layout: RefinementLayout, height: int, width: int,
                                 threads: int | None = None, workspace: Workspace | None = None) -> np.ndarray:
    """What a CDSPN returns, from its `cdspn.RefinementInputs` outputs (in `layout.names()` order, only
    read): the refined depth clamped at 0 and cropped to the input's height x width,
    [B,1,H,W] float32 (a new array)."""
    coarse, sparse, guidance = layout.unflatten(flat)
    refined = refine(coarse, sparse, guidance, layout, threads, workspace)
    return np.maximum(refined[..., :height, :width], np.float32(0.0))


def _log2_factor(height: int, grid_height: int, width: int, grid_width: int) -> int:
    """s with grid = depth grid / 2**s exactly (the nearest up-sampling the loops do by shifting)."""
    for scale in range(4):
        if grid_height << scale == height and grid_width << scale == width:
            return scale
    raise ValueError(f"guidance grid {grid_height}x{grid_width} is not the depth grid {height}x{width} "
                     "divided by 1, 2, 4 or 8")
