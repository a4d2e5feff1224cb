"""Reduced runs of benchmarks/node_robustness.py against the real node in its own process, over DDS:
accounting of every input message, fuzz with every malformed kind, a short soak and an overload.
The full-size figures are in benchmarks/results/node_*.json (commands in the files)."""
from __future__ import annotations


import pytest

pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed")
pytest.importorskip("tf2_msgs", reason="tf2_msgs is not installed (dcros ros-setup builds it)")

pytestmark = pytest.mark.ros

QUEUE_SIZE = 10  # the node's sync.queue_size default


@pytest.fixture(scope="module")
def robustness(load_benchmark):
    return load_benchmark("node_robustness")


def _in_hand(synchronized: int, published: int, drops: dict) -> int:
    """Synchronized frames not yet published or dropped: at most one in the mailbox and one in the worker."""
    return synchronized - published - sum(drops.values())


def test_every_input_message_is_accounted_for(robustness, tmp_path):
    result = robustness.run_accounting(frames=20, configurations=("given",), work_dir=tmp_path)["results"]["given"]
    for name, counts in result["node_inputs"].items():
        assert counts["received"] == result["sent"][name] == 20, (name, counts)  # the executor never starved
        assert counts["lost_in_transport"] == counts["missing_by_stamp_gaps"] == counts["unpaired"] == 0
        assert counts["paired"] + counts["waiting"] == counts["received"]
    drops = result["drops"]
    assert result["frames_published"] >= 1 and drops["replaced_by_newer"] >= 1  # 10 Hz is beyond a CPU
    assert _in_hand(result["frames_synchronized"], result["frames_published"], drops) == 0
    assert result["answers_received_by_driver"] == result["frames_published"]
    assert result["node_exit_code"] == 0


def test_fuzz_never_kills_the_node_and_counts_every_bad_frame_by_reason(robustness, tmp_path):
    from depth_completion_ros.ros.malformed import KINDS, PUBLISHED

    result = robustness.run_fuzz(inputs=3 * len(KINDS), valid_every=7, rate_hz=50.0, work_dir=tmp_path)
    assert result["failures"] == [] and result["node_alive_at_end"] and result["node_exit_code"] == 0
    valid = result["valid_frames"]
    assert valid["sent"] == valid["answered"] == valid["exact_depth"] >= 9
    counted, expected = result["counted_drops"], result["expected_by_outcome"]
    replaced = counted.pop("replaced_by_newer")
    assert counted.pop("inference_error") == 0
    for reason, count in counted.items():  # each bad frame under its own reason, or replaced before its turn
        assert expected.get(reason, 0) - replaced <= count <= expected.get(reason, 0), (reason, result)
    assert sum(counted.values()) + result["published_malformed"] + replaced == 3 * len(KINDS)
    assert result["published_malformed"] <= expected[PUBLISHED]


def test_soak_keeps_memory_threads_and_files_flat(robustness, tmp_path):
    result = robustness.run_soak(frames=240, rate_hz=10.0, warmup_frames=80, sample_every=8, work_dir=tmp_path)
    assert result["rss_growth_after_warmup"] < 0.05, result["rss_median_kib"]
    assert result["threads"]["end"] == result["threads"]["after_warmup"]
    assert result["open_files"]["end"] == result["open_files"]["after_warmup"]
    assert result["frames_published"] > 20 and result["node_exit_code"] == 0


def test_overload_drops_the_excess_without_queueing(robustness, tmp_path):
    result = robustness.run_overload(frames=45, factor=3.0, work_dir=tmp_path)
    assert result["input_rate_hz"] > 2.0 * result["throughput_hz"]
    # The benchmark's criterion is p99 < 2x the single-frame latency; over 45 frames p99 is the single worst
    # frame, which one scheduling hiccup of a shared machine decides, so the reduced run holds the p90 to it,
    # and takes as the single-frame latency the larger of the probe's and the node's own during the overload
    # (other load on the machine slows every frame alike; a queue would add whole frames of waiting).
    single = max(result["single_frame_latency_ms"], result["pipeline_latency_p90_during_overload_ms"])
    assert result["age_ms"]["p90"] < 2.0 * single, (result["age_ms"], single)
    assert result["age_ms"]["second_half_median"] < 1.5 * result["age_ms"]["first_half_median"]  # no backlog
    counts = result["counts_during_overload"]
    assert counts["dropped: replaced_by_newer"] > 0
    drops = {"replaced_by_newer": counts["dropped: replaced_by_newer"]}
    assert _in_hand(counts["frames synchronized"], counts["frames published"], drops) in (0, 1, 2)
    assert max(result["max_waiting_in_synchronizer"].values()) <= QUEUE_SIZE
    assert result["node_exit_code"] == 0
