"""The synthetic KITTI world: layout, formats, determinism, densities, geometry agreement, calibration."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from depth_completion_ros import geometry
from depth_completion_ros.data.image_io import read_depth_png, read_rgb_png
from depth_completion_ros.data.kitti import read_timestamps
from depth_completion_ros.data.synth import generate_dataset, summarize_dataset
from depth_completion_ros.data.synth.raycast import CameraRays, LidarRays, Primitive, cast, intersect
from depth_completion_ros.data.synth.sensors import VelodyneModel, hdl64_elevations_deg

DATE = "2000_01_01"
TRAIN, VAL = f"{DATE}_drive_0001_sync", f"{DATE}_drive_0002_sync"
FRAMES = ("0000000000", "0000000001")
P_RECT_02 = np.array([[7.215377e02, 0.0, 6.095593e02, 4.485728e01],
                      [0.0, 7.215377e02, 1.728540e02, 2.163791e-01],
                      [0.0, 0.0, 1.0, 2.745884e-03]])


def _sparse(root: Path, split: str, drive: str, frame: str) -> np.ndarray:
    return read_depth_png(root / "data_depth_velodyne" / split / drive / "proj_depth" / "velodyne_raw" / "image_02"
                          / f"{frame}.png")


def _gt(root: Path, split: str, drive: str, frame: str) -> np.ndarray:
    return read_depth_png(root / "data_depth_annotated" / split / drive / "proj_depth" / "groundtruth" / "image_02"
                          / f"{frame}.png")


# ----------------------------------------------------------------------------------------- layout
def test_kitti_layout_and_names(synthetic_kitti):
    root = synthetic_kitti
    date_dir = root / "kitti_raw" / DATE
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        assert (date_dir / name).is_file(), name
    for drive, split in ((TRAIN, "train"), (VAL, "val")):
        raw = date_dir / drive
        assert sorted(p.name for p in (raw / "image_02" / "data").iterdir()) == [f + ".png" for f in FRAMES]
        assert sorted(p.name for p in (raw / "velodyne_points" / "data").iterdir()) == [f + ".bin" for f in FRAMES]
        for stamps in ("image_02/timestamps.txt", "velodyne_points/timestamps.txt",
                       "velodyne_points/timestamps_start.txt", "velodyne_points/timestamps_end.txt"):
            assert len((raw / stamps).read_text().splitlines()) == len(FRAMES), stamps
        for kind, folder in (("data_depth_velodyne", "velodyne_raw"), ("data_depth_annotated", "groundtruth")):
            depth_dir = root / kind / split / drive / "proj_depth" / folder / "image_02"
            assert sorted(p.name for p in depth_dir.iterdir()) == [f + ".png" for f in FRAMES]
    # The train drive is not in the val split and vice versa.
    assert not (root / "data_depth_velodyne" / "val" / TRAIN).exists()
    assert not (root / "data_depth_velodyne" / "train" / VAL).exists()

    selection = root / "data_depth_selection" / "val_selection_cropped"
    expected = {
        "image": [f"{VAL}_image_{f}_image_02.png" for f in FRAMES],
        "velodyne_raw": [f"{VAL}_velodyne_raw_{f}_image_02.png" for f in FRAMES],
        "groundtruth_depth": [f"{VAL}_groundtruth_depth_{f}_image_02.png" for f in FRAMES],
        "intrinsics": [f"{VAL}_image_{f}_image_02.txt" for f in FRAMES],
    }
    assert sorted(p.name for p in selection.iterdir()) == sorted(expected)
    for folder, names in expected.items():
        assert sorted(p.name for p in (selection / folder).iterdir()) == names, folder

    manifest = json.loads((root / "synth_manifest.json").read_text())
    assert manifest["seed"] == 0
    assert manifest["splits"] == {"train": [TRAIN], "val": [VAL]}
    assert [d["frames"] for d in manifest["drives"]] == [2, 2]


def test_images_and_depth_pngs(synthetic_kitti):
    root = synthetic_kitti
    rgb = read_rgb_png(root / "kitti_raw" / DATE / TRAIN / "image_02" / "data" / "0000000000.png")
    assert rgb.shape == (375, 1242, 3) and rgb.dtype == np.uint8
    assert rgb.std() > 20  # a textured scene, not a flat fill
    from PIL import Image

    for path in (root / "data_depth_velodyne" / "train" / TRAIN / "proj_depth" / "velodyne_raw" / "image_02"
                 / "0000000000.png",
                 root / "data_depth_annotated" / "train" / TRAIN / "proj_depth" / "groundtruth" / "image_02"
                 / "0000000000.png"):
        with Image.open(path) as image:
            raw = np.array(image)
        assert raw.dtype == np.uint16 and raw.shape == (375, 1242)
        depth = read_depth_png(path)
        np.testing.assert_allclose(depth, raw.astype(np.float32) / 256.0)  # KITTI scale: value / 256 m
        valid = depth > 0
        assert 0.02 < valid.mean() < 0.5
        assert 1.0 < depth[valid].min() and depth[valid].max() < 125.0  # LiDAR range 120 m
        assert not valid[:100].any()  # sky and above the LiDAR's +2 deg: nothing in the top rows


def test_velodyne_bin_format(synthetic_kitti):
    path = synthetic_kitti / "kitti_raw" / DATE / TRAIN / "velodyne_points" / "data" / "0000000000.bin"
    assert path.stat().st_size % 16 == 0
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    assert 60_000 < len(points) < 128_000  # 64 x 2000 rays minus sky and drop-outs
    assert np.isfinite(points).all()
    ranges = np.linalg.norm(points[:, :3], axis=1)
    assert ranges.min() > 0.85 and ranges.max() < 120.2
    assert points[:, 3].min() >= 0.0 and points[:, 3].max() <= 1.0 and points[:, 3].std() > 0.02
    # Velodyne frame: z up, sensor 1.73 m above the road, so the ground returns sit near z = -1.73.
    near_ground = points[(ranges < 15) & (points[:, 2] < -1.0)]
    assert abs(np.median(near_ground[:, 2]) + 1.73) < 0.05
    # Elevations of the returns stay within the HDL-64E's fan.
    elevation = np.degrees(np.arcsin(points[:, 2] / ranges))
    assert elevation.min() > -25.5 and elevation.max() < 2.5


# ----------------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes_and_other_seed_differs(synthetic_kitti, tmp_path):
    # Drive 0001 alone and one frame shorter: a drive's first frames do not depend on how many drives or
    # frames are generated, so its files must match the fixture's byte for byte.
    again = tmp_path / "again"
    generate_dataset(again, drives=1, frames=1, seed=0, progress=False)
    relative = [
        f"kitti_raw/{DATE}/{TRAIN}/image_02/data/0000000000.png",
        f"kitti_raw/{DATE}/{TRAIN}/velodyne_points/data/0000000000.bin",
        f"kitti_raw/{DATE}/calib_cam_to_cam.txt",
        f"kitti_raw/{DATE}/calib_velo_to_cam.txt",
        f"data_depth_velodyne/train/{TRAIN}/proj_depth/velodyne_raw/image_02/0000000000.png",
        f"data_depth_annotated/train/{TRAIN}/proj_depth/groundtruth/image_02/0000000000.png",
    ]
    stamps = f"kitti_raw/{DATE}/{TRAIN}/velodyne_points/timestamps.txt"
    assert (again / stamps).read_text().splitlines() == (synthetic_kitti / stamps).read_text().splitlines()[:1]
    for name in relative:
        assert (again / name).read_bytes() == (synthetic_kitti / name).read_bytes(), name

    other = tmp_path / "other"
    generate_dataset(other, drives=1, frames=1, seed=1, progress=False)
    for name in relative[:2] + relative[4:]:
        assert (other / name).read_bytes() != (synthetic_kitti / name).read_bytes(), name


# ------------------------------------------------------------------------------ densities, agreement
def test_densities_like_kitti(synthetic_kitti):
    for drive, split in ((TRAIN, "train"), (VAL, "val")):
        for frame in FRAMES:
            sparse, gt = _sparse(synthetic_kitti, split, drive, frame), _gt(synthetic_kitti, split, drive, frame)
            lower = slice(int(round(0.4 * sparse.shape[0])), None)
            assert 0.04 <= (sparse[lower] > 0).mean() <= 0.06, (drive, frame)
            assert 0.10 <= (gt > 0).mean() <= 0.20, (drive, frame)
            # No ground truth in the sky: no valid pixel where the LiDAR cannot look (above +2 deg).
            assert not (gt[:120] > 0).any()


def test_lidar_depth_agrees_with_exact_camera_depth(synthetic_kitti):
    errors, bleeding, both = [], 0, 0
    for drive, split in ((TRAIN, "train"), (VAL, "val")):
        for frame in FRAMES:
            sparse, gt = _sparse(synthetic_kitti, split, drive, frame), _gt(synthetic_kitti, split, drive, frame)
            valid = (sparse > 0) & (gt > 0)
            both += int(valid.sum())
            errors.append(np.abs(sparse - gt)[valid])
            # Points seen past a foreground edge from the LiDAR's viewpoint land behind the camera's surface.
            bleeding += int((valid & (sparse > gt + 1.0)).sum())
    errors = np.concatenate(errors)
    assert both > 20_000  # most LiDAR pixels have ground truth
    assert np.median(errors) < 0.05
    assert (errors < 0.10).mean() > 0.85
    assert 0 < bleeding < 0.02 * both  # KITTI's parallax artefact is present, but rare


def test_summary_reads_back_the_files(synthetic_kitti):
    summary = summarize_dataset(synthetic_kitti)
    assert set(summary["drives"]) == {TRAIN, VAL}
    assert summary["total"]["frames"] == 4 and summary["total"]["selection_frames"] == 2
    assert summary["total"]["frames_per_split"] == {"train": 2, "val": 2}
    manual = np.mean([(_sparse(synthetic_kitti, "val", VAL, f) > 0).mean() for f in FRAMES])
    assert summary["drives"][VAL]["sparse_density"] == pytest.approx(manual)
    low, high = summary["total"]["gt_depth_range_m"]
    assert 1.0 < low < 10.0 and 50.0 < high < 125.0
    with pytest.raises(FileNotFoundError, match="data_depth_velodyne"):
        summarize_dataset(synthetic_kitti / "nowhere")


# ---------------------------------------------------------------------------- calibration, timestamps
def test_calibration_reads_back(synthetic_kitti):
    calib = geometry.load_kitti_calibration(synthetic_kitti / "kitti_raw" / DATE, camera="02")
    np.testing.assert_allclose(calib.P_rect, P_RECT_02, rtol=1e-6)
    assert (calib.camera.width, calib.camera.height) == (1242, 375)
    # Camera 00 sits ~0.27 m ahead of the Velodyne and ~0.08 m lower (camera 02: 6 cm further left).
    camera_in_lidar = geometry.invert_transform(calib.lidar_to_camera)[:3, 3]
    assert camera_in_lidar[0] == pytest.approx(0.27, abs=0.02)
    assert camera_in_lidar[2] == pytest.approx(-0.08, abs=0.02)
    # The cropped selection's K is the bottom crop of camera 02.
    crop = geometry.read_intrinsics_txt(
        synthetic_kitti / "data_depth_selection" / "val_selection_cropped" / "intrinsics"
        / f"{VAL}_image_0000000000_image_02.txt", 1216, 352)
    assert crop == calib.camera.bottom_crop(352, 1216)
    image = read_rgb_png(synthetic_kitti / "data_depth_selection" / "val_selection_cropped" / "image"
                         / f"{VAL}_image_0000000000_image_02.png")
    full = read_rgb_png(synthetic_kitti / "kitti_raw" / DATE / VAL / "image_02" / "data" / "0000000000.png")
    assert image.shape == (352, 1216, 3)
    np.testing.assert_array_equal(image, full[375 - 352:, 13:13 + 1216])


def test_timestamps_parse_and_advance_by_a_tenth(synthetic_kitti):
    raw = synthetic_kitti / "kitti_raw" / DATE / VAL
    camera, velo, start, end = (read_timestamps(raw / name) / 1e9 for name in (
        "image_02/timestamps.txt", "velodyne_points/timestamps.txt", "velodyne_points/timestamps_start.txt",
        "velodyne_points/timestamps_end.txt"))
    line = (raw / "image_02" / "timestamps.txt").read_text().splitlines()[0]
    assert len(line) == 29 and line[4] == "-" and line[10] == " " and line[19] == "."  # 2000-01-01 13:00:00.xxxxxxxxx
    for stamps in (camera, velo):
        assert np.diff(stamps) == pytest.approx([0.1], abs=0.002)
    assert all(s < v < e for s, v, e in zip(start, velo, end))


# ------------------------------------------------------------------------------------- ray casting
def test_ray_primitive_intersections_are_exact():
    origin = np.array([0.0, 0.0, 1.0])
    dirs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]) / np.array([[1.0], [1.0], [np.sqrt(2)]])
    box = Primitive("box", (5.0, 0.0, 1.0), (1.0, 1.0, 1.0), 0)
    t = intersect(origin, dirs, box)
    assert t[0] == pytest.approx(4.0) and np.isinf(t[1])
    # A box turned by 45 degrees shows its corner: the ray along x meets it at 5 - sqrt(2).
    turned = Primitive("box", (5.0, 0.0, 1.0), (1.0, 1.0, 1.0), 0, yaw=np.pi / 4)
    assert intersect(origin, dirs[:1], turned)[0] == pytest.approx(5.0 - np.sqrt(2.0))
    cylinder = Primitive("cylinder", (0.0, 3.0, 1.0), (0.5, 0.5, 2.0), 0)
    assert intersect(origin, dirs, cylinder)[1] == pytest.approx(2.5)
    sphere = Primitive("ellipsoid", (2.0, 2.0, 1.0), (0.5, 0.5, 0.5), 0)
    assert intersect(origin, dirs, sphere)[2] == pytest.approx(np.sqrt(8.0) - 0.5)
    with pytest.raises(ValueError, match="half sizes"):
        Primitive("box", (0, 0, 0), (1.0, 0.0, 1.0), 0)
    with pytest.raises(ValueError, match="leans 20.0 deg"):
        from depth_completion_ros.data.synth.oxts import roty

        LidarRays(np.radians(hdl64_elevations_deg()), 90, geometry.make_transform(roty(np.radians(20)), (0, 0, 2)),
                  120.0)


@pytest.mark.parametrize("pitch_deg", [0.0, 3.0, -3.0, 8.0])
def test_culled_cast_equals_brute_force(pitch_deg):
    """The window culling never drops a hit: compare with intersecting every ray with every primitive, for a
    level and a pitched rig (`dcros synth --variety` tilts the LiDAR)."""
    from depth_completion_ros.data.synth.oxts import roty

    rng = np.random.default_rng(3)
    prims = [Primitive("box", (float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20)), 1.0), (1.5, 0.8, 1.0), 0,
                       yaw=float(rng.uniform(0, np.pi))) for _ in range(12)]
    prims += [Primitive("cylinder", (float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20)), 2.0),
                        (0.3, 0.3, 2.0), 0) for _ in range(6)]
    prims += [Primitive("ellipsoid", (float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20)), 3.0),
                        (1.5, 1.5, 2.0), 0) for _ in range(6)]
    pose = geometry.make_transform(np.eye(3), (0.3, -0.2, 1.73))
    yaw = 0.4
    pose[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    pose = pose @ geometry.make_transform(roty(np.radians(pitch_deg)), (0, 0, 0))
    lidar = LidarRays(np.radians(hdl64_elevations_deg()), 360, pose, 120.0)
    sector = LidarRays(np.radians(hdl64_elevations_deg()), 360, pose, 120.0, first_column=-60, column_count=121)
    # A camera looking along the LiDAR's x axis (optical frame: z forward, x right, y down).
    camera_pose = pose @ geometry.make_transform(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]]), (0, 0, 0))
    camera = CameraRays(160, 48, np.array([[90.0, 0, 80], [0, 90.0, 20], [0, 0, 1]]), camera_pose, 500.0)
    for grid in (lidar, sector, camera):
        hits = cast(grid, prims, with_normals=False)
        brute = np.min(np.stack([intersect(grid.origin, grid.dirs, p) for p in prims]), axis=0)
        ground = -grid.origin[2] / np.where(grid.dirs[..., 2] < 0, grid.dirs[..., 2], -1e-300)
        brute = np.minimum(brute, np.where(grid.dirs[..., 2] < 0, ground, np.inf))
        brute[brute > grid.max_t] = np.inf
        np.testing.assert_allclose(hits.t, brute)
        assert np.isfinite(hits.t).mean() > 0.3


def test_ego_and_traffic_move_between_frames(synthetic_kitti):
    from depth_completion_ros.data.synth.scene import build_scene

    scene = build_scene(0, 1, 1.0)
    assert 5.0 <= scene.ego.speed <= 12.0
    step = scene.ego.pose(0.1)[:3, 3] - scene.ego.pose(0.0)[:3, 3]
    assert np.linalg.norm(step) == pytest.approx(0.1 * scene.ego.speed, rel=0.01)
    now, later = scene.primitives_at(0.0), scene.primitives_at(0.1)
    n_static = len(scene.static)
    assert now[:n_static] == later[:n_static]
    moved = [np.linalg.norm(np.subtract(a.center, b.center)) for a, b in zip(now[n_static:], later[n_static:])]
    assert max(moved) > 0.7  # cars at 8-12 m/s move about a metre per frame
    manifest = json.loads((synthetic_kitti / "synth_manifest.json").read_text())
    assert all(5.0 <= d["ego_speed_mps"] <= 12.0 for d in manifest["drives"])


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="drives"):
        generate_dataset(tmp_path, drives=0, progress=False)
    with pytest.raises(ValueError, match="val_drives"):
        generate_dataset(tmp_path, drives=2, frames=1, val_drives=3, progress=False)
    with pytest.raises(ValueError, match="columns"):
        VelodyneModel(columns=4)


def test_cli_writes_and_reports(tmp_path, capsys):
    from depth_completion_ros import cli

    assert cli.main(["synth", "--out", str(tmp_path / "cli"), "--drives", "1", "--frames", "1", "--seed", "4",
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"{DATE}_drive_0001_sync" in printed and "sparse%" in printed
    assert (tmp_path / "cli" / "kitti_raw" / DATE / TRAIN / "image_02" / "data" / "0000000000.png").is_file()
    assert cli.main(["synth", "--out", str(tmp_path / "bad"), "--frames", "0"]) == 2
