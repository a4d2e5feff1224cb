"""FrameProcessor: one path from (rgb, points) or messages to dense depth, with its options and errors."""
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from depth_completion_ros.data import messages
from depth_completion_ros.geometry import PinholeCamera, make_transform, project
from depth_completion_ros.inference import Engine
from depth_completion_ros.pipeline import FrameProcessor, PipelineOptions

CAMERA = PinholeCamera(64, 48, 40.0, 40.0, 31.5, 23.5)
# LiDAR (x forward, y left, z up) -> optical camera frame, camera 0.3 m ahead of the LiDAR.
LIDAR_TO_CAMERA = make_transform([[0, -1, 0], [0, 0, -1], [1, 0, 0]], [0.0, 0.1, -0.3])


@pytest.fixture(scope="module")
def engine():
    return Engine.from_name("cdspn_x32", width=8, iterations=2, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (CAMERA.height, CAMERA.width, 3), dtype=np.uint8)
    points = np.c_[rng.uniform(1, 30, 4000), rng.uniform(-15, 15, 4000), rng.uniform(-2, 2, 4000),
                   rng.uniform(0, 1, 4000)].astype(np.float32)
    points[:5, 0] = np.nan
    return rgb, points


def test_process_is_projection_then_the_engine(engine, frame):
    rgb, points = frame
    result = FrameProcessor(engine, CAMERA, LIDAR_TO_CAMERA).process(rgb, points, stamp_ns=42)
    sparse = project(points, CAMERA, LIDAR_TO_CAMERA, min_depth=0.1, max_depth=120.0)
    expected = engine.predict(rgb, sparse)
    np.testing.assert_array_equal(result.sparse, sparse)
    np.testing.assert_allclose(result.dense, np.clip(expected, 0, 120.0), rtol=1e-6, atol=1e-6)
    assert result.dense.dtype == np.float32 and result.dense.shape == (48, 64)
    assert result.stamp_ns == 42 and result.projection.nonfinite == 5
    assert set(result.timings_ms) == {"conversion", "projection", "inference", "postprocess", "total"}
    parts = sum(v for k, v in result.timings_ms.items() if k != "total")
    assert result.timings_ms["total"] == pytest.approx(parts)


def test_process_depth_equals_process_on_the_same_sparse_image(engine, frame):
    rgb, points = frame
    processor = FrameProcessor(engine, CAMERA, LIDAR_TO_CAMERA)
    from_points = processor.process(rgb, points)
    from_depth = processor.process_depth(rgb, from_points.sparse)
    np.testing.assert_array_equal(from_points.dense, from_depth.dense)
    assert from_depth.projection.pixels == from_points.projection.pixels


def test_bottom_roi_runs_the_network_on_the_bottom_rows_only(engine, frame):
    rgb, points = frame
    for invalid, check in (("nan", np.isnan), ("zero", lambda a: a == 0)):
        options = PipelineOptions(roi="bottom", roi_height=32, invalid_value=invalid)
        result = FrameProcessor(engine, CAMERA, LIDAR_TO_CAMERA, options).process(rgb, points)
        assert result.roi_top == 16 and result.roi_rows == (16, 48) and check(result.dense[:16]).all()
        expected = engine.predict(rgb[16:], result.sparse[16:])
        np.testing.assert_allclose(result.dense[16:], expected, rtol=1e-6, atol=1e-6)


def test_max_depth_drops_far_points_and_clips_predictions(engine, frame):
    rgb, points = frame
    result = FrameProcessor(engine, CAMERA, LIDAR_TO_CAMERA, PipelineOptions(max_depth=10.0)).process(rgb, points)
    assert result.sparse.max() <= 10.0 and result.projection.out_of_range > 0
    assert np.nanmax(result.dense) <= 10.0


def test_messages_give_the_same_result_as_arrays(engine, frame):
    rgb, points = frame
    types = get_typestore(Stores.ROS2_HUMBLE).types
    header = messages.build_header(types, 1_500_000_000_123_456_789, "camera")
    image = messages.build_image(types["sensor_msgs/msg/Image"], header, np.ascontiguousarray(rgb[..., ::-1]), "bgr8")
    cloud = messages.build_pointcloud2(types, messages.build_header(types, 0, "lidar"), points)
    info = messages.build_camera_info(types, header, CAMERA)
    processor = FrameProcessor(engine, lidar_to_camera=LIDAR_TO_CAMERA)
    result = processor.process_messages(image, cloud, camera=info)
    direct = processor.process(rgb, points, camera=CAMERA)
    np.testing.assert_array_equal(result.dense, direct.dense)
    assert result.stamp_ns == 1_500_000_000_123_456_789
    assert result.projection.nonfinite == 0  # the message conversion already dropped the NaN points


def test_bad_frames_are_rejected_with_a_clear_error(engine, frame):
    rgb, points = frame
    processor = FrameProcessor(engine, CAMERA, LIDAR_TO_CAMERA)
    with pytest.raises(ValueError, match=r"image is 60x48 but its camera model is 64x48"):
        processor.process(rgb[:, :60], points)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        processor.process(rgb, points[:, :2])
    with pytest.raises(ValueError, match="no LiDAR->camera transform"):
        FrameProcessor(engine, CAMERA).process(rgb, points)
    with pytest.raises(ValueError, match="no camera model"):
        FrameProcessor(engine, lidar_to_camera=LIDAR_TO_CAMERA).process(rgb, points)
    with pytest.raises(ValueError, match="sparse depth is 64x40"):
        processor.process_depth(rgb, np.zeros((40, 64), np.float32))


def test_options_are_validated():
    with pytest.raises(ValueError, match="roi must be one of"):
        PipelineOptions(roi="top")
    with pytest.raises(ValueError, match="max_depth"):
        PipelineOptions(max_depth=0.05)
    with pytest.raises(ValueError, match="invalid_value"):
        PipelineOptions(invalid_value="inf")
