"""A user's recordings as KITTI raw drives with the LiDAR's pose per frame: what adaptation learns from.

Two kinds of recording:
- a rosbag (any bag `data.rosbag` reads: rosbag2 folders, .mcap, ROS 1 .bag): image, CameraInfo and
  PointCloud2 paired by header stamp with the node's approximate-time policy, the LiDAR -> camera transform
  from /tf_static (and /tf), and the vehicle's motion from the /tf transforms that change over time (e.g.
  odom -> base_link, or world -> base_link as `dcros kitti2bag` writes it from the OXTS). Each set is written
  out as a KITTI raw drive (image_02 PNG, Velodyne .bin, timestamps, the date folder's calibration files),
  a raw camera's image rectified as the node does it (`rectify: auto`);
- a KITTI raw drive folder (`<date>/<date>_drive_NNNN_sync`, with oxts/ and calib_imu_to_velo.txt): linked
  in place, its poses from the OXTS.

Either way a `Recording` holds the drive and `poses` {frame id: 4x4 LiDAR -> fixed frame}. A recording whose
LiDAR pose cannot be followed (no /tf that moves the LiDAR's frame, no OXTS) is refused before anything else
runs, with a message that names what is missing.
"""
from __future__ import annotations

import bisect
import datetime as _datetime
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depth_completion_ros.data import messages
from depth_completion_ros.data.image_io import write_rgb_png
from depth_completion_ros.data.kitti import (
    LIDAR_POSES_FILE, KittiRawDrive, is_drive_name, write_lidar_poses, write_timestamps,
)
from depth_completion_ros.data.rosbag import TF_STATIC_TOPIC, TF_TOPIC, BagError, bag_topics, read_bag
from depth_completion_ros.data.sync import ApproximateTimePairing
from depth_completion_ros.geometry import (
    PinholeCamera,
    TransformTree,
    load_kitti_calibration,
    make_transform,
    write_kitti_calibration,
)

LOGGER = logging.getLogger(__name__)
# How far outside the span of the ego-motion transforms a sweep may lie and still get a pose, extrapolated
# from the two nearest transforms (tf2 itself refuses any extrapolation; recorders stamp the pose and the
# sweep of one instant a few milliseconds apart).
MAX_EXTRAPOLATION_NS = 20_000_000


class EgoMotionError(BagError):
    """A recording from which the vehicle's motion cannot be read."""


@dataclass
class Recording:
    """One recording as a KITTI raw drive, and the pose of its LiDAR at each frame."""

    source: str  # the bag or folder the user gave
    kind: str  # "bag" or "kitti_raw"
    drive: KittiRawDrive
    poses: dict  # frame id -> 4x4 LiDAR -> fixed frame
    fixed_frame: str
    dropped: dict = field(default_factory=dict)  # reason -> frames left out while reading

    @property
    def frame_ids(self) -> list[int]:
        return [f for f in self.drive.frame_ids if f in self.poses]

    def as_dict(self) -> dict:
        return {"source": self.source, "kind": self.kind, "drive": self.drive.name, "frames": len(self.frame_ids),
                "fixed_frame": self.fixed_frame, "dropped": dict(self.dropped)}


# ---------------------------------------------------------------------------------------- ego motion
class TimedTransforms:
    """tf's transform tree over a whole recording: static edges, and edges whose transform changes with
    time (a pose per stamp, interpolated: linear in translation, spherical in rotation)."""

    def __init__(self):
        self.static = TransformTree()
        self._series: dict[str, tuple[str, list[int], list[np.ndarray]]] = {}  # child -> (parent, stamps, poses)

    def add(self, parent: str, child: str, stamp_ns: int, transform: np.ndarray, static: bool) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if static:
            self.static.add(parent, child, transform)
            return
        _, stamps, poses = self._series.setdefault(child, (parent, [], []))
        index = bisect.bisect_left(stamps, stamp_ns)
        if index < len(stamps) and stamps[index] == stamp_ns:
            poses[index] = transform
        else:
            stamps.insert(index, stamp_ns)
            poses.insert(index, transform)

    @property
    def moving_edges(self) -> list[tuple[str, str]]:
        """(parent, child) of the edges that change over time (two or more distinct transforms)."""
        return [(parent, child) for child, (parent, _, poses) in self._series.items()
                if any(not np.allclose(pose, poses[0]) for pose in poses[1:])]

    def _parent_of(self, frame: str):
        if frame in self._series:
            return self._series[frame][0], True
        parent = self.static.parent_of(frame)
        return (parent[0], False) if parent is not None else (None, False)

    def chain(self, frame: str) -> list[tuple[str, str, bool]]:
        """(parent, child, moving) edges from `frame` up to its root; `moving`: the edge comes from /tf (a
        transform per stamp), whether or not it changes."""
        edges, seen = [], {frame}
        while True:
            parent, moving = self._parent_of(frame)
            if parent is None:
                return edges
            if parent in seen:
                raise ValueError(f"the transform tree has a cycle through {parent!r}")
            edges.append((parent, frame, moving))
            seen.add(parent)
            frame = parent

    def pose(self, frame: str, stamp_ns: int) -> np.ndarray | None:
        """4x4 `frame` -> root of its tree at `stamp_ns` (None: outside the span of a moving edge)."""
        transform = np.eye(4)
        for parent, child, moving in self.chain(frame):
            if moving:
                edge = self._interpolate(child, stamp_ns)
                if edge is None:
                    return None
            else:
                edge = self.static.parent_of(child)[1]
            transform = edge @ transform
        return transform

    def _interpolate(self, child: str, stamp_ns: int) -> np.ndarray | None:
        from scipy.spatial.transform import Rotation, Slerp

        _, stamps, poses = self._series[child]
        if len(stamps) == 1:
            return poses[0] if stamps[0] == stamp_ns else None
        if stamp_ns < stamps[0] - MAX_EXTRAPOLATION_NS or stamp_ns > stamps[-1] + MAX_EXTRAPOLATION_NS:
            return None
        index = min(max(bisect.bisect_right(stamps, stamp_ns), 1), len(stamps) - 1)
        (t0, t1), (p0, p1) = stamps[index - 1:index + 1], poses[index - 1:index + 1]
        fraction = (stamp_ns - t0) / (t1 - t0)
        translation = p0[:3, 3] + fraction * (p1[:3, 3] - p0[:3, 3])
        rotations = Rotation.from_matrix(np.stack([p0[:3, :3], p1[:3, :3]]))
        if 0.0 <= fraction <= 1.0:
            rotation = Slerp([0.0, 1.0], rotations)([fraction]).as_matrix()[0]
        else:  # extrapolate the relative rotation's rotation vector
            delta = (rotations[1] * rotations[0].inv()).as_rotvec()
            rotation = (Rotation.from_rotvec(delta * fraction) * rotations[0]).as_matrix()
        return make_transform(rotation, translation)


def read_transforms(bag_path: Path, available: dict) -> TimedTransforms:
    """Every /tf_static and /tf transform of a bag."""
    transforms = TimedTransforms()
    topics = [t for t in (TF_STATIC_TOPIC, TF_TOPIC) if t in available]
    for record in read_bag(bag_path, topics) if topics else ():
        for stamped in record.msg.transforms:
            transforms.add(stamped.header.frame_id, stamped.child_frame_id,
                           messages.stamp_to_ns(stamped.header.stamp), messages.transform_from_msg(stamped.transform),
                           static=record.topic == TF_STATIC_TOPIC)
    return transforms


def check_ego_motion(bag_path: Path, available: dict, transforms: TimedTransforms, lidar_frame: str) -> str:
    """The fixed frame that the LiDAR's pose is followed in; an EgoMotionError naming what is missing."""
    example = "e.g. odom -> base_link from the vehicle's odometry, or world -> base_link as kitti2bag writes it"
    if TF_TOPIC not in available:
        raise EgoMotionError(f"bag {bag_path} has no {TF_TOPIC} topic, so the vehicle's motion is unknown: adaptation "
                             f"accumulates LiDAR sweeps along it and needs a {TF_TOPIC} transform that moves the "
                             f"LiDAR's frame {lidar_frame!r} ({example}); topics: {', '.join(sorted(available))}")
    chain = transforms.chain(lidar_frame)
    if not any(moving for _, _, moving in chain):
        moving = transforms.moving_edges
        path = " -> ".join([lidar_frame] + [parent for parent, _, _ in chain])
        raise EgoMotionError(
            f"bag {bag_path}: no {TF_TOPIC} transform moves the LiDAR's frame {lidar_frame!r} (its tree: {path}); "
            f"adaptation needs the vehicle's motion above it ({example}); moving transforms in the bag: "
            f"{', '.join(f'{p} -> {c}' for p, c in moving) or 'none'}")
    changing = set(transforms.moving_edges)
    if not any((parent, child) in changing for parent, child, _ in chain):
        LOGGER.warning("bag %s: the /tf transforms above the LiDAR's frame %r never change: the vehicle stood "
                       "still, and accumulating its sweeps adds nothing", bag_path, lidar_frame)
    return chain[-1][0]


def first_cloud_frame(bag_path: Path, topic: str) -> str:
    """The frame of a bag's first cloud on `topic` (the LiDAR's frame)."""
    from depth_completion_ros.evaluation.bag_eval import first_message

    cloud = first_message(bag_path, topic)
    if cloud is None:
        raise BagError(f"bag {bag_path}: topic {topic} has no message")
    return cloud.header.frame_id.lstrip("/")


# ---------------------------------------------------------------------------------------- bag -> drive
def _drive_name(stamp_ns: int, number: int) -> str:
    date = _datetime.datetime.fromtimestamp(stamp_ns / 1e9, tz=_datetime.timezone.utc).strftime("%Y_%m_%d")
    return f"{date}_drive_{number:04d}_sync"


def write_calibration(date_dir: Path, camera: PinholeCamera, lidar_to_camera: np.ndarray, source: str) -> None:
    """The date folder's calibration files for a rectified camera 02 at `lidar_to_camera` (R_rect_00 and the
    baseline the identity and zero, so that reading them back gives exactly this camera and transform).
    A date folder written before by another recording must hold the same calibration."""
    if (date_dir / "calib_cam_to_cam.txt").is_file():
        existing = load_kitti_calibration(date_dir)
        if not (np.allclose(existing.camera.K, camera.K, atol=1e-4) and existing.camera.width == camera.width
                and existing.camera.height == camera.height
                and np.allclose(existing.lidar_to_camera, lidar_to_camera, atol=1e-5)):
            raise ValueError(f"{source}: its camera or LiDAR mount differs from the calibration already in "
                             f"{date_dir} (another recording of the same day); adapt them in separate runs")
        return
    fields = {"S": (camera.width, camera.height), "K": camera.K, "D": np.zeros(5), "R": np.eye(3), "T": np.zeros(3),
              "S_rect": (camera.width, camera.height), "R_rect": np.eye(3), "P_rect": camera.P}
    write_kitti_calibration(date_dir, {"00": fields, "02": fields}, np.eye(3), np.asarray(lidar_to_camera))


@dataclass
class BagSource:
    """A bag inspected before anything is written: its topics and tf, the LiDAR's frame and where it moves."""

    path: Path
    available: dict  # `bag_topics`' answer
    topics: object  # evaluation.bag_eval.BagTopics
    transforms: TimedTransforms
    lidar_frame: str
    fixed_frame: str


@dataclass
class DriveSource:
    """A KITTI raw drive folder inspected before anything is written, with its LiDAR poses from the OXTS."""

    folder: Path
    drive: KittiRawDrive
    poses: dict


def inspect_bag(bag_path: str | Path, image_topic: str = "auto", info_topic: str = "auto",
                points_topic: str = "auto") -> BagSource:
    """The bag's topics (found as eval-bag finds them) and transforms; an EgoMotionError where they do not
    show the vehicle's motion."""
    from depth_completion_ros.evaluation.bag_eval import BagTopics, resolve_topics

    bag_path = Path(bag_path)
    available = bag_topics(bag_path)
    topics = resolve_topics(bag_path, available, BagTopics(image_topic, info_topic, points_topic, None))
    missing = [t for t in (topics.image, topics.camera_info, topics.points) if t not in available]
    if missing:
        raise BagError(f"bag {bag_path} has no topic {', '.join(missing)} (topics: {', '.join(sorted(available))})")
    transforms = read_transforms(bag_path, available)
    lidar_frame = first_cloud_frame(bag_path, topics.points)
    fixed_frame = check_ego_motion(bag_path, available, transforms, lidar_frame)
    return BagSource(bag_path, available, topics, transforms, lidar_frame, fixed_frame)


def extract_bag(source: BagSource, raw_root: Path, number: int, slop_s: float = 0.05, queue_size: int = 10,
                progress: bool = False) -> Recording:
    """Write an inspected bag's synchronized frames under `raw_root` as drive `number` of its day (see the
    module)."""
    from tqdm import tqdm

    from depth_completion_ros.raw_camera import RawCamera, Rectifier

    bag_path, available, topics, transforms = source.path, source.available, source.topics, source.transforms
    lidar_frame = source.lidar_frame
    required = [topics.image, topics.camera_info, topics.points]
    pairing = ApproximateTimePairing(3, queue_size=queue_size, slop_s=slop_s)
    inputs = {topics.image: 0, topics.camera_info: 1, topics.points: 2}
    rectifier = Rectifier()
    drive_dir = calibration = None
    frames: list[tuple[int, int]] = []  # (camera stamp, cloud stamp) per written frame
    poses: dict[int, np.ndarray] = {}
    dropped: dict[str, int] = {}

    def drop(reason: str, error) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1
        if dropped[reason] == 1:
            LOGGER.warning("%s: frame(s) left out (%s): %s", bag_path, reason, error)

    records = read_bag(bag_path, required)
    for record in tqdm(records, total=sum(available[t][1] for t in required), desc=f"read {bag_path.name}",
                       unit="msg", disable=not progress):
        matched = pairing.add(inputs[record.topic], messages.stamp_to_ns(record.msg.header.stamp), record.msg)
        if matched is None:
            continue
        image_msg, info_msg, cloud_msg = matched
        image_ns, cloud_ns = (messages.stamp_to_ns(m.header.stamp) for m in (image_msg, cloud_msg))
        try:
            raw = RawCamera.from_camera_info(info_msg)
            camera = raw.rectified
            messages.check_image_matches_camera(image_msg, camera)
            rgb = messages.rgb_from_image(image_msg)
            points, _ = messages.pointcloud2_to_xyz(cloud_msg)
            lidar_to_camera = transforms.static.lookup(image_msg.header.frame_id, cloud_msg.header.frame_id)
            if raw.needs_rectification and not raw.stereo:  # the node's `rectify: auto`
                rgb = rectifier.rectify(rgb, raw)
                lidar_to_camera = raw.raw_to_rectified @ lidar_to_camera
        except (ValueError, LookupError) as error:
            drop(type(error).__name__, error)
            continue
        pose = transforms.pose(cloud_msg.header.frame_id.lstrip("/"), cloud_ns)
        if pose is None:
            drop("no_ego_motion_at_stamp", f"no {TF_TOPIC} pose of {lidar_frame} near {cloud_ns} ns")
            continue
        if drive_dir is None:
            name = _drive_name(image_ns, number)
            date_dir = raw_root / name[:10]
            write_calibration(date_dir, camera, lidar_to_camera, str(bag_path))
            calibration = (camera, lidar_to_camera)
            drive_dir = date_dir / name
            if drive_dir.exists():
                shutil.rmtree(drive_dir)
        elif not (camera == calibration[0] and np.allclose(lidar_to_camera, calibration[1], atol=1e-5)):
            drop("camera_or_mount_changed", "the CameraInfo or the LiDAR -> camera transform differs from the "
                 "recording's first frame")
            continue
        frame = len(frames)
        write_rgb_png(drive_dir / "image_02" / "data" / f"{frame:010d}.png", rgb)
        scan = np.zeros((len(points), 4), dtype="<f4")
        scan[:, :3] = points
        scan_path = drive_dir / "velodyne_points" / "data" / f"{frame:010d}.bin"
        scan_path.parent.mkdir(parents=True, exist_ok=True)
        scan.tofile(scan_path)
        frames.append((image_ns, cloud_ns))
        poses[frame] = pose
    unpaired = sum(pairing.dropped())
    if unpaired:
        dropped["unsynchronized_messages"] = unpaired
    if not frames:
        raise BagError(f"bag {bag_path}: no frame could be read (left out: {dropped or 'none'}; topics "
                       f"{', '.join(required)})")
    write_timestamps(drive_dir / "image_02" / "timestamps.txt", [image for image, _ in frames])
    write_timestamps(drive_dir / "velodyne_points" / "timestamps.txt", [cloud for _, cloud in frames])
    write_lidar_poses(drive_dir / LIDAR_POSES_FILE, poses)
    drive = KittiRawDrive(raw_root, drive_dir.name)
    return Recording(str(bag_path), "bag", drive, poses, source.fixed_frame, dropped)


# --------------------------------------------------------------------------------- KITTI raw drive
def inspect_raw_drive(folder: str | Path) -> DriveSource:
    """A KITTI raw drive folder and its LiDAR poses from the OXTS; an EgoMotionError where it has none."""
    folder = Path(folder).resolve()
    if not is_drive_name(folder.name):
        raise ValueError(f"{folder} is not a KITTI raw drive folder (<date>_drive_NNNN_sync)")
    drive = KittiRawDrive(folder.parent.parent, folder.name)
    if drive.raw_camera is not None:
        raise ValueError(f"{folder} was written with a raw (lens-distorted) camera 02; convert it with dcros "
                         "kitti2bag and adapt on the bag, which is rectified on reading")
    try:
        poses = drive.velodyne_poses()
    except (FileNotFoundError, ValueError) as error:
        raise EgoMotionError(f"{folder}: the vehicle's motion is unknown ({error}); adaptation accumulates "
                             "LiDAR sweeps along the OXTS poses (oxts/ and calib_imu_to_velo.txt)") from None
    return DriveSource(folder, drive, poses)


def link_raw_drive(source: DriveSource, raw_root: Path) -> Recording:
    """An inspected KITTI raw drive linked under `raw_root` (calibration files copied)."""
    folder, calibration = source.folder, source.drive.calibration
    date_dir = raw_root / source.drive.date
    write_calibration(date_dir, calibration.camera, calibration.lidar_to_camera, str(folder))
    link = date_dir / folder.name
    if link.is_symlink() or link.exists():
        if link.resolve() != folder:
            raise ValueError(f"{link} already holds another drive {link.resolve()}")
    else:
        link.symlink_to(folder, target_is_directory=True)
    return Recording(str(folder), "kitti_raw", KittiRawDrive(raw_root, folder.name), source.poses, "oxts")


def inspect_recording(path: str | Path, image_topic: str = "auto", info_topic: str = "auto",
                      points_topic: str = "auto") -> BagSource | DriveSource:
    """A bag (file or rosbag2 folder) or a KITTI raw drive folder, checked to show the vehicle's motion."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"recording not found: {path}")
    if path.is_dir() and is_drive_name(path.name) and (path / "image_02").is_dir():
        return inspect_raw_drive(path)
    return inspect_bag(path, image_topic, info_topic, points_topic)


def open_recording(source: BagSource | DriveSource, raw_root: Path, number: int, **pairing) -> Recording:
    """An inspected recording as a Recording under `raw_root` (`pairing`: extract_bag's slop_s, queue_size,
    progress)."""
    if isinstance(source, DriveSource):
        return link_raw_drive(source, raw_root)
    return extract_bag(source, raw_root, number, **pairing)
