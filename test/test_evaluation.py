"""Rosbag and KITTI-folder evaluation: the same frames give the same figures through both paths, the report
is complete, and bad bags get clear errors."""
import csv
import json

import numpy as np
import pytest
import torch

from depth_completion_ros.cli import main as dcros
from depth_completion_ros.data.image_io import read_depth_png
from depth_completion_ros.data.kitti import KittiDepthCompletion, KittiRawDrive
from depth_completion_ros.data.rosbag import BagError, open_bag_writer, read_bag, write_kitti_drive_bag
from depth_completion_ros.evaluation.bag_eval import PREDICTION_TOPIC, BagTopics, evaluate_bag, evaluate_recorded
from depth_completion_ros.evaluation.kitti_eval import evaluate_kitti
from depth_completion_ros.evaluation.metrics import DepthMetrics
from depth_completion_ros.inference import Engine
from depth_completion_ros.models import build_model
from depth_completion_ros.models.checkpoint import save_checkpoint
from depth_completion_ros.pipeline import FrameProcessor

VAL_DRIVE = "2000_01_01_drive_0002_sync"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_cdspn.pt"
    save_checkpoint(path, build_model("cdspn_x32", width=8, iterations=2), metadata={"purpose": "tests"})
    return path


@pytest.fixture(scope="module")
def processor(checkpoint):
    return FrameProcessor(Engine.from_checkpoint(checkpoint, device="cpu", precision="fp32"))


@pytest.fixture(scope="module")
def val_bag(synthetic_kitti, tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "val_drive"
    write_kitti_drive_bag(KittiRawDrive(synthetic_kitti / "kitti_raw", VAL_DRIVE), path, depth_root=synthetic_kitti)
    return path


def test_eval_bag_agrees_with_eval_kitti_on_the_same_frames(synthetic_kitti, val_bag, processor, tmp_path):
    from_bag = evaluate_bag(val_bag, processor, tmp_path / "bag", panels=1, progress=False)
    from_kitti = evaluate_kitti(synthetic_kitti, "val", processor, tmp_path / "kitti", panels=1, progress=False)
    assert from_bag["frames_scored"] == from_kitti["frames_scored"] == 2
    assert from_bag["frames_dropped"] == 0
    # The KITTI path reads sparse depth quantised to 1/256 m; the bag path projects the float cloud.
    for key in ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km"):
        assert from_bag[key] == pytest.approx(from_kitti[key], rel=2e-3), key
    assert from_bag["pixels"] == from_kitti["pixels"]


def test_eval_bag_scores_exactly_what_the_pipeline_predicts(synthetic_kitti, val_bag, processor, tmp_path):
    summary = evaluate_bag(val_bag, processor, tmp_path, panels=2, progress=False,
                           predictions_bag=tmp_path / "predictions")
    # Independent scoring of the predictions recorded in the output bag against the KITTI PNGs.
    reference = DepthMetrics()
    drive = KittiRawDrive(synthetic_kitti / "kitti_raw", VAL_DRIVE)
    predicted = [r.msg for r in read_bag(tmp_path / "predictions", [PREDICTION_TOPIC])]
    assert len(predicted) == 2
    from depth_completion_ros.data.messages import depth_from_image
    for frame_id, msg in zip(drive.frame_ids, predicted):
        gt = read_depth_png(drive.annotation_path(synthetic_kitti, frame_id))
        reference.update(depth_from_image(msg), gt)
    expected = reference.compute()
    for key in ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km", "pixels"):
        assert summary[key] == pytest.approx(expected[key], rel=1e-6), key

    written = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km", "frames_scored", "frames_dropped"):
        assert key in written
    assert set(written["latency_ms"]["total"]) >= {"p50", "p90", "p99"}
    with open(tmp_path / "frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and float(rows[0]["total_ms"]) > 0
    per_frame = np.mean([float(r["rmse_mm"]) for r in rows])
    assert per_frame == pytest.approx(summary["rmse_mm"], rel=1e-4)  # KITTI's mean over images
    for name in ("error_by_distance.png", "latency.png", "panels/frame_00000.png", "panels/frame_00001.png"):
        assert (tmp_path / name).stat().st_size > 1000
    bins = written["error_by_distance"]
    assert sum(b["pixels"] for b in bins) == summary["pixels"]


def test_recorded_mode_scores_the_pipelines_own_predictions_the_same(val_bag, processor, tmp_path):
    """The predictions that pipeline mode writes to a (Jazzy, v9 MCAP) bag, scored in recorded mode (no
    network) against the same source, give the same figures."""
    pipeline = evaluate_bag(val_bag, processor, tmp_path / "pipeline", panels=0, progress=False,
                            predictions_bag=tmp_path / "predictions", predictions_distro="jazzy")
    recorded = evaluate_recorded(val_bag, tmp_path / "predictions", tmp_path / "recorded",
                                 recorded_topic=PREDICTION_TOPIC, panels=1, progress=False)
    assert pipeline["mode"] == "pipeline" and recorded["mode"] == "recorded"
    assert recorded["recorded_topic"] == PREDICTION_TOPIC
    assert recorded["frames_scored"] == pipeline["frames_scored"] == 2
    assert recorded["frames_missing_prediction"] == 0 and recorded["frames_dropped"] == 0
    for key in ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km", "delta1", "pixels", "missing"):
        assert recorded[key] == pytest.approx(pipeline[key], rel=1e-9), key
    assert recorded["error_by_distance"] == pipeline["error_by_distance"]
    assert (tmp_path / "recorded" / "panels" / "frame_00000.png").stat().st_size > 1000


def test_eval_kitti_writes_devkit_ready_pngs_that_score_the_same(synthetic_kitti, checkpoint, tmp_path, capsys):
    code = dcros(["eval-kitti", "--data", str(synthetic_kitti), "--split", "val_selection_cropped",
                  "--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(tmp_path / "eval")])
    assert code == 0
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    gt_dir = synthetic_kitti / "data_depth_selection" / "val_selection_cropped" / "groundtruth_depth"
    predicted = sorted(p.name for p in (tmp_path / "eval" / "predictions").iterdir())
    assert predicted == sorted(p.name for p in gt_dir.iterdir())
    # The written PNGs, scored by the metrics command, give the figures of the run (up to 1/256 m rounding).
    assert dcros(["metrics", "--gt", str(gt_dir), "--pred", str(tmp_path / "eval" / "predictions"),
                  "--json", str(tmp_path / "rescored.json")]) == 0
    rescored = json.loads((tmp_path / "rescored.json").read_text())
    frames = len(KittiDepthCompletion(synthetic_kitti, "val_selection_cropped"))
    assert rescored["images"] == summary["frames_scored"] == frames
    assert rescored["rmse_mm"] == pytest.approx(summary["rmse_mm"], rel=1e-3)


def test_bag_without_the_named_topic_or_messages_is_refused(val_bag, processor, tmp_path):
    with pytest.raises(BagError, match=r"has no topic /camera/depth .*topics: .*/kitti/velo/pointcloud"):
        evaluate_bag(val_bag, processor, tmp_path, topics=BagTopics(ground_truth="/camera/depth"), progress=False)
    empty = tmp_path / "empty"
    with open_bag_writer(empty) as bag:
        bag.add_topic("/kitti/camera_color_left/image_raw", "sensor_msgs/msg/Image")
    with pytest.raises(BagError, match="no"):
        evaluate_bag(empty, processor, tmp_path / "out", progress=False)


def _wall_bag(path, frames):
    """A bag of small synthetic wall frames; `frames` lists, per frame, the CameraInfo size (None = right)."""
    from depth_completion_ros.ros.synthetic import wall_frame

    with open_bag_writer(path) as bag:
        for topic, msgtype in (("/image", "sensor_msgs/msg/Image"), ("/info", "sensor_msgs/msg/CameraInfo"),
                               ("/points", "sensor_msgs/msg/PointCloud2")):
            bag.add_topic(topic, msgtype)
        for index, info_size in enumerate(frames):
            stamp = 1_000_000_000 + index * 100_000_000
            frame = wall_frame(bag.types, stamp, width=48, height=32, camera_info_size=info_size)
            for topic, msg in (("/image", frame.image), ("/info", frame.camera_info), ("/points", frame.cloud)):
                bag.write(topic, stamp, msg)
    return frame.lidar_to_camera


def test_frames_that_cannot_be_processed_are_counted_not_fatal(processor, tmp_path):
    """An image whose size disagrees with its CameraInfo drops that frame, counted by reason; the others
    are processed. A bag in which no frame can be processed is an error naming the first cause."""
    topics = BagTopics(image="/image", camera_info="/info", points="/points", ground_truth=None)
    transform = _wall_bag(tmp_path / "mixed", [None, (40, 32), None])
    summary = evaluate_bag(tmp_path / "mixed", processor, tmp_path / "mixed_report", topics=topics,
                           lidar_to_camera=transform, panels=0, progress=False)
    assert summary["frames_processed"] == 2 and summary["frames_without_gt"] == 2
    assert summary["drops"] == {"ValueError": 1} and summary["frames_dropped"] == 1
    _wall_bag(tmp_path / "broken", [(40, 32), (40, 32)])
    with pytest.raises(ValueError, match=r"no frame could be processed .*48x32.*40x32"):
        evaluate_bag(tmp_path / "broken", processor, tmp_path / "broken_report", topics=topics,
                     lidar_to_camera=transform, panels=0, progress=False)


def test_demo_runs_the_whole_chain_and_reports_model_and_baseline(checkpoint, tmp_path, capsys):
    out = tmp_path / "demo"
    assert dcros(["demo", "--out", str(out), "--frames", "1", "--model", str(checkpoint), "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["frames_scored"] == summary["baseline"]["frames_scored"] == 1
    assert summary["baseline"]["name"] == "baseline:morphological"
    report = json.loads((out / "report" / "metrics.json").read_text())
    assert report["rmse_mm"] == pytest.approx(summary["model"]["rmse_mm"])
    assert (out / "bag" / "metadata.yaml").is_file() and list((out / "report" / "panels").glob("*.png"))
    printed = capsys.readouterr().out
    assert "baseline:morphological" in printed and str(out / "report" / "metrics.json") in printed
    # A second run replaces its own folder; a folder the demo did not make is refused.
    assert dcros(["demo", "--out", str(out), "--frames", "1", "--model", str(checkpoint), "--device", "cpu",
                  "--baseline", "none"]) == 0
    assert "baseline" not in json.loads((out / "summary.json").read_text())
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert dcros(["demo", "--out", str(foreign), "--model", str(checkpoint)]) == 2
    assert (foreign / "notes.txt").read_text() == "keep me"
