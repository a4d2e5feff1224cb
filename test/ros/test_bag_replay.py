"""Bag replay the ROS way: `ros2 bag play` of a `dcros kitti2bag` bag (Humble's v8/sqlite3 and Jazzy's
v9/MCAP) through bag_replay.launch.py (sim time, --clock) into the node, `ros2 bag record` of depth/image,
and `dcros eval-bag --recorded-depth` of that recording against the source bag's ground truth: it must
agree with `dcros eval-bag` run offline on the source bag (same frames, RMSE within 1 %).

depth_image_proc is not part of every ROS 2 installation (nor of the one this suite runs on), so the launch
runs with point_cloud:=false; RViz is off by default.
"""
from __future__ import annotations

import subprocess

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_support import RosProcess, assert_recorded_scores_like_offline, wait_until  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from depth_completion_ros.data.kitti import KittiRawDrive  # noqa: E402
from depth_completion_ros.data.rosbag import write_kitti_drive_bag  # noqa: E402

# `ros2 bag play`/`record` and `ros2 launch`: the full-distribution tier (test/ros/test_play.py replays bags
# without them).
pytestmark = [pytest.mark.ros, pytest.mark.ros_distribution]

FRAMES = 4
# The shipped LSPKD student (about 0.4 s per full KITTI frame on two idle CPU cores): a trained, deterministic
# network that keeps up even on a loaded machine. The bag is 10 Hz; played at one frame per 4 s, every frame
# is answered, none replaced by a newer one.
MODEL = "lspkd_student_synth"
RATE = "0.025"
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def _has_package(env, name: str) -> bool:
    return subprocess.run(["ros2", "pkg", "prefix", name], env=env, capture_output=True, timeout=60).returncode == 0


@pytest.mark.parametrize("distro,storage", [("humble", "sqlite3"), ("jazzy", "mcap")])
def test_bag_play_through_the_node_scores_like_offline_eval_bag(
        distro, storage, ros_env, synthetic_drive, peer, tmp_path):
    if storage == "mcap" and not _has_package(ros_env, "rosbag2_storage_mcap"):
        pytest.skip("the MCAP storage plugin (rosbag2_storage_mcap) is not installed")
    kitti_root, drive = synthetic_drive
    source = tmp_path / f"source_{distro}"
    write_kitti_drive_bag(KittiRawDrive(kitti_root / "kitti_raw", drive), source, frame_ids=range(FRAMES),
                          depth_root=kitti_root, distro=distro, storage=storage)

    answers = peer.record(Image, "/depth/image", RELIABLE)
    recorded = tmp_path / "recorded"
    record = RosProcess(["ros2", "bag", "record", "-o", str(recorded), "/depth/image"], ros_env,
                        tmp_path / "record.log")
    launch = RosProcess(["ros2", "launch", "depth_completion_ros", "bag_replay.launch.py", f"bag:={source}",
                         f"rate:={RATE}", "point_cloud:=false", f"model:={MODEL}", "device:=cpu"], ros_env,
                        tmp_path / "launch.log")
    try:
        done = wait_until(lambda: len(answers) >= FRAMES or launch.popen.poll() is not None, 240.0)
        assert done and launch.popen.poll() is None, launch.output()[-4000:]
        assert wait_until(lambda: "Recording" in record.output() or "Subscribed" in record.output(), 10.0)
        wait_until(lambda: False, 1.0)  # the recorder writes what it received
    finally:
        record_code = record.stop()
        launch_code = launch.stop()
    assert record_code == 0, record.output()[-3000:]
    assert launch_code == 0 and "Traceback" not in launch.output(), launch.output()[-4000:]
    assert "process has died" not in launch.output(), launch.output()[-4000:]

    assert_recorded_scores_like_offline(source, recorded, MODEL, FRAMES, tmp_path)
