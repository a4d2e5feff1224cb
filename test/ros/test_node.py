"""The live node on ROS 2 (Humble, Jazzy): parameters, synchronized input over best-effort QoS, the depth
output with the camera's header, and bad frames counted instead of crashing. Skipped without rclpy."""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from depth_completion_ros.data import messages  # noqa: E402
from depth_completion_ros.ros import latest_frame  # noqa: E402
from depth_completion_ros.ros.node import SELF_CHECK_STATUS, DepthCompletionNode  # noqa: E402
from depth_completion_ros.ros.params import PARAMETERS, ParameterError  # noqa: E402
from depth_completion_ros.ros.synthetic import rclpy_types, wall_frame  # noqa: E402

pytestmark = pytest.mark.ros

MODEL = "cdspn_x32"  # the smallest registered network, untrained: the test checks plumbing, not accuracy
TYPES = rclpy_types()
TIMEOUT_S = 30.0
REPUBLISH_S = 0.2


def node_parameters(**changes) -> list[Parameter]:
    rig = wall_frame(TYPES, 0).lidar_to_camera
    values = {"model": MODEL, "device": "cpu", "precision": "fp32", "warmup": False, "use_tf": False,
              "lidar_to_camera": [float(v) for v in rig.reshape(-1)], "publish_sparse": True}
    values.update(changes)
    return [Parameter(name, value=value) for name, value in values.items()]


class Peer:
    """A second node that plays the sensors (best effort, like drivers) and listens to the outputs."""

    def __init__(self, node_under_test: DepthCompletionNode):
        self.node = rclpy.create_node("depth_completion_test_peer")
        self.publishers = {
            "image": self.node.create_publisher(Image, "image", qos_profile_sensor_data),
            "camera_info": self.node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data),
            "points": self.node.create_publisher(PointCloud2, "points", qos_profile_sensor_data),
        }
        self.depth, self.info, self.sparse = [], [], []
        self.node.create_subscription(Image, "depth/image", self.depth.append, 10)
        self.node.create_subscription(CameraInfo, "depth/camera_info", self.info.append, 10)
        self.node.create_subscription(Image, "sparse_depth", self.sparse.append, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node_under_test)
        self.executor.add_node(self.node)
        self.sent_stamps = []
        self._next_stamp_ns = 1_000_000_000

    def send(self, **frame_options):
        """Publish one synchronized frame with a fresh stamp; returns it."""
        stamp_ns, self._next_stamp_ns = self._next_stamp_ns, self._next_stamp_ns + 100_000_000
        frame = wall_frame(TYPES, stamp_ns, **frame_options)
        self.publishers["camera_info"].publish(frame.camera_info)
        self.publishers["points"].publish(frame.cloud)
        self.publishers["image"].publish(frame.image)
        self.sent_stamps.append(stamp_ns)
        return frame

    def spin_until(self, condition, timeout_s: float = TIMEOUT_S, **frame_options) -> bool:
        """Spin both nodes, sending a frame every REPUBLISH_S (best effort: early ones may precede
        discovery), until `condition()` holds or the time is up."""
        deadline = time.monotonic() + timeout_s
        next_send = 0.0
        while time.monotonic() < deadline:
            if condition():
                return True
            if time.monotonic() >= next_send:
                self.send(**frame_options)
                next_send = time.monotonic() + REPUBLISH_S
            self.executor.spin_once(timeout_sec=0.05)
        return condition()

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def running(ros_context):
    node = DepthCompletionNode(parameter_overrides=node_parameters())
    peer = Peer(node)
    yield node, peer
    peer.close()
    node.close()


def test_depth_image_arrives_with_the_camera_header_and_size(running):
    node, peer = running
    assert peer.spin_until(lambda: peer.depth and peer.info and peer.sparse)
    depth = peer.depth[0]
    assert depth.encoding == "32FC1" and (depth.width, depth.height) == (32, 24)
    assert depth.header.frame_id == "camera"
    assert messages.stamp_to_ns(depth.header.stamp) in peer.sent_stamps
    values = messages.image_to_numpy(depth)
    finite = values[np.isfinite(values)]
    assert finite.size > 0 and (finite >= 0).all() and (finite <= node.settings.max_depth).all()
    info = peer.info[0]
    assert info.header.frame_id == "camera" and (info.width, info.height) == (32, 24)
    # The sparse input is the LiDAR wall projected through the lidar_to_camera parameter: exact depths.
    sparse = messages.depth_from_image(peer.sparse[0])
    reference = wall_frame(TYPES, 0)
    rows, cols = reference.lidar_pixels
    assert np.allclose(sparse[rows, cols], reference.wall_depth, atol=1e-4)
    assert np.count_nonzero(sparse) == rows.size


def test_a_mismatched_image_is_dropped_and_counted_not_a_crash(running):
    node, peer = running
    counted = peer.spin_until(lambda: node.drops.snapshot()[latest_frame.SIZE_MISMATCH] >= 2,
                              camera_info_size=(40, 30))
    assert counted and not peer.depth
    assert node.worker.running
    assert peer.spin_until(lambda: peer.depth)        # good frames still go through afterwards


def test_parameters_are_declared_with_descriptors_and_only_toggles_change(running):
    node, _ = running
    for spec in PARAMETERS:
        descriptor = node.describe_parameter(spec.name)
        assert descriptor.read_only == spec.read_only, spec.name
        assert descriptor.description
    [rejected] = node.set_parameters([Parameter("device", value="cuda")])
    assert not rejected.successful
    [accepted] = node.set_parameters([Parameter("publish_colorized", value=True)])
    assert accepted.successful and node.get_parameter("publish_colorized").value is True


def test_bad_parameters_stop_the_node_at_start_up_naming_them(ros_context):
    with pytest.raises(ParameterError, match="device"):
        DepthCompletionNode(parameter_overrides=node_parameters(device="gpu"))
    with pytest.raises(ParameterError, match="lidar_to_camera"):
        DepthCompletionNode(parameter_overrides=node_parameters(
            lidar_to_camera=[float(v) for v in np.diag([2.0, 1.0, 1.0, 1.0]).reshape(-1)]))


def test_every_input_message_is_accounted_for(running):
    """Received = paired + waiting in the synchronizer + unpaired, per input; lone clouds are unpaired."""
    node, peer = running
    assert peer.spin_until(lambda: len(peer.depth) >= 2)
    lone = wall_frame(TYPES, peer._next_stamp_ns + 50_000_000)  # between two frames' stamps: no partner
    peer.publishers["points"].publish(lone.cloud)
    peer.publishers["points"].publish(lone.cloud)
    assert peer.spin_until(lambda: len(peer.depth) >= 4)
    rows = node.accounting.snapshot(node._synchronizer_waiting())
    for name, counts in rows.items():
        assert counts["received"] == counts["paired"] + counts["waiting"] + counts["unpaired"], (name, counts)
        assert counts["lost_in_transport"] == 0
    assert rows["points"]["received"] == rows["image"]["received"] + 2
    assert rows["points"]["unpaired"] + rows["points"]["waiting"] >= 2
    assert rows["image"]["received"] >= node.published >= 3  # the 4th may be counted just after it is sent
    # Every synchronized frame is published, replaced by a newer one, dropped, or still in hand.
    drops = node.drops.total
    assert node.accounting.paired - node.published - drops in (0, 1, 2)


# ------------------------------------------------------------------------------------------ self-check
OK, WARN, ERROR = b"\x00", b"\x01", b"\x02"


def self_check_node(ros_context, **changes):
    """A node that self-checks every frame, a peer, and the self-check statuses seen on /diagnostics and
    on the self_check topic."""
    parameters = {"self_check.fraction": 0.2, "self_check.every_n_frames": 1, **changes}
    node = DepthCompletionNode(parameter_overrides=node_parameters(**parameters))
    peer = Peer(node)
    seen = {"diagnostics": [], "topic": []}
    peer.node.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: seen["diagnostics"].extend(
        status for status in msg.status if status.name.endswith(SELF_CHECK_STATUS)), 10)
    peer.node.create_subscription(DiagnosticArray, "self_check", seen["topic"].append, 10)
    return node, peer, seen


def values_of(status) -> dict[str, str]:
    return {value.key: value.value for value in status.values}


def judged(seen, level=None):
    """The last self-check status on /diagnostics with enough samples to judge (and of `level`), else None."""
    for status in reversed(seen["diagnostics"]):
        if "too few" not in status.message and values_of(status)["self-check RMSE (mm)"] != "n/a" \
                and (level is None or status.level == level):
            return status
    return None


def test_self_check_on_a_flat_wall_with_the_nearest_fill_is_exact(ros_context):
    """Every held-out wall pixel has a neighbour at the wall's depth: the nearest fill predicts it exactly."""
    node, peer, seen = self_check_node(ros_context, model="baseline:nearest")
    try:
        assert peer.spin_until(lambda: judged(seen) is not None and seen["topic"])
        status = judged(seen)
        values = values_of(status)
        assert status.level == OK
        assert float(values["self-check RMSE (mm)"]) < 1.0 and float(values["self-check MAE (mm)"]) < 1.0
        assert int(values["self-check samples"]) >= 30 and int(values["self-check frames"]) >= 2
        assert values["self-check samples 0-10 m"] == values["self-check samples"]     # the wall is at 5 m
        assert values["self-check RMSE 10-20 m (mm)"] == "n/a"
        assert values["self-check fraction"] == "0.2"
        frame = seen["topic"][0]
        assert messages.stamp_to_ns(frame.header.stamp) in peer.sent_stamps and frame.header.frame_id == "camera"
        [one] = frame.status
        assert float(values_of(one)["self-check RMSE (mm)"]) < 1.0
        assert int(values_of(one)["self-check samples"]) == round(0.2 * 88)     # 8 x 11 wall returns
    finally:
        peer.close()
        node.close()


def test_self_check_of_the_untrained_network_and_its_runtime_thresholds(ros_context):
    thresholds = {"self_check.warn_rmse_mm": 1.0, "self_check.error_rmse_mm": 1e6}
    node, peer, seen = self_check_node(ros_context, **thresholds)
    try:
        assert peer.spin_until(lambda: judged(seen) is not None)
        status = judged(seen)
        assert float(values_of(status)["self-check RMSE (mm)"]) > 1.0 and status.level == WARN
        [rejected] = node.set_parameters([Parameter("self_check.warn_rmse_mm", value=1e6)])
        assert not rejected.successful and "less than" in rejected.reason        # not below error_rmse_mm
        [accepted] = node.set_parameters([Parameter("self_check.error_rmse_mm", value=2.0)])
        assert accepted.successful
        assert peer.spin_until(lambda: judged(seen, ERROR) is not None)
        assert values_of(judged(seen, ERROR))["self-check error RMSE (mm)"] == "2"
        [off] = node.set_parameters([Parameter("self_check.fraction", value=0.0)])
        assert off.successful and node.processor.options.self_check_fraction == 0.0
    finally:
        peer.close()
        node.close()


# ------------------------------------------------------------------------------------------ raw cameras
def raw_camera_frame(stamp_ns: int):
    """A wall frame whose CameraInfo describes a raw camera (KITTI-like barrel distortion)."""
    from depth_completion_ros.raw_camera import RawCamera, raw_camera_info_fields

    frame = wall_frame(TYPES, stamp_ns)
    raw = RawCamera.create(messages.camera_from_camera_info(frame.camera_info), "plumb_bob", [-0.3, 0.1, 0, 0, 0])
    fields = raw_camera_info_fields(raw)
    info = frame.camera_info
    for name in ("distortion_model", "d", "k", "r", "p"):
        setattr(info, name, fields[name])
    return frame, raw


@pytest.mark.parametrize("rectify", ["auto", "false"])
def test_a_raw_camera_is_rectified_and_published_with_the_rectified_camera_info(ros_context, rectify):
    node = DepthCompletionNode(parameter_overrides=node_parameters(rectify=rectify))
    peer = Peer(node)
    try:
        def send_raw():
            frame, raw = raw_camera_frame(peer._next_stamp_ns)
            peer._next_stamp_ns += 100_000_000
            for name in ("camera_info", "points", "image"):
                peer.publishers[name].publish(getattr(frame, "cloud" if name == "points" else name))
            peer.sent_stamps.append(messages.stamp_to_ns(frame.image.header.stamp))
            return raw

        deadline = time.monotonic() + TIMEOUT_S
        while not (peer.info and peer.depth) and time.monotonic() < deadline:
            raw = send_raw()
            for _ in range(4):
                peer.executor.spin_once(timeout_sec=0.05)
        assert peer.info and peer.depth
        info = peer.info[-1]
        if rectify == "auto":
            assert not any(info.d) and list(info.d) == [0.0] * 5 and info.distortion_model == "plumb_bob"
            assert np.allclose(info.k, raw.rectified.K.reshape(-1)) and np.allclose(info.r, np.eye(3).reshape(-1))
            assert node.rectified >= 1 and node.unrectified == 0
        else:
            assert np.allclose(info.d, [-0.3, 0.1, 0, 0, 0])      # the input's, as published before
            assert node.unrectified >= 1 and node.rectified == 0
    finally:
        peer.close()
        node.close()
