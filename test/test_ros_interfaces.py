"""Which ROS 2 this environment has, and tf2_msgs built from the project's own definition where ROS 2 comes
from the Python package registry (which publishes no tf2_msgs)."""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from rosbags.typesys import Stores, get_typestore

from depth_completion_ros.ros.interfaces import (
    TF_MESSAGE_DEFINITION, RosEnvironment, build_tf2_msgs, has_module, ros_environment, write_tf2_msgs_package,
)


def test_the_definition_is_ros_2s_tf_message(tmp_path):
    """Same name and fields as ROS 2's tf2_msgs/msg/TFMessage (the Jazzy typestore holds ROS's own), so the
    type hash and the wire format are ROS 2's: /tf from a full ROS 2 installation is understood."""
    package = write_tf2_msgs_package(tmp_path / "tf2_msgs")
    assert ElementTree.parse(package / "package.xml").getroot().findtext("name") == "tf2_msgs"
    assert (package / "msg" / "TFMessage.msg").read_text() == TF_MESSAGE_DEFINITION
    assert "rosidl_generate_interfaces" in (package / "CMakeLists.txt").read_text()
    [(name, field)] = get_typestore(Stores.ROS2_JAZZY).fielddefs["tf2_msgs/msg/TFMessage"][1]
    kind, (element, _) = field[0], field[1]
    assert TF_MESSAGE_DEFINITION.split() == ["geometry_msgs/TransformStamped[]", name]
    assert kind.name == "SEQUENCE" and element[1] == "geometry_msgs/msg/TransformStamped"


def test_tiers():
    def environment(**present):
        fields = dict(rclpy=True, distribution=None, ros2_command=False, tf2_ros=False, tf2_msgs=False,
                      message_filters=False, diagnostic_updater=False)
        return RosEnvironment(**{**fields, **present})

    assert environment(rclpy=False).tier == "none"
    registry = environment(tf2_msgs=True)
    assert registry.tier == "registry" and "absent: tf2_ros, message_filters, diagnostic_updater" in registry.describe()
    assert environment(distribution="jazzy", ros2_command=True, tf2_ros=True).tier == "distribution"
    assert environment(distribution="jazzy").tier == "registry"        # ROS_DISTRO without a ros2 command
    assert ros_environment().rclpy == has_module("rclpy")


@pytest.mark.ros
def test_tf2_msgs_imports_with_ros_2s_type_hash():
    """What `dcros ros-setup` built (or the distribution's): the class carries TransformStamped messages, and where
    the installation has type descriptions (Jazzy), its hash is ROS 2 Jazzy's for tf2_msgs/msg/TFMessage."""
    pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")
    tf2_msgs = pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not installed (dcros ros-setup builds it)")
    from geometry_msgs.msg import TransformStamped

    message = tf2_msgs.TFMessage(transforms=[TransformStamped(child_frame_id="lidar")])
    assert message.transforms[0].child_frame_id == "lidar"
    module = Path(sys.modules["tf2_msgs"].__file__).resolve()
    prefixes = [parent for parent in module.parents if (parent / "share" / "tf2_msgs").is_dir()]
    description = prefixes[0] / "share" / "tf2_msgs" / "msg" / "TFMessage.json" if prefixes else None
    if description is not None and description.is_file():
        hashes = {entry["type_name"]: entry["hash_string"]
                  for entry in json.loads(description.read_text())["type_hashes"]}
        jazzy = get_typestore(Stores.ROS2_JAZZY).hash_rihs01("tf2_msgs/msg/TFMessage")
        assert hashes["tf2_msgs/msg/TFMessage"] == jazzy


@pytest.mark.ros
@pytest.mark.slow
def test_the_builder_installs_a_complete_package_into_a_fresh_prefix(tmp_path):
    """The build `dcros ros-setup` runs, into an empty prefix: C and Python type supports, the Python package
    and the ament index entry (what rclpy and the middleware look up)."""
    if ros_environment().tier != "registry":
        pytest.skip("builds with the Python package registry's rosidl generators (the ros extra)")
    if not (Path(sys.prefix) / "share" / "rosidl_default_generators").is_dir():
        pytest.fail("the ros extra's rosidl generators are not installed in this environment")
    seconds = build_tf2_msgs(prefix=tmp_path, log=lambda line: None)
    libraries = {path.name for path in (tmp_path / "lib").glob("libtf2_msgs__*.so")}
    assert {"libtf2_msgs__rosidl_typesupport_c.so", "libtf2_msgs__rosidl_typesupport_fastrtps_c.so",
            "libtf2_msgs__rosidl_generator_py.so"} <= libraries
    python = next((tmp_path / "lib").glob("python3*/site-packages/tf2_msgs/msg/_tf_message.py"))
    assert "class TFMessage" in python.read_text()
    assert (tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "tf2_msgs").is_file()
    assert seconds < 180
