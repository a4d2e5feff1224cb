"""Malformed sensor inputs, kind by kind, with what the node must do with each: the fuzz benchmark and tests.

Every kind takes a valid synchronized `WallFrame` triple (image, CameraInfo, cloud) and breaks one thing.
The expected outcome is a drop reason of `latest_frame` (the node counts the frame under it and goes on),
or PUBLISHED where the input is legal but awkward (NaN or far-away points, big-endian data), which the node
must still answer. Messages are built through a `types` mapping, as in `synthetic`, so the same kinds serve
ROS-free tests (rosbags classes) and live fuzzing over rclpy.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ..data import messages
from .latest_frame import BAD_DISTORTION, CONVERSION_ERROR, NO_TRANSFORM, SIZE_MISMATCH
from .synthetic import WallFrame

PUBLISHED = "published"
UNKNOWN_FRAME = "lidar_nobody_knows"
FLOAT32, FLOAT64 = 7, 8  # sensor_msgs/PointField datatypes


@dataclass(frozen=True)
class MalformedKind:
    """A way to break a frame and the outcome the node must report for it."""

    name: str
    expected: str  # a latest_frame drop reason, or PUBLISHED
    breaks: Callable[[Mapping[str, type], WallFrame, np.random.Generator], tuple]


def _cloud_points(frame: WallFrame) -> np.ndarray:
    return messages.pointcloud2_to_array(frame.cloud, names=("x", "y", "z", "i"), drop_nonfinite=False)


def _rebuild_cloud(types, frame: WallFrame, points: np.ndarray, names=("x", "y", "z", "i")):
    return messages.build_pointcloud2(types, frame.cloud.header, np.asarray(points, dtype=np.float32), names)


def _with(msg, **changes):
    """A copy of a message with some fields changed (rclpy and rosbags messages alike)."""
    clone = copy.deepcopy(msg)
    for name, value in changes.items():
        setattr(clone, name, value)
    return clone


def _point_field(types, name: str, offset: int, datatype: int):
    return messages.make_message(types["sensor_msgs/msg/PointField"], name=name, offset=offset,
                                 datatype=datatype, count=1)


def _triple(frame: WallFrame, image=None, camera_info=None, cloud=None) -> tuple:
    return (frame.image if image is None else image, frame.camera_info if camera_info is None else camera_info,
            frame.cloud if cloud is None else cloud)


def _truncated_cloud(types, frame, rng):
    data = bytes(frame.cloud.data)
    return _triple(frame, cloud=_with(frame.cloud, data=_bytes_like(frame.cloud.data, data[:len(data) // 2])))


def _bytes_like(original, data: bytes):
    """`data` in the container type the message class uses for uint8[] (numpy for rosbags, array for rclpy)."""
    if isinstance(original, np.ndarray):
        return np.frombuffer(data, dtype=np.uint8).copy()
    import array

    buffer = array.array("B")
    buffer.frombytes(data)
    return buffer


def _mixed_datatypes(types, frame, rng):
    # x as FLOAT64 over the bytes of two FLOAT32 values: the fields overlap and the point outgrows its step.
    fields = list(frame.cloud.fields)
    fields[0] = _point_field(types, "x", 0, FLOAT64)
    return _triple(frame, cloud=_with(frame.cloud, fields=fields))


def _float64_xyz(types, frame, rng):
    # Legal mixed datatypes: x, y, z as FLOAT64 and the intensity as FLOAT32, as some drivers publish.
    points = _cloud_points(frame)
    layout = np.dtype({"names": list("xyzi"), "formats": ["<f8", "<f8", "<f8", "<f4"], "offsets": [0, 8, 16, 24],
                       "itemsize": 28})
    packed = np.zeros(points.shape[0], dtype=layout)
    for column, name in enumerate("xyzi"):
        packed[name] = points[:, column]
    fields = [_point_field(types, name, 8 * i, FLOAT64) for i, name in enumerate("xyz")]
    fields.append(_point_field(types, "i", 24, FLOAT32))
    cloud = _with(frame.cloud, fields=fields, point_step=28, row_step=28 * points.shape[0],
                  data=_bytes_like(frame.cloud.data, packed.tobytes()))
    return _triple(frame, cloud=cloud)


def _big_endian_cloud(types, frame, rng):
    points = _cloud_points(frame).astype(">f4")
    fields = [_point_field(types, name, 4 * i, FLOAT32) for i, name in enumerate("xyzi")]
    cloud = _with(frame.cloud, fields=fields, is_bigendian=True,
                  data=_bytes_like(frame.cloud.data, points.tobytes()))
    return _triple(frame, cloud=cloud)


def _points_with(value_for: Callable[[np.ndarray, np.random.Generator], np.ndarray]):
    def breaks(types, frame, rng):
        points = _cloud_points(frame).copy()
        rows = rng.choice(points.shape[0], size=max(1, points.shape[0] // 4), replace=False)
        points[rows, :3] = value_for(points[rows, :3], rng)
        return _triple(frame, cloud=_rebuild_cloud(types, frame, points))
    return breaks


def _image_with(**changes):
    def breaks(types, frame, rng):
        return _triple(frame, image=_with(frame.image, **changes))
    return breaks


def _cloud_with(**changes):
    def breaks(types, frame, rng):
        return _triple(frame, cloud=_with(frame.cloud, **changes))
    return breaks


def _camera_info_with(**changes):
    def breaks(types, frame, rng):
        return _triple(frame, camera_info=_with(frame.camera_info, **changes))
    return breaks


def _truncated_image(types, frame, rng):
    data = bytes(frame.image.data)
    return _triple(frame, image=_with(frame.image, data=_bytes_like(frame.image.data, data[:len(data) // 3])))


def _unknown_frame(types, frame, rng):
    header = messages.build_header(types, messages.stamp_to_ns(frame.cloud.header.stamp), UNKNOWN_FRAME)
    return _triple(frame, cloud=_with(frame.cloud, header=header))


def _missing_xyz(types, frame, rng):
    points = _cloud_points(frame)
    return _triple(frame, cloud=_rebuild_cloud(types, frame, points, names=("a", "b", "c", "i")))


def _zero_size(types, frame, rng):
    image = _with(frame.image, width=0, height=0, step=0, data=_bytes_like(frame.image.data, b""))
    camera_info = _with(frame.camera_info, width=0, height=0)
    return _triple(frame, image=image, camera_info=camera_info)


def _enormous_size(types, frame, rng):
    width, height = 1 << 20, 1 << 14
    image = _with(frame.image, width=width, height=height, step=3 * width)
    camera_info = _with(frame.camera_info, width=width, height=height)
    return _triple(frame, image=image, camera_info=camera_info)


def _enormous_cloud(types, frame, rng):
    return _triple(frame, cloud=_with(frame.cloud, width=1 << 30, row_step=(1 << 30) * frame.cloud.point_step))


KINDS: tuple[MalformedKind, ...] = (
    MalformedKind("cloud_point_step_too_small", CONVERSION_ERROR, _cloud_with(point_step=8)),
    MalformedKind("cloud_row_step_too_small", CONVERSION_ERROR, _cloud_with(row_step=1)),
    MalformedKind("cloud_data_truncated", CONVERSION_ERROR, _truncated_cloud),
    MalformedKind("cloud_without_xyz", CONVERSION_ERROR, _missing_xyz),
    MalformedKind("cloud_unknown_datatype", CONVERSION_ERROR,
                  lambda t, f, r: _triple(f, cloud=_with(f.cloud, fields=[
                      _point_field(t, name, 4 * i, 99) for i, name in enumerate("xyzi")]))),
    MalformedKind("cloud_overlapping_mixed_datatypes", CONVERSION_ERROR, _mixed_datatypes),
    MalformedKind("cloud_float64_xyz_float32_intensity", PUBLISHED, _float64_xyz),
    MalformedKind("cloud_zero_width", CONVERSION_ERROR, _cloud_with(width=0, row_step=0)),
    MalformedKind("cloud_enormous_width", CONVERSION_ERROR, _enormous_cloud),
    MalformedKind("cloud_in_unknown_frame", NO_TRANSFORM, _unknown_frame),
    MalformedKind("cloud_big_endian", PUBLISHED, _big_endian_cloud),
    MalformedKind("cloud_nan_points", PUBLISHED, _points_with(lambda xyz, rng: np.full_like(xyz, np.nan))),
    MalformedKind("cloud_inf_points", PUBLISHED, _points_with(lambda xyz, rng: np.full_like(xyz, np.inf))),
    MalformedKind("cloud_huge_coordinates", PUBLISHED,
                  _points_with(lambda xyz, rng: rng.choice([-3e38, 3e38], size=xyz.shape))),
    MalformedKind("image_unknown_encoding", CONVERSION_ERROR, _image_with(encoding="yuv422_weird")),
    MalformedKind("image_step_too_small", CONVERSION_ERROR, _image_with(step=5)),
    MalformedKind("image_data_truncated", CONVERSION_ERROR, _truncated_image),
    MalformedKind("image_size_differs_from_camera_info", SIZE_MISMATCH, _image_with(width=31)),
    MalformedKind("image_zero_size", CONVERSION_ERROR, _zero_size),
    MalformedKind("image_enormous_size", CONVERSION_ERROR, _enormous_size),
    MalformedKind("camera_info_zero_k_and_p", CONVERSION_ERROR, _camera_info_with(k=[0.0] * 9, p=[0.0] * 12)),
    MalformedKind("camera_info_unknown_distortion_model", BAD_DISTORTION,
                  _camera_info_with(distortion_model="kannala_brandt8", d=[0.1, -0.02, 0.0, 0.0])),
    MalformedKind("camera_info_d_length_misfits_its_model", BAD_DISTORTION,
                  _camera_info_with(distortion_model="plumb_bob", d=[-0.3, 0.1, 0.0])),
    MalformedKind("camera_info_r_not_a_rotation", BAD_DISTORTION,
                  _camera_info_with(r=[2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])),
)
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}


def malformed_triple(kind: MalformedKind, types: Mapping[str, type], frame: WallFrame,
                     rng: np.random.Generator) -> tuple:
    """(image, camera_info, cloud) of `frame` broken the `kind` way."""
    return kind.breaks(types, frame, rng)
