"""The ego motion of a KITTI raw drive from its OXTS packets (`data.oxts`, `KittiRawDrive.velodyne_poses`) and on
/tf of a `dcros kitti2bag` bag, checked against pykitti and against the synthetic world's own trajectory."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from depth_completion_ros import geometry
from depth_completion_ros.data import messages, oxts, rosbag
from depth_completion_ros.data.kitti import KittiRawDrive, read_timestamps
from depth_completion_ros.data.synth import generate_dataset, sensors
from depth_completion_ros.data.synth.scene import FRAME_PERIOD, build_scene
from depth_completion_ros.data.synth.writer import DATE, drive_name
from depth_completion_ros.evaluation.bag_eval import static_transforms
from depth_completion_ros.ros.transforms import LatestTransforms

import pykitti.utils  # noqa: E402 - in the test extra: a broken install must fail here, not skip

SEED = 3
FRAMES = 3
DRIVE = drive_name(1)


@pytest.fixture(scope="module")
def drive_root(tmp_path_factory):
    """A KITTI root with one 3-frame synthetic drive (a coarse LiDAR and no ground-truth accumulation: the OXTS
    packets, the cameras and the calibration do not depend on either)."""
    root = tmp_path_factory.mktemp("oxts_drive")
    generate_dataset(root, drives=1, frames=FRAMES, seed=SEED, progress=False,
                     lidar=sensors.VelodyneModel(columns=64), gt_neighbours=0)
    return root


def _drive(root) -> KittiRawDrive:
    return KittiRawDrive(root / "kitti_raw", DRIVE)


def _copy_drive(drive_root, tmp_path):
    """A copy of the drive's raw files (with the date's calibration) to break."""
    shutil.copytree(drive_root / "kitti_raw", tmp_path / "kitti_raw")
    return tmp_path


# ---------------------------------------------------------------------------------------------- reading
def test_imu_poses_are_pykittis(drive_root):
    drive = _drive(drive_root)
    stamps, packets = oxts.read_oxts(drive.path)
    np.testing.assert_array_equal(stamps, read_timestamps(drive.path / "oxts" / "timestamps.txt"))
    np.testing.assert_array_equal(stamps, drive.oxts_timestamps_ns)
    files = sorted(str(p) for p in (drive.path / "oxts" / "data").glob("*.txt"))
    theirs = pykitti.utils.load_oxts_packets_and_poses(files)
    assert packets.shape == (FRAMES, 30) and len(theirs) == FRAMES
    np.testing.assert_array_equal(packets, [list(record.packet) for record in theirs])
    ours = oxts.imu_poses(packets)
    for pose, record in zip(ours, theirs):
        np.testing.assert_allclose(pose, record.T_w_imu, rtol=0, atol=1e-9)
    assert np.abs(ours - np.stack([r.T_w_imu for r in theirs])).max() == 0  # measured: the same bits
    np.testing.assert_array_equal(ours[0][:3, 3], np.zeros(3))  # the world's origin: the first IMU position
    np.testing.assert_allclose(drive.imu_to_velo, sensors.IMU_TO_VELO, rtol=0, atol=1e-12)


def test_velodyne_poses_recover_the_lidar_trajectory(drive_root):
    drive = _drive(drive_root)
    poses = drive.velodyne_poses()
    assert sorted(poses) == list(range(FRAMES))
    # pykitti's world: the first packet's IMU position is the origin.
    np.testing.assert_allclose((poses[0] @ drive.imu_to_velo)[:3, 3], np.zeros(3), atol=1e-12)
    scene = build_scene(SEED, 1, (FRAMES - 1) * FRAME_PERIOD)
    first = sensors.lidar_pose(scene, 0.0)
    for frame in range(1, FRAMES):
        expected = geometry.invert_transform(first) @ sensors.lidar_pose(scene, frame * FRAME_PERIOD)
        moved = np.linalg.inv(poses[0]) @ poses[frame]
        # Measured: <= 1.1e-7 m and 1.2e-11 on the rotation's entries over seeds 0, 3, 7 (the packets' 14
        # printed digits). The IMU's own relative motion, which lacks the lever arm, is 1.3 mm off already.
        np.testing.assert_allclose(moved[:3, 3], expected[:3, 3], rtol=0, atol=1e-6)
        np.testing.assert_allclose(moved[:3, :3], expected[:3, :3], rtol=0, atol=1e-9)
        assert np.linalg.norm(moved[:3, 3]) > 0.5  # the car moved (6-11 m/s at 10 Hz)


def test_a_drive_without_oxts_or_imu_calibration_names_what_is_missing(drive_root, tmp_path):
    root = _copy_drive(drive_root, tmp_path)
    drive_dir = root / "kitti_raw" / DATE / DRIVE
    (drive_dir / "oxts" / "data" / "0000000001.txt").write_text("49.0 8.4 115.0\n")
    with pytest.raises(ValueError, match=r"0000000001\.txt.*30 values"):
        _drive(root).velodyne_poses()
    (drive_dir / "oxts" / "data" / "0000000001.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"OXTS packet not found: .*0000000001\.txt"):
        _drive(root).velodyne_poses()
    shutil.rmtree(drive_dir / "oxts")
    with pytest.raises(FileNotFoundError, match=r"OXTS folder not found: .*oxts"):
        _drive(root).velodyne_poses()
    with pytest.raises(FileNotFoundError, match=r"oxts/timestamps\.txt"):
        _drive(root).oxts_timestamps_ns
    (root / "kitti_raw" / DATE / "calib_imu_to_velo.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"calib_imu_to_velo\.txt"):
        _drive(root).velodyne_poses()


# ------------------------------------------------------------------------------------------- kitti2bag
def test_kitti2bag_writes_the_ego_motion_on_tf(drive_root, tmp_path, capsys):
    from depth_completion_ros import cli

    bag_path = tmp_path / "bag"
    assert cli.main(["kitti2bag", "--kitti-root", str(drive_root), "--drive", DRIVE, "--out", str(bag_path)]) == 0
    assert rosbag.TF_TOPIC in capsys.readouterr().out
    drive = _drive(drive_root)
    poses = drive.velodyne_poses()
    records = list(rosbag.read_bag(bag_path, [rosbag.TF_TOPIC]))
    assert len(records) == FRAMES
    rotation = drive.imu_to_velo[:3, :3]
    deviation = np.abs(rotation @ rotation.T - np.eye(3)).max()  # the file's 7 digits; a quaternion is exact
    for frame, record in enumerate(records):
        (stamped,) = record.msg.transforms
        assert (stamped.header.frame_id, stamped.child_frame_id) == ("world", "base_link")
        assert record.stamp_ns == messages.stamp_to_ns(stamped.header.stamp) == drive.oxts_timestamps_ns[frame]
        np.testing.assert_allclose(messages.transform_from_msg(stamped), poses[frame], rtol=0,
                                   atol=10 * deviation + 1e-12)
    # /tf_static still opens the bag, and base_link's new parent leaves the camera <- LiDAR chain as it was.
    stamps = {}
    for record in rosbag.read_bag(bag_path):
        stamps.setdefault(record.topic, []).append(record.stamp_ns)
    ((static_ns,),) = [stamps.pop(rosbag.TF_STATIC_TOPIC)]
    assert static_ns == min(min(values) for values in stamps.values())
    lidar_to_camera = drive.calibration.lidar_to_camera
    tree = static_transforms(bag_path, rosbag.bag_topics(bag_path))
    np.testing.assert_allclose(tree.lookup("camera_color_left", "velo_link"), lidar_to_camera, atol=1e-6)
    latest = LatestTransforms()
    for record in rosbag.read_bag(bag_path, [rosbag.TF_STATIC_TOPIC, rosbag.TF_TOPIC]):
        assert latest.add(record.msg.transforms) == 0
    np.testing.assert_allclose(latest.lookup("camera_color_left", "velo_link"), lidar_to_camera, atol=1e-6)
    np.testing.assert_allclose(latest.lookup("world", "velo_link"), poses[FRAMES - 1], atol=1e-6)


def test_a_frame_range_gets_the_ego_motion_of_its_frames(drive_root, tmp_path):
    drive = _drive(drive_root)
    counts = rosbag.write_kitti_drive_bag(drive, tmp_path / "bag", frame_ids=[1, 2])
    assert counts[rosbag.TF_TOPIC] == 2
    stamps = [r.stamp_ns for r in rosbag.read_bag(tmp_path / "bag", [rosbag.TF_TOPIC])]
    assert stamps == list(drive.oxts_timestamps_ns[1:])


def test_a_drive_without_oxts_converts_without_tf(drive_root, tmp_path, caplog):
    root = _copy_drive(drive_root, tmp_path / "kitti")
    shutil.rmtree(root / "kitti_raw" / DATE / DRIVE / "oxts")
    with caplog.at_level(logging.WARNING, logger="depth_completion_ros.data.rosbag"):
        counts = rosbag.write_kitti_drive_bag(_drive(root), tmp_path / "bag", depth_root=root)
    assert rosbag.TF_TOPIC not in counts and rosbag.TF_TOPIC not in rosbag.bag_topics(tmp_path / "bag")
    assert counts[rosbag.KITTI_CLOUD_TOPIC] == FRAMES and counts[rosbag.TF_STATIC_TOPIC] == 1
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "no ego motion" in warning.getMessage() and "oxts" in warning.getMessage()
