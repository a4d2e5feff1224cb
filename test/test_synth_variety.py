"""The varied synthetic world (`dcros synth --variety`): per-drive LiDAR beams, rig mount and light, with
the default world unchanged."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from depth_completion_ros.data.kitti import KittiDepthCompletion
from depth_completion_ros.data.synth import generate_dataset
from depth_completion_ros.data.synth import scene as scene_module
from depth_completion_ros.data.synth import sensors
from depth_completion_ros.data.synth.scene import build_scene


def test_variety_draws_rigs_across_the_ranges_and_keeps_the_street():
    plain = build_scene(3, 1, 1.0)
    assert (plain.lidar_beams, plain.mount_height, plain.mount_pitch, plain.exposure) == (None, 1.73, 0.0, 1.0)
    rigs = [build_scene(3, drive, 1.0, variety=True) for drive in range(1, 25)]
    assert {rig.lidar_beams for rig in rigs} == set(scene_module.VARIETY_BEAMS)
    low, high = scene_module.VARIETY_MOUNT_HEIGHT
    assert all(low <= rig.mount_height <= high for rig in rigs)
    pitches = np.degrees([rig.mount_pitch for rig in rigs])
    assert pitches.min() < -1.0 and pitches.max() > 1.0 and np.abs(pitches).max() <= 3.0
    exposures = [rig.exposure for rig in rigs]
    assert min(exposures) < 0.9 and max(exposures) > 1.1
    assert len({round(rig.image_noise, 3) for rig in rigs}) == len(rigs)
    # The street itself is drawn from other streams: the same primitives with or without variety.
    varied = rigs[0]
    assert [p.center for p in varied.static] == [p.center for p in build_scene(3, 1, 1.0).static]


@pytest.mark.parametrize("height, pitch_deg", [(1.5, 2.5), (2.0, -2.0), (1.73, 0.0)])
def test_scans_follow_the_mount_height_and_pitch(height, pitch_deg):
    scene = dataclasses.replace(build_scene(5, 1, 0.0), mount_height=height, mount_pitch=np.radians(pitch_deg))
    model = sensors.VelodyneModel(columns=720, range_noise=0.0, dropout=0.0, dark_dropout=0.0)
    points = sensors.scan_velodyne(scene, 0.0, model, np.random.default_rng(0), texture_seed=1)
    # Road returns close ahead: fit the ground plane z = a x + b y + c in the LiDAR frame, from the lower
    # returns first, then from those within 5 cm of the fit (a car or kerb in the window is left out).
    near = points[(points[:, 0] > 3) & (points[:, 0] < 12) & (np.abs(points[:, 1]) < 2.5)]
    inliers = near[:, 2] <= np.percentile(near[:, 2], 60)
    for _ in range(3):
        design = np.column_stack([near[inliers, 0], near[inliers, 1], np.ones(inliers.sum())])
        (a, b, c), *_ = np.linalg.lstsq(design, near[inliers, 2], rcond=None)
        inliers = np.abs(a * near[:, 0] + b * near[:, 1] + c - near[:, 2]) < 0.05
    assert inliers.sum() > 1000
    # Tilted down by theta, the sensor sees the level road rise ahead with slope tan(theta), and the road
    # below its origin at height / cos(theta).
    assert a == pytest.approx(np.tan(np.radians(pitch_deg)), abs=1e-3)
    assert -c == pytest.approx(height / np.cos(np.radians(pitch_deg)), abs=0.01)


def test_beam_layouts_set_the_scan_density():
    scene = build_scene(5, 1, 0.0)
    counts = {}
    for beams in (32, 64, 128):
        model = sensors.VelodyneModel(columns=360, beams=beams, dropout=0.0, dark_dropout=0.0)
        assert len(model.elevations) == beams and np.all(np.diff(model.elevations) > 0)
        counts[beams] = len(sensors.scan_velodyne(scene, 0.0, model, np.random.default_rng(0), texture_seed=1))
    assert counts[32] < counts[64] < counts[128]
    with pytest.raises(ValueError, match="beams"):
        sensors.VelodyneModel(beams=16)


def test_a_varied_dataset_records_its_rigs_and_reads_as_kitti(tmp_path):
    manifest = generate_dataset(tmp_path, drives=2, frames=1, seed=11, progress=False, variety=True)
    assert manifest["variety"] is True
    on_disk = json.loads((tmp_path / "synth_manifest.json").read_text())
    rigs = [drive["rig"] for drive in on_disk["drives"]]
    assert rigs == [build_scene(11, index, 0.0, variety=True).rig() for index in (1, 2)]
    for drive, rig in zip(on_disk["drives"], rigs):
        assert rig["lidar_beams"] in scene_module.VARIETY_BEAMS
        # More beams, more points per sweep: the density recorded follows the drive's sensor.
        assert drive["stats"]["lidar_points_mean"] > 0
    train = KittiDepthCompletion(tmp_path, split="train")
    rgb, sparse, gt, _ = train.load(0)
    assert rgb.shape == (375, 1242, 3) and (sparse > 0).any() and (gt > 0).any()
    # The default world does not carry rigs.
    plain = generate_dataset(tmp_path / "plain", drives=1, frames=1, seed=11, progress=False)
    assert plain["variety"] is False and "rig" not in plain["drives"][0]
