"""`dcros play` (depth_completion_ros.ros.player): bags replayed as ROS 2 topics through rclpy and received by
rclpy subscribers of this process (counts, payload, remapping, --topics, --start-offset, --rate, /clock,
/tf_static for late subscribers, ROS 1 bags, bare .mcap files, types that are not installed or defined
differently), Ctrl-C on the command; and the README's loop without rosbag2: a `dcros kitti2bag` bag played
into the node (its console script, started as a pip user starts it, tf from the bag's /tf_static), the
node's depth recorded into a bag by a subscriber here and scored with `dcros eval-bag --recorded-depth`,
which must agree with the offline `dcros eval-bag` of the same bag.

DDS stays on this machine: test/ros/conftest.py sets a private domain, loopback discovery and Fast DDS'
same-host profile for this process and the processes it starts.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.interfaces import ConnectionExtRosbag1, ConnectionExtRosbag2  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402
from ros_support import (  # noqa: E402
    RosProcess, assert_recorded_scores_like_offline, record_stamped, wait_until, write_recording,
)
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import ColorRGBA, Int32  # noqa: E402

from depth_completion_ros.cli import main as dcros  # noqa: E402
from depth_completion_ros.data import messages  # noqa: E402
from depth_completion_ros.data.kitti import KittiRawDrive  # noqa: E402
from depth_completion_ros.data.rosbag import (  # noqa: E402
    KITTI_CAMERA_INFO_TOPIC, KITTI_CLOUD_TOPIC, KITTI_DEPTH_GT_TOPIC, KITTI_IMAGE_TOPIC, TF_STATIC_TOPIC, TF_TOPIC,
    open_bag_writer, write_kitti_drive_bag,
)
from depth_completion_ros.ros.player import PlayOptions, play, publisher_qos  # noqa: E402

pytestmark = pytest.mark.ros

WAIT_S = 20.0  # discovery on a loaded machine
START_NS = 1_000_000_000_000  # the small bags' first log time: 1000 s
PERIOD_NS = 100_000_000  # 10 Hz
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
BEST_EFFORT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
# The end-to-end run (test_bag_replay.py's, without rosbag2): the shipped LSPKD student (about 0.5-0.8 s a KITTI
# frame on two idle CPU cores), the bag's 10 Hz played at one frame per 4 s, so that every frame is answered and
# none replaced by a newer one even on a loaded machine.
E2E_FRAMES = 4
E2E_MODEL = "lspkd_student_synth"
E2E_RATE = "0.025"
NODE_TOPICS = (TF_STATIC_TOPIC, KITTI_IMAGE_TOPIC, KITTI_CAMERA_INFO_TOPIC, KITTI_CLOUD_TOPIC)


def _tf_message():
    return pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not installed (dcros ros-setup builds it)").TFMessage


def _play(bag, **options):
    return play(bag, PlayOptions(wait_for_subscribers=WAIT_S, **options))


def _raw_messages(bag: Path) -> dict[str, list[bytes]]:
    """{topic: recorded CDR bytes in log-time order} of a ROS 2 bag."""
    found: dict[str, list[bytes]] = {}
    with AnyReader([bag]) as reader:
        for connection, _, raw in reader.messages():
            found.setdefault(connection.topic, []).append(bytes(raw))
    return found


def _counter_bag(path: Path, count: int = 10, distro: str = "humble", other_topic: bool = False) -> Path:
    """/count (std_msgs/Int32 0..count-1 at 10 Hz from START_NS) and /tf_static (latched) at START_NS."""
    with open_bag_writer(path, distro=distro) as bag:
        types = bag.types
        bag.add_topic(TF_STATIC_TOPIC, "tf2_msgs/msg/TFMessage", latched=True)
        bag.add_topic("/count", "std_msgs/msg/Int32")
        if other_topic:
            bag.add_topic("/other", "std_msgs/msg/Int32")
        pose = np.eye(4)
        pose[:3, 3] = (0.1, 0.2, 0.3)
        transform = messages.build_transform_stamped(types, messages.build_header(types, START_NS, "base"),
                                                     "sensor", pose)
        bag.write(TF_STATIC_TOPIC, START_NS, messages.make_message(types["tf2_msgs/msg/TFMessage"],
                                                                   transforms=[transform]))
        for index in range(count):
            stamp_ns = START_NS + index * PERIOD_NS
            bag.write("/count", stamp_ns, messages.make_message(types["std_msgs/msg/Int32"], data=index))
            if other_topic:
                bag.write("/other", stamp_ns, messages.make_message(types["std_msgs/msg/Int32"], data=-index))
    return path


# ----------------------------------------------------------------------------------------------- unit
@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_a_kitti2bag_bag_plays_every_message_byte_for_byte(distro, synthetic_drive, peer, tmp_path):
    tf_message = _tf_message()
    kitti_root, drive = synthetic_drive
    bag = tmp_path / f"kitti_{distro}"
    write_kitti_drive_bag(KittiRawDrive(kitti_root / "kitti_raw", drive), bag, frame_ids=range(2),
                          depth_root=kitti_root, distro=distro)
    recorded = _raw_messages(bag)
    remap = {KITTI_IMAGE_TOPIC: "/camera/image"}
    types = {TF_STATIC_TOPIC: tf_message, KITTI_IMAGE_TOPIC: Image, KITTI_CAMERA_INFO_TOPIC: CameraInfo,
             KITTI_CLOUD_TOPIC: PointCloud2, KITTI_DEPTH_GT_TOPIC: Image, TF_TOPIC: tf_message}  # /tf: ego motion
    received = {topic: record_stamped(peer, cls, remap.get(topic, topic),
                                      LATCHED if topic == TF_STATIC_TOPIC else RELIABLE, raw=True)
                for topic, cls in types.items()}

    result = _play(bag, remap=remap)

    assert set(result.topics) == set(types) == set(recorded)
    assert wait_until(lambda: all(len(received[t]) == len(recorded[t]) for t in types), 10.0), \
        {t: (len(received[t]), len(recorded[t])) for t in types}
    for topic in types:
        report = result.topics[topic]
        assert report.published == report.in_bag == len(recorded[topic]), report
        assert report.conversion == "cdr" and report.skipped is None, report  # the recorded bytes, untouched
        assert received[topic].messages == recorded[topic], topic
    assert result.topics[KITTI_IMAGE_TOPIC].published_as == "/camera/image"
    assert "/kitti/camera_color_left/image_raw -> /camera/image" in result.summary()


def test_topics_and_start_offset_skip_messages_but_not_the_latched_tf_static(peer, tmp_path):
    tf_message = _tf_message()
    bag = _counter_bag(tmp_path / "counter", other_topic=True)
    counts = record_stamped(peer, Int32, "/count", RELIABLE)
    static = record_stamped(peer, tf_message, TF_STATIC_TOPIC, LATCHED)
    others = record_stamped(peer, Int32, "/other", RELIABLE)

    # Messages at 0.0, 0.1, ..., 0.9 s: an offset of 0.45 s leaves 0.5 .. 0.9; /tf_static (at 0 s, latched) goes
    # out at the start all the same.
    result = _play(bag, topics=["/count", "tf_static"], start_offset=0.45)

    assert set(result.topics) == {"/count", TF_STATIC_TOPIC}
    assert result.topics["/count"].published == 5 and result.topics[TF_STATIC_TOPIC].published == 1
    assert wait_until(lambda: len(counts) == 5 and len(static) == 1, 10.0), (len(counts), len(static))
    assert [message.data for message in counts.messages] == [5, 6, 7, 8, 9]
    transform = static.messages[0].transforms[0]
    assert (transform.header.frame_id, transform.child_frame_id) == ("base", "sensor")
    assert transform.transform.translation.z == pytest.approx(0.3)
    assert len(others) == 0


def test_rate_scales_the_wall_time_and_clock_carries_the_bag_time(peer, tmp_path):
    from rosgraph_msgs.msg import Clock

    bag = _counter_bag(tmp_path / "counter")

    spans, clocks = {}, {}
    for rate in (1.0, 3.0):
        counts = record_stamped(peer, Int32, f"/count_at_{rate:g}", RELIABLE)
        clock = record_stamped(peer, Clock, f"/clock_at_{rate:g}", BEST_EFFORT)
        result = _play(bag, rate=rate, clock_hz=50.0, exclude_topics=[TF_STATIC_TOPIC],
                       remap={"/count": f"/count_at_{rate:g}", "/clock": f"/clock_at_{rate:g}"})
        assert result.topics["/count"].published == 10 and result.clock_published > 0
        assert wait_until(lambda: len(counts) == 10, 10.0), len(counts)
        entries = counts.entries
        assert [message.data for _, _, message in entries] == list(range(10))  # in log-time order
        # The player's own schedule (the subscriber's arrival times add the machine's load to it): 0.9 s of bag time.
        report = result.topics["/count"]
        spans[rate] = (report.last_publish_ns - report.first_publish_ns) / 1e9
        clocks[rate] = [(wall_ns, messages.stamp_to_ns(message.clock)) for wall_ns, _, message in clock.entries]

    assert 0.6 < spans[1.0] < 2.0, spans
    assert 1.8 < spans[1.0] / spans[3.0] < 5.0, spans  # nominally 3
    for rate, ticks in clocks.items():
        stamps = [stamp for _, stamp in ticks]
        assert stamps == sorted(stamps), rate
        # Bag time: the first message's while waiting for subscribers, then on to the last message's, at `rate`
        # bag seconds per wall-clock second.
        assert START_NS <= stamps[0] and stamps[-1] <= START_NS + 9 * PERIOD_NS + int(rate * 0.1e9), (rate, stamps)
        moving = [(wall, stamp) for wall, stamp in ticks if stamp > START_NS]
        assert len(moving) >= 5, (rate, ticks)
        assert moving[-1][1] - moving[0][1] >= 5 * PERIOD_NS, (rate, stamps)
        # Measured at the subscriber, so loosely: a loaded machine delays some receptions.
        slope = (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])
        assert rate * 0.4 < slope < rate * 2.5, (rate, slope)


def test_tf_static_reaches_a_subscriber_that_joins_late(peer, tmp_path):
    tf_message = _tf_message()
    bag = tmp_path / "late"
    with open_bag_writer(bag, distro="jazzy") as writer:
        types = writer.types
        writer.add_topic(TF_STATIC_TOPIC, "tf2_msgs/msg/TFMessage", latched=True)
        writer.add_topic("/count", "std_msgs/msg/Int32")
        transform = messages.build_transform_stamped(types, messages.build_header(types, START_NS, "base"),
                                                     "camera", np.eye(4))
        writer.write(TF_STATIC_TOPIC, START_NS, messages.make_message(types["tf2_msgs/msg/TFMessage"],
                                                                      transforms=[transform]))
        for index in range(2):  # the replay lasts 30 s unless stopped
            writer.write("/count", START_NS + index * 30_000_000_000,
                         messages.make_message(types["std_msgs/msg/Int32"], data=index))
    stop, ready = threading.Event(), []
    player = threading.Thread(target=lambda: ready.append(play(bag, PlayOptions(), stop=stop, on_ready=ready.append)))
    player.start()
    try:
        assert wait_until(lambda: ready and ready[0].topics[TF_STATIC_TOPIC].published == 1, 30.0)
        wait_until(lambda: False, 0.5)  # well after the publication, nobody listening to /tf_static
        late = record_stamped(peer, tf_message, TF_STATIC_TOPIC, LATCHED)
        assert wait_until(lambda: len(late) == 1, 10.0), "a transient-local subscriber missed /tf_static"
        assert late.messages[0].transforms[0].child_frame_id == "camera"
    finally:
        stop.set()
        player.join(30.0)
    assert not player.is_alive()
    result = ready[-1]
    assert result.stopped and result.topics["/count"].published == 1


def test_a_ros1_bag_plays_converted_to_cdr(peer, tmp_path):
    from rosbags.rosbag1 import Writer as Ros1Writer

    store = get_typestore(Stores.ROS1_NOETIC)
    types = store.types
    bag = tmp_path / "drive.bag"
    images = []
    with Ros1Writer(bag) as writer:
        image_connection = writer.add_connection("/camera/image", "sensor_msgs/msg/Image", typestore=store)
        info_connection = writer.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo",
                                                typestore=store, latching=1)
        header = types["std_msgs/msg/Header"](seq=3, stamp=types["builtin_interfaces/msg/Time"](sec=1000, nanosec=7),
                                              frame_id="camera")
        info = types["sensor_msgs/msg/CameraInfo"](
            header=header, height=2, width=3, distortion_model="plumb_bob", D=np.arange(5.0), K=np.arange(9.0),
            R=np.eye(3).reshape(-1), P=np.arange(12.0), binning_x=0, binning_y=0,
            roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                          do_rectify=False))
        writer.write(info_connection, START_NS, store.serialize_ros1(info, "sensor_msgs/msg/CameraInfo"))
        for index in range(3):
            data = np.arange(18, dtype=np.uint8) + index
            images.append(data)
            stamp = types["builtin_interfaces/msg/Time"](sec=1000, nanosec=index * PERIOD_NS)
            image = types["sensor_msgs/msg/Image"](
                header=types["std_msgs/msg/Header"](seq=index, stamp=stamp, frame_id="camera"), height=2, width=3,
                encoding="rgb8", is_bigendian=0, step=9, data=data)
            writer.write(image_connection, START_NS + index * PERIOD_NS,
                         store.serialize_ros1(image, "sensor_msgs/msg/Image"))
    received = record_stamped(peer, Image, "/camera/image", RELIABLE)
    infos = record_stamped(peer, CameraInfo, "/camera/camera_info", LATCHED)

    result = _play(bag)

    assert {report.conversion for report in result.topics.values()} == {"ros1"}
    assert wait_until(lambda: len(received) == 3 and len(infos) == 1, 10.0), (len(received), len(infos))
    for index, message in enumerate(received.messages):
        assert (message.header.stamp.sec, message.header.stamp.nanosec) == (1000, index * PERIOD_NS)
        assert message.header.frame_id == "camera" and message.encoding == "rgb8" and message.step == 9
        assert bytes(message.data) == images[index].tobytes()
    camera_info = infos.messages[0]
    assert camera_info.distortion_model == "plumb_bob"
    assert list(camera_info.d) == list(range(5)) and list(camera_info.k) == list(range(9))
    assert list(camera_info.p) == list(range(12)) and camera_info.header.stamp.nanosec == 7


def test_a_bare_mcap_file_plays(peer, tmp_path):
    folder = _counter_bag(tmp_path / "counter", count=4, distro="jazzy")
    (mcap,) = folder.glob("*.mcap")
    counts = record_stamped(peer, Int32, "/count", RELIABLE)

    result = _play(mcap, exclude_topics=["/tf_static"])

    assert result.topics["/count"].published == 4 and TF_STATIC_TOPIC not in result.topics
    assert wait_until(lambda: len(counts) == 4, 10.0), len(counts)
    assert [message.data for message in counts.messages] == [0, 1, 2, 3]


def test_a_type_not_installed_is_skipped_with_one_warning_and_a_differing_definition_converted(
        peer, tmp_path, caplog):
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg("int32 data", "std_msgs/msg/Int32"))
    store.register(get_types_from_msg("int32 value", "dcros_play_test_msgs/msg/Thing"))
    # ColorRGBA with its fields in another order than the installed r, g, b, a: bytes passed through as they are
    # would be read wrongly, so the player converts them field by field (by name).
    store.register(get_types_from_msg("float32 a\nfloat32 r\nfloat32 g\nfloat32 b", "std_msgs/msg/ColorRGBA"))
    types = store.types
    bag = tmp_path / "odd"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        count = writer.add_connection("/count", "std_msgs/msg/Int32", typestore=store)
        thing = writer.add_connection("/thing", "dcros_play_test_msgs/msg/Thing", typestore=store)
        color = writer.add_connection("/color", "std_msgs/msg/ColorRGBA", typestore=store)
        for index in range(3):
            stamp_ns = START_NS + index * PERIOD_NS
            writer.write(count, stamp_ns, store.serialize_cdr(types["std_msgs/msg/Int32"](data=index),
                                                              "std_msgs/msg/Int32"))
            writer.write(thing, stamp_ns, store.serialize_cdr(types["dcros_play_test_msgs/msg/Thing"](value=index),
                                                              "dcros_play_test_msgs/msg/Thing"))
            writer.write(color, stamp_ns, store.serialize_cdr(
                types["std_msgs/msg/ColorRGBA"](a=0.5, r=float(index), g=2.0, b=3.0), "std_msgs/msg/ColorRGBA"))
    counts = record_stamped(peer, Int32, "/count", RELIABLE)
    colors = record_stamped(peer, ColorRGBA, "/color", RELIABLE)

    with caplog.at_level(logging.WARNING, logger="depth_completion_ros.ros.player"):
        result = _play(bag)

    thing_warnings = [r for r in caplog.records if "dcros_play_test_msgs/msg/Thing" in r.getMessage()]
    assert len(thing_warnings) == 1 and "/thing" in thing_warnings[0].getMessage()
    assert result.topics["/thing"].skipped == "type not installed" and result.topics["/thing"].published == 0
    assert "skipped: type not installed" in result.summary()
    assert result.topics["/color"].conversion == "migrated"
    assert any("/color" in r.getMessage() and "differs" in r.getMessage() for r in caplog.records)
    assert wait_until(lambda: len(counts) == 3 and len(colors) == 3, 10.0), (len(counts), len(colors))
    assert [message.data for message in counts.messages] == [0, 1, 2]
    assert [(c.r, c.g, c.b, c.a) for c in colors.messages] == [(float(i), 2.0, 3.0, 0.5) for i in range(3)]


def test_publishers_take_the_recorded_qos_and_tf_stays_reliable():
    from depth_completion_ros.data.rosbag import LATCHED_QOS

    def connection(topic, offered=(), latching=None):
        if latching is not None:
            return SimpleNamespace(topic=topic, ext=ConnectionExtRosbag1(None, latching))
        return SimpleNamespace(topic=topic, ext=ConnectionExtRosbag2("cdr", list(offered)))

    best_effort = LATCHED_QOS._replace(reliability=type(LATCHED_QOS.reliability).BEST_EFFORT,
                                       durability=type(LATCHED_QOS.durability).VOLATILE)
    reliable, volatile = ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE
    latched = DurabilityPolicy.TRANSIENT_LOCAL

    def policies(topic, connections, mode="bag", published_as=None, count=1):
        qos, is_latched = publisher_qos(topic, published_as or topic, connections, mode, count)
        return qos.reliability, qos.durability, qos.depth, is_latched

    # /tf_static: reliable, transient local, deep enough for every message of the bag, whatever the mode.
    assert policies("/tf_static", [connection("/tf_static")], "sensor_data", count=30) == (reliable, latched, 30, True)
    assert policies("/static", [connection("/static")], published_as="/tf_static")[:2] == (reliable, latched)
    assert policies("/tf", [connection("/tf")], "sensor_data") == (reliable, volatile, 100, False)
    # "bag": what the recording's publishers offered (none recorded or mixed: reliable), ROS 1 latching included.
    assert policies("/image", [connection("/image", [best_effort])])[:2] == (ReliabilityPolicy.BEST_EFFORT, volatile)
    assert policies("/image", [connection("/image")])[:2] == (reliable, volatile)
    assert policies("/image", [connection("/image", [best_effort, LATCHED_QOS])])[:2] == (reliable, volatile)
    assert policies("/map", [connection("/map", latching=1)])[:2] == (reliable, latched)
    assert policies("/image", [connection("/image", latching=0)])[:2] == (reliable, volatile)
    # The other modes, for every topic not recorded latched.
    best = ReliabilityPolicy.BEST_EFFORT
    assert policies("/image", [connection("/image")], "sensor_data") == (best, volatile, 5, False)
    assert policies("/image", [connection("/image", [best_effort])], "reliable")[:2] == (reliable, volatile)
    assert policies("/map", [connection("/map", [LATCHED_QOS])], "sensor_data")[:2] == (reliable, latched)


def test_the_command_stops_cleanly_on_ctrl_c_with_its_summary(tmp_path):
    bag = _counter_bag(tmp_path / "counter")
    command = RosProcess([sys.executable, "-m", "depth_completion_ros.cli", "play", str(bag), "--loop", "--clock"],
                         dict(os.environ, PYTHONUNBUFFERED="1"), tmp_path / "play.log")
    try:
        assert command.wait_for_output("Ctrl-C stops", 60.0), command.output()
        wait_until(lambda: False, 1.5)  # more than a pass of the 0.9 s bag
        command.interrupt()
        code = command.wait(20.0)
    finally:
        command.stop()
    output = command.output()
    assert code == 0, output
    assert "Traceback" not in output, output
    assert f"stopped {bag}" in output and "/count" in output and "/clock" in output, output
    assert re.search(r"messages in [0-9.]+ s, [1-9][0-9]* pass", output), output  # --loop: a whole pass, then more


def test_the_command_without_rclpy_names_what_is_missing(tmp_path, monkeypatch, capsys):
    bag = _counter_bag(tmp_path / "counter", count=1)
    monkeypatch.setitem(sys.modules, "rclpy", None)  # `import rclpy` fails as it does without ROS 2

    assert dcros(["play", str(bag)]) == 2

    error = capsys.readouterr().err
    assert "dcros play: error:" in error and "rclpy" in error and "depth_completion_ros[ros]" in error


# ----------------------------------------------------------------------------------------- end to end
def test_the_node_answers_a_played_kitti2bag_bag_as_offline_eval_bag_scores_it(synthetic_drive, peer, tmp_path):
    _tf_message()  # the node's only LiDAR->camera transform here: the bag's /tf_static, played (no lidar_to_camera)
    node_script = Path(sys.executable).parent / "depth_completion_node"
    if not node_script.exists():
        pytest.skip(f"the node's console script is not installed next to {sys.executable}")
    kitti_root, drive = synthetic_drive
    source = tmp_path / "source"
    write_kitti_drive_bag(KittiRawDrive(kitti_root / "kitti_raw", drive), source, frame_ids=range(E2E_FRAMES),
                          depth_root=kitti_root, distro="humble")
    depth = record_stamped(peer, Image, "/depth/image", RELIABLE, raw=True)
    depth_info = record_stamped(peer, CameraInfo, "/depth/camera_info", RELIABLE, raw=True)

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The node's first frame is a LiDAR hold-out self-check frame (self_check.every_n_frames counts from it), whose
    # depth is by default the prediction made without the held-out 5 % of the LiDAR pixels (0.5 % more RMSE on
    # this drive's first frame); second_run publishes the full-input prediction, the one offline eval-bag scores.
    node = RosProcess([str(node_script), "--ros-args", "-p", f"model:={E2E_MODEL}", "-p", "device:=cpu",
                       "-p", "self_check.second_run:=true", "-r", f"image:={KITTI_IMAGE_TOPIC}",
                       "-r", f"camera_info:={KITTI_CAMERA_INFO_TOPIC}", "-r", f"points:={KITTI_CLOUD_TOPIC}"],
                      env, tmp_path / "node.log")
    player = None
    try:
        assert node.wait_for_output("ready for frames", 180.0), node.output()[-4000:]
        # The recorder here must have discovered the node's outputs before the first answer (reliable volatile).
        assert wait_until(lambda: all(peer.node.count_publishers(topic) > 0
                                      for topic in ("/depth/image", "/depth/camera_info")), 30.0)
        # The player waits until the node subscribed to every topic it plays, then 1 s more: the node's side of
        # each match may come a moment after the player's, and a best-effort reader drops what comes before.
        player = RosProcess([sys.executable, "-m", "depth_completion_ros.cli", "play", str(source),
                             "--rate", E2E_RATE, "--topics", *NODE_TOPICS, "--wait-for-subscribers", "30",
                             "--delay", "1"], env, tmp_path / "play.log")
        assert player.wait(120.0) == 0, player.output()
        assert wait_until(lambda: len(depth) >= E2E_FRAMES or node.popen.poll() is not None, 60.0), \
            f"{len(depth)} of {E2E_FRAMES} frames answered\n{player.output()}\n{node.output()[-4000:]}"
        wait_until(lambda: len(depth_info) >= len(depth), 5.0)
    finally:
        if player is not None:
            player.stop()
        node_code = node.stop()
    assert node_code == 0 and "Traceback" not in node.output(), node.output()[-4000:]
    assert "no subscriber" not in player.output(), player.output()

    recorded = tmp_path / "recorded"
    counts = write_recording(recorded, {"/depth/image": ("sensor_msgs/msg/Image", depth),
                                        "/depth/camera_info": ("sensor_msgs/msg/CameraInfo", depth_info)})
    assert counts["/depth/image"] == E2E_FRAMES, counts
    assert_recorded_scores_like_offline(source, recorded, E2E_MODEL, E2E_FRAMES, tmp_path)
