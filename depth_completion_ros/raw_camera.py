"""Raw cameras: lens distortion and the rectification rotation of sensor_msgs/CameraInfo, and rectification.

A camera driver's `image_raw` comes with a CameraInfo whose `d` holds the lens distortion (`distortion_model`
"plumb_bob": k1 k2 p1 p2 k3; "rational_polynomial": k1 k2 p1 p2 k3 k4 k5 k6; "equidistant": the fisheye model's
k1 k2 k3 k4), `k` the raw (distorted) camera's intrinsics, `r` the rectification rotation (rectified frame <-
raw camera frame; the identity for a monocular camera) and `p` the rectified camera. A pixel of the raw image
is not where a pinhole camera with `p`'s intrinsics would see the same point: the package rectifies such images
as image_proc does (OpenCV's undistort-rectify maps of (k, d, r, p), then a remap), projects the LiDAR into the
rectified camera and runs the network there.

OpenCV does the lens arithmetic (cv2 for the two polynomial models, cv2.fisheye for equidistant, as ROS's
image_geometry does): it is the reference implementation every calibration tool writes these coefficients for.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .geometry import CalibrationError, PinholeCamera, make_transform

# CameraInfo distortion models and how many coefficients `d` holds for each (REP 104, image_geometry).
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
# Undistorting a pixel is iterative: to 1e-12 of a normalised coordinate (OpenCV's default stops near 1e-4).
_UNDISTORT_CRITERIA = (3, 100, 1e-12)  # cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iterations, epsilon
_IDENTITY_TOLERANCE = 1e-9


class DistortionError(CalibrationError):
    """A CameraInfo's distortion cannot be used: an unknown model with non-zero coefficients, a `d` whose length
    does not fit its model, or a rectification `r` that is not a rotation."""


@dataclass(frozen=True, eq=False)
class RawCamera:
    """A camera as CameraInfo describes it: `K` the raw camera's intrinsics, `model` and `D` its lens distortion,
    `R` the rectification rotation (rectified <- raw), `rectified` the camera of the rectified image (P's 3x3,
    K where P is zero; the same size as the raw image, as image_proc rectifies it), `stereo` whether P carries a
    stereo translation (Tx or Ty not zero)."""

    width: int
    height: int
    K: np.ndarray
    model: str
    D: np.ndarray
    R: np.ndarray
    rectified: PinholeCamera
    stereo: bool = False

    @classmethod
    def create(cls, rectified: PinholeCamera, model: str = "", D=(), R=None, K=None) -> "RawCamera":
        """A raw camera whose rectified image is `rectified` (same size), with raw intrinsics `K` (default: the
        rectified ones), lens distortion (`model`, `D`) and rectification rotation `R` (default: none); checked
        as a CameraInfo would be."""
        D = np.asarray(D, dtype=np.float64).reshape(-1)
        K = rectified.K if K is None else np.asarray(K, dtype=np.float64).reshape(3, 3)
        R = np.eye(3) if R is None else np.asarray(R, dtype=np.float64).reshape(3, 3)
        fields = camera_info_of(rectified, model, D, R, K)
        return cls.from_camera_info(type("CameraInfoFields", (), fields))

    @classmethod
    def from_camera_info(cls, msg) -> "RawCamera":
        """From a sensor_msgs/CameraInfo (rclpy or rosbags; ROS 1's upper-case `D`, `K`, `R`, `P` too).

        Raises DistortionError for an unusable distortion (unknown model with non-zero `d`, `d` of the wrong
        length for its model, `r` not a rotation), CalibrationError where neither `p` nor `k` is set."""
        def field(name: str, size: int):
            value = getattr(msg, name, None)
            value = getattr(msg, name.upper(), None) if value is None else value
            value = np.zeros(size) if value is None else np.asarray(value, dtype=np.float64).reshape(-1)
            return value

        k, p, r, d = field("k", 9), field("p", 12), field("r", 9), field("d", 0)
        model = str(getattr(msg, "distortion_model", "") or "").strip()
        width, height = int(msg.width), int(msg.height)
        rectified = PinholeCamera.from_camera_info(k, p, width, height)
        if not np.isfinite(d).all():
            raise DistortionError(f"CameraInfo d holds non-finite values: {d.tolist()}")
        if not r.any():
            r = np.eye(3).reshape(-1)  # an uncalibrated driver's all-zero r: no rectification rotation
        if r.size != 9 or not np.isfinite(r).all():
            raise DistortionError(f"CameraInfo r must hold 9 finite values, got {r.size}")
        rotation = r.reshape(3, 3)
        if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(rotation) <= 0:
            raise DistortionError("CameraInfo r is not a rotation matrix")
        if d.any():
            if model not in DISTORTION_MODELS:
                raise DistortionError(f"unknown distortion model {model!r} with non-zero d (known: "
                                      f"{', '.join(DISTORTION_MODELS)})")
            if d.size != DISTORTION_MODELS[model]:
                raise DistortionError(f"distortion model {model!r} takes {DISTORTION_MODELS[model]} coefficients in d, "
                                      f"got {d.size}")
            if k.size != 9 or not k.any():
                raise DistortionError("CameraInfo has a distortion d but no raw intrinsics k")
        raw_k = k.reshape(3, 3) if k.size == 9 and k.any() else rectified.K
        return cls(width, height, raw_k, model if d.any() else "", d if d.any() else np.zeros(0), rotation, rectified,
                   stereo=p.size == 12 and bool(np.any(p.reshape(3, 4)[:, 3])))

    # --------------------------------------------------------------------------------------- questions
    @property
    def distorted(self) -> bool:
        return bool(self.D.any())

    @property
    def rotated(self) -> bool:
        return not np.allclose(self.R, np.eye(3), atol=_IDENTITY_TOLERANCE)

    @property
    def needs_rectification(self) -> bool:
        """Whether raw pixels differ from the rectified camera's: a lens distortion or a rectification rotation
        (or raw intrinsics other than the rectified ones)."""
        return self.distorted or self.rotated or not np.allclose(self.K, self.rectified.K)

    @property
    def raw_to_rectified(self) -> np.ndarray:
        """4x4 rotation taking points of the raw camera's frame (the image's frame_id) into the rectified one."""
        return make_transform(self.R, np.zeros(3))

    def key(self) -> tuple:
        """What identifies the rectification (for caching its maps)."""
        return (self.width, self.height, self.model, self.D.tobytes(), self.K.tobytes(), self.R.tobytes(),
                self.rectified)

    # -------------------------------------------------------------------------------------- arithmetic
    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw-image pixel coordinates (u, v) of (N, 3) points in the raw camera's frame (z > 0), through the lens
        distortion: where the raw image shows them."""
        import cv2

        points = np.ascontiguousarray(np.asarray(points, dtype=np.float64).reshape(-1, 1, 3))
        if points.shape[0] == 0:
            return np.zeros(0), np.zeros(0)
        zero = np.zeros(3)
        if self.model == "equidistant":
            pixels = cv2.fisheye.projectPoints(points, zero, zero, self.K, self.D)[0]
        else:
            pixels = cv2.projectPoints(points, zero, zero, self.K, self.D if self.distorted else None)[0]
        return pixels[:, 0, 0], pixels[:, 0, 1]

    def rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(..., 3) directions in the raw camera's frame (z = 1, so a distance along them is a depth) of the rays
        through raw pixels (u, v): the inverse of `project`."""
        import cv2

        pixels = np.ascontiguousarray(np.stack([np.ravel(u), np.ravel(v)], -1).reshape(-1, 1, 2), dtype=np.float64)
        if self.model == "equidistant":
            normalized = cv2.fisheye.undistortPoints(pixels, self.K, self.D, criteria=_UNDISTORT_CRITERIA)
        else:
            normalized = cv2.undistortPointsIter(pixels, self.K, self.D if self.distorted else np.zeros(5), None,
                                                 None, _UNDISTORT_CRITERIA)
        xy = normalized[:, 0, :]
        return np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1).reshape(*np.shape(u), 3)

    def rectified_coordinates(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where raw pixels (u, v) land in the rectified image (undistorted, rotated by R, projected by P)."""
        import cv2

        pixels = np.ascontiguousarray(np.stack([np.ravel(u), np.ravel(v)], -1).reshape(-1, 1, 2), dtype=np.float64)
        P = self.rectified.K
        if self.model == "equidistant":
            out = cv2.fisheye.undistortPoints(pixels, self.K, self.D, R=self.R, P=P, criteria=_UNDISTORT_CRITERIA)
        else:
            out = cv2.undistortPointsIter(pixels, self.K, self.D if self.distorted else np.zeros(5), self.R, P,
                                          _UNDISTORT_CRITERIA)
        return out[:, 0, 0].reshape(np.shape(u)), out[:, 0, 1].reshape(np.shape(v))

    def rectify_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV's maps (float32, rectified height x width): rectified pixel -> raw pixel coordinates."""
        import cv2

        size = (self.rectified.width, self.rectified.height)
        if self.model == "equidistant":
            return cv2.fisheye.initUndistortRectifyMap(self.K, self.D, self.R, self.rectified.K, size, cv2.CV_32FC1)
        return cv2.initUndistortRectifyMap(self.K, self.D if self.distorted else None, self.R, self.rectified.K, size,
                                           cv2.CV_32FC1)


class Rectifier:
    """Rectifies raw images, keeping the maps of the last few cameras (computing them costs tens of
    milliseconds at 1242x375; one camera's CameraInfo rarely changes). Thread-safe."""

    def __init__(self, cache_size: int = 4):
        self._maps: OrderedDict = OrderedDict()
        self._cache_size = int(cache_size)
        self._lock = threading.Lock()

    def maps(self, camera: RawCamera) -> tuple[np.ndarray, np.ndarray]:
        key = camera.key()
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
        maps = camera.rectify_maps()
        with self._lock:
            self._maps[key] = maps
            while len(self._maps) > self._cache_size:
                self._maps.popitem(last=False)
        return maps

    def rectify(self, image: np.ndarray, camera: RawCamera) -> np.ndarray:
        """The raw `image` (H, W[, C]) as the rectified camera sees it (bilinear; outside the raw image: 0)."""
        import cv2

        map_x, map_y = self.maps(camera)
        return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0)


_RAW_PIXELS_IN_RECTIFIED: OrderedDict = OrderedDict()  # camera key -> (u_r, v_r) of every raw pixel
_RAW_PIXELS_LOCK = threading.Lock()


def raw_pixels_in_rectified(camera: RawCamera) -> tuple[np.ndarray, np.ndarray]:
    """Where every raw pixel lands in the rectified image ((H, W) u_r, v_r), kept for the last few cameras:
    undistorting is iterative, a few hundred milliseconds per KITTI-size image."""
    key = camera.key()
    with _RAW_PIXELS_LOCK:
        if key in _RAW_PIXELS_IN_RECTIFIED:
            _RAW_PIXELS_IN_RECTIFIED.move_to_end(key)
            return _RAW_PIXELS_IN_RECTIFIED[key]
    rows, cols = np.mgrid[0:camera.height, 0:camera.width]
    coordinates = camera.rectified_coordinates(cols.astype(np.float64), rows.astype(np.float64))
    for array in coordinates:
        array.setflags(write=False)
    with _RAW_PIXELS_LOCK:
        _RAW_PIXELS_IN_RECTIFIED[key] = coordinates
        while len(_RAW_PIXELS_IN_RECTIFIED) > 4:
            _RAW_PIXELS_IN_RECTIFIED.popitem(last=False)
    return coordinates


def seen_by_rectified(camera: RawCamera) -> np.ndarray:
    """(H, W) bool of the raw pixels that the rectified camera sees (landing inside its image). A raw camera
    usually sees more than its rectified one (calibration tools choose P so that the rectified image has no
    empty border): a rectified product, this node's depth or image_proc's image, says nothing of the rest."""
    u_r, v_r = raw_pixels_in_rectified(camera)
    col, row = np.floor(u_r + 0.5), np.floor(v_r + 0.5)
    rectified = camera.rectified
    return (col >= 0) & (col < rectified.width) & (row >= 0) & (row < rectified.height)


def depth_in_raw_grid(rectified_depth: np.ndarray, camera: RawCamera, fill: float = 0.0) -> np.ndarray:
    """A depth image of the rectified camera (metres along its optical axis) seen from the raw image's pixels:
    each raw pixel takes the rectified depth at the nearest rectified pixel to where it lands (nearest, so that a
    depth edge is never blended), converted to depth along the raw camera's axis where R rotates it. Raw pixels
    landing outside the rectified image, or on no depth, get `fill`. For scoring a rectified prediction against
    ground truth in the raw camera's grid."""
    u_r, v_r = raw_pixels_in_rectified(camera)
    col, row = np.floor(u_r + 0.5).astype(np.int64), np.floor(v_r + 0.5).astype(np.int64)
    rectified = camera.rectified
    inside = seen_by_rectified(camera)
    depth = np.full((camera.height, camera.width), fill, dtype=np.float32)
    values = rectified_depth[row[inside], col[inside]].astype(np.float64)
    if camera.rotated:
        # The same 3-D point: X_rect = z_r * K_r^-1 [u_r, v_r, 1]; its depth in the raw frame is (R^T X_rect)_z.
        rays = np.linalg.solve(rectified.K, np.stack([u_r[inside], v_r[inside], np.ones(values.size)]))
        values = values * (camera.R.T @ rays)[2]
    ok = np.isfinite(values) & (values > 0)
    target = np.flatnonzero(inside.reshape(-1))
    depth.reshape(-1)[target[ok]] = values[ok]
    return depth


def camera_info_of(rectified: PinholeCamera, model: str, D, R, K) -> dict:
    """The CameraInfo fields (height, width, distortion_model, d, k, r, p) of a raw camera: raw `K`, lens
    distortion `model`/`D`, rectification `R` and the rectified camera's P = [K_rect | 0]."""
    return {"height": rectified.height, "width": rectified.width, "distortion_model": model,
            "d": np.asarray(D, dtype=np.float64).reshape(-1), "k": np.asarray(K, dtype=np.float64).reshape(-1),
            "r": np.asarray(R, dtype=np.float64).reshape(-1), "p": rectified.P.reshape(-1)}


def raw_camera_info_fields(camera: RawCamera) -> dict:
    """`camera_info_of` for a RawCamera (what a driver publishes beside its raw image)."""
    model = camera.model or "plumb_bob"
    D = camera.D if camera.distorted else np.zeros(DISTORTION_MODELS[model])
    return camera_info_of(camera.rectified, model, D, camera.R, camera.K)
