"""Node start-up: from starting the process to the first answered frame, with warm caches and as after install.

    python benchmarks/bench_startup.py --runs 3 --baseline-rev REV --json benchmarks/results/startup.json

A robot restarts nodes: a long start is a long blackout. A driver in this process latches /tf_static and
publishes a KITTI-size synthetic frame every 0.2 s from the moment the node's process starts (the node as a user
starts it: `depth_completion_node --ros-args ...`, shipped default model, its parameter defaults, warm-up
included); the time is from the process start to the first depth image received, and to the node's "ready for
frames" line. Two cache states:
- "cached": the package's ONNX export cache and numba's compiled propagation already filled (one start before the
  timed ones);
- "first start": empty cache folders (`DCROS_CACHE_DIR`, `NUMBA_CACHE_DIR`) for every start, as after installing.
`--baseline-rev REV` times the node of an older revision of this repository beside the current one in the same
run (a git worktree of REV put first on the node's PYTHONPATH), for the old path. Medians over `--runs`.
DDS stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a random domain unless ROS_DOMAIN_ID is set).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import baseline_checkout, describe_machine, remove_baseline_checkout, write_json  # noqa: E402
from node_robustness import Driver, NodeProcess, _drive_frames, _node_parameters, restamp  # noqa: E402

PERIOD_S = 0.2
TIMEOUT_S = 300.0


def time_start(parameters: dict, base: list, static: list, log_path: Path, env: dict) -> dict:
    """Seconds from the node's process start to its "ready for frames" line and to the first depth received."""
    driver = Driver()
    driver.broadcast_static(static)
    started, started_wall = time.monotonic(), time.time()
    node = NodeProcess(parameters, log_path, env=env)
    ready_s = answer_s = None
    try:
        index = 0
        while answer_s is None and time.monotonic() - started < TIMEOUT_S:
            if not node.alive:
                raise RuntimeError(f"the node exited:\n{node.output()[-3000:]}")
            if ready_s is None and "ready for frames" in node.output():
                ready_s = time.monotonic() - started
            frame = base[index % len(base)]
            stamp = time.time_ns()
            restamp((frame.image, frame.camera_info, frame.cloud), stamp)
            driver.send(frame.image, frame.camera_info, frame.cloud)
            index += 1
            deadline = time.monotonic() + PERIOD_S
            while time.monotonic() < deadline:
                if driver.answers:  # received_ns: the wall clock at reception
                    answer_s = driver.answers[0].received_ns / 1e9 - started_wall
                    break
                time.sleep(0.01)
        if answer_s is None:
            raise RuntimeError(f"no depth within {TIMEOUT_S} s:\n{node.output()[-3000:]}")
        peak_kib = node.resources()["rss_peak_kib"]
    finally:
        node.stop()
        driver.close()
    return {"ready_s": ready_s, "first_depth_s": answer_s, "rss_peak_kib_at_first_depth": peak_kib}


def main() -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(np.random.default_rng().integers(1, 101)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", default="default")
    parser.add_argument("--baseline-rev", help="also time the node of this git revision (the old path)")
    parser.add_argument("--json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dcros_startup_"))
    base, static, _ = _drive_frames(work, 2, crop=None)
    parameters = _node_parameters(model=args.model, warmup=True)
    sources = {"current": {}}
    if args.baseline_rev:  # the old revision's package first on the node's path
        sources[f"baseline {args.baseline_rev}"] = baseline_checkout(args.baseline_rev, work / "baseline")
    rows = {}
    for name, env in sources.items():
        cached_dirs = {"DCROS_CACHE_DIR": str(work / f"cache_{len(rows)}"),
                       "NUMBA_CACHE_DIR": str(work / f"numba_{len(rows)}")}
        time_start(parameters, base, static, work / f"{len(rows)}_fill.log", {**env, **cached_dirs})  # fills them
        cached = [time_start(parameters, base, static, work / f"{len(rows)}_cached_{run}.log", {**env, **cached_dirs})
                  for run in range(args.runs)]
        first = []
        for run in range(args.runs):
            fresh = {"DCROS_CACHE_DIR": str(work / f"fresh_{len(rows)}_{run}"),
                     "NUMBA_CACHE_DIR": str(work / f"fresh_numba_{len(rows)}_{run}")}
            first.append(time_start(parameters, base, static, work / f"{len(rows)}_first_{run}.log", {**env, **fresh}))
        rows[name] = {state: {key: float(np.median([run[key] for run in runs])) for key in runs[0]}
                      | {"runs": runs} for state, runs in (("cached", cached), ("first_start", first))}
        for state in ("cached", "first_start"):
            row = rows[name][state]
            print(f"{name:>24} {state:<12} ready {row['ready_s']:6.1f} s  first depth {row['first_depth_s']:6.1f} s  "
                  f"peak RSS {row['rss_peak_kib_at_first_depth'] / 1024:6.0f} MiB")
    if args.baseline_rev:
        remove_baseline_checkout(work / "baseline")
    write_json(args.json, {"model": args.model, "runs": args.runs, "results": rows,
                           "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                           "machine": describe_machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
