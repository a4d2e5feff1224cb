"""rosbag2 writing and rosbag1/rosbag2 reading through the pure-Python `rosbags` library (no ROS install).

Writing targets a ROS 2 distribution: "humble" writes metadata version 8 with the sqlite3 storage,
"jazzy" version 9 with MCAP. `storage` may pick the other storage, but the version follows the distro:
Humble's `ros2 bag` cannot parse version-9 metadata. Latched topics such as `/tf_static` are recorded
with a TRANSIENT_LOCAL offered QoS so that `ros2 bag play` republishes them latched.

Reading goes through `rosbags.highlevel.AnyReader` with the message definitions stored in the bag, so
ROS 1 `.bag` files and rosbag2 folders both work and no typestore has to match the recording distro.
Bags that carry no definitions (rosbag2 recorded on Humble or earlier: metadata without
`type_description_hash`, sqlite3 without a `message_definitions` table) are read with the Humble
typestore, whose sensor_msgs, geometry_msgs and tf2_msgs layouts are those of every ROS 2 distro. Besides
rosbag2 folders, a bare `.mcap` or `.db3` storage file reads on its own, and so does a folder that holds a
single storage file but lost its metadata.yaml.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.highlevel.anyreader import AnyReaderError
from rosbags.interfaces import MessageDefinitionFormat, Qos, QosDurability, QosHistory, QosLiveliness
from rosbags.interfaces import QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from depth_completion_ros.data import messages
from depth_completion_ros.data.image_io import read_depth_png
from depth_completion_ros.geometry import invert_transform

LOGGER = logging.getLogger(__name__)


class BagError(ValueError):
    """A bag cannot be written or read as asked: it exists already, lacks a topic, holds nothing..."""


@dataclass(frozen=True)
class BagFormat:
    """How a bag for one ROS 2 distribution is written."""

    store: Stores
    version: int
    storage: str


DISTROS: dict[str, BagFormat] = {
    "humble": BagFormat(Stores.ROS2_HUMBLE, 8, "sqlite3"),
    "jazzy": BagFormat(Stores.ROS2_JAZZY, 9, "mcap"),
}
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}

# What tf2's static broadcaster offers: reliable, transient local, keep the last message.
# Zero durations mean "unspecified" (no deadline, lifespan or lease), which every player parses.
LATCHED_QOS = Qos(
    history=QosHistory.KEEP_LAST,
    depth=1,
    reliability=QosReliability.RELIABLE,
    durability=QosDurability.TRANSIENT_LOCAL,
    deadline=QosTime(0, 0),
    lifespan=QosTime(0, 0),
    liveliness=QosLiveliness.AUTOMATIC,
    liveliness_lease_duration=QosTime(0, 0),
    avoid_ros_namespace_conventions=False,
)


def typestore_for(distro: str):
    """The rosbags typestore of a supported distro ("humble" or "jazzy")."""
    if distro not in DISTROS:
        raise BagError(f"unsupported ROS distro {distro!r} (supported: {', '.join(DISTROS)})")
    return get_typestore(DISTROS[distro].store)


class BagWriter:
    """A rosbag2 being written; use through `open_bag_writer` as a context manager.

    `types` maps ROS type names to the message classes of the distro's typestore, ready for the builders
    of `depth_completion_ros.data.messages`.
    """

    def __init__(self, path: str | Path, distro: str = "humble", storage: str | None = None):
        self.typestore = typestore_for(distro)
        bag_format = DISTROS[distro]
        storage = bag_format.storage if storage is None else storage
        if storage not in STORAGES:
            raise BagError(f"unsupported bag storage {storage!r} (supported: {', '.join(STORAGES)})")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"output bag {self.path} exists already; remove it or choose another path")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"folder for the output bag does not exist: {self.path.parent}")
        self.distro, self.version, self.storage = distro, bag_format.version, storage
        self._writer = Writer(self.path, version=bag_format.version, storage_plugin=STORAGES[storage])
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    @property
    def types(self):
        return self.typestore.types

    def add_topic(self, name: str, msgtype: str, latched: bool = False) -> None:
        """Register a topic; `latched` topics (e.g. /tf_static) get a TRANSIENT_LOCAL offered QoS."""
        if name in self._connections:
            raise BagError(f"topic {name} was added twice")
        if msgtype not in self.typestore.types:
            raise BagError(f"message type {msgtype!r} is unknown to the {self.distro} typestore")
        self._connections[name] = self._writer.add_connection(
            name, msgtype, typestore=self.typestore, offered_qos_profiles=[LATCHED_QOS] if latched else []
        )
        self.counts[name] = 0

    def write(self, topic: str, stamp_ns: int, msg) -> None:
        """Serialise `msg` (CDR) and record it on `topic` at receive time `stamp_ns`."""
        if topic not in self._connections:
            raise BagError(f"topic {topic} was not added (added: {', '.join(self._connections) or 'none'})")
        connection = self._connections[topic]
        self._writer.write(connection, int(stamp_ns), self.typestore.serialize_cdr(msg, connection.msgtype))
        self.counts[topic] += 1

    def __enter__(self) -> "BagWriter":
        try:
            self._writer.open()
        except WriterError as error:
            raise BagError(str(error)) from None
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        self._writer.__exit__(exc_type, exc, traceback)
        if exc_type is not None:
            # A half-written bag would block the next attempt at the same path; the folder is ours
            # (it did not exist when the writer was made), so it goes.
            shutil.rmtree(self.path, ignore_errors=True)
        return False


def open_bag_writer(path: str | Path, distro: str = "humble", storage: str | None = None) -> BagWriter:
    """A context manager writing a new rosbag2 folder at `path` for `distro` ("humble" | "jazzy").

    Defaults: Humble -> version 8 + sqlite3, Jazzy -> version 9 + MCAP. `storage` ("sqlite3" | "mcap")
    overrides the storage only. An exception inside the `with` block removes the partly written bag.
    """
    return BagWriter(path, distro=distro, storage=storage)


# ------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class BagMessage:
    """One deserialised message of a bag."""

    topic: str
    stamp_ns: int  # receive (log) time in nanoseconds
    msgtype: str
    msg: Any


STORAGE_SUFFIXES = (".mcap", ".db3")  # rosbag2 storage files that read without metadata.yaml
# Used only for bags without message definitions, which no ROS 1 bag and no rosbag2 since Iron is.
DEFAULT_TYPESTORES = {"ros1": Stores.ROS1_NOETIC, "ros2": Stores.ROS2_HUMBLE}


def _bag_source(path: Path) -> Path:
    """What AnyReader opens for `path`: a ROS 1 `.bag`, a rosbag2 folder, a bare `.mcap`/`.db3` file, or
    the one storage file of a folder that has no metadata.yaml (a recording copied without it)."""
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    if not path.is_dir() or (path / "metadata.yaml").is_file():
        return path
    storage = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in STORAGE_SUFFIXES)
    if len(storage) == 1:
        LOGGER.info("%s has no metadata.yaml; reading its storage file %s alone", path, storage[0].name)
        return storage[0]
    found = f"{len(storage)} storage files" if storage else "no .mcap or .db3 file"
    raise FileNotFoundError(f"{path} is not a rosbag2 folder: it has no metadata.yaml and {found}")


def _open_reader(path: str | Path) -> AnyReader:
    """An open AnyReader of a ROS 1 or ROS 2 bag (see `_bag_source` for the forms accepted)."""
    path = _bag_source(Path(path))
    store = DEFAULT_TYPESTORES["ros1" if path.suffix == ".bag" else "ros2"]
    try:
        reader = AnyReader([path], default_typestore=get_typestore(store))
        reader.open()
    except AnyReaderError as error:
        raise BagError(f"cannot read bag {path}: {error}") from None
    if reader.connections and all(c.msgdef.format == MessageDefinitionFormat.NONE for c in reader.connections):
        LOGGER.debug("bag %s carries no message definitions: read with the %s typestore", path, store.name)
    return reader


def _check_topics(path, available: Iterable[str], topics: Iterable[str] | None, message_count: int) -> None:
    available = sorted(available)
    if not available or message_count == 0:
        raise BagError(f"bag {path} holds no messages")
    if topics is not None:
        missing = [topic for topic in topics if topic not in available]
        if missing:
            raise BagError(
                f"bag {path} has no topic {', '.join(missing)} (topics: {', '.join(available)})"
            )


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """{topic: (message type, message count)} of a ROS 1 or ROS 2 bag."""
    reader = _open_reader(path)
    try:
        return {name: (info.msgtype, info.msgcount) for name, info in reader.topics.items()}
    finally:
        reader.close()


def read_bag(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Deserialised messages of a ROS 1 or ROS 2 bag in timestamp order, optionally of some topics only.

    The bag is opened and checked at the call (missing path: FileNotFoundError; a requested topic the bag
    lacks or a bag without messages: BagError), and closed when the iteration ends.
    """
    topics = None if topics is None else list(topics)
    reader = _open_reader(path)
    try:
        _check_topics(path, reader.topics, topics, reader.message_count)
    except BaseException:
        reader.close()
        raise
    connections = [c for c in reader.connections if topics is None or c.topic in topics]

    def messages() -> Iterator[BagMessage]:
        try:
            for connection, stamp_ns, raw in reader.messages(connections=connections):
                yield BagMessage(connection.topic, int(stamp_ns), connection.msgtype,
                                 reader.deserialize(raw, connection.msgtype))
        finally:
            reader.close()

    return messages()


# ------------------------------------------------------------------------------ KITTI raw -> rosbag2
# kitti2bag's topic and frame layout (ROS 1 tool; the ROS 2 ports keep it).
KITTI_IMAGE_TOPIC = "/kitti/camera_color_left/image_raw"
KITTI_CAMERA_INFO_TOPIC = "/kitti/camera_color_left/camera_info"
KITTI_DEPTH_GT_TOPIC = "/kitti/camera_color_left/depth_gt"
KITTI_CLOUD_TOPIC = "/kitti/velo/pointcloud"
TF_STATIC_TOPIC = "/tf_static"
TF_TOPIC = "/tf"
KITTI_WORLD_FRAME = "world"  # the OXTS world: east-north-up, origin at the drive's first IMU position
KITTI_BASE_FRAME = "base_link"
KITTI_CAMERA_FRAME = "camera_color_left"  # camera 02's optical frame (a raw-camera drive: the raw camera's)
KITTI_LIDAR_FRAME = "velo_link"


def kitti_static_transforms(lidar_to_camera) -> list[tuple[str, str, Any]]:
    """(parent, child, 4x4 child->parent) of the static tree: base_link -> velo_link, camera_color_left.

    The LiDAR sits at base_link (identity), so camera_color_left's pose in base_link is the inverse of
    lidar_to_camera; chaining inverse(base->camera) @ (base->velo) gives lidar_to_camera back.
    """
    return [
        (KITTI_BASE_FRAME, KITTI_LIDAR_FRAME, np.eye(4)),
        (KITTI_BASE_FRAME, KITTI_CAMERA_FRAME, invert_transform(np.asarray(lidar_to_camera, dtype=np.float64))),
    ]


def kitti_ego_motion(drive, frame_ids: Iterable[int]) -> dict[int, tuple[int, np.ndarray]] | None:
    """{frame id: (OXTS stamp in ns, 4x4 base_link -> world)} of the selected frames of a KITTI raw drive:
    the Velodyne's pose (`KittiRawDrive.velodyne_poses`), since base_link is the LiDAR's frame here. None, with
    one warning, where the drive has no oxts/ or its date no calib_imu_to_velo.txt."""
    try:
        poses = drive.velodyne_poses()
        stamps = drive.oxts_timestamps_ns
    except FileNotFoundError as error:
        LOGGER.warning("%s has no ego motion (%s): the bag gets no %s", drive.name, error, TF_TOPIC)
        return None
    # One packet per line of oxts/timestamps.txt (`data.oxts.read_oxts`): a frame with a stamp has a pose.
    return {frame_id: (_timestamp(stamps, frame_id, "oxts"), poses[frame_id]) for frame_id in frame_ids}


def _timestamp(timestamps, frame_id: int, what: str) -> int:
    """The stamp of `frame_id` in a per-frame timestamp array (indexed by frame number, as the files are)."""
    if not 0 <= frame_id < len(timestamps):
        raise BagError(f"frame {frame_id} has no {what} timestamp ({len(timestamps)} timestamps in the drive)")
    return int(timestamps[frame_id])


def raw_camera_info(types, header, camera):
    """sensor_msgs/CameraInfo of a raw camera (`raw_camera.RawCamera`): `raw_camera_info_fields` (distortion
    model, d, raw k, r, p = [K_rect | 0]), no binning, no region of interest."""
    from depth_completion_ros.raw_camera import raw_camera_info_fields

    fields = dict(raw_camera_info_fields(camera), binning_x=0, binning_y=0)
    fields["roi"] = messages.make_message(types["sensor_msgs/msg/RegionOfInterest"], x_offset=0, y_offset=0,
                                          height=0, width=0, do_rectify=False)
    return messages.make_message(types["sensor_msgs/msg/CameraInfo"], header=header, **fields)


def write_kitti_drive_bag(
    drive,
    out_path: str | Path,
    frame_ids: Iterable[int] | None = None,
    depth_root: str | Path | None = None,
    distro: str = "humble",
    storage: str | None = None,
    progress: bool = False,
    raw_camera: Any = "auto",
) -> dict[str, int]:
    """Write a KITTI raw drive (`data.kitti.KittiRawDrive`) as a rosbag2 in kitti2bag's layout.

    Topics: the left colour camera as bgr8 with its CameraInfo (rectified, monocular: P = [K | 0], the
    baseline of camera 02 lives in /tf_static instead of P's Tx), the Velodyne as PointCloud2 (FLOAT32
    x, y, z, i in velo_link), /tf_static once at the start (TRANSIENT_LOCAL), and, where the KITTI root
    `depth_root` holds a ground-truth PNG for a frame (data_depth_annotated/{train,val}/<drive>/...), that
    depth as a 32FC1 image in metres (NaN = no ground truth) with the camera image's header. The ego motion
    goes on /tf as kitti2bag writes it: one world -> base_link transform per frame at the frame's OXTS
    timestamp (`kitti_ego_motion`: the Velodyne's pose in the OXTS world, base_link being the LiDAR's frame);
    a drive without oxts/ or calib_imu_to_velo.txt gets no /tf (a warning says so). Stamps come from the
    drive's timestamps files; each message is recorded at its header stamp. A failure removes the partly
    written bag. Returns {topic: message count}.

    A synthetic raw-camera drive (`dcros synth --raw-camera`; `raw_camera` "auto" finds it with
    `data.kitti.raw_camera_of_drive` from the drive's KITTI root, or give the `raw_camera.RawCamera`, or None
    for the rectified layout) has its image_02 and ground truth in a raw camera's distorted grid: the
    CameraInfo is then the raw camera's (distortion_model, d, raw k, rectification r, p = [K_rect | 0]) and
    camera_color_left is the raw camera's frame, whose pose differs from the rectified camera's by R
    (lidar_to_raw = [R^T 0; 0 1] @ lidar_to_rectified).
    """
    from tqdm import tqdm

    calibration = drive.calibration
    camera = calibration.camera
    if isinstance(raw_camera, str):
        if raw_camera != "auto":
            raise ValueError(f"raw_camera must be 'auto', None or a RawCamera, got {raw_camera!r}")
        raw_camera = getattr(drive, "raw_camera", None)
    lidar_to_camera = calibration.lidar_to_camera
    if raw_camera is not None:
        if (raw_camera.width, raw_camera.height) != (camera.width, camera.height):
            raise BagError(f"the raw camera of {drive.name} is {raw_camera.width}x{raw_camera.height} but the "
                           f"calibration (S_rect_02) says {camera.width}x{camera.height}")
        lidar_to_camera = invert_transform(raw_camera.raw_to_rectified) @ lidar_to_camera
    frame_ids = list(drive.frame_ids if frame_ids is None else frame_ids)
    if not frame_ids:
        raise BagError(f"no frames selected from drive {drive.name}")
    stamps = {
        frame_id: (
            _timestamp(drive.image_timestamps_ns, frame_id, "image_02"),
            _timestamp(drive.velodyne_timestamps_ns, frame_id, "velodyne"),
        )
        for frame_id in frame_ids
    }
    ego_motion = kitti_ego_motion(drive, frame_ids)
    ground_truth = {}
    if depth_root is not None:
        for frame_id in frame_ids:
            path = drive.annotation_path(depth_root, frame_id, kind="groundtruth", camera="image_02")
            if path is not None:
                ground_truth[frame_id] = path
    with open_bag_writer(out_path, distro=distro, storage=storage) as bag:
        types = bag.types
        bag.add_topic(TF_STATIC_TOPIC, "tf2_msgs/msg/TFMessage", latched=True)
        bag.add_topic(KITTI_IMAGE_TOPIC, "sensor_msgs/msg/Image")
        bag.add_topic(KITTI_CAMERA_INFO_TOPIC, "sensor_msgs/msg/CameraInfo")
        bag.add_topic(KITTI_CLOUD_TOPIC, "sensor_msgs/msg/PointCloud2")
        if ground_truth:
            bag.add_topic(KITTI_DEPTH_GT_TOPIC, "sensor_msgs/msg/Image")
        if ego_motion is not None:
            bag.add_topic(TF_TOPIC, "tf2_msgs/msg/TFMessage")

        # /tf_static first: an OXTS packet may come a little before the camera and the scan of its frame.
        start_ns = min(min(pair) for pair in stamps.values())
        if ego_motion is not None:
            start_ns = min(start_ns, min(stamp for stamp, _ in ego_motion.values()))
        static = [
            messages.build_transform_stamped(types, messages.build_header(types, start_ns, parent), child, pose)
            for parent, child, pose in kitti_static_transforms(lidar_to_camera)
        ]
        bag.write(TF_STATIC_TOPIC, start_ns,
                  messages.make_message(types["tf2_msgs/msg/TFMessage"], transforms=static))

        for frame_id in tqdm(frame_ids, desc=f"kitti2bag {drive.name}", unit="frame", disable=not progress):
            image_ns, velo_ns = stamps[frame_id]
            if ego_motion is not None:
                oxts_ns, pose = ego_motion[frame_id]
                moved = messages.build_transform_stamped(
                    types, messages.build_header(types, oxts_ns, KITTI_WORLD_FRAME), KITTI_BASE_FRAME, pose)
                bag.write(TF_TOPIC, oxts_ns, messages.make_message(types["tf2_msgs/msg/TFMessage"], transforms=[moved]))
            rgb = drive.read_image(frame_id)
            if rgb.shape[:2] != (camera.height, camera.width):
                raise BagError(
                    f"frame {frame_id} of {drive.name}: image is {rgb.shape[1]}x{rgb.shape[0]} but the "
                    f"calibration (S_rect_02) says {camera.width}x{camera.height}"
                )
            camera_header = messages.build_header(types, image_ns, KITTI_CAMERA_FRAME)
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            bag.write(KITTI_IMAGE_TOPIC, image_ns,
                      messages.build_image(types["sensor_msgs/msg/Image"], camera_header, bgr, "bgr8"))
            info = (messages.build_camera_info(types, camera_header, camera) if raw_camera is None
                    else raw_camera_info(types, camera_header, raw_camera))
            bag.write(KITTI_CAMERA_INFO_TOPIC, image_ns, info)
            if frame_id in ground_truth:
                depth = read_depth_png(ground_truth[frame_id])
                if depth.shape != (camera.height, camera.width):
                    raise BagError(f"{ground_truth[frame_id]}: ground truth is {depth.shape[1]}x{depth.shape[0]} "
                                   f"but the camera is {camera.width}x{camera.height}")
                bag.write(KITTI_DEPTH_GT_TOPIC, image_ns, messages.make_message(
                    types["sensor_msgs/msg/Image"], header=camera_header, **messages.depth_to_image_fields(depth)))
            cloud = drive.read_velodyne(frame_id)
            velo_header = messages.build_header(types, velo_ns, KITTI_LIDAR_FRAME)
            bag.write(KITTI_CLOUD_TOPIC, velo_ns, messages.build_pointcloud2(types, velo_header, cloud))
        return dict(bag.counts)
