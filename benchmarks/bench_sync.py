"""The node's approximate-time synchronizer (`data.sync.ApproximateTimePairing`) against message_filters'.

    python benchmarks/bench_sync.py --json benchmarks/results/sync.json

The node synchronizes image, camera_info and points with the package's own implementation of message_filters'
ApproximateTimeSynchronizer policy on every ROS 2 (the Python package registry's has no message_filters). This
script feeds both the same sensor streams, in the same arrival order: a 10 Hz camera (image and CameraInfo
with one stamp, either arriving first) and a 10 Hz LiDAR a few tens of milliseconds out of phase, with stamp
jitter, transport delays that reorder arrivals, and random losses. It reports the synchronized sets of each
(they must be identical) and the time per message (the executor thread's cost). Where message_filters is not
installed (no ROS 2 distribution sourced) only the package's own figures are written.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402

from depth_completion_ros.data.sync import ApproximateTimePairing  # noqa: E402

SECOND = 1_000_000_000


@dataclass(frozen=True)
class Arrival:
    input_index: int  # 0 image, 1 camera_info, 2 points
    stamp_ns: int


def sensor_streams(frames: int, seed: int, loss: float = 0.05, lidar_phase_ms: float = 30.0) -> list[Arrival]:
    """Arrivals of a camera and a LiDAR at 10 Hz, ordered by arrival time (stamp + a random transport delay)."""
    rng = np.random.default_rng(seed)
    period = SECOND // 10
    events = []
    for frame in range(frames):
        camera = frame * period + int(rng.normal(0, 2e6))
        lidar = frame * period + int(lidar_phase_ms * 1e6) + int(rng.normal(0, 5e6))
        for index, stamp in ((0, camera), (1, camera), (2, lidar)):
            if rng.random() < loss:
                continue
            delay = int(rng.uniform(1e6, 40e6)) + (25_000_000 if index == 2 else 0)  # clouds are bigger
            events.append((stamp + delay, Arrival(index, stamp)))
    events.sort(key=lambda event: event[0])
    return [arrival for _, arrival in events]


def run_own(arrivals: list[Arrival], queue_size: int, slop_s: float) -> tuple[list[tuple[int, ...]], float]:
    """Synchronized sets (their stamps) and seconds spent, through the package's pairing."""
    pairing = ApproximateTimePairing(3, queue_size=queue_size, slop_s=slop_s)
    fired = []
    started = time.perf_counter()
    for arrival in arrivals:
        matched = pairing.add(arrival.input_index, arrival.stamp_ns, arrival.stamp_ns)
        if matched is not None:
            fired.append(matched)
    return fired, time.perf_counter() - started


def run_message_filters(arrivals: list[Arrival], queue_size: int, slop_s: float):
    """The same through message_filters.ApproximateTimeSynchronizer fed by SimpleFilters, or None where it is
    not installed. Messages are builtin_interfaces/Time stamps in a header, as message_filters reads them."""
    try:
        import message_filters
        from builtin_interfaces.msg import Time
        from std_msgs.msg import Header
    except ImportError:
        return None

    class Stamped:
        __slots__ = ("header",)

        def __init__(self, stamp_ns: int):
            sec, nanosec = divmod(stamp_ns, SECOND)
            self.header = Header(stamp=Time(sec=sec, nanosec=nanosec))

    inputs = [message_filters.SimpleFilter() for _ in range(3)]
    synchronizer = message_filters.ApproximateTimeSynchronizer(inputs, queue_size, slop_s)
    fired = []
    synchronizer.registerCallback(lambda *msgs: fired.append(tuple(
        m.header.stamp.sec * SECOND + m.header.stamp.nanosec for m in msgs)))
    messages = [(inputs[arrival.input_index], Stamped(arrival.stamp_ns)) for arrival in arrivals]
    started = time.perf_counter()
    for source, message in messages:
        source.signalMessage(message)
    return fired, time.perf_counter() - started


def compare(frames: int = 2000, seeds=(0, 1, 2), queue_size: int = 10, slop_s: float = 0.05) -> dict:
    runs = []
    for seed in seeds:
        arrivals = sensor_streams(frames, seed)
        own, own_s = run_own(arrivals, queue_size, slop_s)
        reference = run_message_filters(arrivals, queue_size, slop_s)
        row = {"seed": seed, "messages": len(arrivals), "own_sets": len(own),
               "own_us_per_message": 1e6 * own_s / len(arrivals)}
        if reference is not None:
            theirs, theirs_s = reference
            row.update(message_filters_sets=len(theirs), identical_sets=own == theirs,
                       message_filters_us_per_message=1e6 * theirs_s / len(arrivals))
        runs.append(row)
    return {"frames_per_run": frames, "queue_size": queue_size, "slop_s": slop_s,
            "message_filters_installed": runs[0].get("identical_sets") is not None, "runs": runs,
            "own_us_per_message_median": float(np.median([r["own_us_per_message"] for r in runs]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="camera frames per stream (default 2000)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args()
    result = compare(frames=args.frames)
    result["command"] = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    result["machine"] = describe_machine()
    for row in result["runs"]:
        print(row)
    if not result["message_filters_installed"]:
        print("message_filters is not installed here (no ROS 2 distribution sourced): own figures only")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
