"""What rectifying a raw camera's image costs per frame, beside the network, at 1242x375 and 1920x1200.

    python benchmarks/bench_rectification.py --json benchmarks/results/rectification.json

For each size and distortion model (KITTI-like plumb_bob k1 = -0.3, k2 = 0.1; a rational_polynomial and an
equidistant lens): the undistort-rectify maps (computed once per CameraInfo, then cached), the remap of an rgb8
image (every frame), and for scoring only the raw-grid view of a rectified depth (`depth_in_raw_grid`, eval-bag:
first frame of a camera, then cached);
beside them, in the same run, the whole pipeline (`--model`, default: the shipped default, on the CPU) on an
image of the same size, so that the remap's share of a frame is measured. Medians over `--runs`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, time_call, write_json  # noqa: E402

from depth_completion_ros.geometry import PinholeCamera, invert_transform, unproject  # noqa: E402
from depth_completion_ros.model_zoo import resolve_engine  # noqa: E402
from depth_completion_ros.pipeline import FrameProcessor  # noqa: E402
from depth_completion_ros.raw_camera import RawCamera, Rectifier, depth_in_raw_grid  # noqa: E402
from depth_completion_ros.ros.synthetic import default_lidar_to_camera  # noqa: E402

SIZES = {"1242x375": PinholeCamera(1242, 375, 721.5377, 721.5377, 609.5593, 172.854),
         "1920x1200": PinholeCamera(1920, 1200, 1150.0, 1150.0, 959.5, 599.5)}
LENSES = {"plumb_bob": [-0.3, 0.1, 0.0, 0.0, 0.0],
          "rational_polynomial": [-0.3, 0.1, 0.0, 0.0, 0.0, 0.05, 0.01, 0.0],
          "equidistant": [-0.05, 0.01, 0.0, 0.0]}


def frame_for(camera: PinholeCamera, rng: np.random.Generator):
    """An rgb8 image and a LiDAR-like cloud (points on a wall 4-40 m away at every 4th pixel of the lower half)."""
    rgb = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
    depth = np.zeros((camera.height, camera.width))
    depth[camera.height // 2::4, ::4] = rng.uniform(4.0, 40.0, depth[camera.height // 2::4, ::4].shape)
    lidar_to_camera = default_lidar_to_camera()
    points, _ = unproject(depth, camera, camera_to_frame=invert_transform(lidar_to_camera))
    return rgb, points.astype(np.float32), lidar_to_camera


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args()
    engine = resolve_engine(args.model, device="cpu")
    rng = np.random.default_rng(0)
    rows = []
    for size, camera in SIZES.items():
        rgb, points, lidar_to_camera = frame_for(camera, rng)
        processor = FrameProcessor(engine, lidar_to_camera=lidar_to_camera)
        network = time_call(lambda: processor.process(rgb, points, camera=camera), runs=args.runs, warmup=1)
        for model, coefficients in LENSES.items():
            raw = RawCamera.create(camera, model, coefficients)
            maps = time_call(raw.rectify_maps, runs=3, warmup=0)
            rectifier = Rectifier()
            remap = time_call(lambda: rectifier.rectify(rgb, raw), runs=args.runs * 3)
            depth = np.full((camera.height, camera.width), 10.0, dtype=np.float32)
            first_to_raw = time_call(lambda: depth_in_raw_grid(depth, RawCamera.create(camera, model, coefficients)),
                                     runs=1, warmup=0)  # a new camera: its raw pixels undistorted once
            to_raw = time_call(lambda: depth_in_raw_grid(depth, raw), runs=args.runs)
            row = {"size": size, "model": model, "maps_ms": maps["median_ms"], "remap_rgb8_ms": remap["median_ms"],
                   "depth_in_raw_grid_first_ms": first_to_raw["median_ms"], "depth_in_raw_grid_ms": to_raw["median_ms"],
                   "pipeline_rectified_input_ms": network["median_ms"],
                   "remap_share_of_frame": remap["median_ms"] / (network["median_ms"] + remap["median_ms"])}
            rows.append(row)
            print(f"{size:>9} {model:<20} maps {row['maps_ms']:7.1f} ms  remap {row['remap_rgb8_ms']:6.2f} ms  "
                  f"raw-grid depth {row['depth_in_raw_grid_first_ms']:6.0f} / {row['depth_in_raw_grid_ms']:5.1f} ms  "
                  f"| pipeline {row['pipeline_rectified_input_ms']:7.0f} ms  -> remap "
                  f"{100 * row['remap_share_of_frame']:.2f} % of a frame")
    result = {"model": args.model, "engine": repr(engine), "runs": args.runs, "rows": rows,
              "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "machine": describe_machine()}
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
