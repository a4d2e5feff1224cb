"""Per-stage latency of the pipeline at KITTI resolution (1242x375, a real-size Velodyne cloud, messages in)
and the end-to-end frame rate of `eval-bag` on a synthetic drive.

    python benchmarks/bench_pipeline.py --model cdspn_x32 --json benchmarks/results/pipeline.json

The pipeline goal: everything but the network (conversion, projection, post-processing) under 10 % of the
network's time. `--model` takes anything `model_zoo.resolve_engine` takes (default: the shipped default);
`--backend`, `--threads` and `--roi` as the command line's (defaults: auto, the cores available, full).
The old path beside the new ones on the same frames: benchmarks/bench_cpu_speed.py.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402

from depth_completion_ros.data.kitti import KittiRawDrive  # noqa: E402
from depth_completion_ros.data.rosbag import read_bag, write_kitti_drive_bag  # noqa: E402
from depth_completion_ros.data.synth import drive_name, generate_dataset  # noqa: E402
from depth_completion_ros.evaluation.bag_eval import BagTopics, evaluate_bag  # noqa: E402
from depth_completion_ros.model_zoo import resolve_engine  # noqa: E402
from depth_completion_ros.pipeline import ROI_CHOICES, FrameProcessor, PipelineOptions  # noqa: E402

STAGES = ("conversion", "projection", "inference", "postprocess", "total")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = the cores available)")
    parser.add_argument("--roi", default="full", choices=ROI_CHOICES)
    parser.add_argument("--frames", type=int, default=4, help="frames of the synthetic drive")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the frames for the stage timings")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args()

    engine = resolve_engine(args.model, device=args.device, backend=args.backend, threads=args.threads)
    options = PipelineOptions(roi=args.roi)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_dataset(tmp / "kitti", drives=1, frames=args.frames, seed=7, val_drives=1, progress=False)
        drive = KittiRawDrive(tmp / "kitti" / "kitti_raw", drive_name(1))
        write_kitti_drive_bag(drive, tmp / "bag", depth_root=tmp / "kitti")
        topics = BagTopics()
        by_topic: dict[str, list] = {}
        for record in read_bag(tmp / "bag", [topics.image, topics.camera_info, topics.points]):
            by_topic.setdefault(record.topic, []).append(record.msg)
        processor = FrameProcessor(engine, lidar_to_camera=drive.calibration.lidar_to_camera, options=options)
        frames = list(zip(by_topic[topics.image], by_topic[topics.camera_info], by_topic[topics.points]))
        processor.process_messages(frames[0][0], frames[0][2], camera=frames[0][1])  # warm-up
        timings = {stage: [] for stage in STAGES}
        for _ in range(args.repeats):
            for image, info, cloud in frames:
                result = processor.process_messages(image, cloud, camera=info)
                for stage in STAGES:
                    timings[stage].append(result.timings_ms[stage])
        medians = {stage: float(np.median(values)) for stage, values in timings.items()}
        overhead = medians["total"] - medians["inference"]

        start = time.perf_counter()
        summary = evaluate_bag(tmp / "bag", FrameProcessor(engine, options=options), tmp / "report", panels=0,
                               progress=False)
        eval_fps = summary["frames_processed"] / (time.perf_counter() - start)

    print(f"pipeline at 1242x375, {engine!r}, roi {args.roi}, {len(timings['total'])} frames "
          f"({result.projection.input} LiDAR points per frame)")
    for stage in STAGES:
        print(f"  {stage:<12} median {medians[stage]:9.2f} ms")
    print(f"  everything but the network: {overhead:.2f} ms = {100 * overhead / medians['inference']:.1f} % "
          f"of the network's time (goal: under 10 %)")
    print(f"eval-bag end to end (replay, pairing, pipeline, scoring, report): {eval_fps:.2f} frames/s")
    write_json(args.json, {"benchmark": "pipeline", "engine": repr(engine), "roi": args.roi, "image": [1242, 375],
                           "points_per_frame": result.projection.input, "median_ms": medians,
                           "overhead_ms": overhead, "overhead_fraction_of_inference": overhead / medians["inference"],
                           "eval_bag_fps": eval_fps, "machine": describe_machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
