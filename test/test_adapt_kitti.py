"""`dcros adapt` on a KITTI raw drive folder and on its `dcros kitti2bag --no-ground-truth` bag: the same
targets either way (OXTS poses read directly, or from /tf), scored against the drive's ground truth."""
from __future__ import annotations

import json

import numpy as np
import pytest

from depth_completion_ros.cli import main as dcros
from depth_completion_ros.data.image_io import read_depth_png
from depth_completion_ros.data.rosbag import KITTI_DEPTH_GT_TOPIC, TF_TOPIC, bag_topics
from depth_completion_ros.data.synth.writer import DATE, drive_name

pytest.importorskip("torch")

FRAMES = 6  # the synthetic_drive fixture's (test/conftest.py)
DRIVE = drive_name(1)


@pytest.fixture
def world(synthetic_drive):
    """A 6-frame synthetic drive with a coarse LiDAR and its ground truth (test/conftest.py)."""
    return synthetic_drive


def _adapt(recording, out, world) -> dict:
    argv = ["adapt", str(recording), "--out", str(out), "--epochs", "1", "--batch-size", "2", "--neighbours", "2",
            "--val-fraction", "0.2", "--ground-truth", str(world), "--no-progress"]
    assert dcros(argv) == 0
    return json.loads((out / "adaptation.json").read_text())


def test_raw_drive_and_its_bag_give_the_same_targets(world, tmp_path):
    bag = tmp_path / "drive_bag"
    assert dcros(["kitti2bag", "--kitti-root", str(world), "--drive", DRIVE, "--out", str(bag),
                  "--no-ground-truth"]) == 0
    topics = bag_topics(bag)
    assert KITTI_DEPTH_GT_TOPIC not in topics and topics[TF_TOPIC][1] == FRAMES

    from_raw = _adapt(world / "kitti_raw" / DATE / DRIVE, tmp_path / "raw", world)
    from_bag = _adapt(bag, tmp_path / "bag", world)
    raw_record, bag_record = from_raw["recordings"][0], from_bag["recordings"][0]
    assert raw_record["fixed_frame"] == "oxts" and bag_record["fixed_frame"] == "world"
    assert raw_record["train_frames"] == bag_record["train_frames"] == 5 and raw_record["val_frames"] == 1
    # The targets are denser than a sweep and close to the ground truth (matched by camera stamp for the bag).
    for summary in (from_raw, from_bag):
        truth = summary["data"]["target_vs_ground_truth"]
        assert truth["frames"] == 5 and truth["mae_mm"] < 150
        assert summary["recordings"][0]["target_density"] > 2 * summary["recordings"][0]["sweep_density"]
    # Frame for frame the same targets. The bag's poses come from /tf at the sweep's stamp (interpolated between
    # OXTS stamps), the drive's from the OXTS packet of the frame: the synthetic sweeps are stamped up to 0.6 ms
    # off the frame's instant, some 6 mm of motion, which moves a few near points by a pixel.
    raw_targets = sorted((tmp_path / "raw" / "data" / "data_depth_annotated" / "train").rglob("*.png"))
    bag_targets = sorted((tmp_path / "bag" / "data" / "data_depth_annotated" / "train").rglob("*.png"))
    assert len(raw_targets) == len(bag_targets) == 5
    for raw_png, bag_png in zip(raw_targets, bag_targets):
        a, b = read_depth_png(raw_png), read_depth_png(bag_png)
        both = (a > 0) & (b > 0)
        assert both.sum() >= 0.9 * max(np.count_nonzero(a), np.count_nonzero(b))
        assert np.mean(np.abs(a[both] - b[both]) <= 0.02) >= 0.99
    assert (tmp_path / "bag" / "adapted.pt").is_file() and (tmp_path / "raw" / "adapted.md").is_file()
