"""eval-bag --kitti-gt: a bag without a ground-truth topic is scored against KITTI's ground-truth PNGs, each
camera image matched to its drive frame by header stamp (against image_02/timestamps.txt) or by order."""
import csv
import json
import logging
import shutil

import numpy as np
import pytest

from depth_completion_ros.baselines import BaselineEngine
from depth_completion_ros.cli import main as dcros
from depth_completion_ros.data.image_io import read_depth_png, write_depth_png
from depth_completion_ros.data.kitti import KittiRawDrive, find_groundtruth_folder, find_raw_drive_folder
from depth_completion_ros.data.rosbag import BagError, write_kitti_drive_bag
from depth_completion_ros.data.synth.writer import format_timestamp
from depth_completion_ros.evaluation.bag_eval import BagTopics, KittiGroundTruth, evaluate_bag
from depth_completion_ros.pipeline import FrameProcessor

DRIVE = "2000_01_01_drive_0002_sync"  # val split
TRAIN_DRIVE = "2000_01_01_drive_0001_sync"
NO_GT_TOPIC = BagTopics(ground_truth=None)


@pytest.fixture(scope="module")
def raw(synthetic_kitti):
    return KittiRawDrive(synthetic_kitti / "kitti_raw", DRIVE)


@pytest.fixture(scope="module")
def gt_dir(synthetic_kitti):
    return synthetic_kitti / "data_depth_annotated" / "val" / DRIVE / "proj_depth" / "groundtruth" / "image_02"


@pytest.fixture(scope="module")
def processor():
    return FrameProcessor(BaselineEngine("nearest"))


@pytest.fixture(scope="module")
def bag(raw, tmp_path_factory):
    """kitti2bag's layout without a ground-truth topic."""
    path = tmp_path_factory.mktemp("bags") / "no_gt"
    counts = write_kitti_drive_bag(raw, path)
    assert "/kitti/camera_color_left/depth_gt" not in counts
    return path


def _per_frame(raw, processor, gt_paths):
    """{frame: (rmse mm, mae mm, pixels)} computed here from the drive's files against the given PNGs."""
    calibration = raw.calibration
    figures = {}
    for frame, path in gt_paths.items():
        dense = processor.process(raw.read_image(frame), raw.read_velodyne(frame), camera=calibration.camera,
                                  lidar_to_camera=calibration.lidar_to_camera).dense
        gt = read_depth_png(path)
        valid = gt > 0
        error = dense[valid].astype(np.float64) - gt[valid]
        figures[frame] = (np.sqrt(np.mean(error ** 2)) * 1000, np.mean(np.abs(error)) * 1000, int(valid.sum()))
    return figures


def _assert_scored(summary, figures):
    # The bag's transform went through quaternions and an inverse, so a LiDAR point on a pixel border may
    # land one pixel over (one pixel of ~80k moves the RMSE by ~1e-6): hence rel=1e-5, not equality.
    assert summary["frames_scored"] == len(figures)
    assert summary["pixels"] == sum(f[2] for f in figures.values())
    assert summary["rmse_mm"] == pytest.approx(np.mean([f[0] for f in figures.values()]), rel=1e-5)
    assert summary["mae_mm"] == pytest.approx(np.mean([f[1] for f in figures.values()]), rel=1e-5)


def _raw_copy(raw, folder, shift_ns):
    """The drive's raw folder with only its camera timestamps, shifted by `shift_ns`."""
    drive = folder / raw.name
    (drive / "image_02").mkdir(parents=True)
    start = 12 * 3600 * 10 ** 9  # format_timestamp counts from 2000-01-01 12:00
    epoch_2000 = 946_684_800 * 10 ** 9
    lines = [format_timestamp(int(s) + shift_ns - epoch_2000 - start) for s in raw.image_timestamps_ns]
    (drive / "image_02" / "timestamps.txt").write_text("\n".join(lines) + "\n")
    return drive


def test_matched_by_stamp_the_figures_are_those_of_the_ground_truth_topic(synthetic_kitti, raw, gt_dir, bag,
                                                                          processor, tmp_path):
    source = KittiGroundTruth.from_folders(synthetic_kitti / "data_depth_annotated", raw.path)
    assert (source.drive, source.folder, source.match) == (DRIVE, gt_dir, "stamp")
    summary = evaluate_bag(bag, processor, tmp_path / "kitti", panels=1, progress=False, kitti_gt=source)
    _assert_scored(summary, _per_frame(raw, processor, {f: gt_dir / f"{f:010d}.png" for f in raw.frame_ids}))
    assert summary["kitti_gt"] == {"folder": str(gt_dir), "drive": DRIVE, "camera": "image_02", "match": "stamp",
                                   "tolerance_s": 0.02, "first_frame": None, "frames_matched": 2,
                                   "frames_unmatched": 0, "frames_without_gt_png": 0, "max_offset_s": 0.0}
    assert summary["topics"]["ground_truth"] is None
    with open(tmp_path / "kitti" / "frames.csv") as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    assert names == [f"{DRIVE}/image_02/{frame:010d}" for frame in raw.frame_ids]

    # The same drive written with its ground truth as a topic scores the same.
    with_topic = tmp_path / "with_topic"
    write_kitti_drive_bag(raw, with_topic, depth_root=synthetic_kitti)
    from_topic = evaluate_bag(with_topic, processor, tmp_path / "topic", panels=0, progress=False)
    for key in ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km", "pixels", "frames_scored"):
        assert summary[key] == from_topic[key], key


def test_the_largest_offset_is_reported_and_bounded_by_the_tolerance(raw, gt_dir, bag, processor, tmp_path):
    shifted = _raw_copy(raw, tmp_path / "raw", shift_ns=3_000_000)  # the files 3 ms later than the bag
    summary = evaluate_bag(bag, processor, tmp_path / "report", panels=0, progress=False,
                           kitti_gt=KittiGroundTruth.from_folders(gt_dir, shifted))
    assert summary["frames_scored"] == 2 and summary["kitti_gt"]["max_offset_s"] == pytest.approx(0.003)
    with pytest.raises(BagError, match=r"none of the 2 camera stamps .* within 0.002 s of a timestamp of drive "
                                       r"2000_01_01_drive_0002_sync \(the bag's first stamp is -0.003 s from the "
                                       r"drive's first\); .*--match index"):
        evaluate_bag(bag, processor, tmp_path / "tight", panels=0, progress=False,
                     kitti_gt=KittiGroundTruth.from_folders(gt_dir, shifted, tolerance_s=0.002))
    local_time = _raw_copy(raw, tmp_path / "local", shift_ns=2 * 3600 * 10 ** 9)
    with pytest.raises(BagError, match=r"first stamp is -7200.000 s from the drive's first, about -2 h: stamps "
                                       r"written in local time instead of UTC\?"):
        evaluate_bag(bag, processor, tmp_path / "local_report", panels=0, progress=False,
                     kitti_gt=KittiGroundTruth.from_folders(gt_dir, local_time))


def test_frames_without_a_png_are_counted_and_a_png_of_another_size_is_dropped(raw, gt_dir, bag, processor,
                                                                               tmp_path):
    partial = tmp_path / DRIVE / "proj_depth" / "groundtruth" / "image_02"
    partial.mkdir(parents=True)
    shutil.copy(gt_dir / "0000000001.png", partial)  # frame 0 has no ground truth, as KITTI's first frames
    summary = evaluate_bag(bag, processor, tmp_path / "report", panels=0, progress=False,
                           kitti_gt=KittiGroundTruth.from_folders(partial, raw.path))
    _assert_scored(summary, _per_frame(raw, processor, {1: partial / "0000000001.png"}))
    assert summary["frames_without_gt"] == 1 and summary["kitti_gt"]["frames_without_gt_png"] == 1
    assert summary["kitti_gt"]["frames_matched"] == 2

    cropped = read_depth_png(partial / "0000000001.png")[23:, 13:1229]  # KITTI's 1216x352 benchmark crop
    write_depth_png(partial / "0000000001.png", cropped)
    summary = evaluate_bag(bag, processor, tmp_path / "cropped", panels=0, progress=False,
                           kitti_gt=KittiGroundTruth.from_folders(partial, raw.path))
    assert summary["frames_scored"] == 0 and summary["drops"] == {"size_mismatch": 1}
    assert summary["frames_processed"] == 1  # frame 0, without ground truth


def test_matched_by_order_from_a_first_frame(raw, gt_dir, bag, processor, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    source = KittiGroundTruth.from_folders(gt_dir, match="index")  # no raw folder needed
    summary = evaluate_bag(bag, processor, tmp_path / "report", panels=0, progress=False, kitti_gt=source)
    _assert_scored(summary, _per_frame(raw, processor, {f: gt_dir / f"{f:010d}.png" for f in raw.frame_ids}))
    assert summary["kitti_gt"]["match"] == "index" and summary["kitti_gt"]["max_offset_s"] is None
    assert "lost no image" in caplog.text

    # Told that the bag starts at frame 1: its first image is scored against frame 1's PNG, its second
    # image would be frame 2, which has none.
    source = KittiGroundTruth.from_folders(gt_dir, match="index", first_frame=1)
    summary = evaluate_bag(bag, processor, tmp_path / "from1", panels=0, progress=False, kitti_gt=source)
    assert summary["kitti_gt"]["first_frame"] == 1 and summary["kitti_gt"]["frames_without_gt_png"] == 1
    assert summary["frames_scored"] == 1 and summary["frames_without_gt"] == 1


def test_folders_are_found_from_any_level_and_contradictions_refused(synthetic_kitti, raw, gt_dir):
    annotated = synthetic_kitti / "data_depth_annotated"
    for path, drive in ((gt_dir, None), (gt_dir.parents[2], None), (annotated, DRIVE), (synthetic_kitti, DRIVE)):
        assert find_groundtruth_folder(path, drive) == (gt_dir, DRIVE), path
    with pytest.raises(ValueError, match=rf"ground truth of 2 drives; name one with --drive \(drives: "
                                         rf"{TRAIN_DRIVE}, {DRIVE}\)"):
        find_groundtruth_folder(annotated)
    with pytest.raises(ValueError, match=rf"belongs to drive {DRIVE}, not {TRAIN_DRIVE}"):
        find_groundtruth_folder(gt_dir, TRAIN_DRIVE)
    with pytest.raises(FileNotFoundError, match="no ground truth of drive 2000_01_01_drive_0009_sync"):
        find_groundtruth_folder(annotated, "2000_01_01_drive_0009_sync")

    kitti_raw = synthetic_kitti / "kitti_raw"
    for path in (raw.path, raw.path.parent, kitti_raw, synthetic_kitti):
        assert find_raw_drive_folder(path, DRIVE) == raw.path, path
    with pytest.raises(ValueError, match=rf"raw folder .* is drive {DRIVE}, but the ground truth is of drive "
                                         rf"{TRAIN_DRIVE}"):
        find_raw_drive_folder(raw.path, TRAIN_DRIVE)
    # The drive of a data_depth_annotated root comes from the raw drive folder's name.
    assert KittiGroundTruth.from_folders(annotated, raw.path).drive == DRIVE
    with pytest.raises(ValueError, match=r"needs its camera timestamps: give the KITTI raw folder \(--kitti-raw\)"):
        KittiGroundTruth.from_folders(gt_dir)


def test_cli_scores_against_kitti_folders_and_refuses_conflicting_flags(synthetic_kitti, raw, bag, tmp_path,
                                                                        capsys):
    out = tmp_path / "report"
    assert dcros(["eval-bag", str(bag), "--model", "baseline:nearest", "--kitti-gt",
                  str(synthetic_kitti / "data_depth_annotated"), "--kitti-raw", str(synthetic_kitti / "kitti_raw"),
                  "--drive", DRIVE, "--panels", "0", "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["frames_scored"] == 2 and summary["kitti_gt"]["match"] == "stamp"
    printed = capsys.readouterr().out
    assert (f"KITTI ground truth of {DRIVE}: 2 frames matched by stamp within 0.02 s (largest offset 0.000 ms), "
            "0 unmatched, 0 without a PNG") in printed
    assert dcros(["eval-bag", str(bag), "--model", "baseline:nearest", "--kitti-gt", str(out), "--match", "index",
                  "--first-frame", "0", "--out", str(tmp_path / "x")]) == 2  # not a ground-truth folder
    assert dcros(["eval-bag", str(bag), "--model", "baseline:nearest", "--match", "index",
                  "--out", str(tmp_path / "x")]) == 2
    assert dcros(["eval-bag", str(bag), "--model", "baseline:nearest", "--kitti-gt", str(synthetic_kitti),
                  "--drive", DRIVE, "--gt-topic", "/depth_gt", "--out", str(tmp_path / "x")]) == 2
    assert dcros(["eval-bag", str(bag), "--model", "baseline:nearest", "--kitti-gt", str(synthetic_kitti),
                  "--drive", DRIVE, "--out", str(tmp_path / "x")]) == 2  # by stamp without --kitti-raw
    errors = capsys.readouterr().err
    for expected in ("neither a drive's proj_depth/groundtruth/image_02 folder", "--match goes with --kitti-gt",
                     "--kitti-gt and --gt-topic both", "give the KITTI raw folder (--kitti-raw)"):
        assert expected in errors, expected
