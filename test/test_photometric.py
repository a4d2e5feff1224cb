"""Photometric consistency with neighbouring frames (`training.photometric`, `KittiDepthCompletion(views=k)`):
on rendered synthetic frames the true depth reconstructs the frame better than a wrong one, through crops and
mirroring; the views are the neighbours' images cut like the frame; the loss reaches `dcros train` and
`dcros adapt`."""
from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depth_completion_ros.baselines import nearest_fill  # noqa: E402
from depth_completion_ros.cli import main as dcros  # noqa: E402
from depth_completion_ros.data import kitti  # noqa: E402
from depth_completion_ros.data.kitti import KittiDepthCompletion, KittiRawDrive  # noqa: E402
from depth_completion_ros.data.synth.writer import DATE, drive_name  # noqa: E402
from depth_completion_ros.training.config import ConfigError, DistillationConfig, LossConfig, TrainConfig  # noqa: E402
from depth_completion_ros.training.losses import PhotometricCriterion, build_criterion  # noqa: E402
from depth_completion_ros.training.photometric import PhotometricLoss, warp_view  # noqa: E402


@pytest.fixture
def world(synthetic_drive):
    """A 6-frame rendered drive (test/conftest.py)."""
    return synthetic_drive


def _loss(item: dict, depth: torch.Tensor, poses: torch.Tensor | None = None) -> float:
    value, _ = PhotometricLoss()(depth, item["rgb"][None], item["K"][None], item["views"][None],
                                 (item["view_poses"] if poses is None else poses)[None], item["view_valid"][None])
    return float(value)


def _true_depth(item: dict) -> torch.Tensor:
    """The frame's ground truth, filled to every pixel (the nearest return): the depth a good model predicts."""
    return torch.from_numpy(nearest_fill(item["gt"][0].numpy()))[None, None]


def test_the_true_depth_reconstructs_the_frame_best(world):
    data = KittiDepthCompletion(world, "train", views=1)
    item = data[1]
    assert item["view_valid"].tolist() == [True, True]
    true = _true_depth(item)
    right = _loss(item, true)
    for scale in (0.8, 1.25):
        assert right < 0.8 * _loss(item, true * scale)


def test_crops_and_mirroring_keep_the_views_consistent(world):
    plain = KittiDepthCompletion(world, "train", views=1)[1]
    data = KittiDepthCompletion(world, "train", views=1, augment=True, jitter=0.0)
    mirrored = None
    for epoch in range(16):  # an epoch whose draw mirrors frame 1
        data.set_epoch(epoch)
        item = data[1]
        if torch.equal(item["rgb"], plain["rgb"].flip(-1)):
            mirrored = item
            break
    assert mirrored is not None
    right = _loss(plain, _true_depth(plain))
    assert _loss(mirrored, _true_depth(mirrored)) == pytest.approx(right, rel=0.05)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(mirrored["view_poses"], mirror @ plain["view_poses"] @ mirror)
    # The synthetic car drives straight, where mirroring changes little; with a turn and a sideways step, warping
    # the mirrored frame with the mirrored motion is warping the frame and mirroring the result.
    turn = torch.eye(4)
    angle = torch.tensor(0.05)
    turn[0, 0], turn[0, 2], turn[2, 0], turn[2, 2] = angle.cos(), angle.sin(), -angle.sin(), angle.cos()
    turn[:3, 3] = torch.tensor([0.4, -0.1, -0.9])
    depth = _true_depth(plain)
    warped, inside = warp_view(depth, plain["K"][None], turn[None], plain["views"][None, 1])
    flipped, flipped_inside = warp_view(depth.flip(-1), mirrored["K"][None], (mirror @ turn @ mirror)[None],
                                        plain["views"][None, 1].flip(-1))
    both = inside & flipped_inside.flip(-1)
    assert both.float().mean() > 0.5
    torch.testing.assert_close(flipped.flip(-1)[both.expand_as(warped)], warped[both.expand_as(warped)],
                               atol=2e-4, rtol=0)
    unmirrored, _ = warp_view(depth.flip(-1), mirrored["K"][None], turn[None], plain["views"][None, 1].flip(-1))
    assert (unmirrored.flip(-1) - warped).abs()[both.expand_as(warped)].mean() > 0.01

    cropped = KittiDepthCompletion(world, "train", views=1, augment=True, jitter=0.3, random_crop=(128, 384))
    for epoch in range(3):
        cropped.set_epoch(epoch)
        item = cropped[1]
        assert item["views"].shape == (2, 3, 128, 384)
        true = _true_depth(item)
        assert _loss(item, true) < 0.9 * min(_loss(item, true * 1.25), _loss(item, true * 0.8))


def test_views_are_the_neighbours_images_of_the_same_split(world, tmp_path):
    data = KittiDepthCompletion(world, "train", views=1)
    assert data.view_offsets() == [-1, 1]
    first, second = data[0], data[1]
    assert first["view_valid"].tolist() == [False, True]  # no frame before the first
    assert not first["views"][0].any()
    drive = KittiRawDrive(world / "kitti_raw", drive_name(1))
    image = drive.read_image(0).astype(np.float32) / 255.0
    np.testing.assert_array_equal(second["views"][0].numpy(), image[-352:, 13:13 + 1216].transpose(2, 0, 1))
    poses = drive.camera_poses()
    np.testing.assert_allclose(second["view_poses"][1].numpy(), np.linalg.inv(poses[2]) @ poses[1], atol=1e-5)

    # A drive without its motion is named, not trained on with identity poses.
    for path in (world / "kitti_raw").rglob("*"):
        target = tmp_path / path.relative_to(world)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif "oxts" not in path.parts:
            target.symlink_to(path)
    for folder in ("data_depth_velodyne", "data_depth_annotated"):
        (tmp_path / folder).symlink_to(world / folder)
    with pytest.raises(FileNotFoundError, match=f"{drive_name(1)}.*neither lidar_poses.txt nor OXTS"):
        KittiDepthCompletion(tmp_path, "train", views=1)[1]


def test_the_views_share_the_frame_s_colour_jitter():
    rgb = np.random.default_rng(0).random((8, 12, 3), dtype=np.float32)
    jittered, (view,) = kitti._colour_jitter(rgb, np.random.default_rng(1), 0.3, [rgb.copy()])
    np.testing.assert_array_equal(view, jittered)
    alone, _ = kitti._colour_jitter(rgb, np.random.default_rng(1), 0.3)
    np.testing.assert_array_equal(alone, jittered)


def test_configuration_and_criterion():
    loss = LossConfig.parse({"type": "l1", "photometric_weight": 0.5, "photometric_views": 2})
    assert (loss.photometric_weight, loss.photometric_views) == (0.5, 2)
    with pytest.raises(ConfigError, match="loss.photometric_views"):
        LossConfig.parse({"photometric_views": 0})
    criterion = build_criterion(loss, DistillationConfig())
    assert isinstance(criterion, PhotometricCriterion) and not criterion.needs_teacher
    depth = torch.ones(1, 1, 8, 8)
    with pytest.raises(ValueError, match="neighbouring views"):
        criterion(depth, depth)
    # Written only when on, as configurations without it were written.
    config = TrainConfig.from_dict({"model": {"name": "cdspn_x32"}, "schedule": {"epochs": 1}})
    assert "photometric_weight" not in config.to_dict()["loss"]


def test_adapt_trains_with_the_photometric_term(world, tmp_path):
    drive_folder = world / "kitti_raw" / DATE / drive_name(1)
    out = tmp_path / "adapted"
    assert dcros(["adapt", str(drive_folder), "--out", str(out), "--epochs", "1", "--batch-size", "2",
                  "--neighbours", "1", "--val-fraction", "0.25", "--photometric-weight", "1", "--no-progress"]) == 0
    with open(out / "train" / "log.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["stage"] for row in rows] == ["start", "all"]
    assert float(rows[1]["train/photometric"]) > 0
    assert float(rows[1]["train/photometric_pixels"]) > 0.3
    assert "photometric consistency of its depth with the images of 1 neighbouring" in (out / "adapted.md").read_text()


def test_the_signal_benchmark_scores_a_wrong_depth_worse(world, load_benchmark):
    result = load_benchmark("photometric_signal").measure(world, "train", "default", frames=1)
    assert len(result["frames"]) == 1
    losses = result["median_loss"]
    assert losses["model x 1.1"] > losses["model"] and losses["model x 0.9"] > losses["model"]
    assert set(result["median_error_on_ground_truth_pixels"]) == {"ground truth (filled)", "model"}
