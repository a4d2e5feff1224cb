"""Training targets without ground truth: a frame's LiDAR sweep accumulated with its neighbours' sweeps.

KITTI built its depth-completion ground truth by accumulating 11 sweeps (the frame and five on each side)
along the vehicle's motion and removing the points that disagree with another view of the frame (Uhrig et
al., "Sparsity Invariant CNNs", 3DV 2017). Here the other view is the frame's own sweep:

1. each neighbour sweep j is moved into frame i's LiDAR by the ego motion (pose_i^-1 @ pose_j) and
   projected into frame i's camera;
2. a projected point is kept only where frame i's own sweep confirms it: some own return within a window
   around its pixel lies within the depth tolerance. The window spans the gap between the own sweep's beams
   (measured per frame: a 32-beam sweep needs a taller window than a 128-beam one) and a few columns, so
   that every pixel between two beams is checked against both. A point that an own return does not
   confirm is either occluded from frame i (a nearer surface was hit), or in what is free space at frame
   i's time (an object that has moved on), or where the own sweep has no return to check it with: all
   three are dropped;
3. the kept points and the own sweep are z-buffered (the own return wins its pixel) with a visibility
   check: a point with another within `visibility_radius` pixels that is nearer by an occluding edge's jump
   is hidden behind it and dropped. Points of a far surface shine through the gaps between a near
   surface's points otherwise, and the LiDAR, mounted apart from the camera, sees background beside a
   foreground edge that the camera does not (KITTI removed those by stereo consistency). On a 32-beam rig
   (`benchmarks/results/adaptation_by_rig.md`) a radius of 5 pixels, applied to the own sweep too, took the
   targets' RMSE against the ground truth from 744 to 454 mm for 4 % fewer pixels.

numpy only: the targets are built on a robot-class CPU without PyTorch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from depth_completion_ros.geometry import PinholeCamera, invert_transform, project

DEFAULT_NEIGHBOURS = 5  # sweeps on each side of a frame: KITTI's 11 in all
ABS_TOLERANCE_M = 0.05  # the agreement tolerance: 5 cm + 3 % of the depth (the synthetic world's own rule)
REL_TOLERANCE = 0.03
WINDOW_HALF_WIDTH = 2  # columns on each side of a pixel searched for a confirming own return
MIN_WINDOW_HALF_HEIGHT = 2
MAX_WINDOW_HALF_HEIGHT = 24
VISIBILITY_RADIUS = 5  # pixels at KITTI's resolution
# A nearer point hides another only across an occluding edge: a depth jump of 0.3 m + 10 %. The agreement
# tolerance would be too tight: neighbouring rows of a road seen at a grazing angle differ by ~3 % at 40 m.
VISIBILITY_ABS_M = 0.3
VISIBILITY_REL = 0.10


@dataclass
class AccumulationStats:
    """What one frame's accumulation kept and dropped (counts of projected neighbour points)."""

    own_pixels: int = 0
    neighbour_points: int = 0  # neighbour points that landed in the image
    unconfirmed: int = 0  # no own return within the window agreed with them
    hidden: int = 0  # behind a nearer point (visibility check), own returns included
    window_half_height: int = 0
    target_pixels: int = 0
    per_neighbour: dict = field(default_factory=dict)  # frame offset -> points kept

    def as_dict(self) -> dict:
        return {"own_pixels": self.own_pixels, "neighbour_points": self.neighbour_points,
                "unconfirmed": self.unconfirmed, "hidden": self.hidden,
                "window_half_height": self.window_half_height, "target_pixels": self.target_pixels}


def tolerance(depth: np.ndarray, abs_tolerance: float = ABS_TOLERANCE_M,
              rel_tolerance: float = REL_TOLERANCE) -> np.ndarray:
    """How far (m) a depth may be from a confirming return."""
    return abs_tolerance + rel_tolerance * depth


def beam_gap_rows(sparse: np.ndarray) -> float:
    """The median number of rows between vertically consecutive returns of a sweep's depth image (the
    image-space gap between its beams); 0 when no column has two returns."""
    rows, cols = np.nonzero(sparse > 0)
    if rows.size < 2:
        return 0.0
    order = np.lexsort((rows, cols))
    rows, cols = rows[order], cols[order]
    same_column = cols[1:] == cols[:-1]
    gaps = (rows[1:] - rows[:-1])[same_column]
    gaps = gaps[gaps > 1]  # neighbouring returns of one beam's dither are not a beam gap
    return float(np.median(gaps)) if gaps.size else 1.0


def window_half_height_for(own: np.ndarray) -> int:
    """Rows searched above and below a pixel: enough to reach the own sweep's beams on both sides."""
    gap = beam_gap_rows(own)
    return int(min(MAX_WINDOW_HALF_HEIGHT, max(MIN_WINDOW_HALF_HEIGHT, math.ceil(gap))))


def confirmed_by(own: np.ndarray, rows: np.ndarray, cols: np.ndarray, depth: np.ndarray, half_height: int,
                 half_width: int = WINDOW_HALF_WIDTH, abs_tolerance: float = ABS_TOLERANCE_M,
                 rel_tolerance: float = REL_TOLERANCE) -> np.ndarray:
    """For points at (rows, cols) with `depth`: does some return of `own` (H, W, 0 = none) within the
    window agree with the depth to the tolerance?"""
    height, width = own.shape
    limit = tolerance(depth, abs_tolerance, rel_tolerance)
    confirmed = np.zeros(rows.shape, dtype=bool)
    for dy in range(-half_height, half_height + 1):
        r = rows + dy
        row_ok = (r >= 0) & (r < height)
        for dx in range(-half_width, half_width + 1):
            c = cols + dx
            ok = row_ok & (c >= 0) & (c < width)
            values = np.zeros(rows.shape, dtype=np.float32)
            values[ok] = own[r[ok], c[ok]]
            confirmed |= (values > 0) & (np.abs(values - depth) <= limit)
    return confirmed


def _pixels(points: np.ndarray, camera: PinholeCamera, transform: np.ndarray, min_depth: float,
            max_depth: float | None):
    """(rows, cols, depth) of the points that land in the image: one per pixel, the nearest."""
    depth = project(points, camera, transform, min_depth=min_depth, max_depth=max_depth)
    rows, cols = np.nonzero(depth)
    return rows, cols, depth[rows, cols]


def accumulate(own: np.ndarray, own_pose: np.ndarray, neighbours: list[tuple[int, np.ndarray, np.ndarray]],
               camera: PinholeCamera, lidar_to_camera: np.ndarray, min_depth: float = 0.1,
               max_depth: float | None = None, abs_tolerance: float = ABS_TOLERANCE_M,
               rel_tolerance: float = REL_TOLERANCE, half_width: int = WINDOW_HALF_WIDTH,
               visibility_radius: int = VISIBILITY_RADIUS) -> tuple[np.ndarray, AccumulationStats]:
    """The target depth image (H, W) float32 metres (0 = none) of one frame, and what was kept.

    own: (H, W) the frame's sweep projected into its camera (`geometry.project`, metres, 0 = none);
    own_pose: 4x4 LiDAR -> fixed frame at its time. neighbours: (frame offset, points in their LiDAR frame,
    their 4x4 LiDAR -> fixed frame pose), projected with `min_depth` and `max_depth`.
    """
    stats = AccumulationStats(own_pixels=int(np.count_nonzero(own)))
    half_height = window_half_height_for(own)
    stats.window_half_height = half_height
    world_to_own = invert_transform(np.asarray(own_pose, dtype=np.float64))
    candidates_rows, candidates_cols, candidates_depth = [], [], []
    for offset, points, pose in neighbours:
        transform = np.asarray(lidar_to_camera, np.float64) @ world_to_own @ np.asarray(pose, np.float64)
        rows, cols, depth = _pixels(points[:, :3], camera, transform, min_depth, max_depth)
        stats.neighbour_points += int(rows.size)
        keep = confirmed_by(own, rows, cols, depth, half_height, half_width, abs_tolerance, rel_tolerance)
        stats.unconfirmed += int(rows.size - keep.sum())
        stats.per_neighbour[int(offset)] = int(keep.sum())
        candidates_rows.append(rows[keep])
        candidates_cols.append(cols[keep])
        candidates_depth.append(depth[keep])
    target = own.copy()
    if candidates_rows:
        rows, cols = np.concatenate(candidates_rows), np.concatenate(candidates_cols)
        depth = np.concatenate(candidates_depth).astype(np.float32)
        merged = np.zeros_like(own)
        # Nearest per pixel first (sorted by depth, descending, so that the nearest is written last).
        order = np.argsort(-depth, kind="stable")
        merged[rows[order], cols[order]] = depth[order]
        merged = np.where(own > 0, own, merged)  # the own sweep is the reference where it has a return
        visible = _visible(merged, tolerance(merged, VISIBILITY_ABS_M, VISIBILITY_REL), visibility_radius)
        stats.hidden = int(np.count_nonzero((merged > 0) & ~visible))
        target = np.where(visible, merged, 0.0).astype(np.float32)
    stats.target_pixels = int(np.count_nonzero(target))
    return target, stats


def _visible(depth: np.ndarray, limit: np.ndarray, radius: int) -> np.ndarray:
    """Pixels with a depth that no other pixel within `radius` undercuts by more than `limit`."""
    from scipy.ndimage import minimum_filter

    if radius <= 0:
        return depth > 0
    nearest = minimum_filter(np.where(depth > 0, depth, np.inf), size=2 * radius + 1, mode="constant", cval=np.inf)
    return (depth > 0) & (depth - nearest <= limit)


def frame_neighbours(index: int, count: int, neighbours: int, allowed=None) -> list[int]:
    """Indices of the frames within `neighbours` of `index` (itself excluded) in 0..count-1, and, given
    `allowed` (a set of indices), only those in it."""
    chosen = [j for j in range(index - neighbours, index + neighbours + 1) if 0 <= j < count and j != index]
    return [j for j in chosen if allowed is None or j in allowed]
