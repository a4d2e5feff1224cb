"""Reproduce the two seeds' training experiments on the synthetic world, at reduced resolution, on CPU.

Runs, in order, each from its committed recipe in config/train/ (data, size and length overridden by the
preset, nothing else):
  teacher             lspkd_teacher.yaml          ResNet34 dual-encoder teacher, L1
  student             lspkd_student.yaml          ResNet18 student from scratch, L1
  student_lspkd       lspkd_student_lspkd.yaml    + prediction KD + LSPKD at E2/D2 (the LSPKD seed's method)
  student_att         lspkd_student_att.yaml      + prediction KD + attention transfer at E2/D2
  student_pkt         lspkd_student_pkt.yaml      + prediction KD + PROB/PKT at E2/D2
  cdspn_x32           cdspn_x32_blackbox.yaml     CDSPN x32, three stages, MSE, distillation removed
  cdspn_x32_blackbox  cdspn_x32_blackbox.yaml     the same with black-box KD from the trained teacher
                                                  (teacher run on every augmented batch, not cached)
then scores every best.pt (lowest validation RMSE) and the two classical fills on a held-out synthetic
world (other seed), on the same bottom crop, with the project's KITTI metrics, and writes a Markdown
table (RMSE, MAE, iRMSE, iMAE, parameters), the seeds' hypotheses checked against it, and a JSON file.

Every run resumes from its last.pt, so an interrupted reproduction continues where it stopped; a
finished run is only re-scored.

    python benchmarks/reproduce_seeds.py                    # preset "cpu": about an hour on 2 CPU cores
    python benchmarks/reproduce_seeds.py --preset smoke --work /tmp/repro   # every path, in a minute
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402
from baselines_kitti import score_baselines  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "config" / "train"


@dataclass(frozen=True)
class Preset:
    """Size of the reproduction: synthetic worlds, image windows and run lengths."""

    drives: int            # training world (the last drive is its validation split)
    frames: int
    test_drives: int       # held-out world; its val split (last drive) is the test set
    test_frames: int
    crop: tuple            # bottom crop every image is cut to (training, validation and test)
    window: tuple          # random training window inside the crop
    teacher_epochs: int
    student_epochs: int
    cdspn_stages: tuple    # epochs of backbone, refinement, all
    batch_size: int
    cdspn_batch_size: int
    limit_val: int


PRESETS = {
    # Bottom crop half of KITTI's 352x1216 each way, 96x288 training windows: about an hour on 2 CPU cores.
    # The teacher trains longest: distilling from a teacher no better than the student would test nothing.
    "cpu": Preset(drives=5, frames=12, test_drives=2, test_frames=8, crop=(176, 608), window=(96, 288),
                  teacher_epochs=40, student_epochs=16, cdspn_stages=(4, 2, 8), batch_size=8,
                  cdspn_batch_size=4, limit_val=6),
    # Every path once, for tests: tiny windows, one epoch per stage.
    "smoke": Preset(drives=2, frames=2, test_drives=2, test_frames=2, crop=(64, 160), window=(32, 96),
                    teacher_epochs=1, student_epochs=1, cdspn_stages=(1, 1, 1), batch_size=2,
                    cdspn_batch_size=2, limit_val=1),
}


@dataclass(frozen=True)
class Experiment:
    name: str
    recipe: str                 # file in config/train/
    family: str                 # "lspkd" or "cdspn"
    uses_teacher: bool = False  # distillation.teacher -> this reproduction's trained teacher
    drop_distillation: bool = False


EXPERIMENTS = (
    Experiment("teacher", "lspkd_teacher.yaml", "lspkd"),
    Experiment("student", "lspkd_student.yaml", "lspkd"),
    Experiment("student_lspkd", "lspkd_student_lspkd.yaml", "lspkd", uses_teacher=True),
    Experiment("student_att", "lspkd_student_att.yaml", "lspkd", uses_teacher=True),
    Experiment("student_pkt", "lspkd_student_pkt.yaml", "lspkd", uses_teacher=True),
    Experiment("cdspn_x32", "cdspn_x32_blackbox.yaml", "cdspn", drop_distillation=True),
    Experiment("cdspn_x32_blackbox", "cdspn_x32_blackbox.yaml", "cdspn", uses_teacher=True),
)

METRIC_KEYS = ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km")


def experiment_config(experiment: Experiment, preset: Preset, data_root: Path, runs: Path, seed: int) -> dict:
    """The recipe's YAML as a dict, with the preset's data, sizes and lengths put in."""
    from depth_completion_ros.training.config import load_config_dict

    config = load_config_dict(CONFIGS / experiment.recipe)
    data = config.setdefault("data", {})
    data.update(root=str(data_root), crop=list(preset.crop), limit_val=preset.limit_val, workers=0,
                val_batch_size=2)
    config["seed"] = seed
    config["output"] = str(runs / experiment.name)
    config["progress"] = False
    if experiment.family == "lspkd":
        data.update(random_crop=list(preset.window), batch_size=preset.batch_size)
        epochs = preset.teacher_epochs if experiment.name == "teacher" else preset.student_epochs
        config.setdefault("schedule", {})["epochs"] = epochs
    else:
        # Both CDSPN runs train on the same augmented windows as the LSPKD runs, so the black-box
        # teacher runs on every batch (a cached prediction would belong to one fixed crop).
        data.update(random_crop=list(preset.window), augment=True, batch_size=preset.cdspn_batch_size)
        for stage, epochs in zip(config["stages"], preset.cdspn_stages):
            stage["epochs"] = epochs
    if experiment.drop_distillation:
        config.pop("distillation", None)
    elif experiment.uses_teacher:
        distillation = config["distillation"]
        distillation["teacher"] = str(runs / "teacher" / "best.pt")
        if distillation.get("type") == "blackbox":
            distillation["cache"] = False
    return config


def train(experiment: Experiment, config_dict: dict, threads: int) -> dict:
    """Train (or resume, or find finished) one run; returns its wall time and epochs."""
    import torch

    from depth_completion_ros.training.config import TrainConfig
    from depth_completion_ros.training.trainer import Trainer, find_resume_checkpoint

    torch.set_num_threads(threads)
    config = TrainConfig.from_dict(config_dict, source=experiment.recipe)
    out_dir = Path(config.output)
    resume = find_resume_checkpoint("auto", out_dir)
    start = time.perf_counter()
    trainer = Trainer(config, out_dir=out_dir, resume=resume, progress=False)
    already = trainer.epoch
    summary = trainer.fit()
    seconds = time.perf_counter() - start
    print(f"  {experiment.name}: {summary['epochs']} epochs ({summary['epochs'] - already} now, {seconds:.0f} s), "
          f"best validation {summary['best_metric']} {summary['best_val']:.1f}", flush=True)
    return {"epochs": summary["epochs"], "epochs_this_run": summary["epochs"] - already, "steps": summary["step"],
            "seconds_this_run": seconds,
            f"best_val_{summary['best_metric']}": summary["best_val"]}


def forward_parameters(model) -> int:
    """Parameters the forward pass uses: the LSPKD students' 1x1 adapters exist only for distillation."""
    from depth_completion_ros.models.flops import count_parameters

    adapters = getattr(model, "adapters", None)
    return count_parameters(model) - (count_parameters(adapters) if adapters is not None else 0)


def score_checkpoint(path: Path, test_root: Path, crop: tuple) -> dict:
    """KITTI metrics of one checkpoint over the held-out val split, one image at a time."""
    import torch

    from depth_completion_ros.data.kitti import KittiDepthCompletion
    from depth_completion_ros.evaluation.metrics import DepthMetrics
    from depth_completion_ros.models.checkpoint import load_model

    model, _ = load_model(path)
    model.eval()
    dataset = KittiDepthCompletion(test_root, "val", crop=crop, augment=False)
    metrics = DepthMetrics()
    with torch.inference_mode():
        for index in range(len(dataset)):
            item = dataset[index]
            prediction = model(item["rgb"][None], item["sparse"][None])
            metrics.update(prediction, item["gt"][None], names=[item["name"]])
    return {**metrics.compute(), "parameters": forward_parameters(model)}


def score_fills(test_root: Path, crop: tuple) -> dict:
    """The classical no-learning fills on the same frames and crop."""
    methods = score_baselines(test_root, split="val", crop=crop, progress=False)["methods"]
    return {label: {**methods[method], "parameters": 0}
            for label, method in (("nearest fill", "nearest_fill"), ("morphological fill", "morphological_fill"))}


def check_hypotheses(scores: dict) -> list[tuple[str, bool | None, str]]:
    """The seeds' claims as (claim, holds?, figures); None where a run is missing."""
    def rmse(name):
        return scores.get(name, {}).get("rmse_mm", math.nan)

    def claim(text, names, holds):
        values = [rmse(n) for n in names]
        figures = ", ".join(f"{n} {v:.1f}" for n, v in zip(names, values))
        return text, (None if any(math.isnan(v) for v in values) else bool(holds(*values))), figures

    return [
        claim("teacher < student+LSPKD < student (RMSE; LSPKD seed, Table 2)",
              ("teacher", "student_lspkd", "student"), lambda t, k, s: t < k < s),
        claim("student+LSPKD beats the student from scratch",
              ("student_lspkd", "student"), lambda k, s: k < s),
        claim("LSPKD <= ATT (RMSE; LSPKD seed, Table 3)", ("student_lspkd", "student_att"), lambda k, a: k <= a),
        claim("LSPKD <= PROB/PKT (RMSE; LSPKD seed, Table 3)", ("student_lspkd", "student_pkt"),
              lambda k, p: k <= p),
        claim("black-box KD improves CDSPN x32 (RMSE; CDSPN seed, sec. 4.2)",
              ("cdspn_x32_blackbox", "cdspn_x32"), lambda b, p: b < p),
    ]


def markdown_report(payload: dict) -> str:
    preset = payload["preset"]
    lines = [
        "# Reproduction of the seeds' experiments on the synthetic world",
        "",
        f"Made by `{payload['command']}` ({payload['total_minutes']:.0f} min of wall time in this invocation"
        f"{'' if payload['complete_in_one_run'] else '; earlier invocations trained part of it'}).",
        "",
        f"Training world: `dcros synth` seed {payload['seed']}, {preset['drives']} drives x {preset['frames']} "
        f"frames (last drive = validation, which picks each run's best.pt). Test world: seed "
        f"{payload['test_seed']}, {preset['test_drives']} drives x {preset['test_frames']} frames, scored on "
        f"its val drive ({payload['test_images']} images). Every image is cut to the bottom {preset['crop'][0]}x"
        f"{preset['crop'][1]} crop; runs train on random {preset['window'][0]}x{preset['window'][1]} windows "
        f"inside it (batch {preset['batch_size']} for the LSPKD networks, {preset['cdspn_batch_size']} for CDSPN) "
        f"for {preset['teacher_epochs']} (teacher) / {preset['student_epochs']} (students) epochs, CDSPN for "
        f"{'/'.join(str(e) for e in preset['cdspn_stages'])} epochs (backbone / refinement / all). Validation "
        "and test use the whole crop. Recipes: config/train/ as named in the script, with only data, sizes "
        "and lengths changed; metrics are the KITTI devkit's, mean over images.",
        "",
        "| run | RMSE mm | MAE mm | iRMSE 1/km | iMAE 1/km | parameters | train time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in payload["scores"].items():
        train_info = payload["training"].get(name)
        minutes = f"{train_info['seconds_total'] / 60:.1f} min" if train_info else "-"
        lines.append(f"| {name} | {row['rmse_mm']:.1f} | {row['mae_mm']:.1f} | {row['irmse_1km']:.2f} | "
                     f"{row['imae_1km']:.2f} | {row['parameters'] / 1e6:.2f} M | {minutes} |")
    lines += ["", "Students' parameters exclude their 1x1 adapters (used only by the feature loss).", "",
              "## The seeds' hypotheses against these figures", ""]
    for text, holds, figures in payload["hypotheses"]:
        verdict = "not run" if holds is None else ("holds" if holds else "does not hold")
        lines.append(f"- {text}: **{verdict}** ({figures})")
    lines += ["", "One seed per run on a small world: differences of a few per cent are within the spread "
              "that another seed gives, and the seeds' full-resolution, many-epoch KITTI runs are not what "
              "an hour of CPU can train. Read the table as a check that every method trains and how they "
              "rank at this budget, not as a measurement of the published gains.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--work", type=Path, default=Path("runs/reproduction"),
                        help="folder for the synthetic worlds and the runs (default runs/reproduction)")
    parser.add_argument("--only", nargs="+", choices=[e.name for e in EXPERIMENTS], default=None,
                        help="train only these runs (the teacher is trained too when one needs it)")
    parser.add_argument("--seed", type=int, default=0, help="training world and training seed")
    parser.add_argument("--test-seed", type=int, default=99, help="held-out world seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--report", type=Path, default=None, help="Markdown table (default WORK/reproduction.md)")
    parser.add_argument("--json", default=None, help="figures as JSON (default WORK/reproduction.json)")
    args = parser.parse_args(argv)

    import torch

    from depth_completion_ros.data.synth import generate_dataset

    preset = PRESETS[args.preset]
    threads = args.threads or torch.get_num_threads()
    work = args.work
    runs = work / "runs"
    started = time.perf_counter()
    worlds = {"train": (work / "synth_train", preset.drives, preset.frames, args.seed),
              "test": (work / "synth_test", preset.test_drives, preset.test_frames, args.test_seed)}
    for root, drives, frames, seed in worlds.values():
        if not (root / "synth_manifest.json").is_file():
            print(f"generating {root} ({drives} drives x {frames} frames, seed {seed})", flush=True)
            generate_dataset(root, drives=drives, frames=frames, seed=seed, progress=False)

    chosen = EXPERIMENTS if args.only is None else [e for e in EXPERIMENTS if e.name in args.only or (
        e.name == "teacher" and any(x.uses_teacher for x in EXPERIMENTS if x.name in args.only))]
    training = {}
    complete_in_one_run = True
    for experiment in chosen:
        config = experiment_config(experiment, preset, worlds["train"][0], runs, args.seed)
        print(f"training {experiment.name} ({experiment.recipe})", flush=True)
        result = train(experiment, config, threads)
        previous = _previous_seconds(runs / experiment.name)
        result["seconds_total"] = previous + result["seconds_this_run"]
        complete_in_one_run &= previous == 0.0
        _save_seconds(runs / experiment.name, result["seconds_total"])
        training[experiment.name] = result

    print("scoring on the held-out world", flush=True)
    test_root = worlds["test"][0]
    scores = {e.name: score_checkpoint(runs / e.name / "best.pt", test_root, preset.crop) for e in chosen}
    scores.update(score_fills(test_root, preset.crop))
    test_images = next(iter(scores.values()))["images"]
    payload = {
        "command": "python benchmarks/reproduce_seeds.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "preset": {**preset.__dict__, "name": args.preset},
        "seed": args.seed, "test_seed": args.test_seed, "test_images": test_images,
        "threads": threads, "machine": describe_machine(),
        "training": training,
        "scores": {name: {k: row[k] for k in (*METRIC_KEYS, "parameters", "images")} for name, row in scores.items()},
        "hypotheses": check_hypotheses(scores),
        "total_minutes": (time.perf_counter() - started) / 60.0,
        "complete_in_one_run": complete_in_one_run,
    }
    report = args.report or work / "reproduction.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(markdown_report(payload))
    print(report.read_text())
    print(f"wrote {report}")
    write_json(args.json or str(work / "reproduction.json"), payload)
    return 0


def _previous_seconds(run_dir: Path) -> float:
    """Training seconds spent on this run by earlier invocations (interrupted and resumed reproductions)."""
    path = run_dir / "reproduction_seconds.json"
    return float(json.loads(path.read_text())["seconds"]) if path.is_file() else 0.0


def _save_seconds(run_dir: Path, seconds: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "reproduction_seconds.json").write_text(json.dumps({"seconds": seconds}) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
