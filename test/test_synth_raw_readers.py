"""The synthetic world's raw drives read by a common KITTI raw reader (pykitti): calibration, OXTS poses,
timestamps, the four cameras and the Velodyne scans, checked against what the generator wrote."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from PIL import Image

from depth_completion_ros import geometry
from depth_completion_ros.data.image_io import read_depth_png, read_rgb_png
from depth_completion_ros.data.kitti import read_timestamps
from depth_completion_ros.data.synth import generate_dataset, oxts, sensors
from depth_completion_ros.data.synth.scene import FRAME_PERIOD, build_scene

import pykitti  # noqa: E402 - in the test extra: a broken install must fail here, not skip

DATE = "2000_01_01"
DRIVES = {"0001": "train", "0002": "val"}  # the session fixture: 2 drives x 2 frames, seed 0
FRAMES = 2
CAMERAS = ("00", "01", "02", "03")
WIDTH, HEIGHT = 1242, 375


def _raw(synthetic_kitti, drive="0001"):
    return pykitti.raw(str(synthetic_kitti / "kitti_raw"), DATE, drive)


def _drive_dir(synthetic_kitti, drive="0001"):
    return synthetic_kitti / "kitti_raw" / DATE / f"{DATE}_drive_{drive}_sync"


# ------------------------------------------------------------------------------------------ layout
def test_raw_drive_has_every_kitti_folder(synthetic_kitti):
    for drive in DRIVES:
        raw = _drive_dir(synthetic_kitti, drive)
        for folder, ext in [(f"image_{c}", "png") for c in CAMERAS] + [("velodyne_points", "bin"), ("oxts", "txt")]:
            names = sorted(p.name for p in (raw / folder / "data").iterdir())
            assert names == [f"{i:010d}.{ext}" for i in range(FRAMES)], folder
            assert len((raw / folder / "timestamps.txt").read_text().splitlines()) == FRAMES, folder
        for name in ("timestamps_start.txt", "timestamps_end.txt"):
            assert len((raw / "velodyne_points" / name).read_text().splitlines()) == FRAMES
        fields = [line.split(":")[0] for line in (raw / "oxts" / "dataformat.txt").read_text().splitlines()]
        assert fields == list(oxts.FIELDS)
        packet = (raw / "oxts" / "data" / "0000000000.txt").read_text()
        assert packet.endswith("\n") and len(packet.splitlines()) == 1 and len(packet.split()) == 30
    imu = (synthetic_kitti / "kitti_raw" / DATE / "calib_imu_to_velo.txt").read_text().splitlines()
    assert imu[0].startswith("calib_time: ")
    assert [len(line.split()) for line in imu[1:]] == [10, 4]  # "R:" + 9 values, "T:" + 3 values


# ------------------------------------------------------------------------------------- calibration
def test_pykitti_calibration_matches_the_project(synthetic_kitti):
    calib = _raw(synthetic_kitti).calib
    date_dir = synthetic_kitti / "kitti_raw" / DATE
    np.testing.assert_allclose(calib.T_velo_imu, sensors.IMU_TO_VELO, atol=1e-12)
    for code in CAMERAS:
        ours = geometry.load_kitti_calibration(date_dir, camera=code)
        theirs = getattr(calib, f"T_cam{int(code)}_velo")
        np.testing.assert_allclose(getattr(calib, f"K_cam{int(code)}"), ours.camera.K, atol=1e-9)
        np.testing.assert_allclose(getattr(calib, f"P_rect_{int(code)}0"), ours.P_rect, atol=1e-9)
        # Same rotation; pykitti keeps only P[0, 3] / P[0, 0] of P_rect's column, the project the exact
        # K^-1 P[:, 3]: the two differ by the camera's few-millimetre y/z offset from camera 00's plane.
        _, exact = geometry.split_projection(ours.P_rect)
        approximate = np.array([ours.P_rect[0, 3] / ours.P_rect[0, 0], 0.0, 0.0])
        shift = geometry.make_transform(np.eye(3), approximate - exact)
        np.testing.assert_allclose(theirs, shift @ ours.lidar_to_camera, atol=1e-12)
        assert np.linalg.norm(approximate - exact) < 0.006
    # Camera 02's transform is the one the depth-completion pipeline uses.
    ours = geometry.load_kitti_calibration(date_dir, camera="02")
    np.testing.assert_allclose(calib.T_cam2_velo[:3, :3], ours.lidar_to_camera[:3, :3], atol=1e-12)
    assert abs(calib.T_cam2_velo[0, 3] - ours.lidar_to_camera[0, 3]) < 0.003
    # KITTI's stereo baselines: 0.54 m between the grey and between the colour cameras.
    assert calib.b_gray == pytest.approx(0.537, abs=0.002)
    assert calib.b_rgb == pytest.approx(0.533, abs=0.002)


def test_project_split_of_p_rect_projects_like_the_devkit(synthetic_kitti):
    """The project's K + lidar_to_camera reproduces pykitti's full P_rect R_rect Tr_velo_to_cam projection."""
    data = _raw(synthetic_kitti)
    points = data.get_velo(0)[:, :3].astype(np.float64)
    points = points[points[:, 0] > 5.0]
    for code in ("02", "03"):
        ours = geometry.load_kitti_calibration(synthetic_kitti / "kitti_raw" / DATE, camera=code)
        P = getattr(data.calib, f"P_rect_{int(code)}0") @ data.calib.R_rect_00 @ data.calib.T_cam0_velo_unrect
        homogeneous = np.c_[points, np.ones(len(points))] @ P.T
        camera_points = geometry.transform_points(ours.lidar_to_camera, points)
        pixels = camera_points @ ours.camera.K.T
        np.testing.assert_allclose(pixels[:, :2] / pixels[:, 2:], homogeneous[:, :2] / homogeneous[:, 2:], atol=1e-6)


# -------------------------------------------------------------------------------------- timestamps
def test_pykitti_timestamps_and_sensor_stamps_agree(synthetic_kitti):
    for hour, drive in enumerate(DRIVES, start=12):
        data = _raw(synthetic_kitti, drive)
        assert len(data) == FRAMES
        assert data.timestamps == [dt.datetime(2000, 1, 1, hour) + dt.timedelta(seconds=0.1 * i)
                                   for i in range(FRAMES)]
        raw = _drive_dir(synthetic_kitti, drive)
        oxts_ns = read_timestamps(raw / "oxts" / "timestamps.txt")
        for code in CAMERAS:
            camera_ns = read_timestamps(raw / f"image_{code}" / "timestamps.txt")
            np.testing.assert_array_equal(camera_ns, read_timestamps(raw / "image_02" / "timestamps.txt"))
            assert np.abs(camera_ns - oxts_ns).max() < 1_000_000  # the synced packet is within 1 ms
        velo = read_timestamps(raw / "velodyne_points" / "timestamps.txt")
        assert np.abs(velo - oxts_ns).max() < 1_000_000


# ------------------------------------------------------------------------------------------- OXTS
def test_oxts_poses_follow_the_ego_motion(synthetic_kitti):
    for index, drive in enumerate(DRIVES, start=1):
        data = _raw(synthetic_kitti, drive)
        scene = build_scene(0, index, (FRAMES - 1) * FRAME_PERIOD)
        first = sensors.imu_pose(scene, 0.0)
        for frame, record in enumerate(data.oxts):
            time = frame * FRAME_PERIOD
            expected = geometry.invert_transform(first) @ sensors.imu_pose(scene, time)
            moved = np.linalg.inv(data.oxts[0].T_w_imu) @ record.T_w_imu
            np.testing.assert_allclose(moved[:3, 3], expected[:3, 3], atol=1e-3)  # mm, from the printed digits
            np.testing.assert_allclose(moved[:3, :3], expected[:3, :3], atol=1e-6)
            # Through calib_imu_to_velo the Velodyne stands upright and 1.73 m above the ground, like the
            # scene's: the IMU's roll and pitch are those of its mounting, not of the vehicle.
            velo_in_world = record.T_w_imu @ np.linalg.inv(data.calib.T_velo_imu)
            np.testing.assert_allclose(velo_in_world[:3, 2], [0.0, 0.0, 1.0], atol=1e-6)
            assert velo_in_world[2, 3] - data.oxts[0].T_w_imu[2, 3] == pytest.approx(
                sensors.LIDAR_HEIGHT - first[2, 3], abs=1e-6)
            # The packet's other fields agree with its pose: heading, speed, gravity.
            packet = record.packet
            step = np.linalg.norm(data.oxts[1].T_w_imu[:3, 3] - data.oxts[0].T_w_imu[:3, 3])
            assert packet.vf == pytest.approx(step / FRAME_PERIOD, rel=0.01)
            assert abs(packet.vl) < 0.1 and abs(packet.vu) < 1e-6
            assert np.hypot(packet.vn, packet.ve) == pytest.approx(packet.vf, rel=1e-3)
            assert np.angle(np.exp(1j * (np.arctan2(packet.vn, packet.ve) - packet.yaw))) == pytest.approx(0, abs=0.03)
            assert packet.az == pytest.approx(oxts.GRAVITY, abs=0.2)
            assert packet.au == pytest.approx(oxts.GRAVITY, abs=0.2)
            assert abs(packet.wz) < 0.05 and abs(packet.af) < 0.2
            assert (packet.navstat, packet.posmode, packet.velmode, packet.orimode) == (4, 6, 6, 6)
            assert 4 <= packet.numsats <= 14 and 0 < packet.pos_accuracy < 0.1 and 0 < packet.vel_accuracy < 0.05
            assert abs(packet.lat - oxts.ORIGIN_LAT) < 0.05 and abs(packet.lon - oxts.ORIGIN_LON) < 0.05


def test_velodyne_ground_stays_put_in_the_oxts_world(synthetic_kitti):
    """Scans placed in the world by the OXTS poses and calib_imu_to_velo: the road lies at one height."""
    data = _raw(synthetic_kitti)
    heights = []
    for frame in range(FRAMES):
        scan = data.get_velo(frame)
        np.testing.assert_array_equal(scan, np.fromfile(
            _drive_dir(synthetic_kitti) / "velodyne_points" / "data" / f"{frame:010d}.bin", dtype="<f4").reshape(-1, 4))
        near_road = scan[(np.hypot(scan[:, 0], scan[:, 1]) < 12.0) & (np.abs(scan[:, 1]) < 1.5)
                         & (scan[:, 2] < -1.5), :3]
        velo_to_world = data.oxts[frame].T_w_imu @ np.linalg.inv(data.calib.T_velo_imu)
        heights.append(np.median(geometry.transform_points(velo_to_world, near_road)[:, 2]))
    imu_height = sensors.LIDAR_HEIGHT + sensors.IMU_TO_VELO[2, 3]
    np.testing.assert_allclose(heights, -imu_height, atol=0.03)


def test_mercator_round_trip_is_pykittis():
    reference = oxts.GeoReference(49.01, 8.41, 115.0, 0.3, 9, 0.03, 0.02)
    poses = [geometry.make_transform(oxts.rotz(0.3 + 0.01 * k) @ oxts.roty(0.002) @ oxts.rotx(-0.01),
                                     (k * 25.0, 3.0 * k, 0.9)) for k in range(5)]
    times = [float(k) for k in range(5)]
    rngs = [np.random.default_rng(k) for k in range(5)]
    table = oxts.packets(lambda t: poses[int(round(t))], times, reference, rngs)
    assert table[0, 0] == reference.lat and table[0, 1] == reference.lon
    scale = np.cos(np.radians(reference.lat))
    read = [oxts.parse_packet(oxts.format_packet(row)) for row in table]
    origin = oxts.pose_from_packet(read[0], scale)[:3, 3]
    for pose, packet in zip(poses, read):
        theirs = pykitti.utils.pose_from_oxts_packet(pykitti.utils.OxtsPacket(*packet), scale)
        ours = oxts.pose_from_packet(packet, scale)
        np.testing.assert_allclose(ours[:3, :3], theirs[0], atol=1e-12)
        np.testing.assert_allclose(ours[:3, 3], theirs[1], atol=1e-6)
        # East-north-up = the world turned by the street heading, from the first packet on.
        expected = oxts.rotz(reference.heading) @ (pose[:3, 3] - poses[0][:3, 3])
        np.testing.assert_allclose(ours[:2, 3] - origin[:2], expected[:2], atol=1e-6)
        assert ours[2, 3] == pytest.approx(reference.ground_alt + pose[2, 3], abs=1e-9)
        np.testing.assert_allclose(ours[:3, :3], oxts.rotz(reference.heading) @ pose[:3, :3], atol=1e-12)
    with pytest.raises(ValueError, match="30 values"):
        oxts.format_packet(table[0, :29])


# ----------------------------------------------------------------------------------------- cameras
def test_pykitti_images_are_the_four_cameras(synthetic_kitti):
    data = _raw(synthetic_kitti)
    raw = _drive_dir(synthetic_kitti)
    for frame in range(FRAMES):
        grey_left, grey_right = data.get_gray(frame)
        colour_left, colour_right = data.get_rgb(frame)
        for image, mode in ((grey_left, "L"), (grey_right, "L"), (colour_left, "RGB"), (colour_right, "RGB")):
            assert image.size == (WIDTH, HEIGHT) and image.mode == mode
        with Image.open(raw / "image_00" / "data" / f"{frame:010d}.png") as stored:
            assert stored.mode == "L"  # 8-bit grey on disk, as KITTI's
        stored = read_rgb_png(raw / "image_02" / "data" / f"{frame:010d}.png")
        np.testing.assert_array_equal(np.array(colour_left), stored)
        for image in (grey_left, grey_right, colour_right):
            assert np.array(image).std() > 20  # a rendered street, not a placeholder


def test_stereo_pairs_see_the_scene_from_their_own_poses(synthetic_kitti):
    """Pixels of image_02's ground truth moved into the other cameras by depth and calibration land on the
    same surface: the right images are rendered from 0.54 m further right, the grey ones from cameras 00/01."""
    root = synthetic_kitti
    raw = _drive_dir(root)
    date_dir = root / "kitti_raw" / DATE
    gt = read_depth_png(root / "data_depth_annotated" / "train" / raw.name / "proj_depth" / "groundtruth"
                        / "image_02" / "0000000000.png")
    calibrations = {code: geometry.load_kitti_calibration(date_dir, camera=code) for code in CAMERAS}
    images = {code: np.array(Image.open(raw / f"image_{code}" / "data" / "0000000000.png"), dtype=np.float64)
              for code in CAMERAS}
    points, (rows, cols) = geometry.unproject(gt, calibrations["02"].camera)
    velo_points = geometry.transform_points(geometry.invert_transform(calibrations["02"].lidar_to_camera), points)

    def sample(code, warp):
        if warp:
            camera = calibrations[code].camera
            p = geometry.transform_points(calibrations[code].lidar_to_camera, velo_points)
            u = np.floor(camera.fx * p[:, 0] / p[:, 2] + camera.cx + 0.5).astype(int)
            v = np.floor(camera.fy * p[:, 1] / p[:, 2] + camera.cy + 0.5).astype(int)
        else:
            u, v = cols, rows
        inside = (u >= 0) & (u < WIDTH) & (v >= 0) & (v < HEIGHT)
        return images[code][v.clip(0, HEIGHT - 1), u.clip(0, WIDTH - 1)], inside

    for left, right in (("02", "03"), ("00", "01")):
        errors = {}
        for warp in (True, False):
            (a, inside_a), (b, inside_b) = sample(left, warp), sample(right, warp)
            inside = inside_a & inside_b
            difference = np.abs(a[inside] - b[inside]).reshape(int(inside.sum()), -1).mean(axis=1)
            errors[warp] = difference
        assert errors[True].mean() < 6 and (errors[True] < 10).mean() > 0.9, (left, right)  # noise, occlusions
        assert errors[False].mean() > 3 * errors[True].mean(), (left, right)


# ------------------------------------------------------------------------------------- determinism
def test_raw_files_are_deterministic(synthetic_kitti, tmp_path):
    # A one-frame drive with a coarse LiDAR: the cameras and the OXTS packets do not depend on either.
    again, other = tmp_path / "again", tmp_path / "other"
    coarse = sensors.VelodyneModel(columns=64)
    generate_dataset(again, drives=1, frames=1, seed=0, progress=False, lidar=coarse, gt_neighbours=0)
    generate_dataset(other, drives=1, frames=1, seed=1, progress=False, lidar=coarse, gt_neighbours=0)
    drive = f"kitti_raw/{DATE}/{DATE}_drive_0001_sync"
    varying = [f"{drive}/image_{code}/data/0000000000.png" for code in CAMERAS] + [f"{drive}/oxts/data/0000000000.txt"]
    fixed = [f"{drive}/oxts/dataformat.txt", f"kitti_raw/{DATE}/calib_imu_to_velo.txt"]
    for name in varying + fixed:
        assert (again / name).read_bytes() == (synthetic_kitti / name).read_bytes(), name
    for name in varying:
        assert (other / name).read_bytes() != (synthetic_kitti / name).read_bytes(), name
    for name in ("oxts/timestamps.txt", "image_00/timestamps.txt", "image_03/timestamps.txt"):
        first = (synthetic_kitti / drive / name).read_text().splitlines()[0]
        assert (again / drive / name).read_text().splitlines() == [first], name
