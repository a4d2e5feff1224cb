"""`dcros adapt`: fine-tune a model on a vehicle's own recordings (bags or KITTI raw drives), no ground truth."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "adapt a model to your vehicle from its recordings, without ground truth (LiDAR accumulated along /tf)"

EPILOG = """examples:
  dcros adapt drive1.bag drive2_mcap/ --out runs/my_car
  dcros adapt /data/kitti_raw/2011_09_26/2011_09_26_drive_0001_sync --model lspkd_student_synth --out runs/kitti
  dcros adapt drive1.bag --out runs/my_car --resume          # continue an interrupted run

The bags need the vehicle's motion on /tf (e.g. odom -> base_link, or world -> base_link as dcros kitti2bag
writes it from the OXTS) above the LiDAR's frame, and the LiDAR -> camera transform on /tf_static. Then:
  ros2 launch depth_completion_ros depth_completion.launch.py model:=runs/my_car/adapted.pt
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options."""
    from depth_completion_ros.adaptation.dataset import DatasetOptions
    from depth_completion_ros.adaptation.run import TrainingOptions

    data, training = DatasetOptions(), TrainingOptions()
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING",
                        help="a bag (rosbag2 folder, .mcap, .db3 or ROS 1 .bag) or a KITTI raw drive folder")
    parser.add_argument("--out", required=True, type=Path, help="output folder (adapted.pt, adapted.md, ...)")
    parser.add_argument("--model", default="default",
                        help="the starting model: 'default', a shipped model's name or a checkpoint file")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/train/last.pt, reusing OUT/data when built from the same recordings")
    group = parser.add_argument_group("targets")
    group.add_argument("--neighbours", type=int, default=data.neighbours,
                       help="sweeps accumulated on each side of a frame (default: %(default)s, KITTI's 11 in all)")
    group.add_argument("--val-fraction", type=float, default=data.val_fraction,
                       help="the last share of each recording's frames validates (default: %(default)s)")
    group.add_argument("--hold-out", type=float, default=data.hold_out,
                       help="share of each sweep's returns held out of the input (default: %(default)s)")
    group.add_argument("--ground-truth", default=None, metavar="KITTI_ROOT",
                       help="a KITTI root (kitti_raw/, data_depth_annotated/) to report the targets' own accuracy "
                            "against: frames matched by camera stamp (bags written by dcros kitti2bag keep them) or "
                            "by drive and frame; never used for training")
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=training.epochs)
    group.add_argument("--lr", type=float, default=training.lr, help="start of the cosine schedule")
    group.add_argument("--batch-size", type=int, default=training.batch_size)
    group.add_argument("--anchor-weight", type=float, default=training.anchor_weight,
                       help="L1 to the starting model's depth where the targets say nothing (between the beams); "
                            "0 = off (default: %(default)s)")
    group.add_argument("--photometric-weight", type=float, default=training.photometric_weight,
                       help="> 0: add the photometric consistency of the depth with the images of the neighbouring "
                            "frames, moved by the ego motion, at this weight (default: %(default)s, off)")
    group.add_argument("--photometric-views", type=int, default=training.photometric_views,
                       help="neighbouring frames on each side for --photometric-weight (default: %(default)s)")
    group.add_argument("--best-metric", default=training.best_metric,
                       choices=("rmse_mm", "mae_mm", "irmse_1km", "imae_1km"),
                       help="the validation hold-out figure the kept checkpoint minimises (default: %(default)s)")
    group.add_argument("--device", default=training.device, choices=("auto", "cpu", "cuda"))
    group.add_argument("--seed", type=int, default=training.seed)
    group.add_argument("--stop-after-epochs", type=int, default=None, metavar="N",
                       help="stop after N more epochs (resume later with --resume)")
    group = parser.add_argument_group("bags")
    group.add_argument("--image-topic", default="auto")
    group.add_argument("--info-topic", default="auto")
    group.add_argument("--points-topic", default="auto")
    group.add_argument("--slop", type=float, default=0.05, help="seconds between paired stamps (default: 0.05)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    from depth_completion_ros.adaptation.dataset import DatasetOptions
    from depth_completion_ros.adaptation.run import AdaptOptions, TrainingOptions, adapt, main_command

    options = AdaptOptions(
        model=args.model,
        data=DatasetOptions(neighbours=args.neighbours, val_fraction=args.val_fraction, hold_out=args.hold_out),
        training=TrainingOptions(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                 anchor_weight=args.anchor_weight, photometric_weight=args.photometric_weight,
                                 photometric_views=args.photometric_views,
                                 best_metric=args.best_metric, device=args.device, seed=args.seed),
        ground_truth=args.ground_truth,
        bag_options={"slop_s": args.slop, "image_topic": args.image_topic, "info_topic": args.info_topic,
                     "points_topic": args.points_topic},
        progress=not args.no_progress,
    )
    summary = adapt(args.recordings, args.out, options, resume=args.resume, max_epochs=args.stop_after_epochs,
                    command=main_command())
    before, after = summary["hold_out_before"] or {}, summary["hold_out_after"]
    metric = summary["best_metric"]
    print(f"hold-out {metric}: starting model {before.get(metric, float('nan')):.1f}, adapted "
          f"{after.get(metric) or float('nan'):.1f} (epoch {summary['best_epoch']}; {summary['epochs_done']} of "
          f"{summary['training']['epochs']} epochs done)")
    print(f"written: {args.out / 'adapted.pt'} and its model card {args.out / 'adapted.md'}")
    return 0
