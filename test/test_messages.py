"""Message <-> numpy conversion on real message classes of the rosbags typestores (CDR round trips)."""
from __future__ import annotations

import array
import struct

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from depth_completion_ros.data import messages as m
from depth_completion_ros.geometry import PinholeCamera, make_transform, quaternion_to_rotation

HUMBLE = get_typestore(Stores.ROS2_HUMBLE)
TYPES = HUMBLE.types
Image = TYPES["sensor_msgs/msg/Image"]
PointCloud2 = TYPES["sensor_msgs/msg/PointCloud2"]
PointField = TYPES["sensor_msgs/msg/PointField"]

STAMP_NS = 1_317_380_000_123_456_789


def header(frame_id="camera"):
    return m.build_header(TYPES, STAMP_NS, frame_id)


def cdr_round_trip(msg, typestore=HUMBLE):
    """Serialise and deserialise, as a bag or the middleware would."""
    return typestore.deserialize_cdr(typestore.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def random_image(encoding, height=3, width=5, seed=0):
    rng = np.random.default_rng(seed)
    kind, channels = m.IMAGE_ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    dtype = np.dtype(kind)
    if dtype.kind == "f":
        return rng.uniform(0.5, 80.0, size=shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def raw_image_msg(encoding, height, width, step, data: bytes, is_bigendian=0):
    return Image(header=header(), height=height, width=width, encoding=encoding, is_bigendian=is_bigendian,
                 step=step, data=np.frombuffer(data, dtype=np.uint8))


# ------------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("encoding", sorted(m.IMAGE_ENCODINGS))
def test_image_round_trip_every_encoding_is_exact_and_zero_copy(encoding):
    pixels = random_image(encoding, seed=len(encoding))
    msg = cdr_round_trip(m.build_image(Image, header(), pixels, encoding))
    assert msg.encoding == encoding and (msg.height, msg.width) == pixels.shape[:2]
    assert msg.step == pixels.shape[1] * pixels.itemsize * (1 if pixels.ndim == 2 else pixels.shape[2])
    decoded = image_to_numpy_checked(msg)
    np.testing.assert_array_equal(decoded, pixels)
    assert decoded.dtype == pixels.dtype
    assert np.shares_memory(decoded, msg.data)  # unpadded, host order: a view


def image_to_numpy_checked(msg):
    decoded = m.image_to_numpy(msg)
    assert decoded.dtype.isnative
    return decoded


def test_image_with_row_padding_drops_the_padding():
    pixels = random_image("rgb8", height=4, width=3)
    step = 3 * 3 + 7  # 7 bytes of padding per row
    rows = [pixels[r].tobytes() + b"\xab" * 7 for r in range(4)]
    msg = raw_image_msg("rgb8", 4, 3, step, b"".join(rows))
    decoded = m.image_to_numpy(msg)
    np.testing.assert_array_equal(decoded, pixels)
    assert decoded.flags.c_contiguous


def test_padded_16bit_image_decodes():
    pixels = random_image("16UC1", height=2, width=3)
    rows = [pixels[r].astype("<u2").tobytes() + b"\x00\x01" for r in range(2)]
    msg = raw_image_msg("16UC1", 2, 3, 8, b"".join(rows))
    np.testing.assert_array_equal(m.image_to_numpy(msg), pixels)


@pytest.mark.parametrize("encoding, big_endian_type", [("16UC1", ">u2"), ("mono16", ">u2"), ("32FC1", ">f4")])
def test_big_endian_images_are_byteswapped_to_host_order(encoding, big_endian_type):
    pixels = random_image(encoding, height=3, width=4)
    data = pixels.astype(big_endian_type).tobytes()
    msg = raw_image_msg(encoding, 3, 4, 4 * pixels.itemsize, data, is_bigendian=1)
    decoded = m.image_to_numpy(msg)
    np.testing.assert_array_equal(decoded, pixels)
    assert decoded.dtype.isnative
    # Reading the same bytes as little-endian gives different values: the flag matters.
    little = m.image_to_numpy(raw_image_msg(encoding, 3, 4, 4 * pixels.itemsize, data, is_bigendian=0))
    assert not np.array_equal(little, pixels)


def test_big_endian_array_keeps_its_order_in_the_fields():
    pixels = random_image("32FC1", height=2, width=2).astype(">f4")
    fields = m.numpy_to_image_fields(pixels, "32FC1")
    assert fields["is_bigendian"] == 1
    decoded = m.image_to_numpy(cdr_round_trip(Image(header=header(), **fields)))
    np.testing.assert_array_equal(decoded, pixels.astype(np.float32))


@pytest.mark.parametrize("container", ["bytes", "array"])
def test_rclpy_style_buffers_are_viewed_without_copy(container):
    pixels = random_image("16UC1", height=2, width=3)
    raw = pixels.astype("<u2").tobytes()
    data = raw if container == "bytes" else array.array("B", raw)
    msg = type("RclpyLikeImage", (), dict(height=2, width=3, encoding="16UC1", is_bigendian=0, step=6, data=data))
    decoded = m.image_to_numpy(msg)
    np.testing.assert_array_equal(decoded, pixels)
    assert np.shares_memory(decoded, np.frombuffer(data, dtype=np.uint8))


def test_rgb_from_image_converts_bgr_mono_and_alpha():
    rgb = random_image("rgb8", height=2, width=4)
    bgr_msg = m.build_image(Image, header(), np.ascontiguousarray(rgb[..., ::-1]), "bgr8")
    np.testing.assert_array_equal(m.rgb_from_image(bgr_msg), rgb)
    np.testing.assert_array_equal(m.rgb_from_image(m.build_image(Image, header(), rgb, "rgb8")), rgb)

    alpha = np.full((2, 4, 1), 7, dtype=np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=2)
    bgra = np.concatenate([rgb[..., ::-1], alpha], axis=2)
    np.testing.assert_array_equal(m.rgb_from_image(m.build_image(Image, header(), rgba, "rgba8")), rgb)
    np.testing.assert_array_equal(m.rgb_from_image(m.build_image(Image, header(), bgra, "bgra8")), rgb)

    grey = random_image("mono8", height=2, width=4)
    result = m.rgb_from_image(m.build_image(Image, header(), grey, "mono8"))
    assert result.shape == (2, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(result[..., channel], grey)

    with pytest.raises(ValueError, match="cannot convert a '32FC1' image to RGB"):
        m.rgb_from_image(m.build_image(Image, header(), random_image("32FC1"), "32FC1"))


def test_unknown_encoding_is_named():
    msg = raw_image_msg("yuv422", 1, 2, 4, b"\x00" * 4)
    with pytest.raises(ValueError, match="unsupported image encoding 'yuv422'"):
        m.image_to_numpy(msg)


def test_short_data_is_rejected():
    msg = raw_image_msg("rgb8", 2, 2, 6, b"\x00" * 11)
    with pytest.raises(ValueError, match=r"data has 11 bytes, expected step\*height = 6\*2 = 12"):
        m.image_to_numpy(msg)


def test_step_smaller_than_a_row_is_rejected():
    msg = raw_image_msg("32FC1", 2, 3, 8, b"\x00" * 16)
    with pytest.raises(ValueError, match=r"step 8 is smaller than a row of 3 pixels \(12 bytes\)"):
        m.image_to_numpy(msg)


def test_numpy_to_image_fields_rejects_wrong_type_and_shape():
    with pytest.raises(ValueError, match="16UC1 image must hold uint16 values, got float32"):
        m.numpy_to_image_fields(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ValueError, match=r"bgr8 image must have shape \(H, W, 3\), got \(2, 2\)"):
        m.numpy_to_image_fields(np.zeros((2, 2), np.uint8), "bgr8")
    with pytest.raises(ValueError, match="unsupported image encoding 'bayer_rggb8'"):
        m.numpy_to_image_fields(np.zeros((2, 2), np.uint8), "bayer_rggb8")


# ------------------------------------------------------------------------------------- depth images
def test_depth_32fc1_marks_missing_depth_as_nan_or_zero():
    depth = np.array([[0.0, 1.5, np.inf], [-2.0, 80.25, np.nan]], dtype=np.float32)
    valid = np.array([[False, True, False], [False, True, False]])
    nan_msg = cdr_round_trip(Image(header=header(), **m.depth_to_image_fields(depth)))
    values = m.image_to_numpy(nan_msg)
    assert np.isnan(values[~valid]).all()
    np.testing.assert_array_equal(values[valid], depth[valid])

    zero_values = m.image_to_numpy(Image(header=header(), **m.depth_to_image_fields(depth, invalid="zero")))
    assert (zero_values[~valid] == 0).all()

    back = m.depth_from_image(nan_msg)
    np.testing.assert_array_equal(back, np.where(valid, depth, 0))
    assert back.dtype == np.float32


def test_depth_16uc1_is_millimetres_with_zero_for_missing_and_too_far():
    depth = np.array([[1.2344, 0.0, 65.535, 70.0, 0.0002]], dtype=np.float64)
    msg = cdr_round_trip(Image(header=header(), **m.depth_to_image_fields(depth, encoding="16UC1")))
    np.testing.assert_array_equal(m.image_to_numpy(msg), np.array([[1234, 0, 65535, 0, 1]], np.uint16))
    np.testing.assert_allclose(m.depth_from_image(msg), [[1.234, 0.0, 65.535, 0.0, 0.001]], rtol=1e-6)


def test_depth_encoding_and_invalid_choices_are_checked():
    with pytest.raises(ValueError, match="32FC1 \\(metres\\) or 16UC1 \\(millimetres\\), got 'mono8'"):
        m.depth_to_image_fields(np.ones((2, 2)), encoding="mono8")
    with pytest.raises(ValueError, match="invalid must be 'nan' or 'zero'"):
        m.depth_to_image_fields(np.ones((2, 2)), invalid="inf")
    with pytest.raises(ValueError, match="must be 32FC1 or 16UC1, got 'rgb8'"):
        m.depth_from_image(m.build_image(Image, header(), random_image("rgb8"), "rgb8"))


# ------------------------------------------------------------------------------------- message class
class KeywordMessage:
    """A non-dataclass message class taking keyword arguments, as rclpy's generated classes do."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_make_message_gives_non_dataclass_classes_array_and_list_values():
    msg = m.build_image(KeywordMessage, header=None, image=random_image("rgb8"), encoding="rgb8")
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B"
    np.testing.assert_array_equal(m.image_to_numpy(msg), random_image("rgb8"))
    info = m.make_message(KeywordMessage, **m.camera_info_fields(PinholeCamera(4, 3, 5.0, 5.0, 2.0, 1.0)))
    assert isinstance(info.k, list) and info.k[0] == 5.0
    # rosbags dataclasses keep numpy arrays.
    assert isinstance(m.build_image(Image, header(), random_image("rgb8"), "rgb8").data, np.ndarray)


def test_stamp_conversion_round_trips_and_rejects_negative_times():
    msg = cdr_round_trip(header())
    assert msg.stamp.sec == 1_317_380_000 and msg.stamp.nanosec == 123_456_789
    assert m.stamp_to_ns(msg.stamp) == STAMP_NS
    with pytest.raises(ValueError, match="cannot be negative"):
        m.ns_to_stamp_fields(-1)


# ------------------------------------------------------------------------------------- point clouds
def cloud_msg(points, layout, point_step, height=1, row_padding=0, big_endian=False):
    """A PointCloud2 packed point by point with `struct` (independent of the numpy decoder).

    points: list of dicts name -> value; layout: list of (name, offset, datatype code).
    """
    struct_codes = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d"}
    order = ">" if big_endian else "<"
    width = len(points) // height
    row_step = width * point_step + row_padding
    data = bytearray(b"\xee" * (row_step * height))  # filler bytes must never be read
    for index, point in enumerate(points):
        row, col = divmod(index, width)
        base = row * row_step + col * point_step
        for name, offset, code in layout:
            struct.pack_into(order + struct_codes[code], data, base + offset, point[name])
    fields = [PointField(name=name, offset=offset, datatype=code, count=1) for name, offset, code in layout]
    return PointCloud2(header=header("velo_link"), height=height, width=width, fields=fields,
                       is_bigendian=big_endian, point_step=point_step, row_step=row_step,
                       data=np.frombuffer(bytes(data), dtype=np.uint8), is_dense=False)


def sample_points(count, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-50, 50, size=(count, 3))
    return [
        {"x": float(x), "y": float(y), "z": float(z), "i": float(i), "intensity": float(i), "ring": r,
         "time": t, "t": int(t * 1e6)}
        for (x, y, z), i, r, t in zip(xyz, rng.uniform(0, 1, count), rng.integers(0, 64, count),
                                      rng.uniform(0, 0.1, count))
    ]


def expected_xyz(points):
    return np.array([[p["x"], p["y"], p["z"]] for p in points], dtype=np.float32)


F32, F64, U16, U32 = 7, 8, 4, 6

LAYOUTS = {
    "xyzi": ([("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("i", 12, F32)], 16),
    "permuted": ([("i", 0, F32), ("z", 4, F32), ("x", 8, F32), ("y", 12, F32)], 16),
    "ouster_like": ([("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 16, F32), ("t", 20, U32),
                     ("ring", 24, U16)], 32),
    "velodyne_float64_time": ([("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32),
                               ("ring", 16, U16), ("time", 18, F64)], 26),
    "float64_xyz": ([("x", 0, F64), ("y", 8, F64), ("z", 16, F64), ("i", 24, F32)], 32),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("big_endian", [False, True])
def test_cloud_layouts_decode_to_the_packed_points(name, big_endian):
    layout, point_step = LAYOUTS[name]
    points = sample_points(7, seed=len(name))
    msg = cdr_round_trip(cloud_msg(points, layout, point_step, big_endian=big_endian))
    xyz, stats = m.pointcloud2_to_xyz(msg)
    assert xyz.dtype == np.float32 and xyz.shape == (7, 3)
    np.testing.assert_array_equal(xyz, expected_xyz(points))
    assert stats == m.CloudStats(total=7, nonfinite=0, kept=7)


def test_zero_copy_for_plain_float32_clouds_only():
    points = sample_points(5)
    plain = cloud_msg(points, *LAYOUTS["xyzi"])
    assert np.shares_memory(m.pointcloud2_to_xyz(plain)[0], plain.data)
    permuted = cloud_msg(points, *LAYOUTS["permuted"])
    assert not np.shares_memory(m.pointcloud2_to_xyz(permuted)[0], permuted.data)


def test_organised_cloud_with_row_padding():
    layout, point_step = LAYOUTS["xyzi"]
    points = sample_points(6, seed=3)
    msg = cdr_round_trip(cloud_msg(points, layout, point_step, height=2, row_padding=12))
    assert msg.row_step == 3 * 16 + 12
    xyz, stats = m.pointcloud2_to_xyz(msg)
    np.testing.assert_array_equal(xyz, expected_xyz(points))  # row-major order, padding skipped
    assert stats.total == 6
    xyzi = m.pointcloud2_to_array(msg)
    np.testing.assert_array_equal(xyzi[:, 3], np.float32([p["i"] for p in points]))


def test_nonfinite_points_are_dropped_and_counted():
    points = sample_points(6, seed=4)
    points[1]["x"] = float("nan")
    points[3]["z"] = float("inf")
    points[4]["y"] = float("-inf")
    msg = cloud_msg(points, *LAYOUTS["xyzi"])
    xyz, stats = m.pointcloud2_to_xyz(msg)
    assert stats == m.CloudStats(total=6, nonfinite=3, kept=3)
    np.testing.assert_array_equal(xyz, expected_xyz([points[0], points[2], points[5]]))
    assert m.pointcloud2_to_array(msg).shape == (3, 4)
    assert m.pointcloud2_to_array(msg, drop_nonfinite=False).shape == (6, 4)
    # Finite coordinates whose sum overflows float32 are still finite points.
    huge = sample_points(2, seed=5)
    huge[0].update(x=3e38, y=3e38, z=3e38)
    xyz, stats = m.pointcloud2_to_xyz(cloud_msg(huge, *LAYOUTS["xyzi"]))
    assert stats == m.CloudStats(total=2, nonfinite=0, kept=2)
    np.testing.assert_array_equal(xyz, expected_xyz(huge))


def test_pointcloud2_fields_and_extra_columns():
    layout, point_step = LAYOUTS["velodyne_float64_time"]
    points = sample_points(4, seed=5)
    msg = cloud_msg(points, layout, point_step, big_endian=True)
    fields = m.pointcloud2_fields(msg)
    assert list(fields) == ["x", "y", "z", "intensity", "ring", "time"]
    assert fields["ring"] == (16, np.dtype(">u2")) and fields["time"] == (18, np.dtype(">f8"))
    # "i" finds the "intensity" field; ring and time come back exactly.
    table = m.pointcloud2_to_array(msg, names=("x", "i", "ring", "time"), dtype=np.float64)
    np.testing.assert_array_equal(table[:, 1], np.float32([p["intensity"] for p in points]))
    np.testing.assert_array_equal(table[:, 2], [p["ring"] for p in points])
    np.testing.assert_array_equal(table[:, 3], [p["time"] for p in points])


def test_cloud_without_xyz_names_the_fields_it_has():
    msg = cloud_msg(sample_points(2), [("x", 0, F32), ("y", 4, F32), ("i", 8, F32)], 12)
    with pytest.raises(ValueError, match=r"no field 'z' \(fields present: x, y, i\)"):
        m.pointcloud2_to_xyz(msg)


def test_point_step_smaller_than_fields_is_rejected():
    msg = cloud_msg(sample_points(2), *LAYOUTS["xyzi"])
    msg.point_step = 12
    msg.row_step = 12 * msg.width
    msg.data = msg.data[: msg.row_step]
    with pytest.raises(ValueError, match="point_step 12 is smaller than the fields' extent 16 bytes"):
        m.pointcloud2_to_xyz(msg)


def test_data_length_must_match_height_times_row_step():
    msg = cloud_msg(sample_points(3), *LAYOUTS["xyzi"])
    msg.data = msg.data[:-4]
    with pytest.raises(ValueError, match=r"data has 44 bytes, expected height\*row_step = 1\*48 = 48"):
        m.pointcloud2_to_xyz(msg)


def test_unsupported_datatype_code_is_rejected():
    msg = cloud_msg(sample_points(2), *LAYOUTS["xyzi"])
    msg.fields[3] = PointField(name="i", offset=12, datatype=9, count=1)
    with pytest.raises(ValueError, match="field 'i' has unsupported datatype 9"):
        m.pointcloud2_to_xyz(msg)


def test_xyz_to_pointcloud2_round_trip():
    rng = np.random.default_rng(6)
    points = rng.uniform(-20, 20, size=(9, 4)).astype(np.float32)
    points[2, 0] = np.nan
    msg = cdr_round_trip(m.build_pointcloud2(TYPES, header("velo_link"), points))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "i"]
    assert all(f.datatype == PointField.FLOAT32 for f in msg.fields)
    assert (msg.point_step, msg.row_step, msg.height, msg.width) == (16, 144, 1, 9)
    assert msg.is_dense is False
    np.testing.assert_array_equal(m.pointcloud2_to_array(msg, drop_nonfinite=False), points)
    xyz, stats = m.pointcloud2_to_xyz(msg)
    assert stats.nonfinite == 1
    np.testing.assert_array_equal(xyz, np.delete(points, 2, axis=0)[:, :3])
    three = m.xyz_to_pointcloud2_fields(points[:, :3])
    assert three["point_step"] == 12 and [f["name"] for f in three["fields"]] == ["x", "y", "z"]
    with pytest.raises(ValueError, match=r"points must be \(N, 3\) or \(N, 4\)"):
        m.xyz_to_pointcloud2_fields(points[:, :2])


# ---------------------------------------------------------------------------------------- CameraInfo
KITTI_LIKE = PinholeCamera(width=1242, height=375, fx=721.5377, fy=721.5377, cx=609.5593, cy=172.854)


def test_camera_info_round_trip_is_monocular():
    msg = cdr_round_trip(m.build_camera_info(TYPES, header(), KITTI_LIKE))
    assert m.camera_from_camera_info(msg) == KITTI_LIKE
    p = np.asarray(msg.p).reshape(3, 4)
    np.testing.assert_array_equal(p[:, :3], KITTI_LIKE.K)
    assert p[0, 3] == 0 and p[1, 3] == 0  # Tx = Ty = 0
    np.testing.assert_array_equal(np.asarray(msg.r).reshape(3, 3), np.eye(3))
    assert msg.distortion_model == "plumb_bob" and len(msg.d) == 5 and not np.any(msg.d)


def test_camera_info_ros1_upper_case_fields():
    noetic = get_typestore(Stores.ROS1_NOETIC)
    info = noetic.types["sensor_msgs/msg/CameraInfo"]
    roi = noetic.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                           do_rectify=False)
    ros1_header = noetic.types["std_msgs/msg/Header"](seq=0, stamp=noetic.types["builtin_interfaces/msg/Time"](
        sec=0, nanosec=0), frame_id="camera")
    msg = info(header=ros1_header, height=375, width=1242, distortion_model="plumb_bob", D=np.zeros(5),
               K=KITTI_LIKE.K.reshape(-1), R=np.eye(3).reshape(-1), P=np.zeros(12), binning_x=0, binning_y=0,
               roi=roi)
    assert m.camera_from_camera_info(msg) == KITTI_LIKE  # P all zero: K is the fallback


def test_image_size_must_match_camera_info():
    image = m.build_image(Image, header(), np.zeros((375, 1240, 3), np.uint8), "bgr8")
    with pytest.raises(ValueError, match="image is 1240x375 but its CameraInfo describes a 1242x375 camera"):
        m.check_image_matches_camera(image, KITTI_LIKE)
    m.check_image_matches_camera(m.build_image(Image, header(), np.zeros((375, 1242), np.uint8), "mono8"),
                                 KITTI_LIKE)


# ---------------------------------------------------------------------------------------- transforms
def test_transform_round_trip_through_transform_stamped():
    rng = np.random.default_rng(7)
    quaternion = rng.normal(size=4)
    transform = make_transform(quaternion_to_rotation(*quaternion), rng.uniform(-2, 2, size=3))
    msg = cdr_round_trip(m.build_transform_stamped(TYPES, header("base_link"), "camera", transform))
    assert msg.header.frame_id == "base_link" and msg.child_frame_id == "camera"
    np.testing.assert_allclose(m.transform_from_msg(msg), transform, atol=1e-12)
    np.testing.assert_allclose(m.transform_from_msg(msg.transform), transform, atol=1e-12)
    point = np.array([1.0, -2.0, 3.0, 1.0])
    q = msg.transform.rotation
    rotated = quaternion_to_rotation(q.x, q.y, q.z, q.w) @ point[:3]
    np.testing.assert_allclose((transform @ point)[:3], rotated + [msg.transform.translation.x,
                                                                   msg.transform.translation.y,
                                                                   msg.transform.translation.z])


def test_transform_fields_reject_non_rigid_matrices():
    scaled = np.diag([2.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="not a rotation"):
        m.transform_to_fields(scaled)
    with pytest.raises(ValueError, match="finite 4x4"):
        m.transform_to_fields(np.eye(3))
