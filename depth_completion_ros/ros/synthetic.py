"""Synthetic sensor messages for the node's tests, benchmarks and smoke runs.

`wall_frame`: a small frame whose answer is known, a camera facing a flat wall, seen by a LiDAR.
`drive_frames`: the frames of a KITTI raw drive (e.g. `dcros synth`'s) as messages, with ground truth.

Both build sensor_msgs Image / CameraInfo / PointCloud2 with the `data.messages` builders from a `types`
mapping (ROS type name -> class: `typestore.types` for rosbags, or a dict of rclpy classes), so the same
frame serves ROS-free tests and live rclpy tests.

The wall's LiDAR frame follows REP 103 (x forward, y left, z up) and sits `LIDAR_OFFSET` metres from the camera;
`lidar_to_camera` maps it into the camera's optical frame (z forward, x right, y down). LiDAR points hit
the wall at every `stride`-th pixel, so the projected sparse depth is exactly `wall_depth` there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..data import messages
from ..data.image_io import read_depth_png
from ..data.kitti import KittiRawDrive
from ..data.rosbag import KITTI_CAMERA_FRAME, KITTI_LIDAR_FRAME, kitti_static_transforms
from ..geometry import PinholeCamera, bottom_crop_offsets, invert_transform, make_transform, unproject

# Rows: camera x (right) = -LiDAR y, camera y (down) = -LiDAR z, camera z (forward) = LiDAR x.
LIDAR_AXES_IN_CAMERA = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
LIDAR_OFFSET = (0.0, -0.08, -0.27)  # LiDAR origin in camera coordinates: a little above the camera


def default_lidar_to_camera() -> np.ndarray:
    """The synthetic rig's LiDAR -> camera optical frame transform (4x4)."""
    return make_transform(LIDAR_AXES_IN_CAMERA, LIDAR_OFFSET)


@dataclass
class WallFrame:
    """Messages of one synthetic frame and the facts a test checks against."""

    image: object
    camera_info: object
    cloud: object
    camera: PinholeCamera
    lidar_to_camera: np.ndarray
    wall_depth: float
    lidar_pixels: tuple[np.ndarray, np.ndarray]  # (rows, cols) that hold a LiDAR return


def wall_frame(types: Mapping[str, type], stamp_ns: int, width: int = 32, height: int = 24,
               wall_depth: float = 5.0, stride: int = 3, camera_frame: str = "camera",
               lidar_frame: str = "lidar", camera_info_size: tuple[int, int] | None = None,
               stamp_offsets_ns: tuple[int, int] = (0, 0)) -> WallFrame:
    """One frame: an rgb8 gradient image, its CameraInfo (of `camera_info_size` (width, height) when given,
    to make a mismatching pair) and the LiDAR cloud (FLOAT32 x, y, z, i) of the wall.

    stamp_offsets_ns: added to the CameraInfo and the cloud stamps (the image keeps `stamp_ns`).
    """
    if wall_depth <= 0 or stride < 1:
        raise ValueError(f"wall_depth must be > 0 and stride >= 1, got {wall_depth} and {stride}")
    camera = PinholeCamera(width, height, fx=0.8 * width, fy=0.8 * width, cx=(width - 1) / 2, cy=(height - 1) / 2)
    lidar_to_camera = default_lidar_to_camera()

    sampled = np.zeros((height, width), dtype=np.float64)
    sampled[::stride, ::stride] = wall_depth
    points, pixels = unproject(sampled, camera, camera_to_frame=invert_transform(lidar_to_camera))
    intensity = np.linspace(0.0, 1.0, points.shape[0])[:, None]
    cloud_points = np.hstack([points, intensity]).astype(np.float32)

    columns = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
    rows = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, axis=1)
    rgb = np.stack([columns, rows, np.full_like(rows, 128)], axis=2)

    info_offset, cloud_offset = stamp_offsets_ns
    info_camera = camera
    if camera_info_size is not None:
        info_width, info_height = camera_info_size
        info_camera = PinholeCamera(info_width, info_height, camera.fx, camera.fy, camera.cx, camera.cy)
    return WallFrame(
        image=messages.build_image(types["sensor_msgs/msg/Image"],
                                   messages.build_header(types, stamp_ns, camera_frame), rgb, "rgb8"),
        camera_info=messages.build_camera_info(
            types, messages.build_header(types, stamp_ns + info_offset, camera_frame), info_camera),
        cloud=messages.build_pointcloud2(
            types, messages.build_header(types, stamp_ns + cloud_offset, lidar_frame), cloud_points),
        camera=camera,
        lidar_to_camera=lidar_to_camera,
        wall_depth=float(wall_depth),
        lidar_pixels=(np.asarray(pixels[0]), np.asarray(pixels[1])),
    )


def rclpy_types() -> dict[str, type]:
    """The `types` mapping of the rclpy message classes `wall_frame` needs (imports them: needs ROS 2)."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField, RegionOfInterest
    from std_msgs.msg import Header

    sensor_classes = (Image, CameraInfo, RegionOfInterest, PointField, PointCloud2)
    return {"builtin_interfaces/msg/Time": Time, "std_msgs/msg/Header": Header,
            **{f"sensor_msgs/msg/{cls.__name__}": cls for cls in sensor_classes}}


def rclpy_tf_types() -> dict[str, type]:
    """`rclpy_types()` plus the tf message classes that `build_transform_stamped` needs (needs ROS 2)."""
    from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
    from tf2_msgs.msg import TFMessage

    return {**rclpy_types(), "geometry_msgs/msg/Quaternion": Quaternion, "geometry_msgs/msg/Transform": Transform,
            "geometry_msgs/msg/TransformStamped": TransformStamped, "geometry_msgs/msg/Vector3": Vector3,
            "tf2_msgs/msg/TFMessage": TFMessage}


@dataclass
class DriveFrame:
    """One frame of a KITTI raw drive as sensor messages, with its ground truth (metres, 0 = none)."""

    stamp_ns: int
    image: object
    camera_info: object
    cloud: object
    ground_truth: np.ndarray | None
    camera: PinholeCamera


def drive_frames(kitti_root, drive_name: str, types: Mapping[str, type], crop: tuple[int, int] | None = None,
                 frame_ids=None, stamp_offset_ns: int = 0) -> list[DriveFrame]:
    """The frames of a KITTI raw drive (real or from `dcros synth`) as kitti2bag would publish them: bgr8
    image and CameraInfo in camera_color_left (image_02's stamps), the Velodyne cloud in velo_link (its own
    stamps), and the ground-truth PNG where data_depth_annotated has one.

    crop: (height, width) of KITTI's bottom crop applied to the image, CameraInfo and ground truth (the
    cloud stays whole; points outside the crop fall outside the image), to keep live tests small.
    stamp_offset_ns: added to every stamp (to send a frame again as a new one).
    The static transforms of the drive are `drive_static_transforms`.
    """
    kitti_root = Path(kitti_root)
    drive = KittiRawDrive(kitti_root / "kitti_raw", drive_name)
    full_camera = drive.calibration.camera
    top, left, height, width = 0, 0, full_camera.height, full_camera.width
    if crop is not None:
        height, width = crop
        top, left = bottom_crop_offsets(full_camera.height, full_camera.width, height, width)
    camera = full_camera.crop(top, left, height, width)
    frames = []
    for frame_id in (drive.frame_ids if frame_ids is None else frame_ids):
        image_ns = int(drive.image_timestamps_ns[frame_id]) + stamp_offset_ns
        velo_ns = int(drive.velodyne_timestamps_ns[frame_id]) + stamp_offset_ns
        rgb = drive.read_image(frame_id)[top:top + height, left:left + width]
        gt_path = drive.annotation_path(kitti_root, frame_id)
        ground_truth = None if gt_path is None else read_depth_png(gt_path)[top:top + height, left:left + width]
        frames.append(DriveFrame(
            stamp_ns=image_ns,
            image=messages.build_image(types["sensor_msgs/msg/Image"],
                                       messages.build_header(types, image_ns, KITTI_CAMERA_FRAME),
                                       np.ascontiguousarray(rgb[..., ::-1]), "bgr8"),
            camera_info=messages.build_camera_info(
                types, messages.build_header(types, image_ns, KITTI_CAMERA_FRAME), camera),
            cloud=messages.build_pointcloud2(types, messages.build_header(types, velo_ns, KITTI_LIDAR_FRAME),
                                             drive.read_velodyne(frame_id)),
            ground_truth=ground_truth,
            camera=camera,
        ))
    return frames


def drive_static_transforms(kitti_root, drive_name: str, types: Mapping[str, type], stamp_ns: int = 0) -> list:
    """The drive's /tf_static content as TransformStamped messages (base_link -> velo_link and
    base_link -> camera_color_left, as kitti2bag writes them)."""
    drive = KittiRawDrive(Path(kitti_root) / "kitti_raw", drive_name)
    return [messages.build_transform_stamped(types, messages.build_header(types, stamp_ns, parent), child, pose)
            for parent, child, pose in kitti_static_transforms(drive.calibration.lidar_to_camera)]


def publish_static_transforms(node, transforms: list):
    """Publish TransformStamped messages on /tf_static as tf2_ros' StaticTransformBroadcaster does (one TFMessage,
    reliable, transient local: late subscribers get it too), without tf2_ros; needs tf2_msgs. Returns the
    publisher, which must live as long as the transforms should stay available."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher = node.create_publisher(TFMessage, "/tf_static", latched)
    publisher.publish(TFMessage(transforms=list(transforms)))
    return publisher
