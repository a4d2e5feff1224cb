"""Drives recorded by one rig (`dcros synth --variety --drives-per-rig N [--rig-beams B]`): a group of drives
shares the LiDAR and its mount while every drive keeps its own street and light."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from depth_completion_ros import cli
from depth_completion_ros.data.synth import generate_dataset
from depth_completion_ros.data.synth.scene import VARIETY_BEAMS, build_scene, rig_group
from depth_completion_ros.data.synth.sensors import VelodyneModel
from depth_completion_ros.data.synth.writer import DATE, drive_name

MOUNT = ("lidar_beams", "mount_height_m", "mount_pitch_deg")
LIGHT = ("sun_elevation_deg", "ambient", "exposure", "image_noise")
# Seed 1 draws 32, 128 and 64 beams for drives 1-3 on their own: in groups of two, drive 2 must take drive
# 1's 32 beams and drive 3 (rig 2) keeps its 64.
SEED, DRIVES, PER_RIG = 1, 3, 2
# What generator 1.2 (before shared rigs) wrote for seed 5, drives 1-3, under --variety.
RIGS_1_2_SEED_5 = [
    {"lidar_beams": 64, "mount_height_m": 1.9105, "mount_pitch_deg": -0.685, "sun_elevation_deg": 51.583,
     "ambient": 0.2311, "exposure": 1.5092, "image_noise": 1.4672},
    {"lidar_beams": 64, "mount_height_m": 2.0167, "mount_pitch_deg": 2.2955, "sun_elevation_deg": 74.126,
     "ambient": 0.3045, "exposure": 0.9288, "image_noise": 2.9854},
    {"lidar_beams": 32, "mount_height_m": 1.9837, "mount_pitch_deg": 0.0857, "sun_elevation_deg": 55.561,
     "ambient": 0.3107, "exposure": 1.1876, "image_noise": 1.8751},
]


def _beams_in_file(root: Path, drive: int) -> tuple[int, int]:
    """(layout, beams hit) of the first sweep of a drive, read from its velodyne .bin: the beam elevations in
    the sensor frame are exact (the range noise lies along the beam), so the smallest layout whose elevations
    explain every point is the sensor's."""
    path = root / "kitti_raw" / DATE / drive_name(drive) / "velodyne_points" / "data" / "0000000000.bin"
    xyz = np.fromfile(path, dtype="<f4").reshape(-1, 4)[:, :3].astype(np.float64)
    elevation = np.arcsin(xyz[:, 2] / np.linalg.norm(xyz, axis=1))
    for beams in sorted(VARIETY_BEAMS):
        layout = VelodyneModel(beams=beams).elevations
        nearest = np.abs(elevation[:, None] - layout[None, :])
        if nearest.min(axis=1).max() < 1e-4:
            return beams, len(np.unique(nearest.argmin(axis=1)))
    raise AssertionError(f"{path}: no beam layout explains its elevations")


@pytest.fixture(scope="module")
def grouped_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("shared_rig")
    # One frame a drive, no neighbour sweeps for the ground truth: the rigs are what is under test.
    generate_dataset(out, drives=DRIVES, frames=1, seed=SEED, val_drives=0, progress=False, gt_neighbours=0,
                     variety=True, drives_per_rig=PER_RIG)
    return out


def test_drives_of_one_rig_share_its_lidar_and_mount_and_keep_their_light(grouped_world):
    manifest = json.loads((grouped_world / "synth_manifest.json").read_text())
    assert manifest["version"] == "1.3" and manifest["drives_per_rig"] == PER_RIG and "rig_beams" not in manifest
    rigs = [drive["rig"] for drive in manifest["drives"]]
    assert [rig["rig_id"] for rig in rigs] == [1, 1, 2]
    own = [build_scene(SEED, index, 0.0, variety=True).rig() for index in range(1, DRIVES + 1)]
    assert [rig["lidar_beams"] for rig in own] == [32, 128, 64]  # what the seed was picked for
    # The group's mount is its first drive's draw; every drive's light is its own draw.
    for rig, first in zip(rigs, (own[0], own[0], own[2])):
        assert {key: rig[key] for key in MOUNT} == {key: first[key] for key in MOUNT}
    for rig, mine in zip(rigs, own):
        assert {key: rig[key] for key in LIGHT} == {key: mine[key] for key in LIGHT}
    assert all(rigs[0][key] != rigs[1][key] for key in LIGHT)
    assert all(rigs[0][key] != rigs[2][key] for key in MOUNT)
    # Their own streets too.
    assert manifest["drives"][0]["ego_speed_mps"] != manifest["drives"][1]["ego_speed_mps"]
    assert rigs == [build_scene(SEED, index, 0.0, variety=True, drives_per_rig=PER_RIG).rig()
                    for index in range(1, DRIVES + 1)]
    # The sweeps on disk come from the rig's LiDAR.
    found = [_beams_in_file(grouped_world, index) for index in range(1, DRIVES + 1)]
    assert [layout for layout, _ in found] == [32, 32, 64]
    assert found[2][1] > 32


def test_one_drive_per_rig_draws_what_it_always_did():
    for index, before in enumerate(RIGS_1_2_SEED_5, start=1):
        assert build_scene(5, index, 0.0, variety=True).rig() == {"rig_id": index, **before}
        assert build_scene(5, index, 0.0, variety=True, drives_per_rig=1).rig() == {"rig_id": index, **before}
        # Three drives per rig: drive 1's sensor and mount, the drive's own light.
        shared = build_scene(5, index, 0.0, variety=True, drives_per_rig=3).rig()
        assert shared == {"rig_id": 1, **before, **{key: RIGS_1_2_SEED_5[0][key] for key in MOUNT}}
    assert [rig_group(index, 4) for index in (1, 4, 5, 9)] == [(1, 1), (1, 1), (2, 5), (3, 9)]


def test_rig_beams_gives_every_rig_that_lidar(tmp_path):
    for index in range(1, 7):
        drawn = build_scene(5, index, 0.0, variety=True, drives_per_rig=2).rig()
        forced = build_scene(5, index, 0.0, variety=True, drives_per_rig=2, rig_beams=128).rig()
        assert forced == {**drawn, "lidar_beams": 128}
    out = tmp_path / "forced"
    # Seed 5 draws 64 beams for drive 1 on its own.
    assert cli.main(["synth", "--out", str(out), "--drives", "1", "--frames", "1", "--seed", "5", "--variety",
                     "--rig-beams", "128", "--no-progress"]) == 0
    manifest = json.loads((out / "synth_manifest.json").read_text())
    assert manifest["rig_beams"] == 128 and manifest["drives_per_rig"] == 1
    assert manifest["drives"][0]["rig"] == {"rig_id": 1, **RIGS_1_2_SEED_5[0], "lidar_beams": 128}
    layout, hit = _beams_in_file(out, 1)
    assert layout == 128 and hit > 64


@pytest.mark.parametrize("options, message", [
    ({"variety": True, "rig_beams": 16}, r"rig_beams \(--rig-beams\) must be one of \[32, 64, 128\], got 16"),
    ({"variety": True, "drives_per_rig": 0}, r"drives_per_rig \(--drives-per-rig\) must be a positive integer"),
    ({"drives_per_rig": 2}, r"drives_per_rig \(--drives-per-rig\) needs variety \(--variety\)"),
    ({"rig_beams": 32}, r"rig_beams \(--rig-beams\) needs variety \(--variety\)"),
])
def test_bad_rig_options_are_named_before_anything_is_written(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path / "world", drives=2, frames=1, progress=False, **options)
    assert not (tmp_path / "world").exists()


def test_bad_rig_options_on_the_command_line(tmp_path, capsys):
    assert cli.main(["synth", "--out", str(tmp_path / "a"), "--frames", "1", "--variety", "--rig-beams", "96"]) == 2
    assert "--rig-beams" in capsys.readouterr().err
    assert cli.main(["synth", "--out", str(tmp_path / "b"), "--frames", "1", "--drives-per-rig", "2"]) == 2
    assert "--variety" in capsys.readouterr().err
    with pytest.raises(ValueError, match="drives_per_rig"):
        build_scene(0, 1, 0.0, drives_per_rig=2)
    with pytest.raises(ValueError, match="rig_beams"):
        build_scene(0, 1, 0.0, variety=True, rig_beams=48)
