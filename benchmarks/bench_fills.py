"""Time of the classical fills per full KITTI frame, beside IP-Basic's published fill and the previous
implementation, in one run, with their accuracy on the same frames.

Methods (each on the same projected sparse frames of a KITTI-layout split, full 1242x375 frames):
  morphological          `baselines.morphological_fill` as shipped (OpenCV morphology).
  morphological_before   the same function as it was at commit BEFORE (scipy.ndimage morphology), loaded
                         from git (the old path; skipped outside a git checkout).
  ip_basic_fast          IP-Basic's `fill_in_fast` (Ku, Harakeh & Waslander, CRV 2018) as published: its
                         default settings (bilateral blur, no extrapolation), written here from the published
                         steps with OpenCV, as the reference the issue asks for.
  ip_basic_fast_extrap   the same with extrapolation and Gaussian blur: the settings closest to ours.
  nearest                `baselines.nearest_fill`.
Timings alternate the methods frame by frame (a busy machine slows them alike); medians over frames and
rounds, and per-frame ratios to ip_basic_fast.

    python benchmarks/bench_fills.py --data data/synth_test --split val --rounds 5 --json benchmarks/results/fills.json
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402

from depth_completion_ros import baselines  # noqa: E402
from depth_completion_ros.data.kitti import KittiDepthCompletion  # noqa: E402
from depth_completion_ros.evaluation.metrics import DepthMetrics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "7c9500d"  # the last commit with the scipy.ndimage morphology


def ip_basic_fast(sparse: np.ndarray, max_depth: float = 100.0, extrapolate: bool = False,
                  blur: str = "bilateral") -> np.ndarray:
    """IP-Basic's fill_in_fast, step for step as published (inverted depth; 5x5 diamond dilation; 5x5
    closing; 7x7 hole fill; optional extension to the top and 31x31 fill; 5x5 median; bilateral (5, 1.5, 2.0)
    or Gaussian 5x5 blur of the valid pixels; inversion back)."""
    import cv2

    depth = sparse.astype(np.float32, copy=True)
    valid = depth > 0.1
    depth[valid] = max_depth - depth[valid]
    depth = cv2.dilate(depth, baselines._diamond(2))
    depth = cv2.morphologyEx(depth, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    empty = depth < 0.1
    dilated = cv2.dilate(depth, np.ones((7, 7), np.uint8))
    depth[empty] = dilated[empty]
    if extrapolate:
        filled = depth > 0.1
        top_row = np.argmax(filled, axis=0)
        top_value = depth[top_row, np.arange(depth.shape[1])]
        above = np.arange(depth.shape[0])[:, None] < top_row[None, :]
        depth = np.where(above, top_value[None, :], depth)
        empty = depth < 0.1
        dilated = cv2.dilate(depth, np.ones((31, 31), np.uint8))
        depth[empty] = dilated[empty]
    depth = cv2.medianBlur(depth, 5)
    if blur == "bilateral":
        depth = cv2.bilateralFilter(depth, 5, 1.5, 2.0)
    else:
        valid = depth > 0.1
        blurred = cv2.GaussianBlur(depth, (5, 5), 0)
        depth[valid] = blurred[valid]
    valid = depth > 0.1
    depth[valid] = max_depth - depth[valid]
    return depth


def morphological_before():
    """`morphological_fill` as at commit BEFORE, or None outside a git checkout."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:depth_completion_ros/baselines.py"],
                                check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("baselines_before")
    exec(compile(source, f"baselines.py@{BEFORE}", "exec"), module.__dict__)  # noqa: S102 - our own history
    return module.morphological_fill


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="KITTI-layout folder (e.g. from `dcros synth`)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, help="first N frames (default: all)")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the frames (default: 5)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    methods = {
        "morphological": baselines.morphological_fill,
        "ip_basic_fast": ip_basic_fast,
        "ip_basic_fast_extrap": lambda s: ip_basic_fast(s, extrapolate=True, blur="gaussian"),
        "nearest": baselines.nearest_fill,
    }
    before = morphological_before()
    if before is not None:
        methods["morphological_before"] = before
    dataset = KittiDepthCompletion(args.data, split=args.split, crop=None)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    frames = [dataset.load(index)[1:3] for index in range(count)]
    metrics = {name: DepthMetrics() for name in methods}
    times: dict[str, list[float]] = {name: [] for name in methods}
    ratios: dict[str, list[float]] = {name: [] for name in methods}
    for round_index in range(args.rounds + 1):  # round 0 warms up and scores
        for sparse, gt in frames:
            frame_ms = {}
            for name, fill in methods.items():
                start = time.perf_counter()
                dense = fill(sparse)
                frame_ms[name] = (time.perf_counter() - start) * 1000.0
                if round_index == 0:
                    metrics[name].update(dense, gt)
            if round_index:
                for name, ms in frame_ms.items():
                    times[name].append(ms)
                    ratios[name].append(ms / frame_ms["ip_basic_fast"])
    results = {}
    for name in methods:
        figures = metrics[name].compute()
        results[name] = {"median_ms": float(np.median(times[name])), "min_ms": float(np.min(times[name])),
                         "median_ratio_to_ip_basic_fast": float(np.median(ratios[name])),
                         **{key: figures[key] for key in ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km")}}
        print(f"{name:22s} {results[name]['median_ms']:8.1f} ms (x{results[name]['median_ratio_to_ip_basic_fast']:.2f} "
              f"of ip_basic_fast)  RMSE {figures['rmse_mm']:.1f} mm  MAE {figures['mae_mm']:.1f} mm", flush=True)
    size = frames[0][0].shape if frames else None
    write_json(args.json, {"benchmark": "classical fills, ms per frame", "machine": describe_machine(),
                           "data": str(args.data), "split": args.split, "frames": count, "rounds": args.rounds,
                           "frame_size": list(size) if size else None, "before_commit": BEFORE,
                           "command": "python benchmarks/bench_fills.py " + " ".join(argv or sys.argv[1:]),
                           "methods": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
