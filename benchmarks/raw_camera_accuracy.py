"""Depth from a raw (lens-distorted) camera's bag against the rectified bag of the same drive.

    python benchmarks/raw_camera_accuracy.py --frames 20 --seed 23 --json benchmarks/results/raw_camera.json \
        --markdown benchmarks/results/raw_camera.md

One synthetic drive (a seed the shipped models never saw) written twice by `dcros synth`: as usual (rectified
camera 02) and with `--raw-camera MODEL` (camera 02 rendered through the lens; image, LiDAR depth and ground truth
in the raw grid), each converted with `dcros kitti2bag`. `eval-bag` scores, per model of lens:
- the rectified bag: the shipped default and the nearest fill (the reference);
- the raw bag with `--rectify auto` (rectified, scored in the raw grid on the pixels the rectified camera sees),
  the default and the nearest fill (a distortion-aware fill: it projects into the rectified camera);
- the raw bag with `--rectify false` (the old behaviour: distortion ignored, every ground-truth pixel scored).
The goals: the default on the raw bag within 15 % of its RMSE on the rectified bag, and at least 10 % below the
distortion-aware nearest fill's RMSE.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402

from depth_completion_ros.data.kitti import KittiRawDrive  # noqa: E402
from depth_completion_ros.data.rosbag import write_kitti_drive_bag  # noqa: E402
from depth_completion_ros.data.synth import drive_name, generate_dataset  # noqa: E402
from depth_completion_ros.evaluation.bag_eval import evaluate_bag  # noqa: E402
from depth_completion_ros.model_zoo import resolve_engine  # noqa: E402
from depth_completion_ros.pipeline import FrameProcessor, PipelineOptions  # noqa: E402

LENSES = {"plumb_bob": "plumb_bob:-0.3,0.1,0,0,0"}  # the others take `dcros synth --raw-camera`'s defaults
MODELS = ("default", "baseline:nearest")


def make_bag(root: Path, frames: int, seed: int, raw_camera: str | None) -> Path:
    generate_dataset(root / "kitti", drives=1, frames=frames, seed=seed, val_drives=0, progress=False,
                     raw_camera=raw_camera)
    bag = root / "bag"
    write_kitti_drive_bag(KittiRawDrive(root / "kitti" / "kitti_raw", drive_name(1)), bag, depth_root=root / "kitti")
    return bag


def score(bag: Path, engine, rectify: str, out: Path) -> dict:
    summary = evaluate_bag(bag, FrameProcessor(engine, options=PipelineOptions(rectify=rectify)), out, panels=0,
                           progress=False)
    return {key: summary.get(key) for key in ("frames_scored", "rmse_mm", "mae_mm", "irmse_1km", "imae_1km",
                                              "rectified_frames", "ground_truth_pixels_outside_rectified_view")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--lenses", nargs="+", default=["plumb_bob", "rational_polynomial", "equidistant"])
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    engines = {model: resolve_engine(model, device="cpu") for model in MODELS}
    rows = []
    with tempfile.TemporaryDirectory(prefix="dcros_raw_camera_") as tmp:
        tmp = Path(tmp)
        rectified_bag = make_bag(tmp / "rectified", args.frames, args.seed, None)
        reference = {model: score(rectified_bag, engine, "auto", tmp / f"rectified_{index}")
                     for index, (model, engine) in enumerate(engines.items())}
        for lens in args.lenses:
            raw_bag = make_bag(tmp / lens, args.frames, args.seed, LENSES.get(lens, lens))
            for index, (model, engine) in enumerate(engines.items()):
                row = {"lens": lens, "model": model, "rectified_bag": reference[model]}
                for rectify in ("auto", "false"):
                    out = tmp / f"{lens}_{index}_{rectify}"
                    row[f"raw_bag_rectify_{rectify}"] = score(raw_bag, engine, rectify, out)
                rows.append(row)
                print(lens, model, {key: round(value["rmse_mm"], 1) for key, value in row.items()
                                    if isinstance(value, dict)})
    lines = ["| lens | model | rectified bag RMSE / MAE (mm) | raw bag, rectify auto | raw bag, rectify false |",
             "|---|---|---:|---:|---:|"]
    for row in rows:
        cells = [f"{row[key]['rmse_mm']:.0f} / {row[key]['mae_mm']:.0f}"
                 for key in ("rectified_bag", "raw_bag_rectify_auto", "raw_bag_rectify_false")]
        lines.append(f"| {row['lens']} | {row['model']} | " + " | ".join(cells) + " |")
    checks = []
    for lens in args.lenses:
        network = next(r for r in rows if r["lens"] == lens and r["model"] == "default")
        fill = next(r for r in rows if r["lens"] == lens and r["model"] == "baseline:nearest")
        raw, rect = network["raw_bag_rectify_auto"]["rmse_mm"], network["rectified_bag"]["rmse_mm"]
        fill_raw = fill["raw_bag_rectify_auto"]["rmse_mm"]
        checks.append({"lens": lens, "raw_over_rectified": raw / rect, "below_nearest_fill": 1 - raw / fill_raw,
                       "within_15_percent": raw <= 1.15 * rect, "beats_fill_by_10_percent": raw <= 0.9 * fill_raw})
        lines.append(f"\n{lens}: default on the raw bag {raw / rect:.3f}x its rectified-bag RMSE (goal <= 1.15), "
                     f"{100 * (1 - raw / fill_raw):.1f} % below the distortion-aware nearest fill (goal >= 10 %)")
    table = "\n".join(lines)
    print(table)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    if args.markdown:
        Path(args.markdown).write_text(
            f"# Raw cameras: depth from a lens-distorted bag\n\n`{command}`\n\n{__doc__.split(chr(10) * 2, 2)[2]}\n"
            f"Frames: {args.frames} of one drive, seed {args.seed}; 2 CPU cores.\n\n{table}\n")
    write_json(args.json, {"frames": args.frames, "seed": args.seed, "rows": rows, "checks": checks,
                           "command": command, "machine": describe_machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
