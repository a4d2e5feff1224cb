"""Accuracy without ground truth: the LiDAR hold-out self-check, and an image/LiDAR edge-agreement score.

Hold-out: on a self-check frame a small fraction of the projected LiDAR pixels is removed from the
network's input, and the prediction is scored at those pixels against the removed measurements: RMSE, MAE
and mean signed error in millimetres, overall and by distance band (`BANDS_M`, by the measured depth).

Which pixels: candidates are all valid LiDAR pixels inside the region the network sees (the ROI); none is
excluded. The sample is stratified: the candidates are ordered by image tile (`TILE_PX` square tiles,
row-major) and at random inside each tile, and every k-th of them is taken from a random start
(systematic sampling). The hold-out therefore has exactly round(fraction x candidates) pixels, and every
tile contributes its proportional share to within one pixel: the sample is spread over the image as the
LiDAR is, not clustered. The draws are seeded per frame: by its stamp, or by a checksum of its sparse depth
when it has none, so a replay holds out the same pixels.

Isolated returns (no LiDAR pixel left within `ISOLATION_RADIUS_PX` once the hold-out is removed) are kept
in the sample, not dropped: excluding them would bias the score towards the easy, densely sampled parts
of the scan. Their number is reported (`SelfCheck.isolated`) so that a reader sees how much of the score
is extrapolation.

What it measures: consistency of the prediction with the LiDAR itself, at pixels one or two pixels from
the nearest remaining return along a scan line. It under-states the error at pixels between scan lines,
and it cannot see a mis-calibrated LiDAR->camera transform, which shifts all returns together.
`edge_agreement` is a second, input-only check for that: whether LiDAR depth discontinuities fall on
image edges.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

BANDS_M = (0.0, 10.0, 20.0, 40.0, 80.0, math.inf)
TILE_PX = 16
ISOLATION_RADIUS_PX = 4
MAX_FRACTION = 0.5
_SEED_SALT = 0x5E1FC4EC  # keeps the hold-out draws apart from other generators seeded by the stamp


def band_label(low: float, high: float) -> str:
    return f"{low:g}+ m" if math.isinf(high) else f"{low:g}-{high:g} m"


BAND_LABELS = tuple(band_label(low, high) for low, high in zip(BANDS_M[:-1], BANDS_M[1:]))


@dataclass(frozen=True)
class BandScore:
    """Errors of the held-out pixels whose measured depth lies in [from_m, to_m) (to_m None: no limit)."""

    label: str
    from_m: float
    to_m: float | None
    count: int
    rmse_mm: float | None
    mae_mm: float | None


@dataclass(frozen=True)
class SelfCheck:
    """The self-check of one frame. Errors are prediction minus the held-out LiDAR depth, in mm; None
    where no pixel was scored (a frame without LiDAR returns is an empty self-check, not an error).

    candidates: valid LiDAR pixels in the network's region; held_out: pixels removed from its input;
    scored: held-out pixels with a finite prediction; isolated: held-out pixels with no return left within
    ISOLATION_RADIUS_PX; edge_agreement (None when not computed or too few depth edges): see
    `edge_agreement`; rows, cols: the held-out pixels (full-image coordinates).
    """

    fraction: float
    candidates: int
    held_out: int
    scored: int
    isolated: int
    rmse_mm: float | None
    mae_mm: float | None
    bias_mm: float | None
    bands: tuple[BandScore, ...]
    edge_agreement: float | None = None
    edge_pixels: int = 0
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False, compare=False)
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False, compare=False)

    @property
    def empty(self) -> bool:
        return self.scored == 0

    def as_dict(self) -> dict:
        """The figures without the pixel coordinates (JSON-ready)."""
        return {"fraction": self.fraction, "candidates": self.candidates, "held_out": self.held_out,
                "scored": self.scored, "isolated": self.isolated, "rmse_mm": self.rmse_mm,
                "mae_mm": self.mae_mm, "bias_mm": self.bias_mm,
                "bands": [band.__dict__.copy() for band in self.bands],
                "edge_agreement": self.edge_agreement, "edge_pixels": self.edge_pixels}


def check_fraction(fraction: float) -> float:
    fraction = float(fraction)
    if not (math.isfinite(fraction) and 0.0 <= fraction <= MAX_FRACTION):
        raise ValueError(f"self-check fraction must be in [0, {MAX_FRACTION}], got {fraction}")
    return fraction


def frame_seed(stamp_ns: int | None, sparse: np.ndarray) -> int:
    """The seed of a frame's draws: its stamp, or a checksum of its sparse depth when it has no stamp."""
    if stamp_ns is not None:
        return int(stamp_ns) & 0xFFFFFFFFFFFFFFFF
    return zlib.crc32(np.ascontiguousarray(sparse, dtype=np.float32).tobytes())


def choose_hold_out(sparse: np.ndarray, fraction: float, seed: int, top: int = 0,
                    tile_px: int = TILE_PX) -> tuple[np.ndarray, np.ndarray, int]:
    """(rows, cols, candidates): the pixels to hold out of `sparse` (H, W metres, 0 = none), chosen among
    its valid pixels at rows >= `top` by stratified systematic sampling (see the module docstring)."""
    fraction = check_fraction(fraction)
    valid = np.isfinite(sparse) & (sparse > 0)
    valid[:top] = False
    rows, cols = np.nonzero(valid)
    candidates = rows.size
    count = int(round(fraction * candidates))
    if count == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, candidates
    rng = np.random.default_rng([_SEED_SALT, int(seed)])
    tiles_per_row = -(-sparse.shape[1] // tile_px)
    tile = (rows // tile_px) * tiles_per_row + cols // tile_px
    order = np.lexsort((rng.random(candidates), tile))
    step = candidates / count
    picks = (rng.random() * step + np.arange(count) * step).astype(np.int64)
    chosen = order[np.minimum(picks, candidates - 1)]
    return rows[chosen].astype(np.int64), cols[chosen].astype(np.int64), candidates


def without(sparse: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """A copy of `sparse` with the pixels (rows, cols) set to 0 (no return)."""
    reduced = np.array(sparse, dtype=np.float32, copy=True)
    reduced[rows, cols] = 0.0
    return reduced


def count_isolated(reduced: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                   radius: int = ISOLATION_RADIUS_PX) -> int:
    """Held-out pixels with no valid pixel of `reduced` within `radius` (a square window)."""
    if rows.size == 0:
        return 0
    from scipy.ndimage import maximum_filter

    valid = (np.isfinite(reduced) & (reduced > 0)).astype(np.uint8)
    near = maximum_filter(valid, size=2 * radius + 1, mode="constant")
    return int((near[rows, cols] == 0).sum())


def score_hold_out(prediction: np.ndarray, truth: np.ndarray, fraction: float = 0.0, candidates: int | None = None,
                   isolated: int = 0, rows: np.ndarray | None = None, cols: np.ndarray | None = None,
                   bands_m: tuple[float, ...] = BANDS_M) -> SelfCheck:
    """Score predicted depths (metres, any shape) against the held-out measurements `truth` (same shape).
    Non-finite predictions are not scored (held_out - scored says how many)."""
    prediction = np.asarray(prediction, np.float64).ravel()
    truth = np.asarray(truth, np.float64).ravel()
    finite = np.isfinite(prediction)
    error = prediction[finite] - truth[finite]
    distance = truth[finite]
    bands = []
    for low, high, label in zip(bands_m[:-1], bands_m[1:], BAND_LABELS):
        inside = (distance >= low) & (distance < high)
        bands.append(BandScore(label, float(low), None if math.isinf(high) else float(high), int(inside.sum()),
                               *_rmse_mae(error[inside])))
    rmse, mae = _rmse_mae(error)
    return SelfCheck(
        fraction=float(fraction), candidates=int(truth.size if candidates is None else candidates),
        held_out=int(truth.size), scored=int(error.size), isolated=int(isolated), rmse_mm=rmse, mae_mm=mae,
        bias_mm=float(error.mean() * 1000.0) if error.size else None, bands=tuple(bands),
        rows=np.zeros(0, np.int64) if rows is None else rows, cols=np.zeros(0, np.int64) if cols is None else cols)


def _rmse_mae(error: np.ndarray) -> tuple[float | None, float | None]:
    if error.size == 0:
        return None, None
    return float(np.sqrt(np.mean(error * error)) * 1000.0), float(np.mean(np.abs(error)) * 1000.0)


# ------------------------------------------------------------------------------------ edge agreement
EDGE_RATIO = 1.3  # far/near depth ratio of neighbouring returns that makes a depth edge
EDGE_MAX_GAP_PX = (3, 8)  # largest gap between neighbouring returns: along a row, along a column
EDGE_BLUR_PX = 1.5
MIN_EDGE_PIXELS = 10  # per direction


def depth_edges(sparse: np.ndarray, ratio: float = EDGE_RATIO,
                max_gap_px: tuple[int, int] = EDGE_MAX_GAP_PX) -> tuple[np.ndarray, np.ndarray]:
    """(horizontal, vertical) boolean maps of LiDAR depth edges: returns whose next return along the row
    (horizontal) or column (vertical), at most max_gap_px away, is more than `ratio` times farther — the
    near side of a discontinuity, the object's outline."""
    depth = np.where(np.isfinite(sparse) & (sparse > 0), sparse, 0.0).astype(np.float32)
    maps = []
    for axis, gap in ((1, max_gap_px[0]), (0, max_gap_px[1])):
        along = depth if axis == 1 else depth.T
        edges = np.zeros(along.shape, bool)
        rows, cols = np.nonzero(along)  # row-major: consecutive entries of one row are neighbours
        same_row = (rows[1:] == rows[:-1]) & (cols[1:] - cols[:-1] <= gap)
        first, second = along[rows[:-1], cols[:-1]], along[rows[1:], cols[1:]]
        jump = same_row & (np.maximum(first, second) > ratio * np.minimum(first, second))
        near_first = jump & (first < second)
        near_second = jump & (second < first)
        edges[rows[:-1][near_first], cols[:-1][near_first]] = True
        edges[rows[1:][near_second], cols[1:][near_second]] = True
        maps.append(edges if axis == 1 else edges.T)
    return maps[0], maps[1]


def edge_agreement(rgb: np.ndarray, sparse: np.ndarray, top: int = 0) -> tuple[float | None, int]:
    """(score, depth-edge pixels) of rows >= top: how much stronger the image gradient is at LiDAR depth
    edges than at LiDAR returns in general. Per direction: the gradient across the edge (horizontal at
    horizontal depth jumps, vertical at vertical ones), blurred by EDGE_BLUR_PX for tolerance, its mean at
    the depth edges over its mean at all returns; the score is the plain mean of the two directions, so the
    more numerous vertical jumps (tops of objects, which a pitch error moves) do not drown the horizontal
    ones (object sides, which a yaw error moves). 1 means no relation; a calibrated rig whose object
    outlines show in the image scores clearly above 1, and a rotated or shifted LiDAR moves the depth edges
    off the image edges, towards 1. None where neither direction has MIN_EDGE_PIXELS depth edges."""
    from scipy.ndimage import gaussian_filter, sobel

    gray = np.asarray(rgb[top:], np.float32).mean(axis=2)
    sparse = np.asarray(sparse[top:], np.float32)
    valid = np.isfinite(sparse) & (sparse > 0)
    horizontal, vertical = depth_edges(sparse)
    ratios = []
    for edges, axis in ((horizontal, 1), (vertical, 0)):
        if edges.sum() < MIN_EDGE_PIXELS:
            continue
        gradient = gaussian_filter(np.abs(sobel(gray, axis=axis)), EDGE_BLUR_PX)
        baseline = float(gradient[valid].mean())
        if baseline > 0:
            ratios.append(float(gradient[edges].mean()) / baseline)
    return (float(np.mean(ratios)) if ratios else None), int(horizontal.sum() + vertical.sum())
