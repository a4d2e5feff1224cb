"""The node's input accounting and its check of the middleware's socket buffers, without ROS."""
from __future__ import annotations

from pathlib import Path

from depth_completion_ros.ros.dds_tuning import (
    DEFAULT_REQUIRED_BYTES, MIB, cyclone_requested_receive_buffer, parse_size, receive_buffer_warning,
    required_receive_buffer,
)
from depth_completion_ros.ros.monitoring import LEVEL_WARN, InputAccounting, summarize

CYCLONE = "rmw_cyclonedds_cpp"
TUNED_XML = '<CycloneDDS><Domain><Internal><SocketReceiveBufferSize min="16MB"/></Internal></Domain></CycloneDDS>'


def test_accounting_tells_paired_waiting_and_unpaired_apart():
    accounting = InputAccounting()
    for _ in range(5):
        accounting.receive("image")
        accounting.receive("camera_info")
    for _ in range(7):
        accounting.receive("points")
    accounting.lose("points", 3)
    for _ in range(4):
        accounting.pair()
    rows = accounting.snapshot({"image": 1, "camera_info": 1, "points": 0})
    assert rows["image"] == {"received": 5, "lost_in_transport": 0, "missing_by_stamp_gaps": 0, "paired": 4,
                             "waiting": 1, "unpaired": 0}
    assert rows["points"] == {"received": 7, "lost_in_transport": 3, "missing_by_stamp_gaps": 0, "paired": 4,
                              "waiting": 0, "unpaired": 3}


def test_stamp_gaps_estimate_the_messages_that_never_arrived():
    accounting = InputAccounting()
    period = 100_000_000
    rng = __import__("numpy").random.default_rng(0)
    arrived = [i for i in range(300) if i < 20 or rng.uniform() > 0.7]  # 70 % lost after the first 20
    for index in arrived:
        jitter = int(rng.integers(-3_000_000, 3_000_000))
        accounting.receive("image", 10**18 + index * period + jitter)
    accounting.receive("image", 10**18)  # the stream restarts (a looping bag): no gap, no negative count
    accounting.receive("image", 10**18 + 3600 * 10**9)  # a paused sensor: no loss either
    missing = accounting.snapshot()["image"]["missing_by_stamp_gaps"]
    assert missing == 300 - len(arrived) - (299 - arrived[-1])


def test_summary_lists_every_count_and_warns_on_transport_loss():
    accounting = InputAccounting()
    accounting.receive("image")
    accounting.pair()
    values_args = (10.0, 10.0, (50.0, 60.0, 10), (70.0, 80.0, 10), {"replaced_by_newer": 0}, {})
    summary = summarize(*values_args, accounting=accounting.snapshot(), published=1, lost_recent=2)
    assert summary.level == LEVEL_WARN and "2 input message(s) lost" in summary.message
    assert summary.values["image: received"] == "1" and summary.values["points: unpaired"] == "0"
    assert summary.values["frames synchronized"] == "1" and summary.values["frames published"] == "1"
    assert summarize(*values_args, accounting=accounting.snapshot(), published=1).level != LEVEL_WARN


def test_cyclone_sizes_and_configuration_are_read_like_cyclone(tmp_path):
    assert parse_size("16MB") == parse_size("16 MiB") == 16 * MIB
    assert parse_size("1048576") == MIB and parse_size("512kB") == 512 * 1024
    assert parse_size("default") is None
    config = tmp_path / "cyclone.xml"
    config.write_text(TUNED_XML)
    assert cyclone_requested_receive_buffer({"CYCLONEDDS_URI": f"file://{config}"}) == 16 * MIB
    assert cyclone_requested_receive_buffer({"CYCLONEDDS_URI": str(config)}) == 16 * MIB
    assert cyclone_requested_receive_buffer({"CYCLONEDDS_URI": TUNED_XML}) == 16 * MIB
    assert cyclone_requested_receive_buffer({"CYCLONEDDS_URI": "file:///nonexistent.xml"}) is None
    assert cyclone_requested_receive_buffer({}) is None


def test_warning_names_what_is_missing_and_stays_quiet_when_tuned():
    untuned = receive_buffer_warning(CYCLONE, environ={}, rmem_max=4 * MIB)
    assert "SocketReceiveBufferSize" in untuned and "rmem_max" in untuned and "README" in untuned
    assert receive_buffer_warning(CYCLONE, environ={"CYCLONEDDS_URI": TUNED_XML}, rmem_max=32 * MIB) is None
    # The kernel's cap alone is enough to lose messages, whatever Cyclone asks for.
    capped = receive_buffer_warning(CYCLONE, environ={"CYCLONEDDS_URI": TUNED_XML}, rmem_max=4 * MIB)
    assert "rmem_max" in capped and "SocketReceiveBufferSize" not in capped
    # Larger messages than assumed raise the need: 8 MB clouds want 24 MiB.
    assert required_receive_buffer(None) == DEFAULT_REQUIRED_BYTES
    assert required_receive_buffer(8 * MIB) == 24 * MIB
    assert receive_buffer_warning(CYCLONE, environ={"CYCLONEDDS_URI": TUNED_XML}, rmem_max=32 * MIB,
                                  message_bytes=8 * MIB) is not None
    fast = receive_buffer_warning("rmw_fastrtps_cpp", environ={}, rmem_max=4 * MIB)
    assert "LARGE_DATA" in fast and "fastdds_same_host.xml" in fast
    # The package's same-host profile: shared-memory segments of 32 MiB carry KITTI-size frames, no UDP needed ...
    same_host = str(Path(__file__).resolve().parents[1] / "config" / "fastdds_same_host.xml")
    assert receive_buffer_warning("rmw_fastrtps_cpp", environ={"FASTRTPS_DEFAULT_PROFILES_FILE": same_host},
                                  rmem_max=4 * MIB) is None
    # ... but not 16 MB clouds (3 in flight: 48 MiB).
    assert "shared-memory segments" in receive_buffer_warning(
        "rmw_fastrtps_cpp", environ={"FASTRTPS_DEFAULT_PROFILES_FILE": same_host}, rmem_max=4 * MIB,
        message_bytes=16 * MIB)
    assert receive_buffer_warning("rmw_fastrtps_cpp", environ={"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
                                  rmem_max=4 * MIB) is None
