"""`dcros train`: train a registered model from a YAML configuration (one process or under torchrun)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train a model from a YAML config (stages, distillation, resume; multi-GPU under torchrun)"

EPILOG = """examples:
  dcros train --config config/train/cdspn_x32.yaml --out runs/cdspn_x32
  dcros train --config config/train/cdspn_x32.yaml --out runs/cdspn_x32 --resume auto
  dcros train --config config/train/lspkd_student.yaml --set data.batch_size=8 --set optimizer.lr=5e-4
  torchrun --standalone --nproc_per_node=4 -m depth_completion_ros.cli train --config config/train/kitti_cdspn_x32.yaml
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options."""
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--config", type=Path, default=None,
                        help="training YAML (config/train/*.yaml); optional with --resume CKPT, whose saved "
                             "config is then used")
    parser.add_argument("--resume", default=None, metavar="CKPT|auto",
                        help="continue from a last.pt; 'auto' = OUT/last.pt if it exists, else start fresh")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: the folder of --resume CKPT, else the config's `output`, "
                             "else runs/<model name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted keys, YAML values (repeatable), e.g. "
                             "data.batch_size=8, stages.1.lr=1e-4")
    parser.add_argument("--stop-after-epochs", type=int, default=None, metavar="N",
                        help="stop after N more epochs (last.pt stays resumable), e.g. for time-limited jobs")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--save-rank-weights", action="store_true",
                        help="every process writes its final weights to OUT/rank_weights/rank<r>.pt "
                             "(checks that distributed replicas agree)")


def _resolve_config(args: argparse.Namespace):
    from depth_completion_ros.models.checkpoint import load_checkpoint
    from depth_completion_ros.training.config import ConfigError, TrainConfig, apply_overrides, load_config

    if args.config is not None:
        return load_config(args.config, args.overrides)
    if args.resume in (None, "auto"):
        raise ValueError("--config is required (it may be left out only with --resume CKPT)")
    checkpoint = load_checkpoint(args.resume)
    saved = checkpoint.metadata.get("config")
    if not isinstance(saved, dict):
        raise ValueError(f"{args.resume}: the checkpoint holds no training config; pass --config")
    try:
        return TrainConfig.from_dict(apply_overrides(saved, args.overrides), source=str(args.resume))
    except ConfigError as error:
        raise ConfigError(f"{args.resume} (saved config): {error}") from None


def run(args: argparse.Namespace) -> int:
    """Validate the config, join the process group if torchrun started us, train, print the outcome."""
    import logging

    from depth_completion_ros.runtime.spec import require_torch

    require_torch("dcros train")
    from depth_completion_ros.training.distributed import cleanup, init_distributed
    from depth_completion_ros.training.trainer import Trainer, find_resume_checkpoint

    if args.stop_after_epochs is not None and args.stop_after_epochs < 1:
        raise ValueError(f"--stop-after-epochs must be >= 1, got {args.stop_after_epochs}")
    config = _resolve_config(args)  # before joining the group: every rank fails alike on a bad config
    if args.out is not None:
        out_dir = Path(args.out)
    elif args.resume not in (None, "auto"):
        out_dir = Path(args.resume).parent  # continue in the folder of the checkpoint
    else:
        out_dir = Path(config.output or Path("runs") / config.model.name)
    resume = find_resume_checkpoint(args.resume, out_dir)
    context = init_distributed(config.device)
    try:
        if not context.is_main:
            logging.getLogger("depth_completion_ros").setLevel(logging.WARNING)
        trainer = Trainer(config, out_dir=out_dir, resume=resume, context=context,
                          progress=False if args.no_progress else None, save_rank_weights=args.save_rank_weights)
        summary = trainer.fit(max_epochs=args.stop_after_epochs)
    finally:
        cleanup(context)
    if context.is_main:
        done = summary["epochs"]
        total = config.total_epochs
        print(f"trained {done}/{total} epochs ({summary['step']} steps) on {context.world_size} process(es)"
              f"{'' if done == total else ' - resume with --resume auto'}")
        if summary["last_val"]:
            val = summary["last_val"]
            print(f"last validation: RMSE {val['rmse_mm']:.1f} mm, MAE {val['mae_mm']:.1f} mm, "
                  f"iRMSE {val['irmse_1km']:.2f} 1/km, iMAE {val['imae_1km']:.2f} 1/km")
        if summary["best_val"] < float("inf"):
            print(f"best validation {summary['best_metric']} {summary['best_val']:.1f} -> {out_dir / 'best.pt'}")
        print(f"checkpoints and log.csv in {out_dir}")
    return 0
