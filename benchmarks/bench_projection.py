"""Projection time of a 120k-point LiDAR cloud into a 1242x375 KITTI image (numpy and torch, CPU/CUDA).

    python benchmarks/bench_projection.py --json benchmarks/results/projection.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, time_call, write_json  # noqa: E402

from depth_completion_ros.geometry import PinholeCamera, make_transform, project  # noqa: E402

# KITTI 2011_09_26 camera 02 and an HDL-64E-like Velodyne -> camera transform.
CAMERA = PinholeCamera(1242, 375, 721.5377, 721.5377, 609.5593, 172.854)
VELO_TO_CAM = make_transform([[0, -1, 0], [0, 0, -1], [1, 0, 0]], [0.06, -0.08, -0.27])


def velodyne_like_cloud(points: int, seed: int = 0) -> np.ndarray:
    """A 360-degree cloud with 64 elevation rings, ranges 2-80 m: most points fall outside the image."""
    rng = np.random.default_rng(seed)
    azimuth = rng.uniform(-np.pi, np.pi, points)
    elevation = np.deg2rad(rng.choice(np.linspace(2.0, -24.9, 64), points))
    distance = rng.uniform(2.0, 80.0, points)
    xyz = np.c_[distance * np.cos(elevation) * np.cos(azimuth), distance * np.cos(elevation) * np.sin(azimuth),
                distance * np.sin(elevation)]
    return np.c_[xyz, rng.uniform(0, 1, points)].astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=120_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args()

    cloud = velodyne_like_cloud(args.points)
    results = {"numpy_cpu": time_call(lambda: project(cloud, CAMERA, VELO_TO_CAM), runs=args.runs)}
    cloud_torch = torch.from_numpy(cloud)
    results["torch_cpu"] = time_call(lambda: project(cloud_torch, CAMERA, VELO_TO_CAM), runs=args.runs)
    if torch.cuda.is_available():
        cloud_cuda = cloud_torch.cuda()
        results["torch_cuda"] = time_call(lambda: project(cloud_cuda, CAMERA, VELO_TO_CAM), runs=args.runs,
                                          synchronize=torch.cuda.synchronize)
    _, stats = project(cloud, CAMERA, VELO_TO_CAM, return_stats=True)
    print(f"projection of {args.points} points into {CAMERA.width}x{CAMERA.height} "
          f"({stats.projected} land in the image, {stats.pixels} pixels filled)")
    for name, figures in results.items():
        print(f"  {name:<11} median {figures['median_ms']:7.2f} ms   p90 {figures['p90_ms']:7.2f} ms")
    write_json(args.json, {"benchmark": "projection", "points": args.points, "image": [CAMERA.width, CAMERA.height],
                           "projected": stats.projected, "pixels": stats.pixels, "results": results,
                           "machine": describe_machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
