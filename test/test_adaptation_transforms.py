"""tf over a whole recording (adaptation.recordings.TimedTransforms): moving edges interpolated, static chained."""
import numpy as np
import pytest

from depth_completion_ros.adaptation.recordings import MAX_EXTRAPOLATION_NS, TimedTransforms
from depth_completion_ros.data.kitti import read_lidar_poses, write_lidar_poses
from depth_completion_ros.data.synth.oxts import rotz
from depth_completion_ros.geometry import make_transform

SECOND = 1_000_000_000


def tree() -> TimedTransforms:
    """odom -> base_link moving 10 m and turning 90 degrees in 1 s; base_link -> lidar static."""
    transforms = TimedTransforms()
    transforms.add("odom", "base_link", 0, make_transform(np.eye(3), (0.0, 0.0, 0.0)), static=False)
    transforms.add("odom", "base_link", SECOND, make_transform(rotz(np.pi / 2), (10.0, 0.0, 0.0)), static=False)
    transforms.add("base_link", "lidar", 0, make_transform(np.eye(3), (1.0, 0.0, 1.5)), static=True)
    return transforms


def test_a_pose_between_two_transforms_is_interpolated_and_chained():
    pose = tree().pose("lidar", SECOND // 2)
    expected = make_transform(rotz(np.pi / 4), (5.0, 0.0, 0.0)) @ make_transform(np.eye(3), (1.0, 0.0, 1.5))
    np.testing.assert_allclose(pose, expected, atol=1e-12)
    assert tree().chain("lidar") == [("base_link", "lidar", False), ("odom", "base_link", True)]


def test_no_pose_far_outside_the_transforms():
    transforms = tree()
    assert transforms.pose("lidar", SECOND + MAX_EXTRAPOLATION_NS + 1) is None
    assert transforms.pose("lidar", -MAX_EXTRAPOLATION_NS - 1) is None
    # A little past the last transform: extrapolated along the last motion (10 m/s, 90 deg/s).
    pose = transforms.pose("base_link", SECOND + MAX_EXTRAPOLATION_NS)
    fraction = 1.0 + MAX_EXTRAPOLATION_NS / SECOND
    np.testing.assert_allclose(pose[:3, 3], (10.0 * fraction, 0.0, 0.0), atol=1e-9)
    np.testing.assert_allclose(pose[:3, :3], rotz(np.pi / 2 * fraction), atol=1e-9)
    assert transforms.moving_edges == [("odom", "base_link")]


def test_poses_file_round_trip(tmp_path):
    poses = {0: np.eye(4), 3: make_transform(rotz(0.3), (1.5, -2.0, 0.25))}
    write_lidar_poses(tmp_path / "poses.txt", poses)
    back = read_lidar_poses(tmp_path / "poses.txt")
    assert sorted(back) == [0, 3]
    np.testing.assert_allclose(back[3], poses[3], atol=1e-9)
    (tmp_path / "bad.txt").write_text("0 1 2 3\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        read_lidar_poses(tmp_path / "bad.txt")
