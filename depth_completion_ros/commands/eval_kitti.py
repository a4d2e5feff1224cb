"""`dcros eval-kitti`: run the pipeline over a KITTI depth-completion split and score it."""
from __future__ import annotations

import argparse

from ._common import add_engine_arguments, add_pipeline_arguments, engine_from_args, pipeline_options_from_args

HELP = "evaluate on the KITTI depth-completion layout; writes devkit-ready 16-bit PNG predictions"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="KITTI root (data_depth_velodyne, data_depth_annotated, ...)")
    parser.add_argument("--split", default="val_selection_cropped", choices=("train", "val", "val_selection_cropped"))
    parser.add_argument("--out", required=True, help="report folder; predictions go to OUT/predictions")
    parser.add_argument("--limit", type=int, help="evaluate the first N frames only")
    parser.add_argument("--panels", type=int, default=4)
    add_engine_arguments(parser)
    add_pipeline_arguments(parser)


def run(args) -> int:
    from ..evaluation.kitti_eval import evaluate_kitti
    from ..evaluation.scoring import print_summary
    from ..pipeline import FrameProcessor

    processor = FrameProcessor(engine_from_args(args), options=pipeline_options_from_args(args))
    summary = evaluate_kitti(args.data, args.split, processor, args.out, limit=args.limit, panels=args.panels)
    print_summary(summary, args.out)
    return 0
