"""Camera model, KITTI calibration files, LiDAR -> image projection and un-projection.

Conventions (used everywhere in the package):
- Camera frame is the optical frame of REP 103: z forward, x right, y down. Depth is the z coordinate.
- Pixel (u, v) = (column, row); the centre of pixel (c, r) sits at (u, v) = (c, r), so a point projecting
  to (u, v) lands in pixel (floor(u + 0.5), floor(v + 0.5)), and un-projection uses integer coordinates.
- Rigid transforms are 4x4 float64 matrices mapping points of the source frame into the target frame:
  `lidar_to_camera @ [x, y, z, 1]` gives the point in the camera frame.
- KITTI's rectified projection P_rect_02 = K [I | b] is split into the intrinsics K (the camera model)
  and the translation b = K^-1 P[:, 3] (folded into the rigid transform), as a monocular ROS camera does.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Union

import numpy as np

if TYPE_CHECKING:
    import torch

ArrayLike = Union[np.ndarray, "torch.Tensor"]  # torch tensors where the caller has PyTorch


class CalibrationError(ValueError):
    """A calibration file or message is missing a key or holds a malformed value."""


# --------------------------------------------------------------------------------------------- camera
@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera without distortion (rectified images), in pixels."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        if not (np.isfinite([self.fx, self.fy, self.cx, self.cy]).all() and self.fx > 0 and self.fy > 0):
            raise ValueError(f"camera focal lengths must be finite and positive, got fx={self.fx} fy={self.fy}")

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def P(self) -> np.ndarray:
        """3x4 projection of a monocular camera (no baseline term), as CameraInfo.p expects."""
        return np.hstack([self.K, np.zeros((3, 1))])

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int) -> "PinholeCamera":
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        return cls(int(width), int(height), float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))

    @classmethod
    def from_camera_info(cls, k, p, width: int, height: int) -> "PinholeCamera":
        """From CameraInfo fields. Rectified images use P's left 3x3 (ROS: P is the rectified camera);
        K is the fallback when P is all zeros, as uncalibrated drivers publish it."""
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if p.size == 12 and np.any(p != 0):
            intrinsics = p.reshape(3, 4)[:, :3]
        elif k.size == 9 and np.any(k != 0):
            intrinsics = k.reshape(3, 3)
        else:
            raise CalibrationError("CameraInfo has neither a non-zero P (12 values) nor a non-zero K (9 values)")
        if width <= 0 or height <= 0:
            raise CalibrationError(f"CameraInfo has no image size (width={width}, height={height})")
        return cls.from_K(intrinsics, width, height)

    def crop(self, top: int, left: int, height: int, width: int) -> "PinholeCamera":
        """The camera of the sub-image [top:top+height, left:left+width]."""
        if top < 0 or left < 0 or top + height > self.height or left + width > self.width:
            raise ValueError(
                f"crop (top={top}, left={left}, {width}x{height}) leaves the {self.width}x{self.height} image"
            )
        return replace(self, width=int(width), height=int(height), cx=self.cx - left, cy=self.cy - top)

    def bottom_crop(self, height: int, width: int) -> "PinholeCamera":
        """KITTI's usual crop: keep the bottom rows and the horizontally centred columns."""
        top, left = bottom_crop_offsets(self.height, self.width, height, width)
        return self.crop(top, left, height, width)

    def scaled(self, factor_x: float, factor_y: float | None = None) -> "PinholeCamera":
        """The camera of the image resized by `factor` (pixel centres at integer coordinates)."""
        factor_y = factor_x if factor_y is None else factor_y
        return PinholeCamera(
            width=int(round(self.width * factor_x)),
            height=int(round(self.height * factor_y)),
            fx=self.fx * factor_x,
            fy=self.fy * factor_y,
            cx=(self.cx + 0.5) * factor_x - 0.5,
            cy=(self.cy + 0.5) * factor_y - 0.5,
        )


def bottom_crop_offsets(height: int, width: int, crop_height: int, crop_width: int) -> tuple[int, int]:
    """(top, left) of KITTI's bottom crop: bottom rows, centred columns."""
    if crop_height > height or crop_width > width:
        raise ValueError(f"cannot crop {crop_width}x{crop_height} out of a {width}x{height} image")
    return height - crop_height, (width - crop_width) // 2


# ------------------------------------------------------------------------------------------ transforms
def make_transform(rotation: np.ndarray, translation) -> np.ndarray:
    """4x4 rigid transform from a 3x3 rotation and a 3-vector translation."""
    rotation = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return transform


def invert_transform(transform: np.ndarray) -> np.ndarray:
    rotation, translation = transform[:3, :3], transform[:3, 3]
    return make_transform(rotation.T, -rotation.T @ translation)


def quaternion_to_rotation(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Rotation matrix of a (x, y, z, w) quaternion, as geometry_msgs/Quaternion stores it."""
    q = np.array([x, y, z, w], dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"quaternion {q.tolist()} has no direction")
    x, y, z, w = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_to_quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix (Shepperd's method, numerically stable for every angle)."""
    m = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    return float(x), float(y), float(z), float(w)


class TransformTree:
    """Static frames as tf2 stores them: edges parent -> child, each the pose of the child in the parent
    (so `T_parent_child @ p_child = p_parent`). `lookup(target, source)` maps points of `source` into `target`,
    walking through any common ancestor, like tf2's lookup_transform(target, source)."""

    def __init__(self):
        self._parent: dict[str, tuple[str, np.ndarray]] = {}

    def add(self, parent: str, child: str, parent_from_child: np.ndarray) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if parent == child:
            raise ValueError(f"transform from frame {parent!r} to itself")
        self._parent[child] = (parent, np.asarray(parent_from_child, dtype=np.float64).reshape(4, 4))

    @property
    def frames(self) -> set[str]:
        return set(self._parent) | {parent for parent, _ in self._parent.values()}

    def parent_of(self, frame: str) -> tuple[str, np.ndarray] | None:
        """(parent, 4x4 parent <- frame) of `frame`, None for a root or an unknown frame."""
        return self._parent.get(frame.lstrip("/"))

    def _to_root(self, frame: str) -> tuple[list[str], np.ndarray]:
        """Chain of frames from `frame` up to its root, and the transform root <- frame."""
        chain, transform = [frame], np.eye(4)
        while chain[-1] in self._parent:
            parent, parent_from_child = self._parent[chain[-1]]
            if parent in chain:
                raise ValueError(f"transform tree has a cycle through {parent!r}")
            transform = parent_from_child @ transform
            chain.append(parent)
        return chain, transform

    def lookup(self, target: str, source: str) -> np.ndarray:
        """4x4 mapping points of frame `source` into frame `target`."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        missing = [f for f in (target, source) if f not in self.frames]
        if missing:
            raise LookupError(f"frame(s) {missing} unknown; known frames: {sorted(self.frames)}")
        target_chain, root_from_target = self._to_root(target)
        source_chain, root_from_source = self._to_root(source)
        if target_chain[-1] != source_chain[-1]:
            raise LookupError(f"frames {target!r} and {source!r} are not connected "
                              f"(roots {target_chain[-1]!r} and {source_chain[-1]!r})")
        return invert_transform(root_from_target) @ root_from_source


# --------------------------------------------------------------------------------- KITTI calibration
def parse_calib_text(text: str, source: str = "<text>") -> dict[str, np.ndarray]:
    """Parse KITTI `key: v1 v2 ...` lines. Lines whose values are not numbers (calib_time) are skipped."""
    values: dict[str, np.ndarray] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise CalibrationError(f"{source}:{line_number}: expected 'key: values', got {line.strip()!r}")
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            continue  # e.g. "calib_time: 09-Jan-2012 13:57:47"
    return values


def read_calib_file(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file not found: {path}")
    return parse_calib_text(path.read_text(), source=str(path))


def calib_matrix(values: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...], source: str) -> np.ndarray:
    """values[key] reshaped to `shape`, with an error naming the key and the file."""
    if key not in values:
        raise CalibrationError(f"{source}: missing key {key!r} (has: {', '.join(sorted(values)) or 'nothing'})")
    value = values[key]
    if value.size != int(np.prod(shape)):
        raise CalibrationError(f"{source}: key {key!r} has {value.size} values, expected {int(np.prod(shape))}")
    if not np.isfinite(value).all():
        raise CalibrationError(f"{source}: key {key!r} holds non-finite values")
    return value.reshape(shape)


@dataclass(frozen=True)
class KittiCalibration:
    """One KITTI colour camera (02 or 03) and the Velodyne, from a date folder's calibration files."""

    camera: PinholeCamera  # rectified intrinsics, image size S_rect_0X
    lidar_to_camera: np.ndarray  # 4x4: Velodyne -> rectified camera 0X (includes R_rect_00 and P's baseline)
    P_rect: np.ndarray  # 3x4 as in the file
    R_rect_00: np.ndarray  # 3x3
    velo_to_cam0: np.ndarray  # 4x4: Tr_velo_to_cam (unrectified camera 00)

    @property
    def projection(self) -> np.ndarray:
        """KITTI's 3x4 P_rect_0X @ R_rect_00 @ Tr_velo_to_cam, for comparisons with the devkit formula."""
        rect = np.eye(4)
        rect[:3, :3] = self.R_rect_00
        return self.P_rect @ rect @ self.velo_to_cam0


def split_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P = K [I | b] -> (K, b). b is the camera's offset from the reference camera, in metres."""
    P = np.asarray(P, dtype=np.float64).reshape(3, 4)
    K = P[:, :3]
    return K, np.linalg.solve(K, P[:, 3])


def load_kitti_calibration(calib_dir: str | Path, camera: str = "02") -> KittiCalibration:
    """Read `calib_cam_to_cam.txt` and `calib_velo_to_cam.txt` of a KITTI raw date folder."""
    calib_dir = Path(calib_dir)
    cam_path, velo_path = calib_dir / "calib_cam_to_cam.txt", calib_dir / "calib_velo_to_cam.txt"
    cam, velo = read_calib_file(cam_path), read_calib_file(velo_path)
    P_rect = calib_matrix(cam, f"P_rect_{camera}", (3, 4), str(cam_path))
    R_rect_00 = calib_matrix(cam, "R_rect_00", (3, 3), str(cam_path))
    size = calib_matrix(cam, f"S_rect_{camera}", (2,), str(cam_path))
    velo_to_cam0 = make_transform(
        calib_matrix(velo, "R", (3, 3), str(velo_path)), calib_matrix(velo, "T", (3,), str(velo_path))
    )
    K, baseline = split_projection(P_rect)
    lidar_to_camera = make_transform(np.eye(3), baseline) @ make_transform(R_rect_00, np.zeros(3)) @ velo_to_cam0
    return KittiCalibration(
        camera=PinholeCamera.from_K(K, width=int(round(size[0])), height=int(round(size[1]))),
        lidar_to_camera=lidar_to_camera,
        P_rect=P_rect,
        R_rect_00=R_rect_00,
        velo_to_cam0=velo_to_cam0,
    )


def _format_values(values) -> str:
    return " ".join(f"{v:.6e}" for v in np.asarray(values, dtype=np.float64).reshape(-1))


def write_kitti_calibration(
    calib_dir: str | Path,
    cameras: Mapping[str, dict],
    R_rect_00: np.ndarray,
    velo_to_cam0: np.ndarray,
    imu_to_velo: np.ndarray | None = None,
    calib_time: str = "01-Jan-2011 00:00:00",
) -> None:
    """Write the three calibration files of a KITTI raw date folder in the devkit's format.

    `cameras` maps "00".."03" to dicts with keys S (w, h), K (3x3), D (5), R (3x3), T (3), S_rect (w, h),
    R_rect (3x3), P_rect (3x4): the fields of `calib_cam_to_cam.txt`, in the file's order.
    """
    calib_dir = Path(calib_dir)
    calib_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"calib_time: {calib_time}", "corner_dist: 9.950000e-02"]
    for name in sorted(cameras):
        fields = dict(cameras[name])
        if name == "00":
            fields["R_rect"] = R_rect_00
        for field in ("S", "K", "D", "R", "T", "S_rect", "R_rect", "P_rect"):
            lines.append(f"{field}_{name}: {_format_values(fields[field])}")
    (calib_dir / "calib_cam_to_cam.txt").write_text("\n".join(lines) + "\n")
    velo_lines = [
        f"calib_time: {calib_time}",
        f"R: {_format_values(velo_to_cam0[:3, :3])}",
        f"T: {_format_values(velo_to_cam0[:3, 3])}",
        "delta_f: 0.000000e+00 0.000000e+00",
        "delta_c: 0.000000e+00 0.000000e+00",
    ]
    (calib_dir / "calib_velo_to_cam.txt").write_text("\n".join(velo_lines) + "\n")
    imu_to_velo = np.eye(4) if imu_to_velo is None else imu_to_velo
    imu_lines = [
        f"calib_time: {calib_time}",
        f"R: {_format_values(imu_to_velo[:3, :3])}",
        f"T: {_format_values(imu_to_velo[:3, 3])}",
    ]
    (calib_dir / "calib_imu_to_velo.txt").write_text("\n".join(imu_lines) + "\n")


def read_intrinsics_txt(path: str | Path, width: int, height: int) -> PinholeCamera:
    """`val_selection_cropped/intrinsics/*.txt`: one 3x3 K, 9 numbers on one line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"intrinsics file not found: {path}")
    values = np.array(path.read_text().split(), dtype=np.float64)
    if values.size != 9:
        raise CalibrationError(f"{path}: expected 9 numbers (a 3x3 K), got {values.size}")
    return PinholeCamera.from_K(values.reshape(3, 3), width, height)


def write_intrinsics_txt(path: str | Path, camera: PinholeCamera) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_format_values(camera.K) + "\n")


# -------------------------------------------------------------------------------------- projection
@dataclass(frozen=True)
class ProjectionStats:
    """What happened to the input points. input = nonfinite + behind + out_of_range + outside + projected."""

    input: int
    nonfinite: int  # NaN/Inf coordinates: dropped
    behind: int  # depth <= min_depth (behind or too close to the camera)
    out_of_range: int  # depth beyond max_depth
    outside: int  # in front but outside the image
    projected: int  # landed in the image (several may share a pixel; the nearest wins)
    pixels: int  # pixels that received a depth


def _torch_of(x):
    """The torch module where `x` is a tensor, else None. PyTorch is never imported here: numpy callers never
    need it, and a tensor exists only where it is loaded."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else None


def _check_points(points) -> None:
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"points must be an (N, 3) array (extra columns such as intensity are ignored), "
                         f"got shape {tuple(points.shape)}")


def transform_points(transform: np.ndarray, points: ArrayLike) -> ArrayLike:
    """Apply a 4x4 rigid transform to (N, >=3) points; returns (N, 3) in the input's library and device."""
    _check_points(points)
    xyz = points[:, :3]
    torch = _torch_of(points)
    if torch is not None:
        xyz = xyz if xyz.is_floating_point() else xyz.float()
        stack = torch.stack
    else:
        xyz = np.asarray(xyz)
        xyz = xyz if np.issubdtype(xyz.dtype, np.floating) else xyz.astype(np.float64)
        stack = np.stack
    # Nine multiply-adds per point written out: a BLAS call for an (N, 3) x (3, 3) product spends more
    # time waking its threads than computing, and stalls badly when other processes hold the cores.
    t = np.asarray(transform, dtype=np.float64).reshape(4, 4).tolist()
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rows = [x * t[r][0] + y * t[r][1] + z * t[r][2] + t[r][3] for r in range(3)]
    return stack(rows, 1)


def project(
    points_xyz: ArrayLike,
    camera: PinholeCamera,
    lidar_to_camera: np.ndarray | None = None,
    min_depth: float = 0.1,
    max_depth: float | None = None,
    return_stats: bool = False,
):
    """Project LiDAR points into a sparse depth image (H, W) float32 in metres, 0 = no return.

    Where several points land in one pixel the nearest (smallest depth) is kept. Points that are not finite,
    behind the camera (depth <= min_depth), farther than max_depth or outside the image are dropped and
    counted in the returned `ProjectionStats` (with `return_stats=True`). Works on numpy arrays and on torch
    tensors (CPU or CUDA; the result stays on the input's device).

    Camera-model hook: `camera` may be any other camera model with `width`, `height` and a method
    `project(points (N, 3) in its frame, z > 0) -> (u, v)` of pixel coordinates (e.g. a lens-distorted
    `raw_camera.RawCamera`); the depth is still the z coordinate in the camera's frame and the pixel conventions
    are the same. Such models take numpy points only and work in float64.
    """
    _check_points(points_xyz)
    torch = _torch_of(points_xyz)
    use_torch = torch is not None
    pinhole = not callable(getattr(camera, "project", None))  # a PinholeCamera (or any fx, fy, cx, cy object)
    if not pinhole:
        if use_torch:
            raise TypeError(f"projecting through a {type(camera).__name__} takes numpy points, not torch tensors")
        points_xyz = np.asarray(points_xyz)[:, :3].astype(np.float64)
    n_input = int(points_xyz.shape[0])
    if use_torch:
        xyz = points_xyz[:, :3]
        xyz = xyz if xyz.dtype in (torch.float32, torch.float64) else xyz.float()
    else:
        xyz = np.asarray(points_xyz)[:, :3]
        xyz = xyz if xyz.dtype in (np.float32, np.float64) else xyz.astype(np.float32)
    # Transform and project every point first and filter once at the end: one boolean gather of the few
    # points that land in the image is far cheaper than filtering the whole cloud stage by stage.
    # Non-finite inputs stay non-finite through the affine transform, so they are caught by `finite` below.
    if lidar_to_camera is not None:
        xyz = transform_points(lidar_to_camera, xyz)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    # A sum is finite exactly when its terms are (NaN and +/-Inf propagate), and is cheaper than all(axis=1).
    with np.errstate(over="ignore", invalid="ignore"):
        finite = torch.isfinite(x + y + z) if use_torch else np.isfinite(x + y + z)
    floor = torch.floor if use_torch else np.floor
    in_front = finite & (z > min_depth)
    in_range = in_front if max_depth is None else in_front & (z <= max_depth)
    if pinhole:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            col = floor(camera.fx * x / z + (camera.cx + 0.5))
            row = floor(camera.fy * y / z + (camera.cy + 0.5))
    else:
        col, row = _model_pixels(camera, xyz, in_range)
    inside = in_range & (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
    n_finite, n_front, n_in_range = int(finite.sum()), int(in_front.sum()), int(in_range.sum())
    n_nonfinite = n_input - n_finite
    n_behind = n_finite - n_front
    n_out_of_range = n_front - n_in_range
    z = z[inside]
    n_projected = int(z.shape[0])
    n_outside = n_in_range - n_projected

    if use_torch:
        flat_index = (row[inside] * camera.width + col[inside]).long()
        flat = torch.zeros(camera.height * camera.width, dtype=torch.float32, device=z.device)
        flat.scatter_reduce_(0, flat_index, z.float(), reduce="amin", include_self=False)
        depth = flat.view(camera.height, camera.width)
        pixels = int(torch.count_nonzero(flat))
    else:
        flat_index = (row[inside] * camera.width + col[inside]).astype(np.int64)
        # Sort by pixel, then by depth: the first entry of each pixel's run is its nearest return.
        order = np.lexsort((z, flat_index))
        sorted_index = flat_index[order]
        first = np.ones(sorted_index.shape[0], dtype=bool)
        first[1:] = sorted_index[1:] != sorted_index[:-1]
        flat = np.zeros(camera.height * camera.width, dtype=np.float32)
        flat[sorted_index[first]] = z[order][first]
        depth = flat.reshape(camera.height, camera.width)
        pixels = int(first.sum())

    if not return_stats:
        return depth
    return depth, ProjectionStats(n_input, n_nonfinite, n_behind, n_out_of_range, n_outside, n_projected, pixels)


def _model_pixels(camera, xyz: np.ndarray, in_range: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(col, row) of the points through `camera.project` (the points in range only; -1 elsewhere)."""
    col = np.full(xyz.shape[0], -1.0)
    row = np.full(xyz.shape[0], -1.0)
    if in_range.any():
        u, v = camera.project(xyz[in_range])
        with np.errstate(invalid="ignore"):
            col[in_range] = np.floor(np.asarray(u, dtype=np.float64) + 0.5)
            row[in_range] = np.floor(np.asarray(v, dtype=np.float64) + 0.5)
    return col, row


def unproject(depth: ArrayLike, camera: PinholeCamera, camera_to_frame: np.ndarray | None = None):
    """Points (N, 3) of the pixels with a finite depth > 0, in the camera frame or, given the 4x4
    `camera_to_frame`, in that frame. Returns (points, (rows, cols)). numpy or torch, like the input."""
    if tuple(depth.shape[-2:]) != (camera.height, camera.width) or depth.ndim != 2:
        raise ValueError(f"depth must be ({camera.height}, {camera.width}) for this camera, "
                         f"got shape {tuple(depth.shape)}")
    torch = _torch_of(depth)
    if torch is not None:
        valid = torch.isfinite(depth) & (depth > 0)
        rows, cols = torch.nonzero(valid, as_tuple=True)
        z = depth[rows, cols].to(torch.float64 if depth.dtype == torch.float64 else torch.float32)
        x = (cols.to(z.dtype) - camera.cx) * z / camera.fx
        y = (rows.to(z.dtype) - camera.cy) * z / camera.fy
        points = torch.stack([x, y, z], dim=1)
    else:
        depth = np.asarray(depth)
        valid = np.isfinite(depth) & (depth > 0)
        rows, cols = np.nonzero(valid)
        z = depth[rows, cols].astype(np.float64 if depth.dtype == np.float64 else np.float32)
        x = (cols.astype(z.dtype) - camera.cx) * z / camera.fx
        y = (rows.astype(z.dtype) - camera.cy) * z / camera.fy
        points = np.stack([x, y, z], axis=1)
    if camera_to_frame is not None:
        points = transform_points(camera_to_frame, points)
    return points, (rows, cols)
