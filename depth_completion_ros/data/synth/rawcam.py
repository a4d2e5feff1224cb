"""Raw-camera drives: camera 02 as a driver's `image_raw` would show it, through a lens distortion.

A raw-camera drive (`generate_dataset(raw_camera=...)`, `dcros synth --raw-camera MODEL[:c1,c2,...]`) renders
camera 02 in the distorted pixel grid of a raw camera (`raw_camera.RawCamera`) whose rectified camera is the
drive's usual rectified camera 02 (P_rect_02): one ray per raw pixel, through the distortion, ray cast exactly
(`raycast.TiledCameraRays`), not resampled from a rectified render. Its depth files are in the raw grid too.

The raw camera:
- lens distortion `model` and `D` as a CameraInfo holds them ("plumb_bob" k1 k2 p1 p2 k3, "rational_polynomial"
  k1 k2 p1 p2 k3 k4 k5 k6, "equidistant" k1 k2 k3 k4); `DEFAULT_DISTORTION` gives each model mild barrel
  coefficients (plumb_bob: KITTI-like -0.3, 0.1);
- rectification rotation `R` (rectified <- raw), the identity by default;
- raw intrinsics K: the rectified K where every rectified pixel is then seen by the raw image (the rectified
  image's border, rotated by R^T and distorted, maps inside the raw image: true of the barrel defaults without
  a rotation), else the rectified K with both focal lengths scaled by the largest s < 1 (four decimals, rounded
  down) for which it does (a pincushion lens, or a rotation that turns an edge out); the principal point stays
  the rectified one. The raw image has the rectified image's size, and sees more than the rectified one.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_completion_ros.geometry import PinholeCamera, split_projection
from depth_completion_ros.raw_camera import DISTORTION_MODELS, RawCamera
from depth_completion_ros.data.synth.raycast import RayTiles

DEFAULT_DISTORTION = {
    "plumb_bob": (-0.3, 0.1, 0.0, 0.0, 0.0),  # KITTI-like barrel (KITTI's camera 02: -0.37, 0.20, ..., -0.068)
    "rational_polynomial": (-0.2, 0.05, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0),  # (1 - 0.2 r^2 + 0.05 r^4) / (1 + 0.1 r^2)
    "equidistant": (-0.02, 0.005, 0.0, 0.0),  # theta_d = theta (1 - 0.02 theta^2 + 0.005 theta^4): a mild fisheye
}
_SCALE_STEP = 1e-4  # the focal scale s is rounded down to four decimals
_ROUND_TRIP_PX = 1e-6  # undistorting and re-distorting a raw pixel must give it back to this (px)


@dataclass(frozen=True)
class RawCameraSpec:
    """What a raw-camera drive asks for: the distortion model, its coefficients (default: DEFAULT_DISTORTION)
    and the rectification rotation R (rectified <- raw; default: the identity)."""

    model: str
    D: tuple[float, ...] | None = None
    R: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.model not in DISTORTION_MODELS:
            raise ValueError(f"unknown distortion model {self.model!r} (known: {', '.join(DISTORTION_MODELS)})")
        D = DEFAULT_DISTORTION[self.model] if self.D is None else tuple(float(v) for v in np.ravel(self.D))
        if len(D) != DISTORTION_MODELS[self.model] or not np.isfinite(D).all():
            raise ValueError(f"distortion model {self.model} takes {DISTORTION_MODELS[self.model]} finite "
                             f"coefficients, got {list(D)}")
        object.__setattr__(self, "D", D)
        if self.R is not None:
            R = np.asarray(self.R, dtype=np.float64)
            if R.size != 9 or not np.isfinite(R).all():
                raise ValueError(f"R must be a 3x3 rotation, got {R.size} values")
            R = R.reshape(3, 3)
            if not np.allclose(R @ R.T, np.eye(3), atol=1e-9) or np.linalg.det(R) <= 0:
                raise ValueError("R (rectified <- raw) must be a rotation matrix (orthonormal, det +1)")
            object.__setattr__(self, "R", tuple(R.reshape(-1).tolist()))

    @property
    def rotation(self) -> np.ndarray:
        return np.eye(3) if self.R is None else np.array(self.R, dtype=np.float64).reshape(3, 3)


def parse_raw_camera(text: str) -> RawCameraSpec:
    """`MODEL[:c1,c2,...]` -> RawCameraSpec, e.g. "plumb_bob" (default coefficients) or
    "plumb_bob:-0.3,0.1,0,0,0"."""
    model, sep, rest = str(text).strip().partition(":")
    model = model.strip()
    if model not in DISTORTION_MODELS:
        raise ValueError(f"--raw-camera: unknown distortion model {model!r} (known: {', '.join(DISTORTION_MODELS)})")
    if not sep:
        return RawCameraSpec(model)
    try:
        D = tuple(float(part) for part in rest.split(","))
    except ValueError:
        raise ValueError(f"--raw-camera {text}: coefficients must be numbers separated by commas") from None
    return RawCameraSpec(model, D)


def as_spec(raw_camera) -> RawCameraSpec | None:
    """A RawCameraSpec from what generate_dataset accepts: None, a spec, `MODEL[:c1,...]` or a dict with
    model, D, R."""
    if raw_camera is None or isinstance(raw_camera, RawCameraSpec):
        return raw_camera
    if isinstance(raw_camera, str):
        return parse_raw_camera(raw_camera)
    if isinstance(raw_camera, dict):
        unknown = set(raw_camera) - {"model", "D", "R"}
        if unknown or "model" not in raw_camera:
            raise ValueError(f"raw_camera as a dict takes model (required), D and R, got {sorted(raw_camera)}")
        return RawCameraSpec(raw_camera["model"], raw_camera.get("D"), raw_camera.get("R"))
    raise TypeError(f"raw_camera must be None, a RawCameraSpec, 'MODEL[:c1,...]' or a dict, got {raw_camera!r}")


def _distorted_normalised(rectified: PinholeCamera, spec: RawCameraSpec, u: np.ndarray, v: np.ndarray):
    """Distorted normalised coordinates (K = I) in the raw camera of rectified pixels (u, v)."""
    rays = np.stack([(u - rectified.cx) / rectified.fx, (v - rectified.cy) / rectified.fy, np.ones_like(u)], 1)
    raw_rays = rays @ spec.rotation  # R^T applied to row vectors: rectified -> raw frame
    if not (raw_rays[:, 2] > 1e-6).all():
        raise ValueError("the rectification rotation R turns part of the rectified view behind the raw camera")
    unit = RawCamera.create(rectified, spec.model, spec.D, spec.rotation, K=np.eye(3))
    return unit.project(raw_rays)


def choose_focal_scale(rectified: PinholeCamera, spec: RawCameraSpec) -> float:
    """The focal scale s of the raw K (s fx, s fy, principal point of the rectified K): 1 where the border of
    the rectified image (every border pixel centre) maps inside the raw image, [0, W-1] x [0, H-1], else the
    largest s < 1 for which it does, rounded down to four decimals."""
    w, h = rectified.width, rectified.height
    cols, rows = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    u = np.concatenate([cols, cols, np.zeros(h), np.full(h, w - 1.0)])
    v = np.concatenate([np.zeros(w), np.full(w, h - 1.0), rows, rows])
    xd, yd = _distorted_normalised(rectified, spec, u, v)
    scale = 1.0
    for d, f, c, last in ((xd, rectified.fx, rectified.cx, w - 1.0), (yd, rectified.fy, rectified.cy, h - 1.0)):
        if not 0 < c < last:
            raise ValueError(f"the rectified principal point ({rectified.cx}, {rectified.cy}) lies outside the image")
        with np.errstate(divide="ignore"):
            limits = np.where(d > 0, (last - c) / (f * d), np.where(d < 0, -c / (f * d), np.inf))
        scale = min(scale, float(limits.min()))
    if scale >= 1.0:
        return 1.0
    return round(float(np.floor(scale / _SCALE_STEP) * _SCALE_STEP), 4)  # round: 0.9929, not 0.9929000000000001


def raw_intrinsics(rectified: PinholeCamera, spec: RawCameraSpec) -> np.ndarray:
    """The raw camera's K (see `choose_focal_scale`)."""
    scale = choose_focal_scale(rectified, spec)
    if scale == 1.0:
        return rectified.K
    if scale <= 0:
        raise ValueError(f"no focal scale lets the raw camera ({spec.model} {list(spec.D)}) see the rectified image")
    return np.array([[rectified.fx * scale, 0.0, rectified.cx], [0.0, rectified.fy * scale, rectified.cy],
                     [0.0, 0.0, 1.0]])


def make_raw_camera(rectified: PinholeCamera, spec: RawCameraSpec) -> RawCamera:
    """The raw camera of `spec` over `rectified` (raw K chosen by `raw_intrinsics`), checked (`check`)."""
    camera = RawCamera.create(rectified, spec.model, spec.D, spec.rotation, raw_intrinsics(rectified, spec))
    check(camera)
    return camera


def check(camera: RawCamera) -> None:
    """Raise ValueError unless the raw image sees every rectified pixel (OpenCV's rectify maps stay inside the
    raw image) and its pixels' rays are those of a one-to-one lens (see `camera_rays`)."""
    map_x, map_y = camera.rectify_maps()
    if not (np.isfinite(map_x).all() and np.isfinite(map_y).all() and map_x.min() >= -1e-3 and map_y.min() >= -1e-3
            and map_x.max() <= camera.width - 1 + 1e-3 and map_y.max() <= camera.height - 1 + 1e-3):
        raise ValueError(f"the raw camera ({camera.model} {camera.D.tolist()}) does not see the whole rectified "
                         f"image: rectified pixels map to raw x {map_x.min():.1f}..{map_x.max():.1f}, "
                         f"y {map_y.min():.1f}..{map_y.max():.1f}")
    camera_rays(camera)


_LAST_RAYS: list = [None]  # (camera key, local rays, tiles, radius limit) of the last raw camera
_LOCK = threading.Lock()


def camera_rays(camera: RawCamera) -> tuple[np.ndarray, RayTiles, float]:
    """(local rays (H, W, 3) with z = 1 in the raw camera's frame through every raw pixel centre, their
    RayTiles, the largest normalised radius a point seen by the image can have): computed once per camera.

    Checked: every ray is finite, re-distorting it gives its pixel back (to 1e-6 px: the undistortion
    converged), and x/z grows along every row and y/z down every column (the lens maps the image one-to-one;
    a distortion polynomial that folds inside the image fails here)."""
    key = camera.key()
    entry = _LAST_RAYS[0]
    if entry is not None and entry[0] == key:
        return entry[1], entry[2], entry[3]
    with _LOCK:
        rows, cols = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64)
        rays = camera.rays(cols, rows)
        if not np.isfinite(rays).all():
            raise ValueError(f"the raw camera's lens ({camera.model} {camera.D.tolist()}) cannot be inverted at "
                             "every raw pixel")
        u, v = camera.project(rays.reshape(-1, 3))
        error = np.hypot(u - cols.reshape(-1), v - rows.reshape(-1))
        if not error.max() <= _ROUND_TRIP_PX:
            worst = int(np.nanargmax(np.where(np.isfinite(error), error, np.inf)))
            raise ValueError(f"the raw camera's lens ({camera.model} {camera.D.tolist()}) cannot be inverted at raw "
                             f"pixel ({worst % camera.width}, {worst // camera.width}): undistorting and "
                             f"re-distorting it misses by {error.reshape(-1)[worst]:.3g} px")
        if not ((np.diff(rays[..., 0], axis=1) > 0).all() and (np.diff(rays[..., 1], axis=0) > 0).all()):
            raise ValueError(f"the raw camera's lens ({camera.model} {camera.D.tolist()}) folds inside the image: "
                             "its rays are not one-to-one with the raw pixels")
        # The largest normalised radius over the raw image, half a pixel beyond the outermost centres.
        w, h = camera.width, camera.height
        edge_u = np.concatenate([np.linspace(-0.5, w - 0.5, 4 * w), np.linspace(-0.5, w - 0.5, 4 * w),
                                 np.full(4 * h, -0.5), np.full(4 * h, w - 0.5)])
        edge_v = np.concatenate([np.full(4 * w, -0.5), np.full(4 * w, h - 0.5), np.linspace(-0.5, h - 0.5, 4 * h),
                                 np.linspace(-0.5, h - 0.5, 4 * h)])
        edge = camera.rays(edge_u, edge_v)
        radius = np.hypot(rays[..., 0], rays[..., 1]).max()
        radius = float(max(radius, np.hypot(edge[:, 0], edge[:, 1]).max()))
        rays.setflags(write=False)
        entry = (key, rays, RayTiles(rays), 1.01 * radius)
        _LAST_RAYS[0] = entry
    return entry[1], entry[2], entry[3]


class RawProjection:
    """`geometry.project`'s camera-model hook for a raw camera: `RawCamera.project`, with the points that lie
    beyond the largest normalised radius the image sees (+1 %) left out (as outside the image): a distortion
    polynomial may fold far outside the field of view and bring such points back into the image."""

    def __init__(self, camera: RawCamera):
        self.camera = camera
        self.width, self.height = camera.width, camera.height
        self.radius_limit = camera_rays(camera)[2]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        u, v = np.full(len(points), np.nan), np.full(len(points), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            seen = np.hypot(points[:, 0], points[:, 1]) <= self.radius_limit * points[:, 2]
        if seen.any():
            u[seen], v[seen] = self.camera.project(points[seen])
        return u, v


def lidar_to_raw(camera: RawCamera, lidar_to_rectified: np.ndarray) -> np.ndarray:
    """4x4 LiDAR -> raw camera frame: [R^T 0; 0 1] @ lidar_to_rectified (R: rectified <- raw)."""
    transform = np.eye(4)
    transform[:3, :3] = camera.R.T
    return transform @ np.asarray(lidar_to_rectified, dtype=np.float64)


def horizontal_half_fov_deg(camera: RawCamera) -> float:
    """The largest angle (degrees) between the raw camera's optical axis and a raw pixel's ray, seen from
    above (in the x-z plane), rotated into the rectified frame as the rig carries it."""
    rays = camera_rays(camera)[0] @ camera.R.T
    return float(np.degrees(np.arctan2(np.abs(rays[..., 0]), rays[..., 2]).max()))


def manifest_record(camera: RawCamera, spec: RawCameraSpec, rectified: PinholeCamera) -> dict:
    """What synth_manifest.json records of a raw-camera drive's camera 02."""
    return {"image": "image_02", "model": spec.model, "D": list(spec.D), "K": camera.K.reshape(-1).tolist(),
            "R": camera.R.reshape(-1).tolist(), "width": camera.width, "height": camera.height,
            "focal_scale": choose_focal_scale(rectified, spec), "rectified": "P_rect_02",
            "calibration": "calib_cam_to_cam.txt: S_02, K_02, D_02, R_02, T_02, R_rect_02 describe the raw camera",
            "depth": "image_02's velodyne_raw and groundtruth PNGs in the raw grid, depth along the raw camera's axis",
            "selection": "none: data_depth_selection holds no crop of a raw-camera drive (a crop of a distorted "
                         "image has no pinhole intrinsics file)"}


def _exact(value: float) -> str:
    """KITTI's %.6e where it holds the value exactly, else the shortest scientific form that does."""
    text = f"{value:.6e}"
    if float(text) == value:
        return text
    return np.format_float_scientific(value, unique=True, exp_digits=2)


def write_calibration_lines(date_dir, camera: RawCamera, spec: RawCameraSpec, R_rect_00: np.ndarray,
                            P_rect_02: np.ndarray) -> None:
    """Describe the raw camera as KITTI's unrectified camera 02 in the date folder's calib_cam_to_cam.txt:
    S_02 its size (the rectified size), K_02 its intrinsics, D_02 its coefficients (the model's number of
    values: 5 plumb_bob, 8 rational_polynomial, 4 equidistant), R_rect_02 its rectification rotation R and
    R_02, T_02 its pose relative to the unrectified camera 00 (X_02 = R_02 X_00 + T_02, with
    R_02 = R^T R_rect_00 and T_02 = R^T b, b camera 02's offset in P_rect_02). Values are written as %.6e where
    that is exact, else with every digit needed to read them back exactly."""
    path = Path(date_dir) / "calib_cam_to_cam.txt"
    _, offset = split_projection(P_rect_02)
    R = camera.R
    values = {"S_02": (camera.width, camera.height), "K_02": camera.K, "D_02": spec.D, "R_02": R.T @ R_rect_00,
              "T_02": R.T @ offset, "R_rect_02": R}
    lines = []
    for line in path.read_text().splitlines():
        key = line.partition(":")[0].strip()
        if key in values:
            line = f"{key}: " + " ".join(_exact(float(v)) for v in np.ravel(values.pop(key)))
        lines.append(line)
    if values:
        raise ValueError(f"{path} lacks the keys {sorted(values)}")
    path.write_text("\n".join(lines) + "\n")
