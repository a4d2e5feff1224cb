"""A small synthetic frame whose answer is known: a camera facing a flat wall, seen by a LiDAR.

Used by the node's tests and smoke runs. Builds sensor_msgs Image / CameraInfo / PointCloud2 with the
`data.messages` builders from a `types` mapping (ROS type name -> class: `typestore.types` for rosbags,
or a dict of rclpy classes), so the same frame serves ROS-free tests and live rclpy tests.

The LiDAR frame follows REP 103 (x forward, y left, z up) and sits `LIDAR_OFFSET` metres from the camera;
`lidar_to_camera` maps it into the camera's optical frame (z forward, x right, y down). LiDAR points hit
the wall at every `stride`-th pixel, so the projected sparse depth is exactly `wall_depth` there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..data import messages
from ..geometry import PinholeCamera, invert_transform, make_transform, unproject

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
