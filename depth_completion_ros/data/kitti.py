"""KITTI readers: raw drives (images, Velodyne scans, timestamps, calibration) and the depth-completion
benchmark (train / val / val_selection_cropped) as a map-style data set for PyTorch's DataLoader (whose items are
torch tensors: PyTorch is imported when an item is read; `load` gives numpy arrays without it).

Layout under the dataset root (the real KITTI one, also written by the synthetic world generator):
  kitti_raw/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt, calib_imu_to_velo.txt
  kitti_raw/<date>/<date>_drive_<nnnn>_sync/image_0{2,3}/data/%010d.png, image_0X/timestamps.txt
  kitti_raw/<date>/<date>_drive_<nnnn>_sync/velodyne_points/data/%010d.bin, velodyne_points/timestamps.txt
  kitti_raw/<date>/<date>_drive_<nnnn>_sync/oxts/data/%010d.txt, oxts/timestamps.txt (GPS/IMU: `data.oxts`)
  data_depth_velodyne/{train,val}/<drive>/proj_depth/velodyne_raw/image_0X/%010d.png
  data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_0X/%010d.png
  data_depth_selection/val_selection_cropped/{image,velodyne_raw,groundtruth_depth,intrinsics}/
      <drive>_{image,velodyne_raw,groundtruth_depth}_%010d_image_0X.png, <drive>_image_%010d_image_0X.txt
Frames are always paired by file name: annotated frames are a subset of the raw ones (KITTI leaves out
the first and last five frames of every drive). `find_groundtruth_folder` and `find_raw_drive_folder`
locate one drive's ground-truth PNGs and raw folder from any level of these layouts.
"""
from __future__ import annotations

import bisect
import calendar
import itertools
import datetime as _datetime
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from depth_completion_ros.data.image_io import read_depth_png, read_rgb_png
from depth_completion_ros.geometry import (
    CalibrationError,
    KittiCalibration,
    PinholeCamera,
    bottom_crop_offsets,
    calib_matrix,
    load_kitti_calibration,
    make_transform,
    read_calib_file,
    read_intrinsics_txt,
)

# The LiDAR's pose per frame in a drive written from a recording (`dcros adapt`), where no OXTS exists.
LIDAR_POSES_FILE = "lidar_poses.txt"
KITTI_CROP = (352, 1216)  # (height, width) of the benchmark's bottom crop
SPLITS = ("train", "val", "val_selection_cropped")
CAMERAS = ("image_02", "image_03")
_DRIVE_PATTERN = re.compile(r"^(?P<date>\d{4}_\d{2}_\d{2})_drive_(?P<number>\d{4})_sync$")
_TIMESTAMP_PATTERN = re.compile(r"^\s*(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?\s*$")
_SELECTION_PATTERN = re.compile(
    r"^(?P<drive>\d{4}_\d{2}_\d{2}_drive_\d{4}_sync)_(?P<kind>image|velodyne_raw|groundtruth_depth)_"
    r"(?P<frame>\d{10})_(?P<camera>image_0[23])\.(?P<ext>png|txt)$"
)


# ------------------------------------------------------------------------------------------ timestamps
def parse_kitti_timestamp(line: str) -> int:
    """`2011-09-26 13:02:25.964389445` -> integer nanoseconds since the Unix epoch (read as UTC).

    The fraction keeps all its digits (up to 9); no float is involved, so no precision is lost.
    """
    match = _TIMESTAMP_PATTERN.match(line)
    if not match:
        raise ValueError(f"not a KITTI timestamp ('YYYY-MM-DD hh:mm:ss.fffffffff'): {line.strip()!r}")
    moment = _datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    fraction = (match.group(2) or "").ljust(9, "0")
    return calendar.timegm(moment.timetuple()) * 1_000_000_000 + int(fraction)


def format_kitti_timestamp(stamp_ns: int) -> str:
    """Integer nanoseconds since the Unix epoch -> `YYYY-MM-DD hh:mm:ss.fffffffff` (UTC), the inverse of
    `parse_kitti_timestamp`."""
    seconds, fraction = divmod(int(stamp_ns), 1_000_000_000)
    moment = _datetime.datetime.fromtimestamp(seconds, tz=_datetime.timezone.utc)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{fraction:09d}"


def write_timestamps(path: str | Path, stamps_ns) -> None:
    """A KITTI `timestamps.txt`, one line per stamp (nanoseconds since the Unix epoch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(format_kitti_timestamp(stamp) + "\n" for stamp in stamps_ns))


def write_lidar_poses(path: str | Path, poses: dict) -> None:
    """`LIDAR_POSES_FILE`: a frame id, then the 12 values of the 3x4 LiDAR -> fixed frame pose (KITTI odometry's
    layout, with the frame id in front, since a recording's frames need not all have a pose)."""
    path = Path(path)
    lines = [" ".join([f"{frame:d}"] + [f"{v:.9e}" for v in np.asarray(poses[frame])[:3].reshape(-1)])
             for frame in sorted(poses)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def read_lidar_poses(path: str | Path) -> dict[int, np.ndarray]:
    """{frame id: 4x4 LiDAR -> fixed frame} of a `write_lidar_poses` file."""
    path = Path(path)
    poses = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        values = line.split()
        if len(values) != 13:
            raise ValueError(f"{path}:{number}: expected a frame id and 12 pose values, got {len(values)} values")
        pose = np.eye(4)
        pose[:3] = np.array(values[1:], dtype=np.float64).reshape(3, 4)
        poses[int(values[0])] = pose
    return poses


def read_timestamps(path: str | Path) -> np.ndarray:
    """All timestamps of a KITTI `timestamps.txt` as an int64 array of nanoseconds (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"timestamps file not found: {path}")
    stamps = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                stamps.append(parse_kitti_timestamp(line))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    return np.array(stamps, dtype=np.int64)


def _camera_code(camera: str) -> str:
    """"image_02" / "02" -> "02" (the suffix of P_rect_0X), with a clear error for anything else."""
    code = camera[-2:] if camera.startswith("image_") else camera
    if f"image_{code}" not in CAMERAS:
        raise ValueError(f"camera must be one of {', '.join(CAMERAS)} (colour cameras), got {camera!r}")
    return code


def _camera_folder(camera: str) -> str:
    return f"image_{_camera_code(camera)}"


# ------------------------------------------------------------------------------------------ raw drives
def list_raw_drives(raw_root: str | Path) -> list[str]:
    """Names `<date>_drive_<nnnn>_sync` of the drives under a KITTI raw root, sorted."""
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise FileNotFoundError(f"KITTI raw folder not found: {raw_root}")
    return sorted(
        drive.name for date in raw_root.iterdir() if date.is_dir()
        for drive in date.iterdir() if drive.is_dir() and _DRIVE_PATTERN.match(drive.name)
    )


def is_drive_name(name: str) -> bool:
    """Whether `name` looks like a KITTI raw drive, `<date>_drive_<nnnn>_sync`."""
    return bool(_DRIVE_PATTERN.match(name))


def _date_of(drive: str) -> str:
    match = _DRIVE_PATTERN.match(drive)
    if not match:
        raise ValueError(f"drive name must look like 2011_09_26_drive_0001_sync, got {drive!r}")
    return match.group("date")


class KittiRawDrive:
    """One KITTI raw drive: frame ids, timestamps, images, Velodyne scans, the date's calibration and the
    ego motion of the OXTS packets (`velodyne_poses`)."""

    def __init__(self, raw_root: str | Path, drive: str):
        self.raw_root = Path(raw_root)
        self.name = drive
        self.date = _date_of(drive)
        self.path = self.raw_root / self.date / drive
        if not self.path.is_dir():
            raise FileNotFoundError(f"KITTI raw drive not found: {self.path}")

    def __repr__(self) -> str:
        return f"KittiRawDrive({str(self.raw_root)!r}, {self.name!r})"

    @cached_property
    def calibration(self) -> KittiCalibration:
        """Calibration of camera 02 (the left colour camera) and the Velodyne."""
        return self.calibration_for("image_02")

    def calibration_for(self, camera: str) -> KittiCalibration:
        """Calibration of `camera` ("image_02" or "image_03") and the Velodyne."""
        return load_kitti_calibration(self.raw_root / self.date, camera=_camera_code(camera))

    @cached_property
    def raw_camera(self):
        """The raw camera (`raw_camera.RawCamera`) whose distorted grid image_02 is in, for a synthetic
        raw-camera drive under a KITTI root `<root>/kitti_raw` (`raw_camera_of_drive`); None for any other."""
        return raw_camera_of_drive(self.raw_root.parent, self.name)

    @cached_property
    def frame_ids(self) -> list[int]:
        """Frame numbers present in image_02/data, sorted."""
        folder = self.path / "image_02" / "data"
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        return sorted(int(p.stem) for p in folder.glob("*.png") if p.stem.isdigit())

    @cached_property
    def image_timestamps_ns(self) -> np.ndarray:
        """Camera 02 timestamps (int64 ns), one per line of image_02/timestamps.txt."""
        return read_timestamps(self.path / "image_02" / "timestamps.txt")

    @cached_property
    def velodyne_timestamps_ns(self) -> np.ndarray:
        """Velodyne timestamps (int64 ns; KITTI's time the scanner faced forward), one per scan."""
        return read_timestamps(self.path / "velodyne_points" / "timestamps.txt")

    @cached_property
    def oxts_timestamps_ns(self) -> np.ndarray:
        """OXTS timestamps (int64 ns), one per packet of oxts/data (frame k's is line k)."""
        return read_timestamps(self.path / "oxts" / "timestamps.txt")

    @cached_property
    def imu_to_velo(self) -> np.ndarray:
        """4x4 IMU (OXTS unit) -> Velodyne, pykitti's T_velo_imu: R and T of the date's calib_imu_to_velo.txt."""
        path = self.raw_root / self.date / "calib_imu_to_velo.txt"
        values = read_calib_file(path)
        return make_transform(calib_matrix(values, "R", (3, 3), str(path)),
                              calib_matrix(values, "T", (3,), str(path)))

    @cached_property
    def _imu_poses(self) -> np.ndarray:
        from depth_completion_ros.data.oxts import imu_poses, read_oxts

        return imu_poses(read_oxts(self.path)[1])

    def velodyne_poses(self) -> dict[int, np.ndarray]:
        """{frame id: 4x4 Velodyne -> world} of every OXTS packet: T_w_imu @ inv(T_velo_imu), with pykitti's
        world (`data.oxts.imu_poses`: east-north-up, origin at the first packet's IMU position). The ego motion
        of the drive; a drive without oxts/ or without calib_imu_to_velo.txt: FileNotFoundError naming it."""
        # The exact inverse, as pykitti's: the file's 7-digit rotation is orthonormal only to ~1e-7.
        velo_to_imu = np.linalg.inv(self.imu_to_velo)
        return {frame: pose @ velo_to_imu for frame, pose in enumerate(self._imu_poses)}

    def lidar_poses(self) -> dict[int, np.ndarray]:
        """{frame id: 4x4 LiDAR -> fixed frame}: the drive's `LIDAR_POSES_FILE` where it has one (a drive written
        from a bag), else the OXTS poses (`velodyne_poses`)."""
        path = self.path / LIDAR_POSES_FILE
        return read_lidar_poses(path) if path.is_file() else self.velodyne_poses()

    def camera_poses(self, camera: str = "image_02") -> dict[int, np.ndarray]:
        """{frame id: 4x4 rectified `camera` -> fixed frame} from `lidar_poses` and the date's calibration."""
        camera_to_lidar = np.linalg.inv(self.calibration_for(camera).lidar_to_camera)
        return {frame: pose @ camera_to_lidar for frame, pose in self.lidar_poses().items()}

    def image_path(self, frame_id: int, camera: str = "image_02") -> Path:
        return self.path / _camera_folder(camera) / "data" / f"{int(frame_id):010d}.png"

    def velodyne_path(self, frame_id: int) -> Path:
        return self.path / "velodyne_points" / "data" / f"{int(frame_id):010d}.bin"

    def read_image(self, frame_id: int, camera: str = "image_02") -> np.ndarray:
        """(H, W, 3) uint8 RGB of one frame."""
        return read_rgb_png(self.image_path(frame_id, camera))

    def read_velodyne(self, frame_id: int) -> np.ndarray:
        """(N, 4) float32 Velodyne points: x, y, z (m, Velodyne frame), reflectance."""
        path = self.velodyne_path(frame_id)
        if not path.is_file():
            raise FileNotFoundError(f"Velodyne scan not found: {path}")
        raw = np.fromfile(path, dtype="<f4")
        if raw.size % 4:
            raise ValueError(f"{path}: {raw.size} float32 values is not a whole number of (x, y, z, r) points")
        return raw.reshape(-1, 4)

    def annotation_path(self, depth_root: str | Path, frame_id: int, kind: str = "groundtruth",
                        camera: str = "image_02") -> Path | None:
        """The depth-completion PNG of this frame (`groundtruth` or `velodyne_raw`) under the dataset root,
        searched in the train and val splits; None where KITTI has none (e.g. the first and last 5 frames)."""
        if kind not in ("groundtruth", "velodyne_raw"):
            raise ValueError(f"kind must be 'groundtruth' or 'velodyne_raw', got {kind!r}")
        top = "data_depth_annotated" if kind == "groundtruth" else "data_depth_velodyne"
        for split in ("train", "val"):
            path = (Path(depth_root) / top / split / self.name / "proj_depth" / kind / _camera_folder(camera)
                    / f"{int(frame_id):010d}.png")
            if path.is_file():
                return path
        return None


# ------------------------------------------------------------------------------- raw-camera drives
def load_raw_camera(calib_dir: str | Path, camera: str = "02", model: str | None = None):
    """The unrectified camera 0X of a date folder's calib_cam_to_cam.txt as a `raw_camera.RawCamera`: raw
    intrinsics K_0X, lens distortion D_0X (`model`, by default the one its number of values names: 5
    plumb_bob, 8 rational_polynomial, 4 equidistant), rectification rotation R_rect_0X, and the rectified
    camera of P_rect_0X / S_rect_0X. Only for raw images of the rectified size, as a synthetic raw-camera drive
    writes them (S_0X = S_rect_0X); KITTI's own raw camera 02 (1392x512, images never published unrectified in
    the synced drives) is not one: CalibrationError."""
    from depth_completion_ros.raw_camera import DISTORTION_MODELS, RawCamera

    code = camera[-2:] if camera.startswith("image_") else camera
    path = Path(calib_dir) / "calib_cam_to_cam.txt"
    values = read_calib_file(path)
    rectified = load_kitti_calibration(calib_dir, camera=code).camera
    size = calib_matrix(values, f"S_{code}", (2,), str(path))
    if tuple(int(round(v)) for v in size) != (rectified.width, rectified.height):
        raise CalibrationError(f"{path}: S_{code} ({size[0]:g}x{size[1]:g}) is not the rectified size "
                               f"S_rect_{code} ({rectified.width}x{rectified.height}): not a raw-camera drive's camera")
    if f"D_{code}" not in values:
        raise CalibrationError(f"{path}: missing key 'D_{code}'")
    D = values[f"D_{code}"]
    if model is None:
        models = [name for name, count in DISTORTION_MODELS.items() if count == D.size]
        if len(models) != 1:
            raise CalibrationError(f"{path}: D_{code} has {D.size} values, which names no distortion model "
                                   f"({', '.join(f'{n}: {c}' for n, c in DISTORTION_MODELS.items())})")
        model = models[0]
    K = calib_matrix(values, f"K_{code}", (3, 3), str(path))
    R = calib_matrix(values, f"R_rect_{code}", (3, 3), str(path))
    return RawCamera.create(rectified, model, D, R, K)


def raw_camera_of_drive(kitti_root: str | Path, drive: str):
    """The raw camera (`raw_camera.RawCamera`) of a synthetic raw-camera drive (`dcros synth --raw-camera`),
    whose image_02 images and depth PNGs are in the raw camera's distorted grid; None for any other drive (no
    synth_manifest.json at `kitti_root`, a manifest without "raw_camera", or one that does not list `drive`).

    The camera is read from the calibration files (`load_raw_camera`) and checked against the manifest."""
    manifest_path = Path(kitti_root) / "synth_manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    record = manifest.get("raw_camera")
    if not record or drive not in {d.get("name") for d in manifest.get("drives", [])}:
        return None
    calib_dir = Path(kitti_root) / "kitti_raw" / _date_of(drive)
    camera = load_raw_camera(calib_dir, "02", model=record["model"])
    D = read_calib_file(calib_dir / "calib_cam_to_cam.txt")["D_02"]
    for name, written, recorded in (("K", camera.K, record["K"]), ("D", D, record["D"]), ("R", camera.R, record["R"])):
        recorded = np.asarray(recorded, dtype=np.float64)
        if recorded.size != np.size(written) or not np.allclose(np.ravel(written), recorded, rtol=1e-6, atol=1e-9):
            raise CalibrationError(f"{manifest_path}: the raw camera's {name} disagrees with "
                                   f"{calib_dir / 'calib_cam_to_cam.txt'}")
    return camera


# --------------------------------------------------------------------------- one drive's ground truth
def _drive_of_groundtruth_folder(folder: Path, camera: str) -> str | None:
    """The drive of a `<drive>/proj_depth/groundtruth/image_0X` folder, None for any other folder."""
    parts = folder.parts
    if len(parts) >= 4 and parts[-1] == camera and parts[-2] == "groundtruth" and parts[-3] == "proj_depth" \
            and _DRIVE_PATTERN.match(parts[-4]):
        return parts[-4]
    return None


def find_groundtruth_folder(path: str | Path, drive: str | None = None,
                            camera: str = "image_02") -> tuple[Path, str]:
    """(folder of the ground-truth PNGs, drive name) of one drive, from any of these `path`s:

    - the folder itself, `.../<drive>/proj_depth/groundtruth/image_0X` (the drive comes from the path);
    - the drive's folder, `.../<drive>` holding `proj_depth/groundtruth/image_0X`;
    - a `data_depth_annotated` root holding `train/<drive>/...` and `val/<drive>/...`, or the dataset
      root above it: `drive` names the drive, or the root must hold only one.

    A `drive` that contradicts the path is an error, as is a folder where nothing matches.
    """
    path, camera = Path(path), _camera_folder(camera)
    if not path.is_dir():
        raise FileNotFoundError(f"ground-truth folder not found: {path}")
    named = _drive_of_groundtruth_folder(path, camera)
    if named is None and _DRIVE_PATTERN.match(path.name) and (path / "proj_depth").is_dir():
        named, path = path.name, path / "proj_depth" / "groundtruth" / camera
    if named is not None:
        if drive is not None and drive != named:
            raise ValueError(f"ground-truth folder {path} belongs to drive {named}, not {drive}")
        if not path.is_dir():
            raise FileNotFoundError(f"ground-truth folder not found: {path}")
        return path, named
    root = path / "data_depth_annotated" if (path / "data_depth_annotated").is_dir() else path
    splits = [root / split for split in ("train", "val") if (root / split).is_dir()]
    if not splits:
        raise FileNotFoundError(f"{path} is neither a drive's proj_depth/groundtruth/{camera} folder nor a "
                                "data_depth_annotated root (with train/ or val/)")
    folders = {d.name: d / "proj_depth" / "groundtruth" / camera for split in splits for d in sorted(split.iterdir())
               if _DRIVE_PATTERN.match(d.name) and (d / "proj_depth" / "groundtruth" / camera).is_dir()}
    if drive is not None:
        if drive not in folders:
            raise FileNotFoundError(f"no ground truth of drive {drive} ({camera}) under {root} "
                                    f"(drives: {', '.join(sorted(folders)) or 'none'})")
        return folders[drive], drive
    if len(folders) != 1:
        raise ValueError(f"{root} holds the ground truth of {len(folders)} drives; name one with --drive "
                         f"(drives: {', '.join(sorted(folders)) or 'none'})")
    (drive, folder), = folders.items()
    return folder, drive


def find_raw_drive_folder(path: str | Path, drive: str) -> Path:
    """The raw folder of `drive` (the one holding image_02/timestamps.txt) from `path`: that folder itself,
    the date folder above it, a kitti_raw root (`<date>/<drive>`) or the dataset root (`kitti_raw/...`)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"KITTI raw folder not found: {path}")
    if (path / "image_02").is_dir() or (path / "velodyne_points").is_dir():
        if _DRIVE_PATTERN.match(path.name) and path.name != drive:
            raise ValueError(f"raw folder {path} is drive {path.name}, but the ground truth is of drive {drive}")
        return path
    tried = [path / _date_of(drive) / drive, path / drive, path / "kitti_raw" / _date_of(drive) / drive]
    for candidate in tried:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"raw drive {drive} not found under {path} (looked for "
                            f"{', '.join(str(c) for c in tried)})")


# ------------------------------------------------------------------------------------ depth completion
@dataclass(frozen=True)
class KittiFrame:
    """Where one depth-completion sample's files are. `intrinsics_path` is set for the selection split only;
    train/val intrinsics come from the drive date's calibration."""

    name: str  # "<drive>/<camera>/<frame:010d>", unique in the data set
    drive: str
    camera: str
    frame_id: int
    rgb_path: Path
    sparse_path: Path
    gt_path: Path
    intrinsics_path: Path | None = None


def _frames_train_val(root: Path, raw_root: Path, split: str, cameras: Sequence[str]) -> tuple[list, int]:
    """Frames of a train/val split with both a velodyne_raw and a groundtruth PNG of the same name."""
    sparse_split = root / "data_depth_velodyne" / split
    gt_split = root / "data_depth_annotated" / split
    for folder in (sparse_split, gt_split):
        if not folder.is_dir():
            raise FileNotFoundError(f"KITTI depth-completion split folder not found: {folder}")
    frames, unpaired = [], 0
    for drive_dir in sorted(p for p in sparse_split.iterdir() if p.is_dir()):
        drive = drive_dir.name
        date = _date_of(drive)
        for camera in cameras:
            sparse_dir = drive_dir / "proj_depth" / "velodyne_raw" / camera
            gt_dir = gt_split / drive / "proj_depth" / "groundtruth" / camera
            sparse_names = {p.name for p in sparse_dir.glob("*.png")} if sparse_dir.is_dir() else set()
            gt_names = {p.name for p in gt_dir.glob("*.png")} if gt_dir.is_dir() else set()
            unpaired += len(sparse_names ^ gt_names)
            for file_name in sorted(sparse_names & gt_names):
                frame_id = int(Path(file_name).stem)
                frames.append(KittiFrame(
                    name=f"{drive}/{camera}/{frame_id:010d}", drive=drive, camera=camera, frame_id=frame_id,
                    rgb_path=raw_root / date / drive / camera / "data" / file_name,
                    sparse_path=sparse_dir / file_name, gt_path=gt_dir / file_name,
                ))
    return frames, unpaired


def _frames_selection(root: Path, cameras: Sequence[str]) -> tuple[list, int]:
    """Frames of val_selection_cropped, paired by (drive, frame, camera) parsed from the file names."""
    base = root / "data_depth_selection" / "val_selection_cropped"
    folders = {kind: base / kind for kind in ("image", "velodyne_raw", "groundtruth_depth", "intrinsics")}
    for folder in folders.values():
        if not folder.is_dir():
            raise FileNotFoundError(f"KITTI depth-completion split folder not found: {folder}")

    def index(kind: str, ext: str) -> dict:
        found = {}
        for path in folders[kind].glob(f"*.{ext}"):
            match = _SELECTION_PATTERN.match(path.name)
            if match and match.group("kind") == ("image" if kind == "intrinsics" else kind):
                found[(match.group("drive"), match.group("frame"), match.group("camera"))] = path
        return found

    sparse, gt, intrinsics = index("velodyne_raw", "png"), index("groundtruth_depth", "png"), index("intrinsics", "txt")
    frames, unpaired = [], len(set(sparse) ^ set(gt))
    for key in sorted(set(sparse) & set(gt)):
        drive, frame, camera = key
        if camera not in cameras:
            continue
        if key not in intrinsics:
            raise FileNotFoundError(f"intrinsics file missing for {sparse[key].name}: expected "
                                    f"{folders['intrinsics'] / f'{drive}_image_{frame}_{camera}.txt'}")
        frames.append(KittiFrame(
            name=f"{drive}/{camera}/{frame}", drive=drive, camera=camera, frame_id=int(frame),
            rgb_path=folders["image"] / f"{drive}_image_{frame}_{camera}.png",
            sparse_path=sparse[key], gt_path=gt[key], intrinsics_path=intrinsics[key],
        ))
    return frames, unpaired


def _colour_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float,
                   others: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, list[np.ndarray]]:
    """Brightness, contrast and saturation factors drawn in [1 - strength, 1 + strength]; rgb (H, W, 3) in 0..1.
    `others` (neighbouring views of the same frame) get the same factors about rgb's mean grey, so that they stay
    photometrically consistent with it. Returns (rgb, others)."""
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    mean_grey = ((rgb * brightness) @ weights).mean()

    def apply(image: np.ndarray) -> np.ndarray:
        image = (image * brightness - mean_grey) * contrast + mean_grey
        grey = image @ weights
        image = (image - grey[..., None]) * saturation + grey[..., None]
        return np.clip(image, 0.0, 1.0).astype(np.float32)
    return apply(rgb), [apply(other) for other in others]


# A view's pose in the mirrored image: flipping the columns about cx' = W - 1 - cx mirrors x in the camera frame.
_MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])


class KittiDepthCompletion:
    """KITTI depth completion (train, val or val_selection_cropped) as a map-style data set (`len`, items of
    torch tensors; `load(index)` gives the numpy arrays without PyTorch).

    Item: dict(rgb float32 [3,H,W] in 0..1, sparse float32 [1,H,W] m, gt float32 [1,H,W] m (0 = none),
    K float32 [3,3] of the returned image, name str "<drive>/<camera>/<frame:010d>").

    `crop=(352, 1216)` keeps KITTI's bottom crop (bottom rows, centred columns; None = full image).
    `augment=True` (training) mirrors the image half of the time (cx' = W - 1 - cx), jitters the colours of
    rgb by up to `jitter` and, with `random_crop=(h, w)`, cuts a random window inside the bottom crop. The
    random draws come from a generator seeded by (seed, epoch, index): `set_epoch(epoch)` before each epoch
    and the same seed gives the same samples in every run, whatever the number of loader workers.

    `views=k` (train/val splits; photometric losses) adds the images of the k frames before and after, cut,
    mirrored and jittered as rgb: "views" float32 [2k,3,H,W] (frames -k..-1, 1..k), "view_poses" float32
    [2k,4,4] (this camera -> the view's camera, from the drive's LiDAR poses: `KittiRawDrive.lidar_poses`) and
    "view_valid" bool [2k] (False where the neighbour is not in this split or has no pose; its view is zeros).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        crop: tuple[int, int] | None = KITTI_CROP,
        augment: bool = False,
        seed: int = 0,
        cameras: Sequence[str] = ("image_02",),
        raw_root: str | Path | None = None,
        random_crop: tuple[int, int] | None = None,
        jitter: float = 0.2,
        views: int = 0,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"KITTI dataset root not found: {self.root}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.cameras = tuple(_camera_folder(c) for c in cameras)
        if not self.cameras:
            raise ValueError("cameras must name at least one of image_02, image_03")
        self.split = split
        self.raw_root = Path(raw_root) if raw_root is not None else self.root / "kitti_raw"
        self.crop = tuple(crop) if crop is not None else None
        self.random_crop = tuple(random_crop) if random_crop is not None else None
        if self.random_crop is not None and self.crop is not None and (
                self.random_crop[0] > self.crop[0] or self.random_crop[1] > self.crop[1]):
            raise ValueError(f"random_crop {self.random_crop} is larger than the crop {self.crop}")
        self.augment = augment
        self.seed = int(seed)
        self.jitter = float(jitter)
        self.epoch = 0
        if split == "val_selection_cropped":
            self.frames, self.unpaired = _frames_selection(self.root, self.cameras)
        else:
            self.frames, self.unpaired = _frames_train_val(self.root, self.raw_root, split, self.cameras)
        if not self.frames:
            raise FileNotFoundError(f"no KITTI depth-completion frames for split {split!r} and cameras "
                                    f"{', '.join(self.cameras)} under {self.root}")
        drives = {frame.drive for frame in self.frames if frame.camera == "image_02"}
        raw = sorted(drive for drive in drives if raw_camera_of_drive(self.root, drive) is not None)
        if raw:  # their image_02 and depth PNGs are in a distorted grid that a pinhole K does not describe
            raise ValueError(f"{self.root}: drive(s) {', '.join(raw)} were written with a raw (lens-distorted) camera "
                             "02 (dcros synth --raw-camera), which training and eval-kitti cannot use; convert them "
                             "with dcros kitti2bag and score them with dcros eval-bag, which rectifies them")
        self._cameras: dict[tuple[str, str], PinholeCamera] = {}
        if int(views) != views or views < 0:
            raise ValueError(f"views must be a non-negative integer, got {views!r}")
        if views and split == "val_selection_cropped":
            raise ValueError("views need whole drives (train or val splits); val_selection_cropped has single frames")
        self.views = int(views)
        self._split_frames: dict[tuple[str, str], set[int]] = {}
        for frame in self.frames:
            self._split_frames.setdefault((frame.drive, frame.camera), set()).add(frame.frame_id)
        self._camera_poses: dict[tuple[str, str], dict[int, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of this epoch (call before iterating)."""
        self.epoch = int(epoch)

    def camera_of(self, index: int, width: int, height: int) -> PinholeCamera:
        """The full-image camera of frame `index` (image size given by the image actually read)."""
        frame = self.frames[index]
        if frame.intrinsics_path is not None:
            return read_intrinsics_txt(frame.intrinsics_path, width, height)
        key = (_date_of(frame.drive), frame.camera)
        if key not in self._cameras:
            self._cameras[key] = load_kitti_calibration(self.raw_root / key[0],
                                                        camera=_camera_code(frame.camera)).camera
        return PinholeCamera.from_K(self._cameras[key].K, width, height)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, PinholeCamera]:
        """Full-size (rgb uint8 (H,W,3), sparse (H,W) m, gt (H,W) m, camera) of one frame, checked."""
        frame = self.frames[index]
        if not frame.rgb_path.is_file():
            raise FileNotFoundError(f"{frame.name}: RGB image missing: {frame.rgb_path}")
        rgb = read_rgb_png(frame.rgb_path)
        sparse, gt = read_depth_png(frame.sparse_path), read_depth_png(frame.gt_path)
        if sparse.shape != rgb.shape[:2]:
            raise ValueError(f"{frame.name}: RGB is {rgb.shape[1]}x{rgb.shape[0]} but sparse depth is "
                             f"{sparse.shape[1]}x{sparse.shape[0]} ({frame.sparse_path})")
        if gt.shape != sparse.shape:
            raise ValueError(f"{frame.name}: ground truth is {gt.shape[1]}x{gt.shape[0]} but sparse depth is "
                             f"{sparse.shape[1]}x{sparse.shape[0]} ({frame.gt_path})")
        return rgb, sparse, gt, self.camera_of(index, rgb.shape[1], rgb.shape[0])

    def __getitem__(self, index: int) -> dict:
        import torch

        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        index = index % len(self)
        rgb, sparse, gt, camera = self.load(index)
        rgb = rgb.astype(np.float32) / np.float32(255.0)

        views, view_poses, view_valid = self._load_views(index, rgb.shape)
        images = [rgb, sparse, gt, *views]  # cut and mirrored together
        if self.crop is not None:
            height, width = self.crop
            top, left = bottom_crop_offsets(camera.height, camera.width, height, width)
            camera, images = self._apply_crop(camera, top, left, height, width, *images)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.random_crop is not None:
                height, width = self.random_crop
                top = int(rng.integers(0, camera.height - height + 1))
                left = int(rng.integers(0, camera.width - width + 1))
                camera, images = self._apply_crop(camera, top, left, height, width, *images)
            if rng.random() < 0.5:
                images = [image[:, ::-1] for image in images]
                camera = PinholeCamera(camera.width, camera.height, camera.fx, camera.fy,
                                       camera.width - 1 - camera.cx, camera.cy)
                view_poses = [_MIRROR_X @ pose @ _MIRROR_X for pose in view_poses]
            if self.jitter > 0:
                jittered, others = _colour_jitter(images[0], rng, self.jitter, images[3:])
                images = [jittered, *images[1:3], *others]
        rgb, sparse, gt, views = images[0], images[1], images[2], images[3:]

        item = {
            "rgb": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))),
            "sparse": torch.from_numpy(np.ascontiguousarray(sparse)[None]),
            "gt": torch.from_numpy(np.ascontiguousarray(gt)[None]),
            "K": torch.from_numpy(camera.K.astype(np.float32)),
            "name": self.frames[index].name,
        }
        if self.views:
            item["views"] = torch.from_numpy(np.ascontiguousarray(np.stack(views).transpose(0, 3, 1, 2)))
            item["view_poses"] = torch.from_numpy(np.stack(view_poses).astype(np.float32))
            item["view_valid"] = torch.tensor(view_valid, dtype=torch.bool)
        return item

    def view_offsets(self) -> list[int]:
        """The frame offsets of an item's views, in their order."""
        return [*range(-self.views, 0), *range(1, self.views + 1)]

    def _poses_of(self, frame: KittiFrame) -> dict[int, np.ndarray]:
        key = (frame.drive, frame.camera)
        if key not in self._camera_poses:
            try:
                self._camera_poses[key] = KittiRawDrive(self.raw_root, frame.drive).camera_poses(frame.camera)
            except (FileNotFoundError, ValueError) as error:
                raise FileNotFoundError(f"{frame.name}: views need the vehicle's motion, and drive {frame.drive} "
                                        f"has neither {LIDAR_POSES_FILE} nor OXTS poses ({error})") from None
        return self._camera_poses[key]

    def _load_views(self, index: int, shape: tuple) -> tuple[list[np.ndarray], list[np.ndarray], list[bool]]:
        """(images float32 (H,W,3) in 0..1, this camera -> view camera 4x4, valid) of the item's views."""
        if not self.views:
            return [], [], []
        frame = self.frames[index]
        poses, present = self._poses_of(frame), self._split_frames[(frame.drive, frame.camera)]
        images, transforms, valid = [], [], []
        for offset in self.view_offsets():
            other = frame.frame_id + offset
            path = frame.rgb_path.with_name(f"{other:010d}{frame.rgb_path.suffix}")
            usable = other in present and other in poses and frame.frame_id in poses and path.is_file()
            image = read_rgb_png(path).astype(np.float32) / np.float32(255.0) if usable else None
            if image is None or image.shape != shape:
                images.append(np.zeros(shape, dtype=np.float32))
                transforms.append(np.eye(4))
                valid.append(False)
                continue
            images.append(image)
            transforms.append(np.linalg.inv(poses[other]) @ poses[frame.frame_id])
            valid.append(True)
        return images, transforms, valid

    @staticmethod
    def _apply_crop(camera: PinholeCamera, top: int, left: int, height: int, width: int, *images):
        cropped_camera = camera.crop(top, left, height, width)
        return cropped_camera, tuple(image[top:top + height, left:left + width] for image in images)


class KittiDepthCompletionWorlds:
    """The same split of several KITTI-layout roots (e.g. a standard and a varied synthetic world) as one
    data set, built with the same arguments as KittiDepthCompletion.

    Items are those of KittiDepthCompletion, with the name prefixed by the root it came from,
    "<root>:<drive>/<camera>/<frame:010d>": the synthetic worlds (and KITTI's own recording days) reuse
    drive names, and names key teacher caches and per-frame records. `set_epoch` and `random_crop` reach
    every root, as with one.
    """

    def __init__(self, roots: Sequence[str | Path], split: str = "train", **kwargs):
        if isinstance(roots, (str, Path)) or len(roots) < 2:
            raise ValueError(f"roots must list two or more data set roots (one: use KittiDepthCompletion), "
                             f"got {roots!r}")
        labels = [str(root) for root in roots]
        if len(set(labels)) != len(labels):
            raise ValueError(f"roots name the same folder more than once: {labels}")
        self.labels = labels
        self.datasets = [KittiDepthCompletion(root, split, **kwargs) for root in roots]
        # as torch's ConcatDataset keeps them: the end index of each root's frames
        self.cumulative_sizes = list(itertools.accumulate(len(dataset) for dataset in self.datasets))

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    @property
    def random_crop(self) -> tuple[int, int] | None:
        return self.datasets[0].random_crop

    @random_crop.setter
    def random_crop(self, size: tuple[int, int] | None) -> None:
        for dataset in self.datasets:
            dataset.random_crop = tuple(size) if size is not None else None

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        index = index % len(self)
        part = bisect.bisect_right(self.cumulative_sizes, index)  # as ConcatDataset finds it
        item = self.datasets[part][index - (self.cumulative_sizes[part - 1] if part else 0)]
        item["name"] = f"{self.labels[part]}:{item['name']}"
        return item


def depth_completion_data(root: str | Path | Sequence[str | Path], split: str = "train",
                          **kwargs) -> KittiDepthCompletion | KittiDepthCompletionWorlds:
    """KittiDepthCompletion of one root, or KittiDepthCompletionWorlds of a list of two or more."""
    if isinstance(root, (str, Path)):
        return KittiDepthCompletion(root, split, **kwargs)
    roots = list(root)
    if len(roots) == 1:
        return KittiDepthCompletion(roots[0], split, **kwargs)
    return KittiDepthCompletionWorlds(roots, split, **kwargs)
