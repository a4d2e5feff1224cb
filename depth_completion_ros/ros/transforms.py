"""Which LiDAR->camera transform a frame uses: tf2 when it has one, else the parameter after a wait.

ROS-free: the node passes a non-blocking `lookup(target_frame, source_frame) -> 4x4 | None` backed by a
tf2 buffer (zero timeout: the worker never blocks on tf) or, where tf2_ros is not installed, by the node's
own /tf and /tf_static listener (`LatestTransforms`), and the `lidar_to_camera` parameter (or the
`calibration_file` it was read from) as the fallback. Policy:
- tf wins whenever it has the transform. Once found it is cached per (camera frame, LiDAR frame) pair:
  the LiDAR is assumed rigidly mounted on the camera's body (static transform).
- Until tf has it, frames get no transform (the node drops them as "no_transform") for `wait_s` seconds
  after the first request for that pair; after that the fallback is used, if set. tf is still asked on
  every frame, and replaces the fallback as soon as it answers.
- Without a lookup (use_tf false) the fallback is used at once.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..data.messages import transform_from_msg
from ..geometry import TransformTree

Lookup = Callable[[str, str], "np.ndarray | None"]

# Frame pairs remembered for the wait; a stream of ever-new frame ids (bad input) must not grow memory.
MAX_FRAME_PAIRS = 64
FROM_TF = "tf"
FROM_PARAMETER = "parameter"


@dataclass(frozen=True)
class Resolution:
    """The transform for a frame (None: none yet), where it came from (FROM_TF, FROM_PARAMETER or None)
    and whether that source differs from the previous answer for the same frame pair."""

    transform: np.ndarray | None
    source: str | None
    changed: bool


class TransformResolver:
    """Resolves camera_frame <- lidar_frame per frame following the module's policy; thread-safe."""

    def __init__(self, lookup: Lookup | None, fallback: np.ndarray | None, wait_s: float,
                 clock: Callable[[], float] = time.monotonic):
        if lookup is None and fallback is None:
            raise ValueError("a transform resolver needs a tf lookup, a fallback transform, or both")
        if wait_s < 0:
            raise ValueError(f"wait_s must be >= 0, got {wait_s}")
        self._lookup = lookup
        self._fallback = None if fallback is None else np.asarray(fallback, dtype=np.float64)
        self._wait_s = float(wait_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self._first_request: dict[tuple[str, str], float] = {}
        self._last_source: dict[tuple[str, str], str | None] = {}

    def _forget_oldest_pairs(self) -> None:
        """Keep at most MAX_FRAME_PAIRS - 1 pairs before a new one: the oldest go first (under the lock)."""
        while len(self._first_request) >= MAX_FRAME_PAIRS:
            oldest = next(iter(self._first_request))
            for table in (self._first_request, self._last_source, self._cache):
                table.pop(oldest, None)

    def resolve(self, camera_frame: str, lidar_frame: str) -> Resolution:
        """The transform mapping points of `lidar_frame` into `camera_frame` for the current frame."""
        key = (camera_frame, lidar_frame)
        with self._lock:
            transform = self._cache.get(key)
            if key not in self._first_request:
                self._forget_oldest_pairs()
            first_request = self._first_request.setdefault(key, self._clock())
        source = FROM_TF if transform is not None else None
        if transform is None and self._lookup is not None and camera_frame and lidar_frame:
            transform = self._lookup(camera_frame, lidar_frame)
            if transform is not None:
                transform = np.asarray(transform, dtype=np.float64)
                source = FROM_TF
                with self._lock:
                    self._cache[key] = transform
        if transform is None and self._fallback is not None and (
                self._lookup is None or self._clock() - first_request >= self._wait_s):
            transform, source = self._fallback, FROM_PARAMETER
        with self._lock:
            changed = self._last_source.get(key) != source
            self._last_source[key] = source
        return Resolution(transform, source, changed)


class LatestTransforms:
    """The newest transform of every tf edge, from /tf and /tf_static messages, for the node's own tf listener
    where tf2_ros is not installed (ROS 2 from the Python package registry); thread-safe, ROS-free.

    tf2's tree: each child frame has one parent, the newest message for a child replaces the edge (also
    re-parenting it); a lookup chains edges through the frames' common ancestor (`geometry.TransformTree`).
    Unlike tf2's buffer this keeps no history: a lookup uses the newest transform of every edge, which is what
    the node needs for a rigidly mounted LiDAR and camera (`TransformResolver` caches the answer anyway).
    A transform that is not finite or whose quaternion has no direction is rejected, as tf2 rejects it.
    """

    MAX_FRAMES = 10_000  # a stream of ever-new frame ids (bad input) must not grow memory without bound

    def __init__(self):
        self._lock = threading.Lock()
        self._edges: dict[str, tuple[str, np.ndarray]] = {}
        self.rejected = 0

    def add(self, stamped_transforms) -> int:
        """Store geometry_msgs/TransformStamped messages; returns how many were rejected (and counts them)."""
        accepted, rejected = [], 0
        for stamped in stamped_transforms:
            parent, child = stamped.header.frame_id.lstrip("/"), stamped.child_frame_id.lstrip("/")
            try:
                matrix = transform_from_msg(stamped.transform)
            except ValueError:
                rejected += 1
                continue
            if not parent or not child or parent == child or not np.isfinite(matrix).all():
                rejected += 1
                continue
            accepted.append((child, parent, matrix))
        with self._lock:
            for child, parent, matrix in accepted:
                if child not in self._edges and len(self._edges) >= self.MAX_FRAMES:
                    self._edges.pop(next(iter(self._edges)))
                self._edges[child] = (parent, matrix)
            self.rejected += rejected
        return rejected

    def lookup(self, target_frame: str, source_frame: str) -> np.ndarray | None:
        """4x4 mapping points of `source_frame` into `target_frame`, or None while the frames are not connected."""
        with self._lock:
            edges = dict(self._edges)
        tree = TransformTree()
        for child, (parent, matrix) in edges.items():
            tree.add(parent, child, matrix)
        try:
            return tree.lookup(target_frame, source_frame)
        except (LookupError, ValueError):  # unknown or unconnected frames, or a cycle in bad input
            return None
