"""Seconds per frame of the synthetic KITTI world, by stage, plus the dataset statistics.

    python benchmarks/bench_synth.py --frames 5 --json synth_bench.json

Stages, timed on the full KITTI geometry (1242x375 camera 02, 64 x 2000 Velodyne rays):
camera (ray cast + shading), lidar (one full sweep with noise), ground_truth (forward-sector sweeps of the
neighbouring frames, accumulated and checked against the camera), writing (PNGs and .bin). Then the whole
`generate_dataset` for the same frames, end to end, and `summarize_dataset` of its output.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from depth_completion_ros import geometry
from depth_completion_ros.data import image_io
from depth_completion_ros.data.synth import format_summary, generate_dataset, summarize_dataset, sensors, writer
from depth_completion_ros.data.synth.scene import FRAME_PERIOD, build_scene


def _stage_times(out_dir: Path, frames: int, seed: int) -> dict[str, list[float]]:
    calib = sensors.write_calibration(out_dir / "calib")
    scene = build_scene(seed, 1, (frames - 1) * FRAME_PERIOD)
    model = sensors.VelodyneModel()
    scans = writer._NeighbourScans(scene, model, keep=2 * writer.GT_NEIGHBOURS + 2)
    times: dict[str, list[float]] = {"camera": [], "lidar": [], "ground_truth": [], "writing": []}
    for frame in range(frames):
        t = frame * FRAME_PERIOD
        start = time.perf_counter()
        rgb, depth = sensors.render_camera(scene, t, calib.camera, calib.lidar_to_camera,
                                           np.random.default_rng(frame), texture_seed=1)
        times["camera"].append(time.perf_counter() - start)
        start = time.perf_counter()
        velo = sensors.scan_velodyne(scene, t, model, np.random.default_rng(frame), texture_seed=1)
        sparse = geometry.project(velo, calib.camera, calib.lidar_to_camera)
        times["lidar"].append(time.perf_counter() - start)
        start = time.perf_counter()
        world_to_camera = geometry.invert_transform(sensors.camera_pose(scene, t, calib.lidar_to_camera))
        points = np.concatenate([scans(j) for j in range(frame - writer.GT_NEIGHBOURS,
                                                         frame + writer.GT_NEIGHBOURS + 1)])
        gt = writer.ground_truth(depth, calib.camera, world_to_camera, points)
        times["ground_truth"].append(time.perf_counter() - start)
        start = time.perf_counter()
        (out_dir / "stage").mkdir(parents=True, exist_ok=True)
        image_io.write_rgb_png(out_dir / "stage" / f"{frame:010d}.png", rgb)
        velo.tofile(out_dir / "stage" / f"{frame:010d}.bin")
        image_io.write_depth_png(out_dir / "stage" / f"sparse_{frame:010d}.png", sparse)
        image_io.write_depth_png(out_dir / "stage" / f"gt_{frame:010d}.png", gt)
        times["writing"].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    """Time the stages and the whole generator; print and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5, help="frames to time (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if args.frames < 1:
        raise SystemExit("--frames must be >= 1")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stages = _stage_times(tmp, args.frames, args.seed)
        start = time.perf_counter()
        generate_dataset(tmp / "dataset", drives=1, frames=args.frames, seed=args.seed, progress=False)
        end_to_end = (time.perf_counter() - start) / args.frames
        summary = summarize_dataset(tmp / "dataset")

    # The first frame also fills the neighbour cache (2 * GT_NEIGHBOURS + 1 sweeps); later frames add one.
    per_stage = {name: {"mean_s": float(np.mean(v)), "first_s": float(v[0]),
                        "steady_s": float(np.mean(v[1:])) if len(v) > 1 else float(v[0])}
                 for name, v in stages.items()}
    machine = platform.processor() or platform.machine()
    print(f"synthetic KITTI world, {args.frames} frames, seed {args.seed} ({machine})")
    for name, figures in per_stage.items():
        print(f"  {name:<13} mean {figures['mean_s']:6.3f} s/frame   first {figures['first_s']:6.3f}   "
              f"steady {figures['steady_s']:6.3f}")
    print(f"  {'end to end':<13} {end_to_end:6.3f} s/frame (generate_dataset, incl. the first frame's cache)")
    print(format_summary(summary))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "frames": args.frames, "seed": args.seed, "machine": platform.machine(),
            "stages": per_stage, "end_to_end_s_per_frame": end_to_end, "summary": summary,
        }, indent=2) + "\n")
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
