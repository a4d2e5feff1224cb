"""Held-out accuracy per drive and sensor rig: several models on a KITTI-layout world made by `dcros synth`.

`dcros eval-kitti` gives one mean over a split. A world made with `dcros synth --variety` gives every drive
its own LiDAR (32, 64 or 128 beams), mount height and pitch, light and image noise (recorded under `rig` in
`synth_manifest.json`), so the mean hides what a user needs to know before mounting another sensor: how
the model does on each rig against the classical fills. This script runs `dcros eval-kitti` once per model
(the same pipeline as the node), groups its per-frame metrics (`frames.csv`) by drive, joins each drive's
rig, and prints and stores per-drive means (over frames, like the devkit) beside the split's mean.

    dcros synth --out data/synth_varied_test --drives 4 --frames 8 --seed 98 --variety --val-drives 4
    python benchmarks/heldout_by_rig.py --data data/synth_varied_test --split val \\
        --models default baseline:morphological baseline:nearest --json benchmarks/results/heldout_by_rig.json
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402

from depth_completion_ros.cli import main as dcros  # noqa: E402

METRICS = ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km")
# A drive without a `rig` (a world made without --variety) has the package's default rig.
DEFAULT_RIG = {"lidar_beams": 64}


def drive_rigs(data: Path) -> dict[str, dict]:
    """{drive name: rig} from the world's synth_manifest.json."""
    manifest_path = data / "synth_manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: this script needs a world made by `dcros synth`")
    manifest = json.loads(manifest_path.read_text())
    return {drive["name"]: drive.get("rig", DEFAULT_RIG) for drive in manifest["drives"]}


def per_drive_means(frames_csv: Path) -> dict[str, dict]:
    """{drive: {metric: mean over the drive's scored frames, "frames": n}} from an eval-kitti frames.csv."""
    sums: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    with open(frames_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("rmse_mm"):
                continue  # a frame without ground truth is not scored
            drive = row["name"].split("/")[0]
            sums[drive]["frames"] += 1
            for metric in METRICS:
                sums[drive][metric] += float(row[metric])
    return {drive: {**{m: s[m] / s["frames"] for m in METRICS}, "frames": int(s["frames"])}
            for drive, s in sorted(sums.items())}


def evaluate(model: str, data: Path, split: str, out: Path, limit: int | None) -> dict:
    """One model through `dcros eval-kitti`: {"all": split means, "drives": per-drive means}."""
    source = ["--checkpoint", model] if Path(model).is_file() else ["--model", model]
    argv = ["eval-kitti", "--data", str(data), "--split", split, *source, "--panels", "0", "--out", str(out)]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if dcros(argv) != 0:
        raise RuntimeError(f"dcros {' '.join(argv)} failed (see its message above)")
    summary = json.loads((out / "metrics.json").read_text())
    return {"all": {m: summary[m] for m in METRICS} | {"frames": summary["frames_scored"]},
            "drives": per_drive_means(out / "frames.csv")}


def rig_label(rig: dict) -> str:
    parts = [f"{rig['lidar_beams']} beams"]
    if "mount_height_m" in rig:
        parts.append(f"{rig['mount_height_m']:.2f} m")
    if "mount_pitch_deg" in rig:
        parts.append(f"{rig['mount_pitch_deg']:+.1f}°")
    return ", ".join(parts)


def print_table(report: dict) -> None:
    models = list(report["models"])
    print(f"\n{report['data']} {report['split']}: mean over frames, RMSE / MAE mm, iRMSE / iMAE 1/km")
    print("| drive | rig | frames | " + " | ".join(models) + " |")
    print("|---|---|---:|" + "---:|" * len(models))
    rows = [(drive, rig_label(rig)) for drive, rig in report["rigs"].items()]
    for drive, label in rows + [("all", "")]:
        cells = []
        frames = 0
        for model in models:
            scores = report["models"][model]["all"] if drive == "all" else report["models"][model]["drives"].get(drive)
            if scores is None:
                cells.append("–")
                continue
            frames = scores["frames"]
            cells.append(f"{scores['rmse_mm']:.0f} / {scores['mae_mm']:.0f}, "
                         f"{scores['irmse_1km']:.2f} / {scores['imae_1km']:.2f}")
        print(f"| {drive} | {label} | {frames} | " + " | ".join(cells) + " |")


def run(data: Path, split: str, models: list[str], limit: int | None = None) -> dict:
    rigs = drive_rigs(data)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, model in enumerate(models):
            results[model] = evaluate(model, data, split, Path(tmp) / f"model{index}", limit)
    evaluated = {drive for r in results.values() for drive in r["drives"]}
    return {"data": str(data), "split": split, "rigs": {d: r for d, r in rigs.items() if d in evaluated},
            "models": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a KITTI-layout world made by `dcros synth`")
    parser.add_argument("--split", default="val", choices=("train", "val", "val_selection_cropped"))
    parser.add_argument("--models", nargs="+", required=True,
                        help="model names (default, baseline:nearest, ...) or checkpoint files")
    parser.add_argument("--limit", type=int, default=None, help="first N frames of the split only")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    report = run(args.data, args.split, args.models, args.limit)
    print_table(report)
    if args.json:
        report["machine"] = describe_machine()
        report["command"] = "python benchmarks/heldout_by_rig.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
