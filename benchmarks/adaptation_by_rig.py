"""Adaptation to an unseen rig without ground truth (`dcros adapt`), against a fine-tune with ground truth.

For each rig (a LiDAR with `--beams` beams, its mount and camera; `dcros synth --variety --drives-per-rig`),
a world of four drives of that rig on other streets and in other light: drives A (1, 2) are the user's
recordings, drives B (3, 4) the test. Steps, each skipped when its output exists (the script resumes):

1. the world: `dcros synth --variety --drives-per-rig 4 --rig-beams B --drives 4 --val-drives 2`;
2. drives A as bags without their ground-truth topic: `dcros kitti2bag --no-ground-truth`;
3. `dcros adapt` on those bags (ground truth only to report the targets' own error), and again with each
   `--photometric-weight` given (photometric consistency with the neighbouring frames);
4. the upper bound: the same fine-tune (model, epochs, schedule, crops, loss) on drives A *with* their
   ground truth, its last epoch;
5. `dcros eval-kitti` on drives B (their ground truth) for the shipped model, the adapted one, the
   ground-truth fine-tune and both classical fills.

"Gap closed" = (shipped - adapted) / (shipped - ground-truth fine-tune), per metric.

    python benchmarks/adaptation_by_rig.py --work runs/adaptation_bench --rig 32:301 --rig 128:302 \\
        --frames 24 --epochs 8 --photometric-weight 0 10 --json benchmarks/results/adaptation_by_rig.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402
from heldout_by_rig import METRICS, drive_rigs, evaluate  # noqa: E402

from depth_completion_ros.cli import main as dcros  # noqa: E402

FILLS = ("baseline:nearest", "baseline:morphological")


def _dcros(argv: list[str]) -> None:
    if dcros(argv) != 0:
        raise RuntimeError(f"dcros {' '.join(argv)} failed (see its message above)")


def ground_truth_fine_tune(world: Path, out: Path, model: str, epochs: int) -> tuple[Path, float]:
    """Step 4: the adaptation's fine-tune recipe on drives A with their ground truth; (last.pt, seconds)."""
    from depth_completion_ros.adaptation.run import TrainingOptions, crop_for, fine_tune_config
    from depth_completion_ros.data.kitti import KittiRawDrive
    from depth_completion_ros.model_zoo import checkpoint_of
    from depth_completion_ros.models.checkpoint import load_checkpoint
    from depth_completion_ros.training.trainer import LAST_CHECKPOINT, Trainer

    last = out / LAST_CHECKPOINT
    timing = out / "seconds.json"
    if last.is_file() and timing.is_file():
        return last, json.loads(timing.read_text())["seconds"]
    init = checkpoint_of(model)
    drives = [KittiRawDrive(world / "kitti_raw", name) for name in drive_rigs(world)]
    # Dense ground truth needs no anchor to the starting weights.
    config = fine_tune_config(load_checkpoint(init), init, world, TrainingOptions(epochs=epochs, anchor_weight=0.0),
                              crop_for(drives), progress=False, val_split=None)
    started = time.perf_counter()
    Trainer(config, out_dir=out).fit()
    seconds = time.perf_counter() - started
    timing.write_text(json.dumps({"seconds": seconds}) + "\n")
    return last, seconds


def adapted_label(photometric_weight: float) -> str:
    return "adapted" if not photometric_weight else f"adapted, photometric {photometric_weight:g}"


def run_rig(work: Path, beams: int, seed: int, frames: int, epochs: int, models: list[str],
            photometric_weights: list[float] = (0.0,)) -> dict:
    world = work / f"rig{beams}_seed{seed}"
    if not (world / "synth_manifest.json").is_file():
        _dcros(["synth", "--out", str(world), "--variety", "--drives-per-rig", "4", "--rig-beams", str(beams),
                "--drives", "4", "--val-drives", "2", "--frames", str(frames), "--seed", str(seed), "--no-progress"])
    manifest = json.loads((world / "synth_manifest.json").read_text())
    train_drives = manifest["splits"]["train"]
    bags = []
    for name in train_drives:
        bag = world / "bags" / name
        if not bag.exists():
            bag.parent.mkdir(parents=True, exist_ok=True)
            _dcros(["kitti2bag", "--kitti-root", str(world), "--drive", name, "--out", str(bag), "--no-ground-truth"])
        bags.append(bag)
    report = {"beams": beams, "seed": seed, "world": str(world), "rig": manifest["drives"][0]["rig"],
              "adapt_drives": train_drives, "test_drives": manifest["splits"]["val"], "models": {}}
    scores = {}
    for model in models:
        adapted = {}
        for weight in photometric_weights:
            out = world / (f"adapt_{Path(model).stem}" + (f"_photometric{weight:g}" if weight else ""))
            summary_path = out / "adaptation.json"
            if not summary_path.is_file():
                started = time.perf_counter()
                _dcros(["adapt", *map(str, bags), "--model", model, "--out", str(out), "--epochs", str(epochs),
                        "--ground-truth", str(world), "--photometric-weight", str(weight), "--no-progress"])
                (out / "wall_seconds.json").write_text(json.dumps({"seconds": time.perf_counter() - started}) + "\n")
            adapted[adapted_label(weight)] = (out, json.loads(summary_path.read_text()),
                                              json.loads((out / "wall_seconds.json").read_text())["seconds"])
        upper, upper_seconds = ground_truth_fine_tune(world, world / f"gt_finetune_{Path(model).stem}", model, epochs)
        entries = {"shipped": model, **{label: str(out / "adapted.pt") for label, (out, _, _) in adapted.items()},
                   "ground-truth fine-tune": str(upper)}
        scored = {label: evaluate_once(source, world, world / "eval" / f"{Path(model).stem}_{_slug(label)}")
                  for label, source in entries.items()}
        summary = next(iter(adapted.values()))[1]
        report["models"][model] = {
            "scores": scored, "targets_vs_ground_truth": summary["data"]["target_vs_ground_truth"],
            "target_density": [r["target_density"] for r in summary["recordings"]],
            "sweep_density": [r["sweep_density"] for r in summary["recordings"]],
            "adapted": {label: {
                "gap_closed": {metric: _gap(scored, label, metric) for metric in ("rmse_mm", "mae_mm")},
                "hold_out_before": run["hold_out_before"], "hold_out_after": run["hold_out_after"],
                "best_epoch": run["best_epoch"], "adapt_wall_s": round(seconds, 1), "adapt_seconds": run["seconds"],
            } for label, (_, run, seconds) in adapted.items()},
            "ground_truth_fine_tune_s": round(upper_seconds, 1),
        }
    for fill in FILLS:
        scores[fill] = evaluate_once(fill, world, world / "eval" / fill.split(":")[1])
    report["fills"] = scores
    return report


def evaluate_once(source: str, world: Path, out: Path) -> dict:
    """`heldout_by_rig.evaluate` on drives B, reusing a report newer than the checkpoint it scored."""
    metrics = out / "metrics.json"
    if metrics.is_file() and (not Path(source).is_file() or Path(source).stat().st_mtime < metrics.stat().st_mtime):
        summary = json.loads(metrics.read_text())
        return {m: summary[m] for m in METRICS} | \
            {"frames": summary["frames_scored"]}
    return evaluate(source, world, "val", out, None)["all"]


def _slug(label: str) -> str:
    """An output folder name for a row label: its first word, and the photometric weight where it has one."""
    words = label.replace(",", "").split()
    return words[0] if len(words) == 1 or words[1] != "photometric" else f"{words[0]}_photometric{words[2]}"


def _gap(scored: dict, label: str, metric: str) -> float | None:
    shipped, adapted, upper = (scored[k][metric] for k in ("shipped", label, "ground-truth fine-tune"))
    return None if shipped - upper <= 0 else (shipped - adapted) / (shipped - upper)


def markdown(reports: list[dict], command: str) -> str:
    lines = ["# Adaptation without ground truth, per unseen rig", "",
             "Drives B of each rig (never seen by any model) scored with their ground truth; mean over frames, "
             "RMSE / MAE mm. Produced by:", "", f"    {command}", ""]
    for report in reports:
        rig = report["rig"]
        lines += [f"## {report['beams']}-beam rig (mount {rig['mount_height_m']:.2f} m, pitch "
                  f"{rig['mount_pitch_deg']:+.1f}°; world seed {report['seed']})", "",
                  "| model | weights | RMSE / MAE | gap closed RMSE / MAE | adapt wall s | "
                  "hold-out MAE before -> after |",
                  "|---|---|---:|---:|---:|---:|"]
        targets = []
        for model, entry in report["models"].items():
            for label, scores in entry["scores"].items():
                run = entry["adapted"].get(label)
                gap = wall = hold_out = ""
                if run:
                    gap = " / ".join("-" if run["gap_closed"][m] is None else f"{100 * run['gap_closed'][m]:.0f} %"
                                     for m in ("rmse_mm", "mae_mm"))
                    wall = f"{run['adapt_wall_s']:.0f}"
                    before, after = (run["hold_out_before"] or {}).get("mae_mm"), run["hold_out_after"].get("mae_mm")
                    hold_out = f"{before:.0f} -> {after:.0f}" if before is not None and after is not None else ""
                lines.append(f"| {model} | {label} | {scores['rmse_mm']:.0f} / {scores['mae_mm']:.0f} | {gap} | "
                             f"{wall} | {hold_out} |")
            truth = entry["targets_vs_ground_truth"] or {}
            targets.append(f"{truth.get('rmse_mm', float('nan')):.0f} / {truth.get('mae_mm', float('nan')):.0f} mm "
                           f"({model}'s run)")
        lines += ["", "The accumulated targets against ground truth (drives A), RMSE / MAE: "
                  + ", ".join(targets) + "."]
        fills = ", ".join(f"{name.split(':')[1]} {s['rmse_mm']:.0f} / {s['mae_mm']:.0f}"
                          for name, s in report["fills"].items())
        lines += ["", f"Classical fills on the same frames: {fills}.", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="working folder (worlds, bags, runs)")
    parser.add_argument("--rig", action="append", required=True, metavar="BEAMS:SEED",
                        help="a rig to measure: LiDAR beams (32, 64, 128) and the world's seed (repeatable)")
    parser.add_argument("--frames", type=int, default=24, help="frames per drive (default 24)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["default"])
    parser.add_argument("--photometric-weight", nargs="+", type=float, default=[0.0], metavar="W",
                        help="one adaptation per weight (0 = without the photometric term; default: 0)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    reports = []
    for rig in args.rig:
        beams, seed = (int(v) for v in rig.split(":"))
        reports.append(run_rig(args.work, beams, seed, args.frames, args.epochs, args.models, args.photometric_weight))
    command = "python benchmarks/adaptation_by_rig.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(reports, command)
    print(text)
    if args.json:
        write_json(args.json, {"rigs": reports, "machine": describe_machine(), "command": command})
        Path(args.json).with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
