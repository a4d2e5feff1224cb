"""roi "auto": the network runs from a margin above the top-most LiDAR return down, stride-aligned; the rest
of the image is invalid, and inside the region the depth equals the full frame's for a local fill."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from depth_completion_ros.baselines import BaselineEngine
from depth_completion_ros.commands._common import add_pipeline_arguments, pipeline_options_from_args
from depth_completion_ros.geometry import PinholeCamera, make_transform
from depth_completion_ros.inference import Engine
from depth_completion_ros.pipeline import DEFAULT_ROI_MULTIPLE, FrameProcessor, PipelineOptions, auto_roi_top

CAMERA = PinholeCamera(80, 120, 60.0, 60.0, 39.5, 59.5)
# LiDAR (x forward, y left, z up) -> optical camera frame, camera 0.3 m ahead of the LiDAR.
LIDAR_TO_CAMERA = make_transform([[0, -1, 0], [0, 0, -1], [1, 0, 0]], [0.0, 0.0, -0.3])


def lower_half_points(seed: int = 0, count: int = 3000) -> np.ndarray:
    """Returns below the LiDAR only (z < 0), so they project into the lower part of the image, as a
    KITTI Velodyne's do."""
    rng = np.random.default_rng(seed)
    return np.c_[rng.uniform(2, 30, count), rng.uniform(-10, 10, count), rng.uniform(-3, -0.8, count),
                 rng.uniform(0, 1, count)].astype(np.float32)


@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(1).integers(0, 256, (CAMERA.height, CAMERA.width, 3), dtype=np.uint8)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("margin, multiple", [(16, 16), (0, 32), (5, 8), (16, 1)])
def test_roi_holds_every_return_and_the_margin_and_is_stride_aligned(seed, margin, multiple):
    rng = np.random.default_rng(seed)
    height = int(rng.integers(40, 400))
    sparse = np.zeros((height, 50), np.float32)
    first = int(rng.integers(0, height))
    rows = rng.integers(first, height, 200)
    rows[0] = first
    sparse[rows, rng.integers(0, 50, 200)] = rng.uniform(1, 80, 200)
    top = auto_roi_top(sparse, margin, multiple)
    assert top <= max(0, first - margin)                  # every return, and the margin above the top-most
    assert top == 0 or (height - top) % multiple == 0      # whole strides: the network pads nothing
    assert top == 0 or top > first - margin - multiple     # no more than one stride of extra rows


def test_roi_is_the_whole_image_without_returns_or_when_rounding_reaches_the_top():
    sparse = np.zeros((100, 30), np.float32)
    assert auto_roi_top(sparse, 16, 16) == 0               # nothing to bound: the whole frame runs
    sparse[60, 3] = 5.0
    assert auto_roi_top(sparse, 16, 16) == 36              # from row 44: 56 rows, rounded up to 64
    assert auto_roi_top(sparse, 30, 64) == 0               # from row 30: 70 rows, 128 would not fit
    sparse[60, 3], sparse[5, 3] = np.nan, 5.0
    assert auto_roi_top(sparse, 0, 16) == 4                # NaN is no return; 95 rows -> 96


@pytest.mark.parametrize("method", ["nearest", "morphological"])
def test_baseline_depth_inside_the_roi_equals_the_full_frame_and_outside_is_invalid(rgb, method):
    engine = BaselineEngine(method)
    points = lower_half_points()
    full = FrameProcessor(engine, CAMERA, LIDAR_TO_CAMERA).process(rgb, points)
    auto = FrameProcessor(engine, CAMERA, LIDAR_TO_CAMERA, PipelineOptions(roi="auto")).process(rgb, points)
    top = auto.roi_top
    first_return = int(np.flatnonzero(full.sparse.any(axis=1))[0])
    assert 0 < top <= first_return - 16 and (CAMERA.height - top) % DEFAULT_ROI_MULTIPLE == 0
    assert auto.roi_rows == (top, CAMERA.height) and full.roi_rows == (0, CAMERA.height)
    np.testing.assert_array_equal(auto.sparse, full.sparse)
    assert np.isnan(auto.dense[:top]).all()
    np.testing.assert_array_equal(auto.dense[top:], full.dense[top:])


def test_network_runs_on_the_roi_rows_at_the_network_stride(rgb):
    engine = Engine.from_name("cdspn_x32", width=8, iterations=1, device="cpu", precision="fp32")
    assert engine.size_multiple == 16
    options = PipelineOptions(roi="auto", roi_margin=4, invalid_value="zero")
    result = FrameProcessor(engine, CAMERA, LIDAR_TO_CAMERA, options).process(rgb, lower_half_points())
    top = result.roi_top
    assert 0 < top and (CAMERA.height - top) % 16 == 0 and (result.dense[:top] == 0).all()
    assert int(np.flatnonzero(result.sparse.any(axis=1))[0]) - 4 >= top
    expected = engine.predict(rgb[top:], result.sparse[top:])
    np.testing.assert_allclose(result.dense[top:], np.clip(expected, 0, 120.0), rtol=1e-6, atol=1e-6)


def test_frame_without_returns_runs_whole(rgb):
    behind = lower_half_points()
    behind[:, 0] *= -1  # every point behind the camera
    result = FrameProcessor(BaselineEngine("nearest"), CAMERA, LIDAR_TO_CAMERA,
                            PipelineOptions(roi="auto")).process(rgb, behind)
    assert result.roi_rows == (0, CAMERA.height) and result.projection.pixels == 0


def test_self_check_holds_out_inside_the_auto_roi(rgb):
    options = PipelineOptions(roi="auto", self_check_fraction=0.2)
    result = FrameProcessor(BaselineEngine("nearest"), CAMERA, LIDAR_TO_CAMERA, options).process(
        rgb, lower_half_points(), stamp_ns=7)
    assert result.self_check is not None and (result.self_check.rows >= result.roi_top).all()


def test_roi_options_are_validated_and_reach_the_command_line():
    assert PipelineOptions(roi="auto").roi_margin == 16
    with pytest.raises(ValueError, match="roi must be one of"):
        PipelineOptions(roi="lidar")
    for margin in (-1, 2.5, True):
        with pytest.raises(ValueError, match="roi_margin"):
            PipelineOptions(roi="auto", roi_margin=margin)
    parser = argparse.ArgumentParser()
    add_pipeline_arguments(parser)
    options = pipeline_options_from_args(parser.parse_args(["--roi", "auto", "--roi-margin", "8"]))
    assert (options.roi, options.roi_margin) == ("auto", 8)


def test_eval_kitti_reports_each_frames_roi_in_frames_csv(synthetic_kitti, tmp_path):
    """The rows the network ran on are in the offline output too (frames.csv `roi_first_row`), and they are
    the auto ROI of that frame's projected LiDAR."""
    import csv

    from depth_completion_ros import cli
    from depth_completion_ros.data.kitti import KittiDepthCompletion

    out = tmp_path / "report"
    assert cli.main(["eval-kitti", "--data", str(synthetic_kitti), "--split", "val", "--model",
                     "baseline:nearest", "--roi", "auto", "--panels", "0", "--out", str(out)]) == 0
    with open(out / "frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    dataset = KittiDepthCompletion(synthetic_kitti, split="val", crop=None)
    assert len(rows) == len(dataset) > 0
    for index, row in enumerate(rows):
        sparse = dataset.load(index)[1]
        expected = auto_roi_top(sparse, PipelineOptions().roi_margin, DEFAULT_ROI_MULTIPLE)
        assert 0 < int(row["roi_first_row"]) == expected
