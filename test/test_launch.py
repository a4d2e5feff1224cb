"""launch_testing: depth_completion.launch.py starts the node as an installed package, the node declares its
parameters and publishes depth/image when fed, and it exits cleanly on shutdown.

Needs ROS 2 with launch_testing and the package installed in an ament index (colcon build), and runs under
`colcon test` or `launch_test test/test_launch.py`; skipped elsewhere.
"""
from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")
launch_testing = pytest.importorskip("launch_testing", reason="ROS 2 launch_testing is not installed")
pytest.importorskip("launch_ros", reason="ROS 2 launch_ros is not installed")
ament_index = pytest.importorskip("ament_index_python.packages", reason="ament_index_python is not installed")
try:
    SHARE = Path(ament_index.get_package_share_directory("depth_completion_ros"))
except ament_index.PackageNotFoundError:
    pytest.skip("depth_completion_ros is not installed in an ament index (colcon build)", allow_module_level=True)

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import yaml  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rcl_interfaces.srv import ListParameters  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from depth_completion_ros.data import messages  # noqa: E402
from depth_completion_ros.ros.params import PARAMETERS, parameters_from_yaml  # noqa: E402
from depth_completion_ros.ros.synthetic import default_lidar_to_camera, rclpy_types, wall_frame  # noqa: E402

MODEL = "cdspn_x32"  # smallest registered network; untrained weights are enough to check the plumbing
TYPES = rclpy_types()
TOPICS = {"image": "/test/image", "camera_info": "/test/camera_info", "points": "/test/points"}
TIMEOUT_S = 60.0


def _test_parameter_file() -> str:
    """A parameter file for a CPU run without tf (the rest keeps the declared defaults). Written as text:
    ROS 2 types plain YAML scalars itself, so strings are quoted."""
    transform = ", ".join(f"{float(v)!r}" for v in default_lidar_to_camera().reshape(-1))
    text = (f"depth_completion:\n  ros__parameters:\n    model: \"{MODEL}\"\n    device: \"cpu\"\n"
            f"    precision: \"fp32\"\n    warmup: false\n    use_tf: false\n"
            f"    lidar_to_camera: [{transform}]\n")
    parameters_from_yaml(yaml.safe_load(text))  # the same section layout the node's file uses
    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    with handle:
        handle.write(text)
    return handle.name


@pytest.mark.launch_test
def generate_test_description():
    """The package's launch file with the test parameters and test topics, then ReadyToTest."""
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(SHARE / "launch" / "depth_completion.launch.py")),
        launch_arguments={"params_file": _test_parameter_file(), "rviz": "false", **TOPICS}.items(),
    )
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestRunningNode(unittest.TestCase):
    """Runs while the launched node is up."""

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("depth_completion_launch_test")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_node_declares_its_parameters(self):
        client = self.node.create_client(ListParameters, "/depth_completion/list_parameters")
        try:
            self.assertTrue(client.wait_for_service(timeout_sec=TIMEOUT_S), "node did not come up")
            future = client.call_async(ListParameters.Request())
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=10.0)
            self.assertIsNotNone(future.result())
            names = set(future.result().result.names)
        finally:
            self.node.destroy_client(client)
        self.assertLessEqual({spec.name for spec in PARAMETERS}, names)

    def test_depth_image_is_published_when_fed(self):
        publishers = {
            "image": self.node.create_publisher(Image, TOPICS["image"], qos_profile_sensor_data),
            "camera_info": self.node.create_publisher(CameraInfo, TOPICS["camera_info"], qos_profile_sensor_data),
            "points": self.node.create_publisher(PointCloud2, TOPICS["points"], qos_profile_sensor_data),
        }
        received = []
        subscription = self.node.create_subscription(Image, "/depth/image", received.append, 10)
        stamps = []
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while not received and time.monotonic() < deadline:
                stamp_ns = 1_000_000_000 + 100_000_000 * len(stamps)
                frame = wall_frame(TYPES, stamp_ns)
                publishers["camera_info"].publish(frame.camera_info)
                publishers["points"].publish(frame.cloud)
                publishers["image"].publish(frame.image)
                stamps.append(stamp_ns)
                end = time.monotonic() + 0.2
                while not received and time.monotonic() < end:
                    rclpy.spin_once(self.node, timeout_sec=0.05)
        finally:
            self.node.destroy_subscription(subscription)
            for publisher in publishers.values():
                self.node.destroy_publisher(publisher)
        self.assertTrue(received, "no depth/image within the time limit")
        depth = received[0]
        self.assertEqual(depth.encoding, "32FC1")
        self.assertEqual((depth.width, depth.height), (32, 24))
        self.assertEqual(depth.header.frame_id, "camera")
        self.assertIn(messages.stamp_to_ns(depth.header.stamp), stamps)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """Runs after launch has stopped the node (SIGINT)."""

    def test_node_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
