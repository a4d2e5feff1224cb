"""`dcros play`: a bag replayed as live ROS 2 topics through rclpy, for a machine without rosbag2.

What plays: every bag `data.rosbag` reads (rosbags' AnyReader): rosbag2 folders (sqlite3 or MCAP, with or
without message definitions), a bare `.mcap` or `.db3` file, and ROS 1 `.bag` files. The player is one rclpy
node ("dcros_play") with one publisher per topic; it needs rclpy and the message packages of the topics, and
nothing else of ROS 2 (no rosbag2, no ros2 command).

Publishing. rclpy publishes serialized data as it is: `Publisher.publish(data)` with `data` of type
`bytes` (exactly: a memoryview or bytearray is refused) goes to `publish_raw`, the CDR bytes with their
encapsulation header, unchecked. The type's rclpy class (`importlib.import_module("pkg.msg").Name`) is still
needed for the publisher, and its installed definition (field names and rosidl types of the class) is
compared with the bag's definition of the type:
- ROS 2 bags: where both have the same layout (the same fields in the same order, of the same types; names
  compared without case: `same_layout`) the recorded CDR bytes are published untouched; that is the case
  for the standard types between distributions (a Humble bag's sensor_msgs, geometry_msgs and tf2_msgs on
  Jazzy: their definitions, even their RIHS01 type hashes, are equal). Where they differ, each message is deserialised
  with the bag's definition, moved field by field (by name, rosbags.convert's migration: fields the
  installed type lacks are dropped, new ones get their defaults) into the installed definition and
  serialised again; one warning names the type.
- ROS 1 bags: converted to CDR per message (rosbags' `ros1_to_cdr` against the installed definition, which
  drops the ROS 1 Header's `seq`; the same field-by-field migration where the layouts differ), with the
  ROS 1 type renames rosbags.convert knows (tf/tfMessage -> tf2_msgs/msg/TFMessage).
- A topic whose type is not installed is skipped with one warning naming the type; the rest plays.

Timing. Messages go out in the reader's log-time order, each at its recorded log time scaled by `rate`, on a
schedule fixed at the start of each pass (steady clock, `time.monotonic_ns`): a late publish does not shift
the messages after it, so no drift accumulates; a player that falls behind publishes at once until it has
caught up. `start_offset` seconds from the bag's first message (any topic) is where each pass begins.

QoS (per topic, published name or bag name):
- /tf_static: reliable, transient local, keep last (as many as the bag holds, at least 10), so that a
  subscriber that joins late (tf2's static listener, the node) still gets the static tree;
- /tf: reliable, volatile, keep last 100 (tf2's broadcaster);
- the rest by `qos`: "bag" (default, as `ros2 bag play`): the reliability and durability the recording's
  publishers offered where they agreed (ROS 1: latched -> transient local), else reliable volatile, keep
  last 10; "reliable": reliable volatile keep last 10; "sensor_data": best effort volatile keep last 5
  (rclpy's qos_profile_sensor_data). Topics recorded transient local (latched) keep their recorded QoS
  in every mode. A reliable publisher serves best-effort subscribers too (the node's inputs), a best-effort
  one serves no reliable subscriber, hence the default.
- /clock (with `clock_hz`): rosgraph_msgs/msg/Clock at that wall-clock rate, carrying the bag time of the
  moment (bag start + offset during the delay and the wait for subscribers), best effort keep last 1 (as
  rclcpp's ClockQoS, which `ros2 bag play --clock` uses and rclpy's time source subscribes with).

Options that follow `ros2 bag play` (Jazzy): rate, loop, start offset, `--clock [HZ]` (40 Hz without a value),
remapping, `--topics`, `--exclude-topics`, `--delay` (before each pass), `--wait-for-all-acked`. Where this
player differs:
- messages of latched (transient local) topics that lie before the start offset, /tf_static among them,
  are published at the start of each pass instead of skipped, so a bag started past its first message still
  has its static tree (ros2 bag play skips them);
- remapping maps whole topic names (`OLD:=NEW`, relative names taken from the root namespace), not rcl
  remapping rules with substitutions, and applies to /clock too;
- `qos` picks a profile for all non-tf topics instead of a per-topic overrides file;
- `wait_for_subscribers` (not in ros2 bag play): before the first pass, wait up to that many seconds until
  every publisher but /clock has a subscriber (DDS discovery takes a moment, and a volatile subscriber matched after
  the first messages misses them);
- `wait_for_all_acked` defaults to one second (ros2 bag play: no wait), so that reliable subscribers get
  the last messages before the publishers go away; 0 waits without limit, negative not at all;
- no keyboard controls, pause, services, playback duration or message loans; a `--topics` name the bag
  lacks is an error.

Transport: the player is a DDS participant like any sensor driver, so the DDS tuning of the README applies
to it as to the node: with Fast DDS' defaults, a message larger than the 512 KiB shared-memory segment (a
KITTI image or cloud) goes over UDP, and best-effort subscribers in other processes lose many. The player
warns once when that happens (`LargeMessageCheck`); where every process runs on one computer, the package's
config/fastdds_same_host.xml (FASTRTPS_DEFAULT_PROFILES_FILE, for the player and the node) cures it.

Ctrl-C (KeyboardInterrupt in the calling thread) or `stop` (a threading.Event) ends the replay cleanly:
the result says it was stopped and holds what was published so far.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

LOGGER = logging.getLogger(__name__)

QOS_MODES = ("bag", "reliable", "sensor_data")
DEFAULT_CLOCK_HZ = 40.0  # ros2 bag play --clock without a value
CLOCK_TOPIC = "/clock"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
QUEUE_DEPTH = 10  # rosbag2's playback publisher depth
TF_DEPTH = 100  # tf2's broadcaster and listener depth
LATCHED_DEPTH_MAX = 1000
SENSOR_DATA_DEPTH = 5
# ROS 1 message types whose ROS 2 counterparts have another name (rosbags.convert's STATIC_MSGTYPE_RENAMES).
ROS1_TYPE_RENAMES = {"tf/msg/tfMessage": "tf2_msgs/msg/TFMessage"}
NODE_NAME = "dcros_play"
EMPTY_MEMBER = "structure_needs_at_least_one_member"
FASTDDS_DEFAULT_SEGMENT = 512 * 1024  # Fast DDS' default shared-memory segment


class RosUnavailableError(ImportError):
    """rclpy (or a message package the replay needs, e.g. rosgraph_msgs for /clock) cannot be imported."""


class MissingTypeError(LookupError):
    """A message type of the bag has no installed rclpy class; the message says what is missing."""


def _ros_unavailable(what: str, error: ImportError) -> RosUnavailableError:
    missing = getattr(error, "name", None) or what
    return RosUnavailableError(
        f"dcros play needs {what} (cannot import {missing}: {error}): source a ROS 2 distribution "
        f"(source /opt/ros/<distro>/setup.bash), or install ROS 2 Jazzy from the Python package registry "
        f"with pip install 'depth_completion_ros[ros]'")


def absolute_topic(name: str) -> str:
    """A topic name from the root namespace: 'image' -> '/image'."""
    name = name.strip()
    if not name or name == "/":
        raise ValueError(f"not a topic name: {name!r}")
    return name if name.startswith("/") else f"/{name}"


def parse_remap(text: str) -> tuple[str, str]:
    """'OLD:=NEW' -> ('/OLD', '/NEW') (relative names are taken from the root namespace)."""
    old, sep, new = text.partition(":=")
    if not sep or not old.strip() or not new.strip():
        raise ValueError(f"a remapping must look like OLD:=NEW (e.g. /points:=/velodyne_points), got {text!r}")
    return absolute_topic(old), absolute_topic(new)


@dataclass
class PlayOptions:
    """How to play; see the module docstring for each option's semantics."""

    rate: float = 1.0
    loop: bool = False
    start_offset: float = 0.0  # seconds from the bag's first message
    clock_hz: float | None = None  # None: no /clock
    remap: dict[str, str] = field(default_factory=dict)  # bag topic -> published topic (absolute names)
    topics: list[str] | None = None  # only these bag topics (None: all)
    exclude_topics: list[str] = field(default_factory=list)
    qos: str = "bag"
    delay: float = 0.0  # seconds before each pass
    wait_for_subscribers: float = 0.0  # seconds, before the first pass
    wait_for_all_acked: float = 1.0  # seconds at the end; 0: no limit, < 0: no wait

    def validate(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"the rate must be positive, got {self.rate}")
        if self.start_offset < 0:
            raise ValueError(f"the start offset must be >= 0 s, got {self.start_offset}")
        if self.delay < 0:
            raise ValueError(f"the delay must be >= 0 s, got {self.delay}")
        if self.wait_for_subscribers < 0:
            raise ValueError(f"the wait for subscribers must be >= 0 s, got {self.wait_for_subscribers}")
        if self.clock_hz is not None and not self.clock_hz > 0:
            raise ValueError(f"the /clock rate must be positive, got {self.clock_hz} Hz")
        if self.qos not in QOS_MODES:
            raise ValueError(f"unknown QoS mode {self.qos!r} (choose from {', '.join(QOS_MODES)})")


@dataclass
class TopicReport:
    """One topic of the replay: its name in the bag and as published, type, counts, why it was skipped."""

    topic: str
    published_as: str
    msgtype: str
    in_bag: int
    published: int = 0
    conversion: str = ""  # "cdr" (bytes as recorded), "ros1", "migrated", "" for skipped topics
    skipped: str | None = None
    first_publish_ns: int | None = None  # steady clock (time.monotonic_ns) at the topic's first and last publish
    last_publish_ns: int | None = None


@dataclass
class PlayResult:
    """What a replay did: per-topic counts (bag topics, then /clock), passes, wall time, how it ended."""

    bag: Path
    topics: dict[str, TopicReport]
    passes: int = 0
    wall_s: float = 0.0
    stopped: bool = False  # Ctrl-C or the stop event ended it early
    clock_published: int = 0

    @property
    def published(self) -> int:
        return sum(report.published for report in self.topics.values())

    def summary(self) -> str:
        """The per-topic table `dcros play` prints at the end."""
        how = "stopped" if self.stopped else "played"
        lines = [f"{how} {self.bag}: {self.published} messages in {self.wall_s:.1f} s, "
                 f"{self.passes} pass{'es' if self.passes != 1 else ''}"]
        rows = [(r.topic if r.topic == r.published_as else f"{r.topic} -> {r.published_as}", r.msgtype,
                 str(r.in_bag), str(r.published) if r.skipped is None else f"skipped: {r.skipped}")
                for r in self.topics.values()]
        if self.clock_published:
            rows.append((CLOCK_TOPIC, "rosgraph_msgs/msg/Clock", "-", str(self.clock_published)))
        header = ("topic", "type", "in bag", "published")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
        for row in [header, *rows]:
            lines.append(f"  {row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ installed types
def _rosidl_type_name(slot) -> str:
    """A rosidl_parser type (an rclpy class's SLOT_TYPES entry) in .msg syntax."""
    from rosidl_parser import definition
    basic = {"boolean": "bool", "octet": "byte", "float": "float32", "double": "float64"}
    if isinstance(slot, definition.BasicType):
        return basic.get(slot.typename, slot.typename)
    if isinstance(slot, definition.BoundedString):
        return f"string<={slot.maximum_size}"
    if isinstance(slot, definition.UnboundedString):
        return "string"
    if isinstance(slot, definition.BoundedWString):
        return f"wstring<={slot.maximum_size}"
    if isinstance(slot, definition.UnboundedWString):
        return "wstring"
    if isinstance(slot, definition.NamespacedType):
        return "/".join([*slot.namespaces, slot.name])
    if isinstance(slot, definition.Array):
        return f"{_rosidl_type_name(slot.value_type)}[{slot.size}]"
    if isinstance(slot, definition.BoundedSequence):
        return f"{_rosidl_type_name(slot.value_type)}[<={slot.maximum_size}]"
    if isinstance(slot, definition.UnboundedSequence):
        return f"{_rosidl_type_name(slot.value_type)}[]"
    raise TypeError(f"unsupported rosidl type {slot!r}")


def _nested_type_names(slot) -> list[str]:
    from rosidl_parser import definition
    while isinstance(slot, definition.AbstractNestedType):
        slot = slot.value_type
    return ["/".join([*slot.namespaces, slot.name])] if isinstance(slot, definition.NamespacedType) else []


class InstalledTypes:
    """The rclpy message classes of this ROS 2, and their definitions as a rosbags typestore.

    The definitions are read from the classes (field names, `SLOT_TYPES`), so they are those of the
    installed packages whatever the distribution, and serve the wire-layout check and the conversions.
    """

    def __init__(self):
        from rosbags.typesys import Stores, get_typestore

        self.typestore = get_typestore(Stores.EMPTY)
        self._classes: dict[str, type] = {}

    def message_class(self, msgtype: str) -> type:
        """The rclpy class of `pkg/msg/Name`; MissingTypeError naming what is missing."""
        if msgtype in self._classes:
            return self._classes[msgtype]
        parts = msgtype.split("/")
        if len(parts) != 3 or not all(parts):
            raise MissingTypeError(f"{msgtype} is no ROS 2 message type name (pkg/msg/Name)")
        package, kind, name = parts
        try:
            module = importlib.import_module(f"{package}.{kind}")
        except ImportError as error:
            raise MissingTypeError(f"{msgtype} is not installed (cannot import {package}.{kind}: {error})") from None
        cls = getattr(module, name, None)
        if cls is None or not hasattr(cls, "SLOT_TYPES") or not hasattr(cls, "get_fields_and_field_types"):
            raise MissingTypeError(f"{msgtype} is not installed ({package}.{kind} has no message {name})")
        self._classes[msgtype] = cls
        return cls

    def definition(self, msgtype: str) -> None:
        """Register `msgtype` and the types it nests in `self.typestore` (MissingTypeError if one is missing)."""
        from rosbags.typesys import get_types_from_msg

        if msgtype in self.typestore.fielddefs:
            return
        cls = self.message_class(msgtype)
        slots = list(cls.SLOT_TYPES)
        names = list(cls.get_fields_and_field_types())
        for slot in slots:
            for nested in _nested_type_names(slot):
                self.definition(nested)
        text = "\n".join(f"{_rosidl_type_name(slot)} {name}" for slot, name in zip(slots, names))
        # A message without fields is one uint8 on the wire (rosidl's placeholder member, as rosbags defines it).
        self.typestore.register(get_types_from_msg(text or f"uint8 {EMPTY_MEMBER}", msgtype))


def same_layout(src_store, dst_store, src_type: str, dst_type: str) -> bool:
    """Whether messages of `src_type` (as `src_store` defines it) can go out as `dst_type` byte for byte: the
    same fields in the same order, of the same types, names equal but for case (ROS 1's CameraInfo `D`, `K` are
    ROS 2's `d`, `k`). std_msgs/msg/Header counts as the same everywhere (ROS 1's `seq` is what ros1_to_cdr
    drops). Stricter than rosbags.convert's is_same_wireformat, which ignores names: fields of one type in
    another order would pass through garbled."""
    from rosbags.interfaces import Nodetype

    if src_type == dst_type == "std_msgs/msg/Header":
        return True
    src_fields, dst_fields = src_store.fielddefs[src_type][1], dst_store.fielddefs[dst_type][1]
    if len(src_fields) != len(dst_fields):
        return False

    def same(src, dst) -> bool:
        if src[0] != dst[0]:
            return False
        if src[0] == Nodetype.BASE:
            return src[1] == dst[1]
        if src[0] == Nodetype.NAME:
            return same_layout(src_store, dst_store, src[1], dst[1])
        return src[1][1] == dst[1][1] and same(src[1][0], dst[1][0])  # ARRAY / SEQUENCE: (element, size)

    return all(src_name.casefold() == dst_name.casefold() and same(src, dst)
               for (src_name, src), (dst_name, dst) in zip(src_fields, dst_fields))


def _as_bytes(data) -> bytes:
    # rclpy's publish() takes serialized data only as `bytes` (isinstance check); readers and rosbags'
    # serialisers hand out bytes or memoryviews.
    return data if type(data) is bytes else bytes(data)


def make_converter(reader_typestore, installed: InstalledTypes, src_type: str, dst_type: str,
                   ros1: bool) -> tuple[Callable[[bytes], bytes], str]:
    """(function recorded bytes -> CDR bytes of the installed type, "cdr" | "ros1" | "migrated")."""
    from rosbags.convert.converter import migrate_message

    installed.definition(dst_type)
    dst_store = installed.typestore
    if same_layout(reader_typestore, dst_store, src_type, dst_type):
        if not ros1:
            return _as_bytes, "cdr"

        def ros1_to_cdr(raw) -> bytes:
            return _as_bytes(dst_store.ros1_to_cdr(raw, dst_type))

        return ros1_to_cdr, "ros1"
    cache: dict = {}
    deserialize = reader_typestore.deserialize_ros1 if ros1 else reader_typestore.deserialize_cdr

    def migrate(raw) -> bytes:
        msg = migrate_message(reader_typestore, dst_store, src_type, dst_type, cache, deserialize(raw, src_type))
        return _as_bytes(dst_store.serialize_cdr(msg, dst_type, little_endian=True))

    return migrate, "migrated"


# ------------------------------------------------------------------------------------------------- QoS
def _recorded_policies(connections) -> tuple[str, str] | None:
    """(reliability, durability) names the recording's publishers agreed on, or None (none recorded, mixed)."""
    from rosbags.interfaces import ConnectionExtRosbag1, QosDurability, QosReliability

    offers = []
    for connection in connections:
        ext = connection.ext
        if isinstance(ext, ConnectionExtRosbag1):
            offers.append(("reliable", "transient_local" if ext.latching else "volatile"))
            continue
        for profile in getattr(ext, "offered_qos_profiles", None) or []:
            reliability = "best_effort" if profile.reliability == QosReliability.BEST_EFFORT else "reliable"
            durability = "transient_local" if profile.durability == QosDurability.TRANSIENT_LOCAL else "volatile"
            offers.append((reliability, durability))
    if not offers:
        return None
    if len(set(offers)) > 1:
        LOGGER.warning("the recorded publishers of %s offered different QoS profiles: playing it reliable, "
                       "volatile", connections[0].topic)
        return None
    return offers[0]


def publisher_qos(topic: str, published_as: str, connections, mode: str, count: int):
    """The rclpy QoSProfile of a topic (module docstring, "QoS"); also whether it is latched."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    def profile(reliable: bool, latched: bool, depth: int):
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    latched_depth = max(QUEUE_DEPTH, min(count, LATCHED_DEPTH_MAX))
    if TF_STATIC_TOPIC in (topic, published_as):
        return profile(True, True, latched_depth), True
    if TF_TOPIC in (topic, published_as):
        return profile(True, False, TF_DEPTH), False
    recorded = _recorded_policies(connections)
    if recorded is not None and recorded[1] == "transient_local":
        return profile(recorded[0] == "reliable", True, latched_depth), True
    if mode == "sensor_data":
        return profile(False, False, SENSOR_DATA_DEPTH), False
    if mode == "bag" and recorded is not None:
        return profile(recorded[0] == "reliable", False, QUEUE_DEPTH), False
    return profile(True, False, QUEUE_DEPTH), False


# -------------------------------------------------------------------------------------------- player
@dataclass
class _Topic:
    report: TopicReport
    connections: list
    ros2_type: str = ""
    publisher: object = None
    latched: bool = False


class _Stopped(Exception):
    pass


class LargeMessageCheck:
    """Warns once when Fast DDS is to send a message larger than its shared-memory segment: the message then
    goes over UDP, where subscribers in other processes lose much of a KITTI-size stream (best-effort ones, the
    node's inputs, for good). The sender's segment matters: the player needs the same tuning as the node."""

    def __init__(self, rmw: str, environ=None):
        from .dds_tuning import fastdds_shared_memory_segment

        environ = os.environ if environ is None else environ
        self.limit = None
        if "fastrtps" in rmw or "fastdds" in rmw:
            profiles = environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
            self.limit = fastdds_shared_memory_segment(profiles) or FASTDDS_DEFAULT_SEGMENT

    def check(self, topic: str, size: int) -> str | None:
        """The warning for a `size`-byte message on `topic` (once), else None."""
        if self.limit is None or size <= self.limit:
            return None
        limit, self.limit = self.limit, None
        return (f"{topic}: a {size / 2**20:.1f} MiB message does not fit Fast DDS' {limit / 2**20:.1f} MiB "
                f"shared-memory segment and goes over UDP, where subscribers in other processes lose many (best-"
                f"effort ones for good); where every ROS 2 process runs on this computer, export "
                f"FASTRTPS_DEFAULT_PROFILES_FILE=<the package's config/fastdds_same_host.xml> for the player and "
                f"for them (README, 'Deploying the node: DDS tuning')")


class _Player:
    def __init__(self, node, options: PlayOptions, stop: threading.Event, clock_class):
        self.node, self.options, self.stop = node, options, stop
        self.clock_publisher = None
        self.clock_class = clock_class
        self.clock_published = 0
        if options.clock_hz is not None:
            from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

            clock_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                   reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
            self.clock_publisher = node.create_publisher(
                clock_class, options.remap.get(CLOCK_TOPIC, CLOCK_TOPIC), clock_qos)
            self.clock_period_ns = int(round(1e9 / options.clock_hz))
        self.next_tick_ns = time.monotonic_ns()
        self.large_messages = LargeMessageCheck("")
        # Bag time = bag_origin_ns + (wall - wall_origin_ns) * rate while playing; frozen at bag_origin_ns before.
        self.bag_origin_ns = 0
        self.bag_end_ns: int | None = None
        self.wall_origin_ns: int | None = None

    def bag_time(self, wall_ns: int) -> int:
        """The bag time /clock carries: frozen before a pass, then following the steady clock at `rate`, never
        past the bag's last message (a player running late would otherwise carry /clock beyond the bag)."""
        if self.wall_origin_ns is None or wall_ns <= self.wall_origin_ns:
            return self.bag_origin_ns
        moved = self.bag_origin_ns + int((wall_ns - self.wall_origin_ns) * self.options.rate)
        return moved if self.bag_end_ns is None else min(moved, self.bag_end_ns)

    def _tick(self, now_ns: int) -> None:
        if self.clock_publisher is None or now_ns < self.next_tick_ns:
            return
        stamp_ns = max(self.bag_time(now_ns), 0)
        msg = self.clock_class()
        msg.clock.sec, msg.clock.nanosec = divmod(stamp_ns, 1_000_000_000)
        self.clock_publisher.publish(msg)
        self.clock_published += 1
        self.next_tick_ns += self.clock_period_ns
        if self.next_tick_ns <= now_ns:  # fell behind (a long publish): no burst of ticks
            self.next_tick_ns = now_ns + self.clock_period_ns

    def wait_until(self, due_ns: int) -> None:
        """Sleep until the steady clock reaches `due_ns`, publishing /clock ticks meanwhile."""
        while True:
            now = time.monotonic_ns()
            self._tick(now)
            if now >= due_ns:
                return
            wake = due_ns if self.clock_publisher is None else min(due_ns, self.next_tick_ns)
            if self.stop.wait(max(wake - now, 0) / 1e9):
                raise _Stopped

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
        deadline = time.monotonic_ns() + int(timeout_s * 1e9)
        while not condition():
            now = time.monotonic_ns()
            if now >= deadline:
                return False
            self.wait_until(min(deadline, now + int(poll_s * 1e9)))
        return True


def _select_topics(reader, options: PlayOptions) -> dict[str, list]:
    """{bag topic: its connections} after --topics / --exclude-topics."""
    available = {}
    for connection in reader.connections:
        available.setdefault(connection.topic, []).append(connection)
    if options.topics is not None:
        wanted = [absolute_topic(topic) for topic in options.topics]
        missing = [topic for topic in wanted if topic not in available]
        if missing:
            raise ValueError(f"the bag has no topic {', '.join(missing)} (topics: {', '.join(sorted(available))})")
        available = {topic: available[topic] for topic in wanted}
    excluded = {absolute_topic(topic) for topic in options.exclude_topics}
    return {topic: connections for topic, connections in available.items() if topic not in excluded}


def play(bag: str | Path, options: PlayOptions | None = None, stop: threading.Event | None = None,
         context=None, on_ready: Callable[[PlayResult], None] | None = None) -> PlayResult:
    """Replay `bag` as ROS 2 topics (module docstring); returns the per-topic counts.

    context: an initialised rclpy Context to use (its owner shuts it down); None: a private one, initialised
    here without signal handlers (Ctrl-C raises KeyboardInterrupt, which ends the replay cleanly) and shut
    down at the end. stop: an Event that ends the replay when set (from another thread). on_ready: called
    once the publishers exist, before the first pass. Raises RosUnavailableError where rclpy (or
    rosgraph_msgs for /clock) is missing, FileNotFoundError / data.rosbag.BagError for a bag that cannot be
    read, ValueError for bad options.
    """
    from depth_completion_ros.data.rosbag import _check_topics, _open_reader

    options = options or PlayOptions()
    options.validate()
    try:
        import rclpy
        import rclpy.utilities
    except ImportError as error:
        raise _ros_unavailable("ROS 2's rclpy", error) from error
    clock_class = None
    if options.clock_hz is not None:
        try:
            from rosgraph_msgs.msg import Clock as clock_class
        except ImportError as error:
            raise _ros_unavailable("rosgraph_msgs for --clock", error) from error
    stop = stop or threading.Event()
    bag = Path(bag)

    reader = _open_reader(bag)
    own_context = None
    node = None
    try:
        _check_topics(bag, reader.topics, None, reader.message_count)
        selected = _select_topics(reader, options)
        topics, result = _plan_topics(selected, options, bag)
        converters: dict[int, Callable] = {}
        installed = InstalledTypes()
        for plan in topics.values():
            _prepare_topic(reader, installed, plan, converters)

        if context is None:
            own_context = rclpy.Context()
            init_kwargs = {"args": [], "context": own_context}
            try:
                from rclpy.signals import SignalHandlerOptions

                init_kwargs["signal_handler_options"] = SignalHandlerOptions.NO
            except ImportError:  # an rclpy without signal handler options installs none for a private context
                pass
            rclpy.init(**init_kwargs)
            context = own_context
        node = rclpy.create_node(NODE_NAME, context=context, start_parameter_services=False)
        playable = _create_publishers(node, installed, topics, options)
        player = _Player(node, options, stop, clock_class)
        player.large_messages = LargeMessageCheck(rclpy.utilities.get_rmw_implementation_identifier())
        if on_ready is not None:
            on_ready(result)
        started = time.monotonic()
        try:
            _run(reader, player, playable, converters, options, result)
        except (KeyboardInterrupt, _Stopped):
            result.stopped = True
        result.wall_s = time.monotonic() - started
        result.clock_published = player.clock_published
        if not result.stopped:
            try:
                _wait_for_acks(playable, options.wait_for_all_acked)
            except KeyboardInterrupt:
                result.stopped = True
        return result
    finally:
        reader.close()
        if node is not None:
            node.destroy_node()
        if own_context is not None:
            rclpy.try_shutdown(context=own_context)


def _plan_topics(selected: dict[str, list], options: PlayOptions, bag: Path):
    topics: dict[str, _Topic] = {}
    result = PlayResult(bag=bag, topics={})
    for topic, connections in selected.items():
        msgtype = connections[0].msgtype
        report = TopicReport(topic=topic, published_as=options.remap.get(topic, topic), msgtype=msgtype,
                             in_bag=sum(c.msgcount for c in connections))
        topics[topic] = _Topic(report, connections)
        result.topics[topic] = report
    return topics, result


def _prepare_topic(reader, installed: InstalledTypes, plan: _Topic, converters: dict) -> None:
    """Find the installed type and a converter for each connection; a failure skips the topic, warned once."""
    report = plan.report
    ros1 = not reader.is2
    dst_type = ROS1_TYPE_RENAMES.get(report.msgtype, report.msgtype) if ros1 else report.msgtype
    kept = []
    for connection in plan.connections:
        if connection.msgtype != report.msgtype:
            LOGGER.warning("topic %s: a second connection of type %s (the topic plays as %s) is left out",
                           report.topic, connection.msgtype, report.msgtype)
            continue
        try:
            convert, how = make_converter(reader.typestore, installed, connection.msgtype, dst_type, ros1)
        except MissingTypeError as error:
            report.skipped = "type not installed"
            LOGGER.warning("topic %s is skipped: %s", report.topic, error)
            return
        except Exception as error:  # a definition rosbags cannot relate to the installed one
            report.skipped = "type not convertible"
            LOGGER.warning("topic %s is skipped: its type %s cannot be converted to the installed %s (%s)",
                           report.topic, connection.msgtype, dst_type, error)
            return
        converters[connection.id] = convert
        report.conversion = how
        kept.append(connection)
    if report.conversion == "migrated":
        LOGGER.warning("topic %s: the bag's definition of %s differs from the installed one; its messages are "
                       "converted field by field", report.topic, report.msgtype)
    plan.connections = kept
    if ros1 and dst_type != report.msgtype:
        report.msgtype = f"{report.msgtype} as {dst_type}"
    plan.ros2_type = dst_type


def _create_publishers(node, installed: InstalledTypes, topics: dict[str, _Topic], options: PlayOptions):
    playable: dict[int, _Topic] = {}  # connection id -> topic
    for plan in topics.values():
        report = plan.report
        if report.skipped is not None:
            continue
        qos, plan.latched = publisher_qos(report.topic, report.published_as, plan.connections, options.qos,
                                          report.in_bag)
        try:
            plan.publisher = node.create_publisher(installed.message_class(plan.ros2_type), report.published_as, qos)
        except Exception as error:  # e.g. a type support library that fails to load, an invalid topic name
            report.skipped = "no publisher"
            LOGGER.warning("topic %s is skipped: no publisher for %s on %s (%s)", report.topic, plan.ros2_type,
                           report.published_as, error)
            continue
        for connection in plan.connections:
            playable[connection.id] = plan
    return playable


def _run(reader, player: _Player, playable: dict[int, _Topic], converters: dict, options: PlayOptions,
         result: PlayResult) -> None:
    connections = [c for plan in {id(p): p for p in playable.values()}.values() for c in plan.connections]
    latched = [c for c in connections if playable[c.id].latched]
    start_ns = reader.start_time + int(round(options.start_offset * 1e9))
    player.bag_origin_ns = start_ns
    player.bag_end_ns = reader.end_time
    if options.wait_for_subscribers > 0 and playable:
        publishers = list({id(p): p.publisher for p in playable.values()}.values())
        if not player.wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers),
                               options.wait_for_subscribers):
            lonely = sorted(p.report.published_as for p in {id(p): p for p in playable.values()}.values()
                            if p.publisher.get_subscription_count() == 0)
            LOGGER.warning("no subscriber after %.1f s on %s; playing anyway", options.wait_for_subscribers,
                           ", ".join(lonely))
    if not connections:
        LOGGER.warning("no topic of the bag can be played")
        return

    def publish(connection, raw) -> None:
        plan = playable[connection.id]
        data = converters[connection.id](raw)
        warning = player.large_messages.check(plan.report.published_as, len(data))
        if warning:
            LOGGER.warning("%s", warning)
        plan.publisher.publish(data)
        plan.report.published += 1
        plan.report.last_publish_ns = time.monotonic_ns()
        if plan.report.first_publish_ns is None:
            plan.report.first_publish_ns = plan.report.last_publish_ns

    while True:
        player.wall_origin_ns = None
        player.wait_until(time.monotonic_ns() + int(options.delay * 1e9))
        wall_origin = player.wall_origin_ns = time.monotonic_ns()
        if start_ns > reader.start_time and latched:
            for connection, _, raw in reader.messages(connections=latched, stop=start_ns):
                publish(connection, raw)
        for connection, stamp_ns, raw in reader.messages(connections=connections, start=start_ns):
            player.wait_until(wall_origin + int((stamp_ns - start_ns) / options.rate))
            publish(connection, raw)
        result.passes += 1
        if not options.loop:
            return


def _wait_for_acks(playable: dict[int, _Topic], timeout_s: float) -> None:
    if timeout_s < 0:
        return
    from rclpy.duration import Duration

    deadline = None if timeout_s == 0 else time.monotonic() + timeout_s
    for publisher in {id(p.publisher): p.publisher for p in playable.values()}.values():
        if deadline is None:
            publisher.wait_for_all_acked(Duration(seconds=-1))
        else:
            remaining = max(deadline - time.monotonic(), 0.0)
            publisher.wait_for_all_acked(Duration(nanoseconds=int(remaining * 1e9)))
