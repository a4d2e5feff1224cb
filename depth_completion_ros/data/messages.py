"""ROS message <-> numpy conversion that works on message fields only.

Every function here reads or writes the plain fields of `sensor_msgs`, `geometry_msgs` and `tf2_msgs`
messages (`height`, `width`, `encoding`, `step`, `data`, `fields`, `point_step`, ...), so the same code
serves rclpy messages (whose `data` is an `array.array('B')`), `rosbags` dataclass messages (whose `data`
is a numpy uint8 array) and plain `bytes`. Nothing here imports rclpy.

Conventions:
- Images come back as numpy views of `msg.data` where the layout allows (no row padding, native byte
  order); views of immutable buffers are read-only, copy them before writing.
- Depth images follow REP 118. This package publishes `32FC1` metres with NaN for "no depth"
  (`depth_to_image_fields(..., invalid="nan")`, the default) and reads both that and `16UC1` millimetres
  with 0 = no depth. In memory, depth maps use 0 for "no depth" (see `depth_from_image`).
- Point clouds are decoded through a numpy structured dtype built from `fields`, so any field order,
  extra fields, row padding and byte order work.
- Builders (`build_image`, `build_pointcloud2`, ...) make a message from a class: rosbags classes are
  dataclasses whose fields are all required and whose arrays stay numpy; any other class (rclpy) gets
  keyword arguments with uint8 buffers as `array.array('B')` and other arrays as lists. The multi-message
  builders take `types`, a mapping from ROS type name ("sensor_msgs/msg/PointField") to class:
  `typestore.types` for rosbags, or a dict of the imported rclpy classes.
"""
from __future__ import annotations

import array
import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from depth_completion_ros.geometry import (
    PinholeCamera,
    make_transform,
    quaternion_to_rotation,
    rotation_to_quaternion,
)

_HOST_BIG_ENDIAN = sys.byteorder == "big"

# encoding -> (numpy element type, channels). Byte order is applied from the message's is_bigendian.
IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "mono8": ("u1", 1),
    "8UC1": ("u1", 1),
    "mono16": ("u2", 1),
    "16UC1": ("u2", 1),
    "32FC1": ("f4", 1),
    "64FC1": ("f8", 1),
}

# sensor_msgs/PointField datatype codes -> numpy element type.
POINT_FIELD_TYPES: dict[int, str] = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
POINT_FIELD_FLOAT32 = 7
# Names under which drivers publish intensity: KITTI's kitti2bag uses "i", most drivers "intensity".
INTENSITY_NAMES = ("i", "intensity")

MILLIMETRES_PER_METRE = 1000.0
_UINT16_MAX = int(np.iinfo(np.uint16).max)


# ------------------------------------------------------------------------------------------- helpers
def _byte_buffer(data) -> np.ndarray:
    """A flat uint8 view of a message's `data` (numpy array, array.array, bytes, memoryview); lists copy."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8 and data.ndim == 1 and data.flags.c_contiguous:
            return data
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def _element_dtype(kind: str, big_endian: bool) -> np.dtype:
    dtype = np.dtype(kind)
    if dtype.itemsize == 1:
        return dtype
    return dtype.newbyteorder(">" if big_endian else "<")


def _to_native(array_: np.ndarray) -> np.ndarray:
    """Convert to the host byte order, copying only when the order differs."""
    if array_.dtype.isnative:
        return array_
    return array_.astype(array_.dtype.newbyteorder("="))


def _is_big_endian(dtype: np.dtype) -> bool:
    return dtype.byteorder == ">" or (dtype.byteorder == "=" and _HOST_BIG_ENDIAN)


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time (sec, nanosec) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp_fields(stamp_ns: int) -> dict[str, int]:
    """Integer nanoseconds -> the fields of builtin_interfaces/Time."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"a ROS time cannot be negative, got {stamp_ns} ns")
    return {"sec": stamp_ns // 1_000_000_000, "nanosec": stamp_ns % 1_000_000_000}


def make_message(msg_class, **fields):
    """Instantiate `msg_class` with `fields`, adapting arrays to the class's flavour.

    rosbags classes (dataclasses) take every field, numpy arrays as they are. Other classes (rclpy)
    take keyword arguments; uint8 numpy arrays become `array.array('B')` (what rclpy stores for
    `uint8[]`) and other numpy arrays become lists, which rclpy accepts for fixed and unbounded arrays.
    """
    if dataclasses.is_dataclass(msg_class):
        return msg_class(**fields)
    adapted = {}
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            if value.dtype == np.uint8:
                buffer = array.array("B")
                buffer.frombytes(np.ascontiguousarray(value).tobytes())
                value = buffer
            else:
                value = value.reshape(-1).tolist()
        adapted[name] = value
    return msg_class(**adapted)


def build_header(types: Mapping[str, type], stamp_ns: int, frame_id: str):
    """std_msgs/Header with the given stamp (ns) and frame."""
    stamp = make_message(types["builtin_interfaces/msg/Time"], **ns_to_stamp_fields(stamp_ns))
    return make_message(types["std_msgs/msg/Header"], stamp=stamp, frame_id=str(frame_id))


# -------------------------------------------------------------------------------------------- images
def _image_layout(msg) -> tuple[np.dtype, int]:
    encoding = msg.encoding
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(
            f"unsupported image encoding {encoding!r} (supported: {', '.join(IMAGE_ENCODINGS)})"
        )
    kind, channels = IMAGE_ENCODINGS[encoding]
    return _element_dtype(kind, bool(msg.is_bigendian)), channels


def image_to_numpy(msg) -> np.ndarray:
    """sensor_msgs/Image -> (H, W) or (H, W, C) array of the encoding's type, in host byte order.

    Returns a zero-copy view of `msg.data` when rows are not padded and the byte order is the host's;
    otherwise a contiguous copy. Raises ValueError for an unknown encoding, a `step` shorter than a row
    or `data` shorter than `step * height`.
    """
    dtype, channels = _image_layout(msg)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ValueError(
            f"{msg.encoding} image step {step} is smaller than a row of {width} pixels ({row_bytes} bytes)"
        )
    buffer = _byte_buffer(msg.data)
    if buffer.size < step * height:
        raise ValueError(
            f"{msg.encoding} image data has {buffer.size} bytes, expected step*height = {step}*{height} = "
            f"{step * height}"
        )
    rows = buffer[: step * height].reshape(height, step)
    if step != row_bytes:
        rows = np.ascontiguousarray(rows[:, :row_bytes])  # drop the row padding
    pixels = rows.view(dtype)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return _to_native(pixels.reshape(shape))


def rgb_from_image(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB."""
    pixels = image_to_numpy(msg)
    encoding = msg.encoding
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[..., ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[..., :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(pixels[..., 2::-1])
    if encoding in ("mono8", "8UC1"):
        return np.repeat(pixels[..., None], 3, axis=2)
    raise ValueError(f"cannot convert a {encoding!r} image to RGB (need rgb8, bgr8, rgba8, bgra8 or mono8)")


def numpy_to_image_fields(image: np.ndarray, encoding: str) -> dict[str, Any]:
    """(H, W[, C]) array -> the fields of sensor_msgs/Image (without header).

    The array's type and channel count must match the encoding (uint8 for *8, uint16 for 16UC1/mono16,
    float32 for 32FC1). Its byte order is kept and reported in `is_bigendian`.
    """
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r} (supported: {', '.join(IMAGE_ENCODINGS)})")
    kind, channels = IMAGE_ENCODINGS[encoding]
    image = np.asarray(image)
    expected_ndim = 2 if channels == 1 else 3
    if image.ndim != expected_ndim or (channels > 1 and image.shape[2] != channels):
        expected = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ValueError(f"a {encoding} image must have shape {expected}, got {image.shape}")
    if image.dtype.kind != np.dtype(kind).kind or image.dtype.itemsize != np.dtype(kind).itemsize:
        raise ValueError(f"a {encoding} image must hold {np.dtype(kind).name} values, got {image.dtype}")
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": int(image.dtype.itemsize > 1 and _is_big_endian(image.dtype)),
        "step": int(width * channels * image.dtype.itemsize),
        "data": image.reshape(-1).view(np.uint8),
    }


def depth_to_image_fields(depth_m: np.ndarray, encoding: str = "32FC1", invalid: str = "nan") -> dict[str, Any]:
    """Depth in metres (0, negative or non-finite = no depth) -> sensor_msgs/Image fields per REP 118.

    `32FC1`: metres, missing depth written as NaN (`invalid="nan"`, REP 118's choice and this package's
    default) or 0 (`invalid="zero"`). `16UC1`: millimetres, 0 = missing, valid depths at least 1 mm; depths
    beyond 65.535 m cannot be represented and are written as missing rather than clipped to a false value.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ValueError(f"depth image must be 2-D (H, W), got shape {depth.shape}")
    if invalid not in ("nan", "zero"):
        raise ValueError(f"invalid must be 'nan' or 'zero', got {invalid!r}")
    valid = np.isfinite(depth) & (depth > 0)
    if encoding == "32FC1":
        fill = np.float32(np.nan) if invalid == "nan" else np.float32(0.0)
        values = np.where(valid, depth.astype(np.float32, copy=False), fill).astype(np.float32, copy=False)
    elif encoding == "16UC1":
        millimetres = np.zeros(depth.shape, dtype=np.float64)
        # Valid depths stay valid: anything below half a millimetre becomes 1 mm, not the invalid 0.
        millimetres[valid] = np.maximum(np.round(depth[valid].astype(np.float64) * MILLIMETRES_PER_METRE), 1)
        millimetres[(millimetres > _UINT16_MAX)] = 0
        values = millimetres.astype(np.uint16)
    else:
        raise ValueError(f"depth images are 32FC1 (metres) or 16UC1 (millimetres), got {encoding!r}")
    return numpy_to_image_fields(values, encoding)


def depth_from_image(msg) -> np.ndarray:
    """A REP 118 depth image (32FC1 metres or 16UC1/mono16 millimetres) -> float32 metres, 0 = no depth."""
    if msg.encoding == "32FC1":
        depth = image_to_numpy(msg)
        return np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0)).astype(np.float32, copy=False)
    if msg.encoding in ("16UC1", "mono16"):
        return image_to_numpy(msg).astype(np.float32) / np.float32(MILLIMETRES_PER_METRE)
    raise ValueError(f"a depth image must be 32FC1 or 16UC1, got {msg.encoding!r}")


def build_image(msg_class, header, image: np.ndarray, encoding: str):
    """A sensor_msgs/Image of class `msg_class` (rosbags dataclass or rclpy class) holding `image`."""
    return make_message(msg_class, header=header, **numpy_to_image_fields(image, encoding))


def check_image_matches_camera(image_msg, camera: PinholeCamera) -> None:
    """Raise ValueError when an image's size differs from its camera model's."""
    if int(image_msg.width) != camera.width or int(image_msg.height) != camera.height:
        raise ValueError(
            f"image is {image_msg.width}x{image_msg.height} but its CameraInfo describes a "
            f"{camera.width}x{camera.height} camera"
        )


# -------------------------------------------------------------------------------------- point clouds
@dataclass(frozen=True)
class CloudStats:
    """Point counts of a decoded cloud: total = nonfinite + kept."""

    total: int
    nonfinite: int  # points with a NaN/Inf coordinate, dropped
    kept: int


def pointcloud2_fields(msg) -> dict[str, tuple[int, np.dtype]]:
    """sensor_msgs/PointCloud2 fields -> {name: (byte offset, numpy dtype in the cloud's byte order)}.

    A field with count > 1 gets a sub-array dtype. Unnamed fields (padding) are skipped.
    """
    big_endian = bool(msg.is_bigendian)
    result: dict[str, tuple[int, np.dtype]] = {}
    for field in msg.fields:
        code = int(field.datatype)
        if code not in POINT_FIELD_TYPES:
            raise ValueError(
                f"point field {field.name!r} has unsupported datatype {code} "
                f"(sensor_msgs/PointField defines 1..8)"
            )
        if not field.name:
            continue
        if field.name in result:
            raise ValueError(f"point cloud has the field {field.name!r} twice")
        dtype = _element_dtype(POINT_FIELD_TYPES[code], big_endian)
        count = int(field.count)
        if count > 1:
            dtype = np.dtype((dtype, (count,)))
        result[field.name] = (int(field.offset), dtype)
    return result


def _structured_points(msg, fields: Mapping[str, tuple[int, np.dtype]]) -> np.ndarray:
    """A zero-copy (height, width) structured view of the cloud's data, after checking the layout."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    extent = max((offset + dtype.itemsize for offset, dtype in fields.values()), default=0)
    if point_step < extent:
        widest = max(fields, key=lambda name: fields[name][0] + fields[name][1].itemsize)
        raise ValueError(
            f"point_step {point_step} is smaller than the fields' extent {extent} bytes "
            f"(field {widest!r} ends there)"
        )
    ordered = sorted(fields, key=lambda name: fields[name][0])
    for first, second in zip(ordered, ordered[1:]):
        if fields[first][0] + fields[first][1].itemsize > fields[second][0]:
            raise ValueError(f"point fields {first!r} and {second!r} overlap (offsets {fields[first][0]} and "
                             f"{fields[second][0]}, {first!r} is {fields[first][1].itemsize} bytes)")
    if row_step < width * point_step:
        raise ValueError(f"row_step {row_step} is smaller than width*point_step = {width}*{point_step}")
    buffer = _byte_buffer(msg.data)
    if buffer.size != height * row_step:
        raise ValueError(
            f"point cloud data has {buffer.size} bytes, expected height*row_step = {height}*{row_step} = "
            f"{height * row_step}"
        )
    names = list(fields)
    dtype = np.dtype(
        {
            "names": names,
            "formats": [fields[name][1] for name in names],
            "offsets": [fields[name][0] for name in names],
            "itemsize": max(point_step, 1),
        }
    )
    if height * width == 0:
        return np.zeros((height, width), dtype=dtype)
    # Strides skip both the unused bytes of each point and the padding at the end of each row.
    return np.ndarray(shape=(height, width), dtype=dtype, buffer=buffer, strides=(row_step, point_step))


def _xyz_view(msg, fields, points: np.ndarray) -> np.ndarray | None:
    """(N, 3) float32 view of x, y, z when they are consecutive native float32 and rows are unpadded."""
    offsets = [fields[name][0] for name in "xyz"]
    dtypes = [fields[name][1] for name in "xyz"]
    consecutive = offsets[1] == offsets[0] + 4 and offsets[2] == offsets[0] + 8
    native_float32 = all(dtype == np.dtype(np.float32) for dtype in dtypes)
    unpadded = int(msg.row_step) == int(msg.width) * int(msg.point_step) or int(msg.height) == 1
    if not (consecutive and native_float32 and unpadded and points.size):
        return None
    buffer = _byte_buffer(msg.data)
    return np.ndarray(
        shape=(points.size, 3),
        dtype=np.float32,
        buffer=buffer,
        offset=offsets[0],
        strides=(int(msg.point_step), 4),
    )


def _require_fields(fields: Mapping[str, Any], names: Sequence[str]) -> None:
    missing = [name for name in names if name not in fields]
    if missing:
        raise ValueError(
            f"point cloud has no field {', '.join(repr(m) for m in missing)} "
            f"(fields present: {', '.join(fields) or 'none'})"
        )


def pointcloud2_to_xyz(msg) -> tuple[np.ndarray, CloudStats]:
    """sensor_msgs/PointCloud2 -> ((N, 3) float32 x, y, z of the finite points, CloudStats).

    Any field order, extra fields, FLOAT32 or FLOAT64 coordinates, organised clouds (height > 1), row
    padding and either byte order. When x, y, z are consecutive native float32 values, rows are unpadded
    and every point is finite, the result is a zero-copy view of `msg.data`.
    """
    fields = pointcloud2_fields(msg)
    _require_fields(fields, ("x", "y", "z"))
    points = _structured_points(msg, fields)
    total = int(points.size)
    xyz = _xyz_view(msg, fields, points)
    if xyz is None:
        xyz = np.empty((total, 3), dtype=np.float32)
        for column, name in enumerate("xyz"):
            xyz[:, column] = points[name].reshape(-1)
    # A finite sum proves every coordinate finite (NaN and Inf propagate) and is cheap on a strided view;
    # only clouds that fail it pay for the exact per-point mask.
    with np.errstate(over="ignore", invalid="ignore"):
        all_finite = bool(np.isfinite(xyz[:, 0] + xyz[:, 1] + xyz[:, 2]).all())
    if all_finite:
        return xyz, CloudStats(total=total, nonfinite=0, kept=total)
    finite = np.isfinite(xyz[:, 0]) & np.isfinite(xyz[:, 1]) & np.isfinite(xyz[:, 2])  # 20x faster than all(axis=1)
    kept = int(finite.sum())
    return xyz[finite], CloudStats(total=total, nonfinite=total - kept, kept=kept)


def pointcloud2_to_array(
    msg,
    names: Sequence[str] = ("x", "y", "z", "i"),
    dtype=np.float32,
    drop_nonfinite: bool = True,
) -> np.ndarray:
    """sensor_msgs/PointCloud2 -> (N, len(names)) array of the named fields, cast to `dtype`.

    "i" and "intensity" stand for each other when only one of them exists. With `drop_nonfinite`, points
    whose x, y or z (among the requested names) is NaN/Inf are dropped.
    """
    fields = pointcloud2_fields(msg)
    resolved = []
    for name in names:
        if name not in fields and name in INTENSITY_NAMES:
            name = next((alias for alias in INTENSITY_NAMES if alias in fields), name)
        resolved.append(name)
    _require_fields(fields, resolved)
    for name in resolved:
        if fields[name][1].shape:
            raise ValueError(f"point field {name!r} holds {fields[name][1].shape[0]} values per point; "
                             f"only single-value fields can be columns")
    points = _structured_points(msg, fields)
    result = np.empty((points.size, len(resolved)), dtype=dtype)
    for column, name in enumerate(resolved):
        result[:, column] = points[name].reshape(-1)
    if drop_nonfinite:
        coordinate_columns = [c for c, name in enumerate(resolved) if name in ("x", "y", "z")]
        if coordinate_columns:
            finite = np.isfinite(result[:, coordinate_columns]).all(axis=1)
            if not finite.all():
                result = result[finite]
    return result


def xyz_to_pointcloud2_fields(points: np.ndarray, names: Sequence[str] = ("x", "y", "z", "i")) -> dict[str, Any]:
    """(N, 3 or 4) points -> unorganised sensor_msgs/PointCloud2 fields (without header), FLOAT32 each.

    `fields` is a list of dicts (name, offset, datatype, count) for `build_pointcloud2` to turn into
    PointField messages. `is_dense` is true when every value is finite.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"points must be (N, 3) or (N, 4), got shape {points.shape}")
    names = tuple(names)[: points.shape[1]]
    if len(names) != points.shape[1]:
        raise ValueError(f"{points.shape[1]} columns need {points.shape[1]} field names, got {len(names)}")
    data = np.ascontiguousarray(points, dtype="<f4")
    point_step = 4 * len(names)
    return {
        "height": 1,
        "width": int(points.shape[0]),
        "fields": [
            {"name": name, "offset": 4 * index, "datatype": POINT_FIELD_FLOAT32, "count": 1}
            for index, name in enumerate(names)
        ],
        "is_bigendian": False,
        "point_step": point_step,
        "row_step": point_step * int(points.shape[0]),
        "data": data.reshape(-1).view(np.uint8),
        "is_dense": bool(np.isfinite(data).all()),
    }


def build_pointcloud2(types: Mapping[str, type], header, points: np.ndarray,
                      names: Sequence[str] = ("x", "y", "z", "i")):
    """A sensor_msgs/PointCloud2 of FLOAT32 fields from (N, 3|4) points (see `xyz_to_pointcloud2_fields`)."""
    fields = xyz_to_pointcloud2_fields(points, names)
    point_field = types["sensor_msgs/msg/PointField"]
    fields["fields"] = [make_message(point_field, **field) for field in fields["fields"]]
    return make_message(types["sensor_msgs/msg/PointCloud2"], header=header, **fields)


# ---------------------------------------------------------------------------------------- CameraInfo
def camera_from_camera_info(msg) -> PinholeCamera:
    """sensor_msgs/CameraInfo (ROS 2 `k`, `p` or ROS 1 `K`, `P`) -> PinholeCamera of the rectified image."""
    k = msg.k if hasattr(msg, "k") else getattr(msg, "K", None)
    p = msg.p if hasattr(msg, "p") else getattr(msg, "P", None)
    if k is None and p is None:
        raise ValueError("CameraInfo has neither k/K nor p/P")
    k = np.zeros(9) if k is None else k
    p = np.zeros(12) if p is None else p
    return PinholeCamera.from_camera_info(k, p, int(msg.width), int(msg.height))


def camera_info_translation(msg) -> np.ndarray:
    """The fourth column of CameraInfo's P (ROS 2 `p` or ROS 1 `P`), zeros where P is missing: a stereo
    camera's Tx = -fx * baseline (or, in bags from KITTI converters, camera 02's offset from camera 00)."""
    p = getattr(msg, "p", None)
    p = getattr(msg, "P", None) if p is None else p
    p = np.zeros(12) if p is None else np.asarray(p, dtype=np.float64).reshape(-1)
    return p.reshape(3, 4)[:, 3] if p.size == 12 else np.zeros(3)


def camera_info_fields(camera: PinholeCamera, distortion_model: str = "plumb_bob") -> dict[str, Any]:
    """The fields of sensor_msgs/CameraInfo (without header) for a rectified monocular camera.

    d is zero (the image is rectified), r the identity, p = [K | 0]: a monocular camera has Tx = Ty = 0,
    any offset from a reference camera belongs in the transform. `roi` is a dict of RegionOfInterest fields.
    """
    distortion_count = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}.get(distortion_model, 0)
    return {
        "height": camera.height,
        "width": camera.width,
        "distortion_model": distortion_model,
        "d": np.zeros(distortion_count, dtype=np.float64),
        "k": camera.K.astype(np.float64).reshape(-1),
        "r": np.eye(3, dtype=np.float64).reshape(-1),
        "p": camera.P.astype(np.float64).reshape(-1),
        "binning_x": 0,
        "binning_y": 0,
        "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
    }


def build_camera_info(types: Mapping[str, type], header, camera: PinholeCamera,
                      distortion_model: str = "plumb_bob"):
    """A sensor_msgs/CameraInfo for `camera` (see `camera_info_fields`)."""
    fields = camera_info_fields(camera, distortion_model)
    fields["roi"] = make_message(types["sensor_msgs/msg/RegionOfInterest"], **fields["roi"])
    return make_message(types["sensor_msgs/msg/CameraInfo"], header=header, **fields)


# ---------------------------------------------------------------------------------------- transforms
def transform_from_msg(transform_msg) -> np.ndarray:
    """geometry_msgs/Transform (or TransformStamped) -> 4x4 float64 matrix mapping child into parent."""
    transform_msg = getattr(transform_msg, "transform", transform_msg)
    t, q = transform_msg.translation, transform_msg.rotation
    return make_transform(quaternion_to_rotation(q.x, q.y, q.z, q.w), [t.x, t.y, t.z])


def transform_to_fields(transform: np.ndarray) -> dict[str, dict[str, float]]:
    """4x4 rigid transform -> geometry_msgs/Transform fields {translation: {x,y,z}, rotation: {x,y,z,w}}."""
    transform = np.asarray(transform, dtype=np.float64)
    if transform.shape != (4, 4) or not np.isfinite(transform).all():
        raise ValueError(f"a transform must be a finite 4x4 matrix, got shape {transform.shape}")
    rotation = transform[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(rotation) < 0:
        raise ValueError("the transform's 3x3 block is not a rotation")
    x, y, z, w = rotation_to_quaternion(rotation)
    tx, ty, tz = (float(v) for v in transform[:3, 3])
    return {"translation": {"x": tx, "y": ty, "z": tz}, "rotation": {"x": x, "y": y, "z": z, "w": w}}


def build_transform_stamped(types: Mapping[str, type], header, child_frame_id: str, transform: np.ndarray):
    """geometry_msgs/TransformStamped: `transform` maps points of `child_frame_id` into header.frame_id."""
    fields = transform_to_fields(transform)
    body = make_message(
        types["geometry_msgs/msg/Transform"],
        translation=make_message(types["geometry_msgs/msg/Vector3"], **fields["translation"]),
        rotation=make_message(types["geometry_msgs/msg/Quaternion"], **fields["rotation"]),
    )
    return make_message(
        types["geometry_msgs/msg/TransformStamped"], header=header, child_frame_id=str(child_frame_id),
        transform=body,
    )
