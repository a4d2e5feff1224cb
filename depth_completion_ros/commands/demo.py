"""`dcros demo`: the main job on the embedded default, end to end and offline.

Generates a short synthetic drive in the KITTI layout, converts it to a rosbag2 in kitti2bag's layout,
replays the bag through the same path as `eval-bag` with the shipped default model, does the same with a
classical no-learning baseline for comparison, and prints both results and where the reports are.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ._common import add_pipeline_arguments, pipeline_options_from_args

HELP = "synthetic drive -> rosbag2 -> depth completion with the default model -> KITTI metrics and report"
MARKER = "dcros_demo.json"  # marks a folder the demo made, so a re-run may replace it


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="dcros_demo", help="output folder (default: ./%(default)s)")
    parser.add_argument("--frames", type=int, default=6, help="frames of the synthetic drive (10 Hz)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the synthetic drive")
    parser.add_argument("--model", default="default",
                        help="'default', a shipped model name, or a checkpoint path (default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--baseline", default="morphological", choices=("morphological", "nearest", "none"),
                        help="classical fill evaluated on the same bag for comparison")
    parser.add_argument("--distro", default="humble", choices=("humble", "jazzy"), help="bag format")
    add_pipeline_arguments(parser)


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ValueError(f"{out} exists and was not made by the demo; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run(args) -> int:
    from ..baselines import BaselineEngine
    from ..data.kitti import KittiRawDrive
    from ..data.rosbag import write_kitti_drive_bag
    from ..data.synth import drive_name, generate_dataset
    from ..evaluation.bag_eval import evaluate_bag
    from ..evaluation.scoring import print_summary
    from ..model_zoo import resolve_engine
    from ..pipeline import FrameProcessor

    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    out = Path(args.out).resolve()
    engine = resolve_engine(args.model, device=args.device)  # fail before any work if the model is missing
    _prepare(out)
    (out / MARKER).write_text(json.dumps({"frames": args.frames, "seed": args.seed, "model": args.model}) + "\n")

    print(f"[1/4] synthetic drive: {args.frames} frames, seed {args.seed}")
    kitti_root = out / "kitti"
    generate_dataset(kitti_root, drives=1, frames=args.frames, seed=args.seed, val_drives=1)
    drive = KittiRawDrive(kitti_root / "kitti_raw", drive_name(1))

    print(f"[2/4] rosbag2 ({args.distro}) in kitti2bag's layout")
    bag = out / "bag"
    write_kitti_drive_bag(drive, bag, depth_root=kitti_root, distro=args.distro, progress=True)

    options = pipeline_options_from_args(args)
    print(f"[3/4] replaying the bag through the pipeline: {engine!r}")
    summary = evaluate_bag(bag, FrameProcessor(engine, options=options), out / "report")
    results = {"model": {"name": args.model, "engine": repr(engine), **_headline(summary)}}
    if args.baseline != "none":
        print(f"[4/4] the same bag with the no-learning baseline ({args.baseline} fill)")
        baseline = evaluate_bag(bag, FrameProcessor(BaselineEngine(args.baseline), options=options),
                                out / f"baseline_{args.baseline}", panels=1)
        results["baseline"] = {"name": f"baseline:{args.baseline}", **_headline(baseline)}
    (out / "summary.json").write_text(json.dumps(results, indent=2) + "\n")

    print()
    print_summary(summary, out / "report")
    print()
    print(f"{'':28}{'RMSE mm':>10}{'MAE mm':>10}{'iRMSE 1/km':>12}{'iMAE 1/km':>11}{'ms/frame':>10}")
    for label, row in results.items():
        print(f"{row['name'][:27]:28}{row['rmse_mm']:10.1f}{row['mae_mm']:10.1f}{row['irmse_1km']:12.2f}"
              f"{row['imae_1km']:11.2f}{row['latency_p50_ms']:10.1f}")
    print()
    print(f"report:  {out / 'report' / 'metrics.json'} (frames.csv, error_by_distance.png, latency.png)")
    print(f"panels:  {out / 'report' / 'panels'}")
    print(f"bag:     {bag}  (ros2 bag play {bag} --clock, with launch/bag_replay.launch.py for RViz)")
    return 0


def _headline(summary: dict) -> dict:
    keys = ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km", "frames_scored", "frames_dropped")
    return {**{k: summary[k] for k in keys}, "latency_p50_ms": summary["latency_ms"]["total"]["p50"]}
