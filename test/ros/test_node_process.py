"""The node as a pip user runs it: `depth_completion_node --ros-args -p ...` in its own process, talked to by real
rclpy clients over DDS (loopback, a private domain), on whatever ROS 2 is installed: a distribution, or ROS 2
Jazzy from the Python package registry, where the node synchronizes, listens to tf and publishes /diagnostics
without message_filters, tf2_ros and diagnostic_updater.

Checked: every frame answered with 32FC1 depth in the camera frame and its CameraInfo, the LiDAR->camera
transform taken from /tf_static and /tf over DDS; parameters read and changed at runtime through the parameter
services; the self_check topic and /diagnostics; a ROS 2 without tf (no tf2_ros, no tf2_msgs) said once and
the parameter used, or a refusal to start when nothing gives the transform; calibration_file; a clean exit on
SIGINT sent twice while a frame is in inference. Malformed input and overload: test_robustness.py.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")
pytest.importorskip("tf2_msgs", reason="tf2_msgs is not installed (on ROS 2 from the registry: dcros ros-setup)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.qos import (  # noqa: E402
    DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data,
)
from ros_support import RosProcess, SpinningNode, wait_until  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from depth_completion_ros.data import messages  # noqa: E402
from depth_completion_ros.geometry import make_transform, quaternion_to_rotation  # noqa: E402
from depth_completion_ros.ros.interfaces import has_module  # noqa: E402
from depth_completion_ros.ros.node import READY_MESSAGE, SELF_CHECK_STATUS  # noqa: E402
from depth_completion_ros.ros.synthetic import publish_static_transforms, rclpy_tf_types, wall_frame  # noqa: E402

pytestmark = pytest.mark.ros

TYPES = rclpy_tf_types()
NODE = "depth_completion"
START_TIMEOUT_S = 120.0
ANSWER_TIMEOUT_S = 30.0
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
WALL = wall_frame(TYPES, 0)
# The wall rig's camera in base_link (any rigid pose); the LiDAR's pose follows from the wall's extrinsic.
BASE_FROM_CAMERA = make_transform(quaternion_to_rotation(0.5, -0.5, 0.5, -0.5), [0.27, 0.0, 1.65])
BASE_FROM_LIDAR = BASE_FROM_CAMERA @ WALL.lidar_to_camera


def ros_argument(value) -> str:
    """A `-p name:=value` value as ROS 2 reads it (YAML): strings quoted so that "nan" stays a string."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip().removesuffix("\n...")


def start_node(log_path: Path, env: dict | None = None, **parameters) -> RosProcess:
    """`depth_completion_node --ros-args -p ...` from this environment's scripts, as a pip user starts it."""
    script = Path(sys.executable).parent / "depth_completion_node"
    assert script.exists(), f"the console script is not installed next to {sys.executable}"
    arguments = [item for name, value in parameters.items() for item in ("-p", f"{name}:={ros_argument(value)}")]
    return RosProcess([str(script), "--ros-args", *arguments],
                      {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, log_path)


def wait_ready(node: RosProcess) -> None:
    assert node.wait_for_output(READY_MESSAGE, START_TIMEOUT_S), f"the node did not get ready:\n{node.output()}"


class Client:
    """The sensors (best effort) and the listeners of everything the node publishes, in this process."""

    def __init__(self, name: str):
        self.peer = SpinningNode(name)
        node = self.peer.node
        self.sensors = {"image": node.create_publisher(Image, "image", qos_profile_sensor_data),
                        "camera_info": node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data),
                        "points": node.create_publisher(PointCloud2, "points", qos_profile_sensor_data)}
        self.depth = self.peer.record(Image, "depth/image", RELIABLE)
        self.info = self.peer.record(CameraInfo, "depth/camera_info", RELIABLE)
        self.sparse = self.peer.record(Image, "sparse_depth", RELIABLE)
        self.self_check = self.peer.record(DiagnosticArray, "self_check", RELIABLE)
        self.diagnostics = self.peer.record(DiagnosticArray, "/diagnostics", RELIABLE)
        self.next_stamp_ns = time.time_ns()

    def send(self, info_fields: dict | None = None, **frame_options):
        """Publish a wall frame (`info_fields`: CameraInfo fields to replace, e.g. a raw camera's)."""
        self.next_stamp_ns += 100_000_000
        frame = wall_frame(TYPES, self.next_stamp_ns, **frame_options)
        for name, value in (info_fields or {}).items():
            setattr(frame.camera_info, name, value)
        for name, message in (("camera_info", frame.camera_info), ("points", frame.cloud), ("image", frame.image)):
            self.sensors[name].publish(message)
        return frame

    def answer(self, stamp_ns: int, timeout_s: float = ANSWER_TIMEOUT_S):
        """(depth, camera_info) published for the frame stamped `stamp_ns`, or None after the timeout."""
        def find():
            depth = [m for m in self.depth.messages if messages.stamp_to_ns(m.header.stamp) == stamp_ns]
            info = [m for m in self.info.messages if messages.stamp_to_ns(m.header.stamp) == stamp_ns]
            return (depth[0], info[0]) if depth and info else None
        wait_until(lambda: find() is not None, timeout_s)
        return find()

    def first_answer(self, timeout_s: float = ANSWER_TIMEOUT_S, **frame_options):
        """Send a frame every half second until one of them is answered (best effort: the first ones may precede
        discovery or tf; a slow node answers an older frame than the last sent). Returns (frame, answer)."""
        deadline = time.monotonic() + timeout_s
        sent = {}
        while time.monotonic() < deadline:
            frame = self.send(**frame_options)
            sent[stamp_of(frame.image)] = frame
            wait_until(lambda: any(stamp_of(m) in sent for m in self.depth.messages), 0.5)
            for message in self.depth.messages:
                if stamp_of(message) in sent:
                    found = self.answer(stamp_of(message))
                    if found is not None:
                        return sent[stamp_of(message)], found
        return None

    def call(self, service_type, name: str, request, timeout_s: float = 10.0):
        client = self.peer.node.create_client(service_type, name)
        assert client.wait_for_service(timeout_sec=timeout_s), f"service {name} is not offered"
        future = client.call_async(request)
        assert wait_until(future.done, timeout_s), f"no answer from {name}"
        return future.result()

    def set_parameter(self, name: str, value):
        kinds = {bool: (ParameterType.PARAMETER_BOOL, "bool_value"),
                 float: (ParameterType.PARAMETER_DOUBLE, "double_value"),
                 str: (ParameterType.PARAMETER_STRING, "string_value"),
                 int: (ParameterType.PARAMETER_INTEGER, "integer_value")}
        kind, field = kinds[type(value)]
        parameter = ParameterMsg(name=name, value=ParameterValue(type=kind, **{field: value}))
        request = SetParameters.Request(parameters=[parameter])
        [result] = self.call(SetParameters, f"/{NODE}/set_parameters", request).results
        return result

    def get_parameter(self, name: str):
        [value] = self.call(GetParameters, f"/{NODE}/get_parameters", GetParameters.Request(names=[name])).values
        return value

    def close(self):
        self.peer.close()


def assert_answers_with_the_wall(client: Client, node: RosProcess) -> None:
    """The node answers a frame, with the wall's exact depth at the LiDAR returns (the transform was right)."""
    found = client.first_answer()
    assert found is not None, node.output()
    frame, (depth_msg, _) = found
    rows, cols = frame.lidar_pixels
    assert np.allclose(messages.depth_from_image(depth_msg)[rows, cols], frame.wall_depth, atol=1e-3)


def stamp_of(message) -> int:
    return messages.stamp_to_ns(message.header.stamp)


def statuses(client: Client, suffix: str) -> list:
    return [status for array in client.diagnostics.messages for status in array.status if status.name.endswith(suffix)]


def values_of(status) -> dict[str, str]:
    return {item.key: item.value for item in status.values}


def test_every_frame_is_answered_with_tf_from_tf_static_and_tf_over_dds(ros_context, tmp_path):
    """No lidar_to_camera: the only way to the transform is tf, camera <- base_link latched on /tf_static before
    the node exists, base_link <- lidar streamed on /tf (as a localisation node would) after it started."""
    client = Client("depth_completion_test_client")
    static = publish_static_transforms(client.peer.node, [messages.build_transform_stamped(
        TYPES, messages.build_header(TYPES, 0, "base_link"), "camera", BASE_FROM_CAMERA)])
    tf = client.peer.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
    node = start_node(tmp_path / "node.log", model="baseline:nearest", warmup=False, publish_sparse=True,
                      **{"self_check.every_n_frames": 1, "self_check.fraction": 0.2})
    try:
        wait_ready(node)
        dynamic = client.peer.node.create_timer(0.1, lambda: tf.publish(TFMessage(transforms=[
            messages.build_transform_stamped(TYPES, messages.build_header(TYPES, time.time_ns(), "base_link"),
                                             "lidar", BASE_FROM_LIDAR)])))
        assert client.first_answer() is not None, node.output()
        own_listener = not has_module("tf2_ros")  # the registry's ROS 2: the node's own /tf listener
        assert ("own listener" in node.output()) == own_listener
        frames = []
        for _ in range(6):  # one at a time: every frame answered, none replaced by a newer one
            frame = client.send()
            frames.append((frame, client.answer(stamp_of(frame.image))))
        for frame, answer in frames:
            assert answer is not None, f"frame {stamp_of(frame.image)} unanswered:\n{node.output()[-3000:]}"
            depth_msg, info = answer
            assert depth_msg.encoding == "32FC1" and depth_msg.header.frame_id == "camera"
            assert (depth_msg.width, depth_msg.height) == (WALL.camera.width, WALL.camera.height)
            depth = messages.depth_from_image(depth_msg)
            rows, cols = frame.lidar_pixels
            assert np.allclose(depth[rows, cols], frame.wall_depth, atol=1e-3)  # the wall, through tf
            assert info.header.frame_id == "camera" and np.allclose(info.k, frame.camera_info.k)
        # The self-check on its topic (every frame a self-check frame): the nearest fill predicts a wall exactly.
        assert wait_until(lambda: len(client.self_check) > 0, 10.0)
        [check] = client.self_check.messages[-1].status
        assert check.name == f"{NODE}: {SELF_CHECK_STATUS}" and float(values_of(check)["self-check RMSE (mm)"]) < 1.0

        # /diagnostics as diagnostic_updater lays it out: both statuses named "<node>: <task>", with the counts,
        # from a report made after the frames were published (one per diagnostic_updater.period, 1 s).
        def latest_report() -> dict[str, str]:
            reports = statuses(client, ": depth completion")
            return values_of(reports[-1]) if reports else {}

        assert wait_until(lambda: int(latest_report().get("frames published", 0)) >= len(frames), 10.0), \
            latest_report()
        assert statuses(client, SELF_CHECK_STATUS)
        report = latest_report()
        assert report["tf"] == ("tf_listener" if own_listener else "tf2_ros")
        assert int(report["image: received"]) >= len(frames) and report["dropped: conversion_error"] == "0"
        hardware = {status.hardware_id for status in statuses(client, "")}
        assert len(hardware) == 1 and hardware != {""}
        dynamic.cancel()
    finally:
        code = node.stop()
        client.close()
        del static
    assert code == 0, node.output()


def test_parameters_change_at_runtime_through_the_parameter_services(ros_context, tmp_path):
    client = Client("depth_completion_test_parameters")
    node = start_node(tmp_path / "node.log", model="baseline:nearest", warmup=False, use_tf=False,
                      lidar_to_camera=[float(v) for v in WALL.lidar_to_camera.reshape(-1)], invalid_value="zero")
    try:
        wait_ready(node)
        assert client.get_parameter("invalid_value").string_value == "zero"       # quoted "zero" stayed a string
        assert client.first_answer() is not None, node.output()
        frame = client.send()
        assert client.answer(stamp_of(frame.image)) is not None
        assert not client.sparse.messages                                         # publish_sparse is false
        assert client.set_parameter("publish_sparse", True).successful
        assert client.get_parameter("publish_sparse").bool_value is True
        frame = client.send()
        assert client.answer(stamp_of(frame.image)) is not None
        assert wait_until(lambda: any(stamp_of(m) == stamp_of(frame.image) for m in client.sparse.messages), 10.0)
        sparse = messages.depth_from_image(client.sparse.messages[-1])
        assert np.count_nonzero(sparse) == frame.lidar_pixels[0].size
        read_only = client.set_parameter("device", "cuda")
        assert not read_only.successful and client.get_parameter("device").string_value == "auto"
        inverted = client.set_parameter("self_check.warn_rmse_mm", 1e6)            # above error_rmse_mm
        assert not inverted.successful and "less than" in inverted.reason
        assert client.get_parameter("self_check.warn_rmse_mm").double_value == 5000.0
        assert not client.set_parameter("self_check.fraction", 0.9).successful     # out of its range
    finally:
        code = node.stop()
        client.close()
    assert code == 0, node.output()


HIDE_TF2_MSGS = "raise ImportError('tf2_msgs is hidden by the test: a ROS 2 without tf')\n"


@pytest.fixture
def ros_without_tf(tmp_path) -> dict:
    """The environment of a ROS 2 that has neither tf2_ros nor tf2_msgs (the registry's before `dcros ros-setup`):
    a test double at the installation boundary, a tf2_msgs package first on the path that fails to import."""
    hidden = tmp_path / "hide_tf"
    for name in ("tf2_msgs", "tf2_ros"):
        (hidden / name).mkdir(parents=True)
        (hidden / name / "__init__.py").write_text(HIDE_TF2_MSGS)
    return {"PYTHONPATH": os.pathsep.join(filter(None, (str(hidden), os.environ.get("PYTHONPATH"))))}


def test_without_tf_the_node_says_so_once_and_uses_the_parameter(ros_context, tmp_path, ros_without_tf):
    client = Client("depth_completion_test_no_tf")
    node = start_node(tmp_path / "node.log", env=ros_without_tf, model="baseline:nearest", warmup=False,
                      lidar_to_camera=[float(v) for v in WALL.lidar_to_camera.reshape(-1)])
    try:
        wait_ready(node)
        assert_answers_with_the_wall(client, node)
        assert node.output().count("use_tf cannot be honoured") == 1
        assert "dcros ros-setup" in node.output()
    finally:
        code = node.stop()
        client.close()
    assert code == 0, node.output()


def test_without_tf_and_without_a_transform_the_node_refuses_to_start(tmp_path, ros_without_tf):
    node = start_node(tmp_path / "node.log", env=ros_without_tf, model="baseline:nearest", warmup=False)
    code = node.wait(START_TIMEOUT_S)
    output = node.output()
    node.stop()
    assert code == 1, output
    assert "cannot start" in output and "no tf" in output and "calibration_file" in output
    assert "Traceback" not in output


def test_calibration_file_gives_the_transform(ros_context, tmp_path):
    calibration = tmp_path / "rig.yaml"
    calibration.write_text(yaml.safe_dump({"lidar_to_camera": WALL.lidar_to_camera.tolist()}))
    client = Client("depth_completion_test_calibration")
    node = start_node(tmp_path / "node.log", model="baseline:nearest", warmup=False, use_tf=False,
                      calibration_file=str(calibration))
    try:
        wait_ready(node)
        assert_answers_with_the_wall(client, node)
    finally:
        code = node.stop()
        client.close()
    assert code == 0, node.output()


def test_sigint_twice_while_a_frame_is_in_inference_exits_cleanly(ros_context, tmp_path):
    """Ctrl-C under `ros2 launch` reaches the node twice (the terminal's process group, then launch forwarding
    it): the node finishes or abandons the frame in hand and exits 0, without a traceback."""
    client = Client("depth_completion_test_sigint")
    node = start_node(tmp_path / "node.log", model="cdspn_x32", backend="torch", warmup=False, use_tf=False,
                      lidar_to_camera=[float(v) for v in WALL.lidar_to_camera.reshape(-1)])
    size = {"width": 480, "height": 360}  # an untrained CDSPN at this size: a fraction of a second per frame
    try:
        wait_ready(node)
        assert client.first_answer(timeout_s=60.0, **size) is not None, node.output()
        for _ in range(3):
            client.send(**size)
        time.sleep(0.05)
        os.killpg(node.popen.pid, signal.SIGINT)
        time.sleep(0.05)
        node.popen.send_signal(signal.SIGINT)
        code = node.wait(30.0)
    finally:
        client.close()
    output = node.output()
    node.stop()
    assert code == 0, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output


def test_a_raw_camera_left_unrectified_is_said_once_and_counted(ros_context, tmp_path):
    """rectify false with lens distortion in CameraInfo: one warning at the first such frame, every frame counted."""
    from depth_completion_ros.raw_camera import RawCamera, raw_camera_info_fields

    client = Client("depth_completion_test_raw_camera")
    fields = raw_camera_info_fields(RawCamera.create(WALL.camera, "plumb_bob", [-0.3, 0.1, 0.0, 0.0, 0.0]))
    raw = {name: fields[name] for name in ("distortion_model", "d", "k", "r", "p")}
    node = start_node(tmp_path / "node.log", model="baseline:nearest", warmup=False, rectify="false",
                      lidar_to_camera=[float(v) for v in WALL.lidar_to_camera.reshape(-1)])
    try:
        wait_ready(node)
        assert client.first_answer(info_fields=raw) is not None, node.output()
        for _ in range(3):
            frame = client.send(info_fields=raw)
            assert client.answer(stamp_of(frame.image)) is not None
        assert wait_until(lambda: int(values_of(statuses(client, ": depth completion")[-1]).get(
            "frames not rectified", 0)) >= 4 if statuses(client, ": depth completion") else False, 10.0)
        assert node.output().count("its image is not rectified") == 1, node.output()
    finally:
        code = node.stop()
        client.close()
    assert code == 0, node.output()
