"""The offline pairing policy: the same sets, drops and rejections as message_filters'
ApproximateTimeSynchronizer, on hand-built stamp sequences."""
import pytest

from depth_completion_ros.data.sync import ApproximateTimePairing

MS = 1_000_000


def feed(pairing, arrivals):
    """arrivals: (input, stamp in ms). Returns the stamps (ms) of every fired set."""
    fired = []
    for index, stamp_ms in arrivals:
        out = pairing.add(index, stamp_ms * MS, (index, stamp_ms))
        if out is not None:
            fired.append(tuple(stamp for _, stamp in out))
    return fired


def test_pairs_messages_within_slop_in_input_order():
    pairing = ApproximateTimePairing(3, queue_size=5, slop_s=0.02)
    fired = feed(pairing, [(0, 100), (1, 105), (2, 110), (0, 200), (2, 190), (1, 201)])
    assert fired == [(100, 105, 110), (200, 201, 190)]
    assert pairing.pending() == [0, 0, 0] and pairing.dropped() == [0, 0, 0]


def test_span_must_be_strictly_less_than_slop():
    pairing = ApproximateTimePairing(2, queue_size=5, slop_s=0.010)
    assert feed(pairing, [(0, 100), (1, 110)]) == []  # span == slop: not synchronized
    assert feed(pairing, [(1, 109)]) == [(100, 109)]
    assert pairing.pending() == [0, 1] and pairing.dropped() == [0, 1]


def test_closest_candidate_wins_and_unused_ones_stay_queued():
    pairing = ApproximateTimePairing(2, queue_size=10, slop_s=0.05)
    assert feed(pairing, [(1, 90), (1, 104), (1, 130)]) == []
    assert feed(pairing, [(0, 100)]) == [(100, 104)]
    assert pairing.pending() == [0, 2]
    assert feed(pairing, [(0, 135)]) == [(135, 130)]  # 90 is 45 ms away, 130 is 5 ms away
    assert pairing.pending() == [0, 1]


def test_three_inputs_need_every_pair_inside_the_slop():
    pairing = ApproximateTimePairing(3, queue_size=10, slop_s=0.03)
    # 0 and 2 are each within 30 ms of the newcomer (input 1 at 120) but 40 ms apart from each other.
    assert feed(pairing, [(0, 100), (2, 140), (1, 120)]) == []
    assert feed(pairing, [(2, 125)]) == [(100, 120, 125)]


def test_full_queue_forgets_its_oldest_stamp_and_counts_it():
    pairing = ApproximateTimePairing(2, queue_size=2, slop_s=0.01)
    assert feed(pairing, [(0, 100), (0, 200), (0, 300)]) == []
    assert pairing.evicted == [1, 0] and pairing.pending() == [2, 0]
    assert feed(pairing, [(1, 101)]) == []  # 100 was forgotten
    assert feed(pairing, [(1, 201)]) == [(200, 201)]
    assert pairing.dropped() == [2, 1]


def test_a_slow_camera_against_a_fast_lidar():
    """10 Hz LiDAR, 30 Hz camera with 3 ms offset: every scan pairs with its nearest image, the rest drop."""
    pairing = ApproximateTimePairing(2, queue_size=10, slop_s=0.015)
    arrivals = sorted([(0, 3 + 33 * k) for k in range(30)] + [(1, 100 * k) for k in range(10)],
                      key=lambda a: (a[1], a[0]))
    fired = feed(pairing, arrivals)
    assert len(fired) == 10
    assert all(abs(image - scan) < 15 for image, scan in fired)
    assert pairing.dropped()[1] == 0 and pairing.dropped()[0] == 20


def test_rejects_bad_configuration_and_index():
    with pytest.raises(ValueError, match="at least 2 inputs"):
        ApproximateTimePairing(1)
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimePairing(2, queue_size=0)
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimePairing(2, slop_s=0)
    with pytest.raises(ValueError, match="input index 3"):
        ApproximateTimePairing(3).add(3, 0, None)


def test_realistic_streams_synchronize_every_complete_frame(load_benchmark):
    """10 Hz camera and LiDAR out of phase, with jitter, reordering and 5 % loss per input (the synchronizer
    benchmark's streams): every frame whose three messages arrived comes out once, with its own messages."""
    bench = load_benchmark("bench_sync")
    arrivals = bench.sensor_streams(300, seed=4)
    fired, _ = bench.run_own(arrivals, queue_size=10, slop_s=0.05)
    period_ns = 100 * MS
    complete = {}
    for arrival in arrivals:
        complete.setdefault(round(arrival.stamp_ns / period_ns), set()).add(arrival.input_index)
    expected = sorted(frame for frame, inputs in complete.items() if inputs == {0, 1, 2})
    assert sorted(round(image / period_ns) for image, _, _ in fired) == expected
    assert all(image == info and abs(cloud - image) < 50 * MS for image, info, cloud in fired)


@pytest.mark.ros_distribution
def test_the_same_sets_as_message_filters(load_benchmark):
    """Where a ROS 2 distribution brings message_filters: its ApproximateTimeSynchronizer and the package's
    pairing, fed the same arrivals, fire the same sets."""
    pytest.importorskip("message_filters", reason="message_filters is not installed")
    result = load_benchmark("bench_sync").compare(frames=400, seeds=(5, 6))
    assert result["message_filters_installed"]
    assert all(run["identical_sets"] for run in result["runs"]), result["runs"]
