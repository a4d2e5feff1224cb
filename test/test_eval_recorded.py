"""`dcros eval-bag --recorded-depth`: depth images recorded from the live node are scored against the source
bag's ground truth without running a network. Tiny synthetic bags; the figures are checked against an
independent numpy computation of the KITTI devkit's per-image errors."""
import csv
import json

import numpy as np
import pytest

from depth_completion_ros.cli import main as dcros
from depth_completion_ros.data import messages
from depth_completion_ros.data.rosbag import (KITTI_DEPTH_GT_TOPIC, KITTI_IMAGE_TOPIC, BagError, bag_topics,
                                              open_bag_writer)
from depth_completion_ros.evaluation.bag_eval import BagTopics, evaluate_recorded, recorded_depth_topic

HEIGHT, WIDTH = 6, 10
START_NS = 1_000_000_000
PERIOD_NS = 100_000_000
MS = 1_000_000


def _stamp(frame: int, offset_ns: int = 0) -> int:
    return START_NS + frame * PERIOD_NS + offset_ns


def _ground_truth(frame: int) -> np.ndarray:
    """Metres, 0 = none (a third of the pixels), distinct per frame."""
    rng = np.random.default_rng(frame)
    gt = rng.uniform(10.0, 40.0, (HEIGHT, WIDTH)).astype(np.float32)
    gt[rng.random((HEIGHT, WIDTH)) < 0.33] = 0
    gt[1, 4] = gt[2, 0] = 20.0  # scored pixels where the predictions below have holes
    return gt


def _prediction(frame: int) -> np.ndarray:
    """The ground truth (made dense) plus a known error, with two holes: an interior one and a row start."""
    rng = np.random.default_rng(100 + frame)
    pred = np.where(_ground_truth(frame) > 0, _ground_truth(frame), 30.0).astype(np.float32)
    pred += rng.normal(0.0, 0.5 + 0.5 * frame, pred.shape).astype(np.float32)
    pred[1, 4] = np.nan
    pred[2, 0] = np.nan
    return pred


def _expected(pairs) -> dict:
    """Independent KITTI figures: holes filled devkit-style (an interior hole takes the smaller neighbour, a
    row's leading hole its first valid value), then per-image RMSE/MAE over gt > 0, averaged over images."""
    rmse, mae = [], []
    for pred, gt in pairs:
        pred = np.nan_to_num(np.asarray(pred, np.float64), nan=0.0)
        pred[1, 4] = min(pred[1, 3], pred[1, 5])
        pred[2, 0] = pred[2, 1]
        valid = gt > 0
        error = pred[valid] - gt[valid].astype(np.float64)
        rmse.append(np.sqrt(np.mean(error ** 2)) * 1000)
        mae.append(np.mean(np.abs(error)) * 1000)
    return {"rmse_mm": float(np.mean(rmse)), "mae_mm": float(np.mean(mae))}


def _depth_msg(types, stamp_ns: int, depth: np.ndarray, encoding: str = "32FC1"):
    header = messages.build_header(types, stamp_ns, "camera_color_left")
    return messages.make_message(types["sensor_msgs/msg/Image"], header=header,
                                 **messages.depth_to_image_fields(depth, encoding=encoding))


def _source_bag(path, frames=range(5)):
    """kitti2bag's layout, reduced to what recorded mode reads: the camera image and the ground truth."""
    with open_bag_writer(path) as bag:
        bag.add_topic(KITTI_IMAGE_TOPIC, "sensor_msgs/msg/Image")
        bag.add_topic(KITTI_DEPTH_GT_TOPIC, "sensor_msgs/msg/Image")
        for frame in frames:
            stamp = _stamp(frame)
            rgb = np.full((HEIGHT, WIDTH, 3), 40 * frame, np.uint8)
            bag.write(KITTI_IMAGE_TOPIC, stamp, messages.build_image(
                bag.types["sensor_msgs/msg/Image"], messages.build_header(bag.types, stamp, "camera_color_left"),
                rgb, "rgb8"))
            bag.write(KITTI_DEPTH_GT_TOPIC, stamp, _depth_msg(bag.types, stamp, _ground_truth(frame)))
    return path


def _recorded_bag(path, frames, storage="mcap", topics=("/depth/image",)):
    """A bag as `ros2 bag record` writes it on Jazzy (metadata v9). `frames`: (stamp, depth, encoding)."""
    with open_bag_writer(path, distro="jazzy", storage=storage) as bag:
        for topic in topics:
            bag.add_topic(topic, "sensor_msgs/msg/Image")
        for index, (stamp, depth, encoding) in enumerate(frames):
            # Received a little after the image was taken, as a live node's output would be.
            bag.write(topics[0], 5_000_000_000 + index * PERIOD_NS, _depth_msg(bag.types, stamp, depth, encoding))
    return path


@pytest.fixture(scope="module")
def source_bag(tmp_path_factory):
    return _source_bag(tmp_path_factory.mktemp("source") / "source")


def _live_run():
    """What a live run recorded: frame 0 exactly, frame 1 in millimetres 20 ms late (within the 50 ms slop),
    frame 2 lost, frame 3 at the wrong size, frame 4 60 ms late (beyond the slop: no ground truth)."""
    wrong_size = np.ones((HEIGHT, WIDTH + 2), np.float32)
    millimetres = np.round(np.nan_to_num(_prediction(1), nan=0.0) * 1000) / 1000
    return [(_stamp(0), _prediction(0), "32FC1"),
            (_stamp(1, 20 * MS), millimetres, "16UC1"),
            (_stamp(3), wrong_size, "32FC1"),
            (_stamp(4, 60 * MS), _prediction(4), "32FC1")]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorded_depth_is_scored_against_the_source_ground_truth(source_bag, tmp_path, storage):
    recorded = _recorded_bag(tmp_path / "recorded", _live_run(), storage=storage)
    metadata = (recorded / "metadata.yaml").read_text()
    assert "version: 9" in metadata and f"storage_identifier: {storage}" in metadata
    summary = evaluate_recorded(source_bag, recorded, tmp_path / "report", progress=False)

    millimetres = _live_run()[1][1]
    frame1 = np.where(millimetres > 0, millimetres, np.nan)
    expected = _expected([(_prediction(0), _ground_truth(0)), (frame1, _ground_truth(1))])
    written = json.loads((tmp_path / "report" / "metrics.json").read_text())
    for key in ("rmse_mm", "mae_mm"):
        assert written[key] == pytest.approx(expected[key], rel=1e-5), key
        assert summary[key] == written[key]
    assert written["pixels"] == int((_ground_truth(0) > 0).sum() + (_ground_truth(1) > 0).sum())
    assert written["mode"] == "recorded"
    assert written["recorded_bag"] == str(recorded) and written["recorded_topic"] == "/depth/image"
    assert written["frames_recorded"] == 4 and written["frames_ground_truth"] == 5
    assert written["frames_scored"] == 2  # frames 0 and 1 (1 paired within the slop)
    assert written["frames_without_gt"] == 1  # frame 4, 60 ms off
    assert written["frames_missing_prediction"] == 2  # frame 2 (lost) and frame 4 (nothing within the slop)
    assert written["drops"] == {"size_mismatch": 1} and written["frames_dropped"] == 1  # frame 3

    with open(tmp_path / "report" / "frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["stamp_ns"]) for r in rows] == [_stamp(0), _stamp(1, 20 * MS), _stamp(4, 60 * MS)]
    assert rows[0]["total_ms"] == "" and rows[2]["rmse_mm"] == ""  # nothing timed; frame 4 unscored
    assert np.mean([float(r["rmse_mm"]) for r in rows[:2]]) == pytest.approx(expected["rmse_mm"], rel=1e-4)
    assert (tmp_path / "report" / "error_by_distance.png").is_file()
    # Panels where the source has the frame's image (frame 4's is 60 ms away: none).
    panels = sorted(p.name for p in (tmp_path / "report" / "panels").iterdir())
    assert panels == ["frame_00000.png", "frame_00001.png"]
    assert written["report"]["panels"] == [str(tmp_path / "report" / "panels" / name) for name in panels]


def test_recorded_frames_without_any_ground_truth_are_counted(source_bag, tmp_path):
    far = _stamp(0, -10 * PERIOD_NS)
    recorded = _recorded_bag(tmp_path / "recorded", [(far, _prediction(0), "32FC1"),
                                                     (far, _prediction(0), "32FC1"),
                                                     (_stamp(2), _prediction(2), "32FC1")])
    summary = evaluate_recorded(source_bag, recorded, tmp_path / "report", panels=0, progress=False, slop_s=0.0)
    assert summary["frames_processed"] == 2 and summary["frames_scored"] == 1 and summary["frames_without_gt"] == 1
    assert summary["drops"] == {"duplicate_stamp": 1}
    assert summary["frames_missing_prediction"] == 4
    assert summary["rmse_mm"] == pytest.approx(_expected([(_prediction(2), _ground_truth(2))])["rmse_mm"], rel=1e-5)
    assert not (tmp_path / "report" / "panels").exists()


def test_the_recorded_topic_falls_back_to_the_only_image_topic_or_names_the_candidates(source_bag, tmp_path, caplog):
    single = _recorded_bag(tmp_path / "single", [(_stamp(0), _prediction(0), "32FC1")], topics=("/camera/depth",))
    summary = evaluate_recorded(source_bag, single, tmp_path / "report", panels=0, progress=False)
    assert summary["recorded_topic"] == "/camera/depth" and summary["frames_scored"] == 1
    assert "no topic /depth/image" in caplog.text and "/camera/depth" in caplog.text

    several = _recorded_bag(tmp_path / "several", [(_stamp(0), _prediction(0), "32FC1")],
                            topics=("/depth/raw", "/depth/image_colorized"))
    with pytest.raises(BagError, match=r"no topic /depth/image .*Image topics: /depth/image_colorized, /depth/raw"):
        evaluate_recorded(source_bag, several, tmp_path / "report2", panels=0, progress=False)
    # The same rule for a topic that was asked for by name; and a bag without any Image topic.
    with pytest.raises(BagError, match=r"no topic /depth .*/depth/image_colorized, /depth/raw"):
        recorded_depth_topic(several, bag_topics(several), "/depth")
    with pytest.raises(BagError, match=r"Image topics: none"):
        recorded_depth_topic("x", {"/depth/camera_info": ("sensor_msgs/msg/CameraInfo", 3)})
    with pytest.raises(BagError, match=r"has no topic /ground_truth"):
        evaluate_recorded(source_bag, single, tmp_path / "report3", topics=BagTopics(ground_truth="/ground_truth"),
                          progress=False)


def test_cli_scores_a_recording_end_to_end(source_bag, tmp_path, capsys):
    recorded = _recorded_bag(tmp_path / "recorded", _live_run())
    out = tmp_path / "report"
    assert dcros(["eval-bag", str(source_bag), "--recorded-depth", str(recorded), "--recorded-topic", "/depth/image",
                  "--slop", "0.05", "--panels", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["mode"] == "recorded" and summary["frames_scored"] == 2
    assert f"RMSE  {summary['rmse_mm']:10.2f} mm" in printed
    assert "2 of 5 ground-truth frames have no recorded depth" in printed and str(out / "metrics.json") in printed
    assert [p.name for p in (out / "panels").iterdir()] == ["frame_00000.png"]
    # A recording needs ground truth, and no pipeline runs to write predictions: clear errors, exit code 2.
    assert dcros(["eval-bag", str(source_bag), "--recorded-depth", str(recorded), "--gt-topic", "none",
                  "--out", str(tmp_path / "none")]) == 2
    assert dcros(["eval-bag", str(source_bag), "--recorded-depth", str(recorded), "--predictions-bag",
                  str(tmp_path / "pred"), "--out", str(tmp_path / "pred_report")]) == 2
    assert "--gt-topic" in capsys.readouterr().err
