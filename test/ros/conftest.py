"""Fixtures of the tests that run the node under real ROS 2: a colcon workspace holding this package (so that
`ros2 launch depth_completion_ros ...` finds it in the ament index), a synthetic KITTI drive to publish, and
real processes started the way a user starts them.

Everything here skips without ROS 2, and fails instead where DCROS_REQUIRE_ROS=1 (see test/conftest.py).
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "depth_completion_ros"
DRIVE_FRAMES = 8
DRIVE_SEED = 7


def unused_domain_id(candidates=range(1, 102)) -> int:
    """A DDS domain that no participant on this machine uses now, in random order. A domain's first participant
    binds the UDP port 7410 + 250 * domain (the RTPS port mapping of Fast DDS and Cyclone DDS), so a free port
    means a free domain: test runs that share a machine (CI jobs, a developer's benchmark) do not cross-talk,
    as a random pick alone lets them once in a hundred runs."""
    order = list(candidates)
    random.shuffle(order)
    for domain in order:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("0.0.0.0", 7410 + 250 * domain))
            except OSError:
                continue
        return domain
    return order[0]


# A private DDS domain and log folder unless the caller chose them: parallel runs never cross-talk, and
# nothing is written to $HOME. Set before any rclpy context or child process exists.
os.environ.setdefault("ROS_DOMAIN_ID", str(unused_domain_id()))
# DDS discovery and traffic on this machine's loopback only (Jazzy; Humble reads ROS_LOCALHOST_ONLY).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
if os.environ.get("ROS_DISTRO") == "humble":
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
# Fast DDS (the registry's middleware, and the distributions' default): KITTI-size images through shared memory
# (its default segment is too small for them) and UDP on loopback only; see the profile's comment.
if "fastrtps" in os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"):
    os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_same_host.xml"))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="dcros_ros_logs_"))


def _require_ros_cli() -> None:
    if not os.environ.get("AMENT_PREFIX_PATH") or shutil.which("ros2") is None:
        pytest.skip("ROS 2 is not sourced (source /opt/ros/<distro>/setup.bash)")


@pytest.fixture(scope="session")
def ros_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a shell that sourced a colcon workspace holding this package (built here with
    `colcon build --symlink-install`, as the README's workspace instructions do)."""
    _require_ros_cli()
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.exists():
        pytest.skip(f"colcon is not installed next to {sys.executable} (pip install colcon-common-extensions)")
    workspace = tmp_path_factory.mktemp("ros2_ws")
    (workspace / "src").mkdir()
    (workspace / "src" / PACKAGE).symlink_to(REPO, target_is_directory=True)
    build = subprocess.run(
        [str(colcon), "build", "--symlink-install", "--packages-select", PACKAGE, "--event-handlers",
         "console_direct-"], cwd=workspace, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, f"colcon build failed:\n{build.stdout}\n{build.stderr}"
    sourced = subprocess.run(["bash", "-c", f"source {workspace}/install/setup.bash && env -0"],
                             capture_output=True, check=True, timeout=60)
    env = dict(line.split("=", 1) for line in sourced.stdout.decode().split("\0") if "=" in line)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def synthetic_drive(tmp_path_factory) -> tuple[Path, str]:
    """(KITTI root, drive name) of one synthetic raw drive of DRIVE_FRAMES frames with ground truth."""
    from depth_completion_ros.data.synth import generate_dataset
    from depth_completion_ros.data.synth.writer import drive_name

    root = tmp_path_factory.mktemp("synthetic_drive")
    generate_dataset(root, drives=1, frames=DRIVE_FRAMES, seed=DRIVE_SEED, val_drives=0, progress=False)
    return root, drive_name(1)


@pytest.fixture
def ros_context():
    """rclpy initialised for the test (the default context), shut down after it."""
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture
def peer(ros_context):
    """An rclpy node of the test, spun on its own thread (ros_support.SpinningNode)."""
    from ros_support import SpinningNode

    node = SpinningNode("depth_completion_test_peer")
    yield node
    node.close()
