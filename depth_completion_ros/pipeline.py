"""One synchronized frame (RGB image + LiDAR cloud) -> dense depth. The only implementation of the path:
the ROS node, the rosbag evaluation, the KITTI evaluation and the demo all call `FrameProcessor`.

Stages, each timed: conversion (messages -> numpy arrays, the region of interest cut), projection (cloud ->
sparse depth in the camera), inference (the engine, numpy in and out: its input made on its device, the
network, the depth back to the host), post-processing (range clipping, region-of-interest paste and invalid
fill), and on self-check frames the LiDAR hold-out self-check (`self_check`: choosing the held-out pixels,
scoring them, edge agreement). No PyTorch here: the engine converts where it runs PyTorch.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import self_check as checks
from .geometry import PinholeCamera, ProjectionStats, project
from .raw_camera import RawCamera, Rectifier, depth_in_raw_grid

ROI_CHOICES = ("full", "bottom", "auto")
RECTIFY_CHOICES = ("auto", "true", "false")
# Why a raw camera's image was left unrectified (FrameResult.unrectified).
NOT_RECTIFIED_BY_OPTION = "rectify is false: the depth does not line up with the distorted image"
TAKEN_AS_RECTIFIED = ("CameraInfo's P carries a stereo translation: the image is taken as already rectified (as "
                      "KITTI converters publish it beside raw camera 02's k, d and r); rectify true rectifies it")
# Stride an engine without a `size_multiple` (a classical fill) gets its auto ROI rounded to.
DEFAULT_ROI_MULTIPLE = 32
INVALID_CHOICES = ("nan", "zero")


@dataclass(frozen=True)
class PipelineOptions:
    """How a frame is turned into dense depth.

    min_depth, max_depth: LiDAR points nearer than min_depth or farther than max_depth (metres, along the
        optical axis) are dropped before projection; predictions are clipped to [0, max_depth].
    roi: "full" runs the network on the whole image; "bottom" runs it on the bottom `roi_height` rows only
        (a KITTI-style LiDAR covers only the lower part of the image, and networks trained on KITTI's
        1216x352 crops see only those rows); "auto" runs it per frame from `roi_margin` rows above the
        top-most projected LiDAR return down to the bottom, the height rounded up to the network's stride
        (`engine.size_multiple`) so that it pads nothing (`auto_roi_top`); a frame without returns runs
        whole. Rows above the ROI get the invalid value.
    roi_margin: rows of image context above the top-most return that the network still sees (roi "auto").
    invalid_value: value of pixels without a prediction: "nan" (REP 118) or "zero".
    self_check_fraction: share of the LiDAR pixels held out of the network's input on a self-check frame
        and scored against the prediction (`self_check` module); 0 = no self-check.
    self_check_every_n: every n-th frame processed is a self-check frame (1 = every frame).
    self_check_second_run: on a self-check frame, run the network a second time on the full input and
        return that prediction; otherwise (the default) the prediction made without the held-out pixels is
        the frame's output, and a self-check frame costs no extra inference.
    rectify: raw cameras (a CameraInfo with lens distortion `d` or a rectification rotation `r`; `raw_camera`):
        "auto" rectifies their images as image_proc does, projects the LiDAR into the rectified camera and
        returns depth in it, except where CameraInfo's P carries a stereo translation (KITTI converters publish
        the rectified sync images with raw camera 02's k, d and r beside P_rect_02, whose Tx is not zero:
        rectifying those again would warp them); "true" rectifies those too; "false" never rectifies (depth
        then does not line up with a distorted image: the result says so in `unrectified`).
    """

    min_depth: float = 0.1
    max_depth: float = 120.0
    roi: str = "full"
    roi_height: int = 352
    roi_margin: int = 16
    invalid_value: str = "nan"
    self_check_fraction: float = 0.0
    self_check_every_n: int = 1
    self_check_second_run: bool = False
    rectify: str = "auto"

    def __post_init__(self):
        if not (math.isfinite(self.min_depth) and self.min_depth >= 0):
            raise ValueError(f"min_depth must be a finite number >= 0, got {self.min_depth}")
        if not (math.isfinite(self.max_depth) and self.max_depth > self.min_depth):
            raise ValueError(f"max_depth must be finite and greater than min_depth, got {self.max_depth}")
        if self.roi not in ROI_CHOICES:
            raise ValueError(f"roi must be one of {ROI_CHOICES}, got {self.roi!r}")
        if int(self.roi_height) < 1:
            raise ValueError(f"roi_height must be >= 1, got {self.roi_height}")
        if isinstance(self.roi_margin, bool) or int(self.roi_margin) != self.roi_margin or self.roi_margin < 0:
            raise ValueError(f"roi_margin must be an integer >= 0, got {self.roi_margin}")
        if self.rectify not in RECTIFY_CHOICES:
            raise ValueError(f"rectify must be one of {RECTIFY_CHOICES}, got {self.rectify!r}")
        if self.invalid_value not in INVALID_CHOICES:
            raise ValueError(f"invalid_value must be one of {INVALID_CHOICES}, got {self.invalid_value!r}")
        checks.check_fraction(self.self_check_fraction)
        if isinstance(self.self_check_every_n, bool) or int(self.self_check_every_n) != self.self_check_every_n \
                or self.self_check_every_n < 1:
            raise ValueError(f"self_check_every_n must be an integer >= 1, got {self.self_check_every_n}")

    @property
    def fill_value(self) -> float:
        return float("nan") if self.invalid_value == "nan" else 0.0


@dataclass
class FrameResult:
    """Dense depth (H, W) float32 metres (invalid = options.invalid_value), the projected sparse input
    (H, W) float32 (0 = none; all returns, the held-out ones included), per-stage timings in ms, what the
    projection dropped, the stamp, and on self-check frames the self-check (else None).

    roi_rows: the rows the network ran on, (first, end) with end exclusive (the image's height); `roi_top`
    is the first. Rows above it hold the invalid value.

    camera: the camera of `dense` and `sparse`. raw_camera: where the frame came from a raw camera and was
    rectified, that camera (dense and sparse are then in its rectified camera, `camera`). unrectified: where a
    raw camera's image was not rectified (options.rectify, or P's stereo translation), why: the depth does not
    line up with the image."""

    dense: np.ndarray
    sparse: np.ndarray
    timings_ms: dict[str, float]
    projection: ProjectionStats
    stamp_ns: int | None = None
    roi_top: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    self_check: checks.SelfCheck | None = None
    camera: PinholeCamera | None = None
    raw_camera: RawCamera | None = None
    unrectified: str | None = None

    @property
    def roi_rows(self) -> tuple[int, int]:
        """(first, end) rows the network ran on, end exclusive: from `roi_top` to the image's bottom."""
        return self.roi_top, self.dense.shape[0]

    def in_raw_grid(self) -> "FrameResult":
        """This result seen from the raw camera's pixels where the frame was rectified (`raw_camera.depth_in_raw_grid`:
        nearest rectified pixel, depth along the raw axis), for ground truth in the raw image's grid; else itself."""
        if self.raw_camera is None:
            return self
        return dataclasses.replace(self, dense=depth_in_raw_grid(self.dense, self.raw_camera, fill=np.nan),
                                   sparse=depth_in_raw_grid(self.sparse, self.raw_camera), roi_top=0, camera=None)


class FrameProcessor:
    """Turns synchronized frames into dense depth with an inference `Engine`.

    `camera` (PinholeCamera) and `lidar_to_camera` (4x4) are the defaults for every frame; each call may
    override them (a node that receives CameraInfo and tf updates passes them per frame). `options` may be
    replaced between frames (the node does so when a runtime parameter changes); each frame reads it once.
    """

    def __init__(self, engine, camera: PinholeCamera | None = None, lidar_to_camera: np.ndarray | None = None,
                 options: PipelineOptions | None = None):
        self.engine = engine
        self.camera = camera
        self.lidar_to_camera = None if lidar_to_camera is None else np.asarray(lidar_to_camera, dtype=np.float64)
        self.options = options or PipelineOptions()
        self.frames_processed = 0  # counts frames towards options.self_check_every_n
        self.rectifier = Rectifier()

    # ------------------------------------------------------------------------------------ arrays in
    def process(self, rgb: np.ndarray, points: np.ndarray, stamp_ns: int | None = None,
                camera: PinholeCamera | None = None, lidar_to_camera: np.ndarray | None = None) -> FrameResult:
        """rgb: (H, W, 3) uint8 RGB; points: (N, >=3) LiDAR points in the LiDAR frame (extra columns ignored)."""
        return self._run(rgb, points, None, stamp_ns, camera, lidar_to_camera, conversion_ms=0.0)

    def process_depth(self, rgb: np.ndarray, sparse: np.ndarray, stamp_ns: int | None = None,
                      camera: PinholeCamera | None = None) -> FrameResult:
        """The same from an already projected sparse depth image (H, W) in metres, 0 = none — KITTI's
        `velodyne_raw` PNGs. Points beyond max_depth are removed as the projection would remove them."""
        sparse = np.asarray(sparse, dtype=np.float32)
        return self._run(rgb, None, sparse, stamp_ns, camera, None, conversion_ms=0.0)

    def _run(self, rgb, points, sparse, stamp_ns, camera, lidar_to_camera, conversion_ms: float) -> FrameResult:
        camera = camera or self.camera
        if camera is None:
            raise ValueError("no camera model: pass camera= or construct FrameProcessor with one")
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
        if rgb.shape[:2] != (camera.height, camera.width):
            raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera model is "
                             f"{camera.width}x{camera.height}")
        opts = self.options
        timings = {"conversion": conversion_ms}
        self_check_due = opts.self_check_fraction > 0 and self.frames_processed % opts.self_check_every_n == 0
        self.frames_processed += 1

        start = time.perf_counter()
        if sparse is None:
            transform = self.lidar_to_camera if lidar_to_camera is None else np.asarray(lidar_to_camera, np.float64)
            if transform is None:
                raise ValueError("no LiDAR->camera transform: pass lidar_to_camera= or construct with one")
            sparse, stats = project(points, camera, transform, min_depth=opts.min_depth,
                                    max_depth=opts.max_depth, return_stats=True)
        else:
            if sparse.shape != rgb.shape[:2]:
                raise ValueError(f"sparse depth is {sparse.shape[1]}x{sparse.shape[0]} but the image is "
                                 f"{rgb.shape[1]}x{rgb.shape[0]}")
            valid = np.isfinite(sparse) & (sparse > 0)
            too_near = valid & (sparse <= opts.min_depth)
            too_far = valid & (sparse > opts.max_depth)
            kept = valid & ~too_near & ~too_far
            sparse = np.where(kept, sparse, np.float32(0))
            n_kept = int(kept.sum())
            stats = ProjectionStats(input=int(valid.sum()), nonfinite=0, behind=int(too_near.sum()),
                                    out_of_range=int(too_far.sum()), outside=0, projected=n_kept, pixels=n_kept)
        roi_top = 0
        if opts.roi == "bottom":
            roi_top = camera.height - min(int(opts.roi_height), camera.height)
        elif opts.roi == "auto":
            roi_top = auto_roi_top(sparse, opts.roi_margin, getattr(self.engine, "size_multiple", DEFAULT_ROI_MULTIPLE))
        timings["projection"] = _ms_since(start)

        network_sparse, held = sparse, None
        if self_check_due:
            start = time.perf_counter()
            rows, cols, candidates = checks.choose_hold_out(sparse, opts.self_check_fraction,
                                                            checks.frame_seed(stamp_ns, sparse), top=roi_top)
            network_sparse = checks.without(sparse, rows, cols)
            held = (rows, cols, candidates)
            timings["self_check"] = _ms_since(start)

        start = time.perf_counter()
        rgb_roi = rgb[roi_top:]  # numpy views: the engine makes its input from them (on its device)
        network_sparse_roi = network_sparse[roi_top:]
        timings["conversion"] += _ms_since(start)

        start = time.perf_counter()
        prediction = self.engine.predict(rgb_roi, network_sparse_roi)  # (H, W) numpy; the engine synchronises
        held_out_prediction = None
        if held is not None and opts.self_check_second_run:
            held_out_prediction = prediction
            prediction = self.engine.predict(rgb_roi, sparse[roi_top:])
        timings["inference"] = _ms_since(start)

        start = time.perf_counter()
        prediction = _to_metres(prediction, opts.max_depth)
        dense = np.full((camera.height, camera.width), opts.fill_value, dtype=np.float32)
        dense[roi_top:] = np.where(np.isfinite(prediction), prediction, np.float32(opts.fill_value))
        timings["postprocess"] = _ms_since(start)

        check = None
        if held is not None:
            start = time.perf_counter()
            scored = prediction if held_out_prediction is None else _to_metres(held_out_prediction, opts.max_depth)
            check = _score_self_check(rgb, sparse, network_sparse, scored, held, roi_top, opts.self_check_fraction)
            timings["self_check"] += _ms_since(start)
        timings["total"] = sum(timings.values())
        return FrameResult(dense=dense, sparse=sparse, timings_ms=timings, projection=stats,
                           stamp_ns=stamp_ns, roi_top=roi_top, self_check=check, camera=camera)

    # ---------------------------------------------------------------------------------- messages in
    def process_messages(self, image_msg, cloud_msg, camera=None, lidar_to_camera: np.ndarray | None = None,
                         stamp_ns: int | None = None) -> FrameResult:
        """The same from sensor_msgs Image + PointCloud2 (rclpy or rosbags messages alike).

        `camera` may be a CameraInfo message (its distortion and rectification handled per `options.rectify`),
        a RawCamera, or a PinholeCamera (a rectified image). The image size must agree with it. A CameraInfo
        whose distortion cannot be used raises raw_camera.DistortionError (a ValueError)."""
        from .data import messages

        start = time.perf_counter()
        camera = camera or self.camera
        if camera is None:
            raise ValueError("no camera model: pass a CameraInfo or PinholeCamera")
        raw = None
        if not isinstance(camera, (PinholeCamera, RawCamera)):
            raw = RawCamera.from_camera_info(camera)
        elif isinstance(camera, RawCamera):
            raw = camera
        if raw is not None:
            camera = raw.rectified
        messages.check_image_matches_camera(image_msg, camera)
        rgb = messages.rgb_from_image(image_msg)
        points, _ = messages.pointcloud2_to_xyz(cloud_msg)
        if stamp_ns is None:
            stamp = image_msg.header.stamp
            stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
        conversion_ms = _ms_since(start)
        rectify, unrectified = self._rectification(raw)
        rectification_ms = 0.0
        if rectify:
            start = time.perf_counter()
            rgb = self.rectifier.rectify(rgb, raw)
            transform = self.lidar_to_camera if lidar_to_camera is None else np.asarray(lidar_to_camera, np.float64)
            lidar_to_camera = None if transform is None else raw.raw_to_rectified @ transform
            rectification_ms = _ms_since(start)
        result = self._run(rgb, points, None, stamp_ns, camera, lidar_to_camera, conversion_ms=conversion_ms)
        if rectify:
            result.timings_ms["rectification"] = rectification_ms
            result.timings_ms["total"] += rectification_ms
            result.raw_camera = raw
        result.unrectified = unrectified
        return result

    def _rectification(self, raw: RawCamera | None) -> tuple[bool, str | None]:
        """(rectify this frame, why a raw camera's image is left unrectified) per options.rectify."""
        if raw is None or not raw.needs_rectification:
            return False, None
        mode = self.options.rectify
        if mode == "false":
            return False, NOT_RECTIFIED_BY_OPTION
        if mode == "auto" and raw.stereo:
            return False, TAKEN_AS_RECTIFIED
        return True, None


def auto_roi_top(sparse: np.ndarray, margin: int, multiple: int) -> int:
    """First row of the automatic region of interest of a projected sparse depth image (0 = none):
    `margin` rows above the top-most return, moved up so that the rows from it to the bottom are a
    multiple of `multiple`; 0 (the whole image) when there is no return or the rounding reaches the top."""
    height = sparse.shape[0]
    rows = np.flatnonzero((sparse > 0).any(axis=1))
    if rows.size == 0:
        return 0
    top = max(0, int(rows[0]) - int(margin))
    multiple = max(1, int(multiple))
    rows_run = -(-(height - top) // multiple) * multiple
    return max(0, height - rows_run)


def _score_self_check(rgb, sparse, network_sparse, prediction, held, roi_top: int, fraction: float) -> checks.SelfCheck:
    """Score the prediction (ROI rows) at the held-out pixels, and the edge agreement of the input."""
    rows, cols, candidates = held
    check = checks.score_hold_out(prediction[rows - roi_top, cols], sparse[rows, cols], fraction=fraction,
                                  candidates=candidates, isolated=checks.count_isolated(network_sparse, rows, cols),
                                  rows=rows, cols=cols)
    agreement, edge_pixels = checks.edge_agreement(rgb, sparse, top=roi_top)
    return dataclasses.replace(check, edge_agreement=agreement, edge_pixels=edge_pixels)


def _to_metres(prediction: np.ndarray, max_depth: float) -> np.ndarray:
    """The engine's (H, W) depth -> float32 metres clipped to [0, max_depth] (NaN stays NaN)."""
    return np.clip(np.asarray(prediction, dtype=np.float32), np.float32(0.0), np.float32(max_depth))


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
