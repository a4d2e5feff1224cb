"""`dcros adapt`: fine-tune a model on a user's own recordings, without ground truth.

Output folder:
    data/               the adaptation data set (`dataset`): kitti_raw/ (bags written out as drives, raw
                        drives linked), data_depth_velodyne/, data_depth_annotated/, adaptation_data.json
    train/              the trainer's folder (last.pt for --resume, best.pt, log.csv)
    adapted.pt          the checkpoint kept: the best validation hold-out error, the starting weights
                        included (so it is never worse than the starting model on that measure)
    adapted*.onnx       its ONNX files (`dcros export --beside`), so that the node runs it without PyTorch
    adapted.md          its model card: recordings, commands, before/after hold-out figures
    adaptation.json     the same figures as data

A resumed run (`resume=True`) reuses data/ when it was built from the same recordings and options, and
continues training from train/last.pt.
"""
from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .dataset import MANIFEST, DatasetOptions, build_dataset, kitti_ground_truth
from .recordings import inspect_recording, open_recording

LOGGER = logging.getLogger(__name__)
ADAPTED_CHECKPOINT = "adapted.pt"
MODEL_CARD = "adapted.md"
SUMMARY = "adaptation.json"


@dataclass
class TrainingOptions:
    epochs: int = 8
    lr: float = 1e-4
    min_lr: float = 1e-5
    batch_size: int = 4
    random_crop: tuple[int, int] | None = (128, 384)  # windows inside KITTI's bottom crop, as the models trained
    loss: str = "l1"
    # L1 to the starting model's depth on the pixels without a target (between a LiDAR's beams): without it a
    # fine-tune on beam-striped targets improved along the beams and drifted between them (0 = off)
    anchor_weight: float = 1.0
    # > 0: photometric consistency with the neighbouring frames' images (`training.photometric`), the one signal
    # between the beams; measured in benchmarks/results/adaptation_by_rig.md
    photometric_weight: float = 0.0
    photometric_views: int = 1
    best_metric: str = "mae_mm"
    device: str = "auto"
    seed: int = 0
    workers: int = 1
    limit_val: int | None = None


@dataclass
class AdaptOptions:
    model: str = "default"
    data: DatasetOptions = field(default_factory=DatasetOptions)
    training: TrainingOptions = field(default_factory=TrainingOptions)
    ground_truth: str | None = None  # a KITTI root with data_depth_annotated/: the targets' own accuracy
    bag_options: dict = field(default_factory=dict)  # slop_s, queue_size, topic names for bags
    progress: bool = True


TOPIC_OPTIONS = ("image_topic", "info_topic", "points_topic")  # of AdaptOptions.bag_options; the rest pair


def check_recordings(paths: list[Path], bag_options: dict) -> list:
    """Every recording inspected (`recordings.inspect_recording`): all of them must exist and show the vehicle's
    motion before anything is written."""
    topics = {key: value for key, value in bag_options.items() if key in TOPIC_OPTIONS}
    return [inspect_recording(path, **topics) for path in paths]


def fine_tune_config(checkpoint, init: Path, data_root: Path, options: TrainingOptions, crop, progress: bool,
                     val_split: str | None = "val"):
    """The trainer's configuration of a fine-tune of `checkpoint` (read from `init`) on a KITTI-layout root.
    With validation, the starting weights are scored first and kept until an epoch beats them."""
    from depth_completion_ros.training.config import TrainConfig

    return TrainConfig.from_dict({
        "model": {"name": checkpoint.architecture, "kwargs": dict(checkpoint.kwargs), "init": str(init)},
        "data": {"root": str(data_root), "train_split": "train", "val_split": val_split, "crop": list(crop),
                 "random_crop": [min(a, b) for a, b in zip(options.random_crop, crop)] if options.random_crop else None,
                 "augment": True, "batch_size": options.batch_size, "val_batch_size": 1,
                 "workers": options.workers, "limit_val": options.limit_val},
        "optimizer": {"name": "adam", "lr": options.lr},
        "schedule": {"type": "cosine", "epochs": options.epochs, "min_lr": options.min_lr},
        "loss": {"type": options.loss, **({"photometric_weight": options.photometric_weight,
                                           "photometric_views": options.photometric_views}
                                          if options.photometric_weight > 0 else {})},
        "distillation": ({"type": "anchor", "teacher": str(init), "anchor_weight": options.anchor_weight}
                         if options.anchor_weight > 0 else {"type": "none"}),
        "seed": options.seed, "device": options.device, "progress": progress, "tensorboard": False,
        "best_metric": options.best_metric, "validate_start": val_split is not None,
    }, source="adaptation")


def crop_for(drives) -> tuple[int, int]:
    """KITTI's 352x1216 bottom crop, shrunk to the smallest image (the top rows have no LiDAR returns)."""
    height = min(d.calibration.camera.height for d in drives)
    width = min(d.calibration.camera.width for d in drives)
    return min(352, height), min(1216, width)


def adapt(recording_paths: list[str | Path], out_dir: str | Path, options: AdaptOptions = AdaptOptions(),
          resume: bool = False, max_epochs: int | None = None, command: list[str] | None = None) -> dict:
    """Build the data set, fine-tune, keep the best checkpoint and write its model card. Returns the summary."""
    from depth_completion_ros.model_zoo import checkpoint_of
    from depth_completion_ros.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
    from depth_completion_ros.runtime.export import export_onnx, refinements_beside
    from depth_completion_ros.runtime.onnx_files import onnx_beside
    from depth_completion_ros.training.trainer import BEST_CHECKPOINT, VAL_COLUMNS, Trainer, find_resume_checkpoint

    started = time.perf_counter()
    out_dir = Path(out_dir)
    paths = [Path(p) for p in recording_paths]
    if not paths:
        raise ValueError("no recordings given")
    init = checkpoint_of(options.model)
    if init is None or not init.is_file():
        raise FileNotFoundError(f"model {options.model!r} is neither a shipped model nor a checkpoint file")
    checkpoint = load_checkpoint(init)

    data_root = out_dir / "data"
    wanted = {"sources": [str(p.resolve()) for p in paths], "options": asdict(options.data)}
    manifest_path = data_root / MANIFEST
    stamp_path = data_root / "sources.json"
    reuse = resume and manifest_path.is_file() and stamp_path.is_file() and \
        json.loads(stamp_path.read_text()) == wanted
    data_seconds = 0.0
    recordings = []
    if reuse:
        manifest = json.loads(manifest_path.read_text())
        LOGGER.info("resuming: the data set in %s is reused", data_root)
        from depth_completion_ros.data.kitti import KittiRawDrive

        crop = crop_for([KittiRawDrive(data_root / "kitti_raw", r["drive"]) for r in manifest["recordings"]])
    else:
        sources = check_recordings(paths, options.bag_options)
        if data_root.exists():
            shutil.rmtree(data_root)
        (data_root / "kitti_raw").mkdir(parents=True)
        pairing = {key: value for key, value in options.bag_options.items() if key not in TOPIC_OPTIONS}
        for number, source in enumerate(sources, 1):
            recordings.append(open_recording(source, data_root / "kitti_raw", number, progress=options.progress,
                                             **pairing))
        lookup = kitti_ground_truth(Path(options.ground_truth)) if options.ground_truth else None
        manifest = build_dataset(recordings, data_root, options.data, progress=options.progress, ground_truth=lookup)
        stamp_path.write_text(json.dumps(wanted, indent=2) + "\n")
        crop = crop_for([r.drive for r in recordings])
        data_seconds = time.perf_counter() - started
    if manifest["train_frames"] == 0 or manifest["val_frames"] == 0:
        raise ValueError(f"the recordings give {manifest['train_frames']} training and {manifest['val_frames']} "
                         "validation frames; adaptation needs both (more frames, or another val_fraction)")

    train_dir = out_dir / "train"
    config = fine_tune_config(checkpoint, init, data_root, options.training, crop, options.progress)
    resume_from = find_resume_checkpoint("auto", train_dir) if resume else None
    if not resume and train_dir.exists():
        shutil.rmtree(train_dir)
    trainer = Trainer(config, out_dir=train_dir, resume=resume_from)
    fit_started = time.perf_counter()
    trainer.fit(max_epochs=max_epochs)
    train_seconds = time.perf_counter() - fit_started
    history = _read_log(train_dir / "log.csv")
    start = next((row for row in history if row.get("stage") == "start"), None)
    metric = options.training.best_metric
    finished = trainer.epoch >= config.total_epochs
    best = load_checkpoint(train_dir / BEST_CHECKPOINT)
    kept = {k: best.metadata.get("val", {}).get(k) for k in VAL_COLUMNS}
    summary = {
        "model": options.model, "init_checkpoint": str(init), "architecture": checkpoint.architecture,
        "recordings": manifest["recordings"], "data": manifest, "crop": list(crop),
        "training": asdict(options.training), "epochs_done": trainer.epoch, "finished": finished,
        "best_metric": metric, "best_epoch": int(best.metadata.get("epoch", 0)),
        "hold_out_before": {k: start.get(f"val_{k}") for k in kept} if start else None,
        "hold_out_after": kept,
        "hold_out_fills": fills_hold_out(data_root, crop),
        "seconds": {"data": round(data_seconds, 1), "training": round(train_seconds, 1)},
        "command": command,
    }
    model = model_from_checkpoint(best, train_dir / BEST_CHECKPOINT)
    save_checkpoint(out_dir / ADAPTED_CHECKPOINT, model, {**best.metadata, "adaptation": _plain(summary)})
    # Its ONNX files beside it, as the shipped models have them: the node runs it without PyTorch.
    for refinement in refinements_beside(model):
        export_onnx(out_dir / ADAPTED_CHECKPOINT, onnx_beside(out_dir / ADAPTED_CHECKPOINT, refinement),
                    example_size=crop, refinement=refinement)
    (out_dir / SUMMARY).write_text(json.dumps(_plain(summary), indent=2) + "\n")
    (out_dir / MODEL_CARD).write_text(model_card(summary, out_dir))
    return summary


def fills_hold_out(data_root: Path, crop: tuple[int, int]) -> dict:
    """The hold-out error of the classical fills on the validation frames, scored as the trainer scores the
    network (the same bottom crop, the same returns)."""
    from depth_completion_ros.baselines import morphological_fill, nearest_fill
    from depth_completion_ros.data.kitti import KittiDepthCompletion
    from depth_completion_ros.evaluation.metrics import DepthMetrics
    from depth_completion_ros.geometry import bottom_crop_offsets
    from depth_completion_ros.training.config import BEST_METRICS

    frames = KittiDepthCompletion(data_root, "val", crop=crop)
    results = {}
    for name, fill in (("nearest fill", nearest_fill), ("morphological fill", morphological_fill)):
        metrics = DepthMetrics()
        for index in range(len(frames)):
            _, sparse, truth, _ = frames.load(index)
            top, left = bottom_crop_offsets(*sparse.shape, *crop)
            window = (slice(top, top + crop[0]), slice(left, left + crop[1]))
            metrics.update(fill(sparse[window]), truth[window])
        results[name] = {k: v for k, v in metrics.compute().items() if k in BEST_METRICS}
    return results


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def _read_log(path: Path) -> list[dict]:
    import csv

    if not path.is_file():
        return []
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        for key, value in list(row.items()):
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                pass
    return rows


def _command_line(command: list[str] | None) -> str:
    return " ".join(shlex.quote(a) for a in command) if command else "dcros adapt ..."


def _figure(values: dict | None, key: str) -> str:
    value = (values or {}).get(key)
    return "-" if value is None else f"{float(value):.1f}"


def _photometric_sentence(training: dict) -> str:
    weight = training.get("photometric_weight") or 0
    if not weight:
        return ""
    return (f" Also trained on the photometric consistency of its depth with the images of "
            f"{training.get('photometric_views', 1)} neighbouring frame(s) on each side (weight {weight:g}).")


def model_card(summary: dict, out_dir: Path) -> str:
    """The adapted model's card (markdown)."""
    data = summary["data"]
    before, after = summary["hold_out_before"], summary["hold_out_after"]
    lines = [
        f"# {out_dir.name}/{ADAPTED_CHECKPOINT} — {summary['architecture']} adapted to its recordings",
        "",
        f"Started from `{summary['model']}` ({summary['init_checkpoint']}) and fine-tuned without ground truth by "
        "`dcros adapt`: each training frame's LiDAR sweep accumulated with its neighbours' along the vehicle's "
        f"motion ({data['options']['neighbours']} on each side; returns that the frame's own sweep does not confirm "
        f"are dropped), {100 * data['options']['hold_out']:g} % of each sweep held out of the input."
        + _photometric_sentence(summary["training"]),
        "",
        "## Recordings",
        "",
        "| recording | kind | drive | train frames | val frames | target density | sweep density |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for record in summary["recordings"]:
        density = record.get("target_density")
        sweep = record.get("sweep_density")
        lines.append(f"| {record['source']} | {record['kind']} | {record['drive']} | {record['train_frames']} | "
                     f"{record['val_frames']} | {'-' if density is None else f'{100 * density:.1f} %'} | "
                     f"{'-' if sweep is None else f'{100 * sweep:.1f} %'} |")
    truth = data.get("target_vs_ground_truth")
    if truth:
        lines += ["", f"The targets against the ground truth given: RMSE {truth['rmse_mm']:.1f} mm, MAE "
                  f"{truth['mae_mm']:.1f} mm on {truth['pixels']} pixels of {truth['frames']} frames "
                  f"({100 * truth['share_off_by_more_than_1m']:.2f} % off by more than 1 m)."]
    lines += [
        "",
        "## Hold-out error (validation: the last frames of each recording, returns the network did not see: "
        "held-out returns of the frame's sweep and its neighbours' confirmed returns)",
        "",
        "| weights | RMSE mm | MAE mm | iRMSE 1/km | iMAE 1/km |",
        "|---|---:|---:|---:|---:|",
        f"| starting model | {_figure(before, 'rmse_mm')} | {_figure(before, 'mae_mm')} | "
        f"{_figure(before, 'irmse_1km')} | {_figure(before, 'imae_1km')} |",
        f"| adapted (epoch {summary['best_epoch']}) | {_figure(after, 'rmse_mm')} | {_figure(after, 'mae_mm')} | "
        f"{_figure(after, 'irmse_1km')} | {_figure(after, 'imae_1km')} |",
        *(f"| {name} (no learning) | {_figure(fill, 'rmse_mm')} | {_figure(fill, 'mae_mm')} | "
          f"{_figure(fill, 'irmse_1km')} | {_figure(fill, 'imae_1km')} |"
          for name, fill in summary.get("hold_out_fills", {}).items()),
        "",
        f"Kept: the weights with the lowest validation {summary['best_metric']} among the starting weights and every "
        f"epoch ({summary['epochs_done']} of {summary['training']['epochs']} done). Epoch 0 means no epoch beat the "
        "starting model.",
        "",
        "## Commands",
        "",
        "    " + _command_line(summary.get("command")),
        "",
        f"Wall time: {summary['seconds']['data']:.0f} s building the data set, {summary['seconds']['training']:.0f} s "
        "training.",
        "",
        "## What it is not good for",
        "",
        "- Other rigs: it learnt this vehicle's LiDAR, mount and camera; start again from the shipped model for "
        "another.",
        "- A figure of accuracy against true depth: the hold-out error scores LiDAR returns, which carry the "
        "sensor's own noise, and only where the LiDAR sees; the sky and the rows above the LiDAR's field are not "
        "scored.",
        "- Scenes unlike the recordings (other weather, night, other roads): nothing here was trained on them.",
    ]
    return "\n".join(lines) + "\n"


def main_command() -> list[str]:
    return ["dcros"] + sys.argv[1:]
