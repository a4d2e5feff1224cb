"""The LiDAR hold-out self-check: which pixels are held out, how they are scored, the pipeline around it,
its parameters, its diagnostics and its place in the evaluation report. Tiny sizes, no ROS."""
from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from rosbags.typesys import Stores, get_typestore
from torch import nn

from depth_completion_ros import self_check as checks
from depth_completion_ros.baselines import BaselineEngine
from depth_completion_ros.evaluation.scoring import SELF_CHECK_PLOT, FrameScorer, correlations
from depth_completion_ros.geometry import PinholeCamera
from depth_completion_ros.inference import Engine
from depth_completion_ros.pipeline import FrameProcessor, PipelineOptions
from depth_completion_ros.ros.monitoring import (
    LEVEL_ERROR, LEVEL_OK, LEVEL_WARN, MIN_SELF_CHECK_SAMPLES, SelfCheckWindow, summarize_self_check,
)
from depth_completion_ros.ros.params import ParameterError, validate_parameters
from depth_completion_ros.ros.synthetic import wall_frame

TYPES = get_typestore(Stores.ROS2_HUMBLE).types
CAMERA = PinholeCamera(64, 48, 40.0, 40.0, 31.5, 23.5)


class DilateSparse(nn.Module):
    """A deterministic stand-in network: the largest sparse depth within one pixel, so a test can compute
    the exact output of any input."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, rgb, sparse_depth):
        return nn.functional.max_pool2d(sparse_depth, 3, stride=1, padding=1) * self.scale


class Recording:
    """Wraps an engine and keeps every sparse input it is given (the pipeline passes numpy (H, W) maps)."""

    def __init__(self, engine):
        self.engine, self.device, self.inputs = engine, engine.device, []

    def predict(self, rgb, sparse):
        self.inputs.append(np.array(sparse, dtype=np.float32))
        return self.engine.predict(rgb, sparse)


def random_sparse(seed: int = 0, shape=(48, 64), density: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sparse = rng.uniform(1.0, 90.0, shape).astype(np.float32)
    sparse[rng.random(shape) > density] = 0.0
    return sparse


def rgb_for(shape=(48, 64)) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------- the hold-out
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.5])
def test_hold_out_takes_the_stated_fraction_of_valid_pixels(fraction):
    sparse = random_sparse()
    sparse[0, :5] = np.nan
    rows, cols, candidates = checks.choose_hold_out(sparse, fraction, seed=7)
    assert candidates == int((sparse > 0).sum())
    assert rows.size == round(fraction * candidates)
    assert len(set(zip(rows.tolist(), cols.tolist()))) == rows.size      # no pixel twice
    assert (sparse[rows, cols] > 0).all()
    reduced = checks.without(sparse, rows, cols)
    assert int((reduced > 0).sum()) == candidates - rows.size and (sparse > 0).sum() == candidates


def test_hold_out_is_reproducible_per_seed_and_respects_the_region():
    sparse = random_sparse()
    first = checks.choose_hold_out(sparse, 0.1, seed=checks.frame_seed(1_000_000_123, sparse))
    again = checks.choose_hold_out(sparse, 0.1, seed=checks.frame_seed(1_000_000_123, sparse))
    other = checks.choose_hold_out(sparse, 0.1, seed=checks.frame_seed(1_000_000_124, sparse))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not (np.array_equal(first[0], other[0]) and np.array_equal(first[1], other[1]))
    # Without a stamp the seed comes from the content: the same frame, the same pixels.
    assert checks.frame_seed(None, sparse) == checks.frame_seed(None, sparse.copy())
    assert checks.frame_seed(None, sparse) != checks.frame_seed(None, random_sparse(seed=1))
    rows, _, candidates = checks.choose_hold_out(sparse, 0.2, seed=3, top=30)
    assert (rows >= 30).all() and candidates == int((sparse[30:] > 0).sum())


def test_hold_out_is_spread_over_the_image_as_the_lidar_is():
    sparse = random_sparse(shape=(96, 128), density=0.5)
    fraction = 0.1
    rows, cols, _ = checks.choose_hold_out(sparse, fraction, seed=11, tile_px=16)
    valid_rows, valid_cols = np.nonzero(sparse > 0)
    per_tile = np.zeros((6, 8))
    np.add.at(per_tile, (rows // 16, cols // 16), 1)
    share = np.zeros((6, 8))
    np.add.at(share, (valid_rows // 16, valid_cols // 16), fraction)
    # Systematic sampling over tile-ordered candidates: every tile gets its share to within one pixel.
    assert np.abs(per_tile - share).max() <= 1.0 + 1e-9


def test_nothing_to_hold_out_is_an_empty_result_not_an_error():
    rows, cols, candidates = checks.choose_hold_out(np.zeros((8, 8), np.float32), 0.1, seed=0)
    assert rows.size == 0 and candidates == 0
    empty = checks.score_hold_out(np.zeros(0), np.zeros(0), fraction=0.1, candidates=0)
    assert empty.empty and empty.rmse_mm is None and empty.mae_mm is None and empty.held_out == 0
    assert all(band.count == 0 and band.rmse_mm is None for band in empty.bands)
    assert json.dumps(empty.as_dict())


def test_score_by_distance_band():
    truth = np.array([5.0, 5.0, 15.0, 30.0, 60.0, 100.0])
    prediction = truth + np.array([0.1, -0.1, 1.0, -2.0, 4.0, np.nan])
    check = checks.score_hold_out(prediction, truth, fraction=0.05, candidates=120)
    assert check.held_out == 6 and check.scored == 5                 # a non-finite prediction is not scored
    errors = np.array([0.1, -0.1, 1.0, -2.0, 4.0])
    assert check.rmse_mm == pytest.approx(np.sqrt(np.mean(errors ** 2)) * 1000)
    assert check.mae_mm == pytest.approx(np.mean(np.abs(errors)) * 1000)
    assert check.bias_mm == pytest.approx(np.mean(errors) * 1000)
    bands = {band.label: band for band in check.bands}
    assert list(bands) == ["0-10 m", "10-20 m", "20-40 m", "40-80 m", "80+ m"]
    assert bands["0-10 m"].count == 2 and bands["0-10 m"].rmse_mm == pytest.approx(100.0)
    assert bands["20-40 m"].mae_mm == pytest.approx(2000.0) and bands["80+ m"].count == 0


def test_isolated_returns_are_counted_not_dropped():
    sparse = np.zeros((20, 20), np.float32)
    sparse[2, 2] = sparse[2, 3] = 4.0          # a pair: either one has a neighbour
    sparse[15, 15] = 9.0                      # alone
    rows, cols = np.array([2, 15]), np.array([2, 15])
    assert checks.count_isolated(checks.without(sparse, rows, cols), rows, cols, radius=4) == 1


# ------------------------------------------------------------------------------------- the pipeline
def test_pipeline_scores_exactly_the_held_out_pixels_of_its_output():
    engine = Recording(Engine.from_model(DilateSparse(), device="cpu"))
    sparse = random_sparse(density=0.1)
    options = PipelineOptions(self_check_fraction=0.1)
    result = FrameProcessor(engine, CAMERA, options=options).process_depth(rgb_for(), sparse, stamp_ns=5)
    check = result.self_check
    candidates = int((sparse > 0).sum())
    assert check.candidates == candidates and check.held_out == round(0.1 * candidates)
    assert np.array_equal(result.sparse, sparse)                       # the reported input keeps every return
    network_input = engine.inputs[0]
    assert not network_input[check.rows, check.cols].any()              # the network saw none of them
    assert int((network_input > 0).sum()) == candidates - check.held_out
    # One run: the published depth is the prediction scored; check against an independent computation.
    expected = nn.functional.max_pool2d(torch.from_numpy(checks.without(sparse, check.rows, check.cols))[None, None],
                                        3, stride=1, padding=1)[0, 0].numpy()
    np.testing.assert_allclose(result.dense, expected, atol=1e-6)
    error = result.dense[check.rows, check.cols].astype(np.float64) - sparse[check.rows, check.cols]
    assert check.rmse_mm == pytest.approx(np.sqrt(np.mean(error ** 2)) * 1000, rel=1e-6)
    assert check.mae_mm == pytest.approx(np.mean(np.abs(error)) * 1000, rel=1e-6)
    assert len(engine.inputs) == 1 and "self_check" in result.timings_ms
    assert result.timings_ms["total"] == pytest.approx(sum(v for k, v in result.timings_ms.items() if k != "total"))
    # The same frame and stamp hold out the same pixels again.
    again = FrameProcessor(engine, CAMERA, options=options).process_depth(rgb_for(), sparse, stamp_ns=5)
    assert np.array_equal(again.self_check.rows, check.rows) and again.self_check.rmse_mm == check.rmse_mm


def test_second_run_publishes_the_full_input_prediction():
    engine = Recording(Engine.from_model(DilateSparse(), device="cpu"))
    sparse = random_sparse(density=0.1)
    options = PipelineOptions(self_check_fraction=0.1, self_check_second_run=True)
    result = FrameProcessor(engine, CAMERA, options=options).process_depth(rgb_for(), sparse, stamp_ns=5)
    reference = FrameProcessor(engine, CAMERA).process_depth(rgb_for(), sparse)
    np.testing.assert_array_equal(result.dense, reference.dense)
    assert len(engine.inputs) == 3 and np.array_equal(engine.inputs[1], sparse)
    one_run_processor = FrameProcessor(Engine.from_model(DilateSparse(), device="cpu"), CAMERA,
                                       options=PipelineOptions(self_check_fraction=0.1))
    one_run = one_run_processor.process_depth(rgb_for(), sparse, stamp_ns=5)
    assert result.self_check.rmse_mm == pytest.approx(one_run.self_check.rmse_mm)


def test_only_every_nth_frame_is_a_self_check_frame_and_off_costs_nothing():
    engine = Engine.from_model(DilateSparse(), device="cpu")
    processor = FrameProcessor(engine, CAMERA, options=PipelineOptions(self_check_fraction=0.1, self_check_every_n=3))
    results = [processor.process_depth(rgb_for(), random_sparse(i), stamp_ns=i) for i in range(7)]
    assert [r.self_check is not None for r in results] == [True, False, False, True, False, False, True]
    assert "self_check" not in results[1].timings_ms
    off = FrameProcessor(engine, CAMERA).process_depth(rgb_for(), random_sparse())
    assert off.self_check is None
    assert set(off.timings_ms) == {"conversion", "projection", "inference", "postprocess", "total"}


def test_a_frame_without_lidar_gives_an_empty_self_check():
    engine = Engine.from_model(DilateSparse(), device="cpu")
    processor = FrameProcessor(engine, CAMERA, options=PipelineOptions(self_check_fraction=0.05))
    result = processor.process_depth(rgb_for(), np.zeros((48, 64), np.float32), stamp_ns=1)
    assert result.self_check.empty and result.self_check.rmse_mm is None and result.self_check.candidates == 0
    points = np.zeros((0, 3), np.float32)
    from_points = processor.process(rgb_for(), points, stamp_ns=2, lidar_to_camera=np.eye(4))
    assert from_points.self_check.empty


def test_wall_with_the_nearest_fill_has_no_self_check_error():
    frame = wall_frame(TYPES, 1_000_000_000, width=64, height=48, stride=3)
    processor = FrameProcessor(BaselineEngine("nearest"), options=PipelineOptions(self_check_fraction=0.1))
    result = processor.process_messages(frame.image, frame.cloud, camera=frame.camera_info,
                                        lidar_to_camera=frame.lidar_to_camera)
    assert result.self_check.held_out > 0 and result.self_check.isolated == 0
    assert result.self_check.rmse_mm == pytest.approx(0.0, abs=0.5)


def test_roi_bottom_holds_out_inside_the_region_only():
    engine = Engine.from_model(DilateSparse(), device="cpu")
    options = PipelineOptions(roi="bottom", roi_height=20, self_check_fraction=0.2)
    result = FrameProcessor(engine, CAMERA, options=options).process_depth(rgb_for(), random_sparse(), stamp_ns=9)
    assert result.roi_top == 28 and (result.self_check.rows >= 28).all()
    assert result.self_check.candidates == int((result.sparse[28:] > 0).sum())


def test_edge_agreement_drops_when_the_lidar_is_shifted():
    height, width = 60, 120
    rgb = np.full((height, width, 3), 40, np.uint8)
    depth = np.full((height, width), 30.0, np.float32)
    for top, left in ((10, 15), (30, 70)):                                 # two near boxes, bright in the image
        rgb[top:top + 20, left:left + 25] = 220
        depth[top:top + 20, left:left + 25] = 6.0
    sparse = np.zeros_like(depth)
    sparse[::3, ::2] = depth[::3, ::2]                                    # scan lines every 3rd row
    aligned, edges = checks.edge_agreement(rgb, sparse)
    shifted, _ = checks.edge_agreement(rgb, np.roll(sparse, (4, 8), axis=(0, 1)))
    assert edges >= checks.MIN_EDGE_PIXELS and aligned > 2.0 and shifted < 0.5 * aligned
    assert checks.edge_agreement(rgb, np.zeros_like(sparse)) == (None, 0)


# ----------------------------------------------------------------------------------- the parameters
@pytest.mark.parametrize("name, value, words", [
    ("self_check.fraction", 0.6, ["self_check.fraction", "<= 0.5"]),
    ("self_check.fraction", -0.1, ["self_check.fraction", ">="]),
    ("self_check.fraction", 0, ["self_check.fraction", "0.0"]),
    ("self_check.every_n_frames", 0, ["self_check.every_n_frames", ">= 1"]),
    ("self_check.window", 1.5, ["self_check.window", "integer"]),
    ("self_check.second_run", "yes", ["self_check.second_run", "true or false"]),
    ("self_check.warn_rmse_mm", 20000.0, ["self_check.warn_rmse_mm", "less than", "error_rmse_mm"]),
    ("self_check.warn_edge_agreement", -1.0, ["self_check.warn_edge_agreement", ">="]),
])
def test_self_check_parameters_are_validated(name, value, words):
    with pytest.raises(ParameterError) as raised:
        validate_parameters({name: value})
    for word in words:
        assert word in str(raised.value)


def test_self_check_parameters_reach_the_settings_and_pipeline_options_validate():
    settings = validate_parameters({"self_check.fraction": 0.1, "self_check.every_n_frames": 5,
                                    "self_check.warn_rmse_mm": 100.0, "self_check.error_rmse_mm": 200.0})
    assert (settings.self_check_fraction, settings.self_check_every_n_frames) == (0.1, 5)
    assert (settings.self_check_warn_rmse_mm, settings.self_check_error_rmse_mm) == (100.0, 200.0)
    assert validate_parameters({}).self_check_fraction > 0                   # the node checks by default
    for bad in ({"self_check_fraction": 0.9}, {"self_check_fraction": math.nan}, {"self_check_every_n": 0}):
        with pytest.raises(ValueError, match="self.check"):
            PipelineOptions(**bad)


# ---------------------------------------------------------------------------------- the diagnostics
def check_with(rmse_mm: float, count: int = 40, depth: float = 5.0) -> checks.SelfCheck:
    truth = np.full(count, depth)
    errors = np.where(np.arange(count) % 2 == 0, rmse_mm, -rmse_mm) / 1000.0
    return checks.score_hold_out(truth + errors, truth, fraction=0.05, candidates=count * 20)


def test_window_pools_pixels_and_keeps_the_last_frames():
    window = SelfCheckWindow(size=2)
    assert window.summary()["rmse_mm"] is None and window.summary()["frames"] == 0
    window.add(check_with(100.0, count=10))
    window.add(check_with(300.0, count=30, depth=15.0))
    summary = window.summary()
    assert summary["samples"] == 40 and summary["frames"] == 2
    assert summary["rmse_mm"] == pytest.approx(math.sqrt((10 * 100.0 ** 2 + 30 * 300.0 ** 2) / 40))
    assert summary["bands"]["0-10 m"] == (10, pytest.approx(100.0), pytest.approx(100.0))
    assert summary["bands"]["10-20 m"][0] == 30
    window.add(check_with(50.0, count=10))                                 # the first frame leaves the window
    assert window.summary()["samples"] == 40 and window.summary()["rmse_mm"] < summary["rmse_mm"]
    window.add(checks.score_hold_out(np.zeros(0), np.zeros(0)))           # an empty frame: no samples
    assert window.summary()["frames"] == 2 and window.summary()["samples"] == 10


def test_diagnostic_summary_shows_the_values_and_levels_follow_the_thresholds():
    def level(rmse_mm, warn=1000.0, error=2000.0):
        window = SelfCheckWindow()
        window.add(check_with(rmse_mm))
        return summarize_self_check(window.summary(), warn, error, fraction=0.05, every_n_frames=10)

    ok = level(500.0)
    assert ok.level == LEVEL_OK
    values = ok.values
    assert values["self-check RMSE (mm)"] == "500.0" and values["self-check MAE (mm)"] == "500.0"
    assert values["self-check samples"] == "40" and values["self-check frames"] == "1"
    assert values["self-check RMSE 0-10 m (mm)"] == "500.0" and values["self-check samples 0-10 m"] == "40"
    assert values["self-check RMSE 40-80 m (mm)"] == "n/a"
    assert values["self-check warn RMSE (mm)"] == "1000" and values["self-check fraction"] == "0.05"
    assert level(1500.0).level == LEVEL_WARN and "warn threshold" in level(1500.0).message
    assert level(2500.0).level == LEVEL_ERROR
    assert level(1500.0, warn=2000.0, error=3000.0).level == LEVEL_OK       # the thresholds decide
    assert level(1500.0, warn=500.0, error=1000.0).level == LEVEL_ERROR
    empty = summarize_self_check(SelfCheckWindow().summary(), 1000.0, 2000.0, 0.05, 10)
    assert empty.level == LEVEL_OK and empty.values["self-check RMSE (mm)"] == "n/a"
    off = summarize_self_check(SelfCheckWindow().summary(), 1000.0, 2000.0, 0.0, 10)
    assert off.level == LEVEL_OK and "off" in off.message
    few = SelfCheckWindow()
    few.add(check_with(5000.0, count=MIN_SELF_CHECK_SAMPLES - 2))
    assert summarize_self_check(few.summary(), 1000.0, 2000.0, 0.05, 10).level == LEVEL_OK


def test_low_edge_agreement_warns_only_when_its_threshold_is_set():
    window = SelfCheckWindow()
    for agreement in (1.8, 2.2):
        window.add(dataclasses.replace(check_with(100.0), edge_agreement=agreement))
    summary = window.summary()
    assert summary["edge_agreement"] == pytest.approx(2.0)
    unset = summarize_self_check(summary, 1000.0, 2000.0, 0.05, 10)
    assert unset.level == LEVEL_OK and unset.values["self-check edge agreement"] == "2.000"
    low = summarize_self_check(summary, 1000.0, 2000.0, 0.05, 10, warn_edge_agreement=2.5)
    assert low.level == LEVEL_WARN and "calibration" in low.message
    assert summarize_self_check(summary, 1000.0, 2000.0, 0.05, 10, warn_edge_agreement=1.5).level == LEVEL_OK


# ------------------------------------------------------------------------------------ the evaluation
def test_report_has_self_check_columns_summary_and_scatter_plot(tmp_path):
    engine = Engine.from_model(DilateSparse(), device="cpu")
    processor = FrameProcessor(engine, CAMERA, options=PipelineOptions(self_check_fraction=0.1))
    scorer = FrameScorer(tmp_path)
    for index in range(4):
        sparse = random_sparse(seed=index, density=0.05 + 0.05 * index)
        gt = np.where(random_sparse(seed=10 + index, density=0.5) > 0, 20.0, 0.0).astype(np.float32)
        scorer.add(processor.process_depth(rgb_for(), sparse, stamp_ns=index), rgb_for(), gt, name=f"f{index}")
    summary = scorer.finish()
    check = summary["self_check"]
    assert check["frames"] == 4 and check["frames_scored"] == 4 and check["fraction"] == 0.1
    assert check["held_out_pixels"] > 0 and check["mean_rmse_mm"] > 0
    assert set(check["bands"]) == set(checks.BAND_LABELS)
    assert check["correlation_with_gt_rmse"]["frames"] == 4
    assert (tmp_path / SELF_CHECK_PLOT).stat().st_size > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["self_check"]["plot"].endswith(SELF_CHECK_PLOT)
    with open(tmp_path / "frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and float(rows[0]["self_check_rmse_mm"]) > 0 and float(rows[0]["rmse_mm"]) > 0
    assert "self_check_rmse_mm_0_10" in rows[0] and "self_check_rmse_mm_80_up" in rows[0]
    assert float(rows[2]["self_check_rmse_mm"]) == pytest.approx(scorer.rows[2]["self_check_rmse_mm"], abs=1e-3)


def test_report_without_self_check_is_unchanged(tmp_path):
    scorer = FrameScorer(tmp_path)
    processor = FrameProcessor(Engine.from_model(DilateSparse(), device="cpu"), CAMERA)
    scorer.add(processor.process_depth(rgb_for(), random_sparse()), rgb_for(), random_sparse(seed=3), name="f")
    assert "self_check" not in scorer.finish()
    assert not (tmp_path / SELF_CHECK_PLOT).exists()
    with open(tmp_path / "frames.csv") as handle:
        assert "self_check_rmse_mm" not in handle.readline()


def test_correlations():
    from scipy.stats import pearsonr, spearmanr

    x, y = [1.0, 2.0, 3.0, 4.0, 9.0], [10.0, 20.0, 30.0, 45.0, 44.0]
    assert correlations(x, y) == {"frames": 5, "pearson": pytest.approx(pearsonr(x, y)[0]),
                                  "spearman": pytest.approx(spearmanr(x, y)[0])}
    assert correlations([1, 2], [3, 4])["pearson"] is None
    assert correlations([1, 1, 1], [3, 4, 5])["spearman"] is None
    assert correlations([1, 2, 3, None], [2, 4, 7, 1])["frames"] == 3


@pytest.mark.slow
def test_eval_commands_take_self_check(synthetic_kitti, tmp_path):
    """`--self-check FRACTION` reaches both evaluation commands: frames.csv columns, the metrics.json
    section and the scatter plot, beside the ground-truth metrics."""
    from depth_completion_ros.cli import main as dcros
    from depth_completion_ros.data.kitti import KittiRawDrive
    from depth_completion_ros.data.rosbag import write_kitti_drive_bag

    common = ["--model", "baseline:nearest", "--self-check", "0.05", "--panels", "0"]
    assert dcros(["eval-kitti", "--data", str(synthetic_kitti), "--split", "val", "--out", str(tmp_path / "kitti"),
                  *common]) == 0
    bag = tmp_path / "bag"
    write_kitti_drive_bag(KittiRawDrive(synthetic_kitti / "kitti_raw", "2000_01_01_drive_0002_sync"), bag,
                          depth_root=synthetic_kitti)
    assert dcros(["eval-bag", str(bag), "--out", str(tmp_path / "bag_report"), *common]) == 0
    for report in ("kitti", "bag_report"):
        summary = json.loads((tmp_path / report / "metrics.json").read_text())
        check = summary["self_check"]
        assert check["fraction"] == 0.05 and check["frames_scored"] == summary["frames_scored"] == 2
        assert check["held_out_pixels"] > 100 and check["mean_rmse_mm"] > 0
        assert (tmp_path / report / SELF_CHECK_PLOT).is_file()
        with open(tmp_path / report / "frames.csv") as handle:
            rows = list(csv.DictReader(handle))
        assert all(float(row["self_check_rmse_mm"]) > 0 and float(row["rmse_mm"]) > 0 for row in rows)
