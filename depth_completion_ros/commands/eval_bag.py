"""`dcros eval-bag`: replay a bag through the pipeline and score it against its ground-truth topic."""
from __future__ import annotations

import argparse

from ._common import add_engine_arguments, add_pipeline_arguments, engine_from_args, pipeline_options_from_args

HELP = "replay a rosbag through the pipeline and score it with the KITTI metrics"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 folder (or ROS 1 .bag)")
    parser.add_argument("--out", required=True, help="report folder (metrics.json, frames.csv, plots, panels)")
    add_engine_arguments(parser)
    add_pipeline_arguments(parser)
    topics = parser.add_argument_group("topics (defaults: kitti2bag's layout)")
    topics.add_argument("--image-topic", default="/kitti/camera_color_left/image_raw")
    topics.add_argument("--info-topic", default="/kitti/camera_color_left/camera_info")
    topics.add_argument("--points-topic", default="/kitti/velo/pointcloud")
    topics.add_argument("--gt-topic", default="/kitti/camera_color_left/depth_gt",
                        help="32FC1 (m) or 16UC1 (mm) ground truth; 'none' to only time the pipeline")
    parser.add_argument("--slop", type=float, default=0.05, help="pairing tolerance in seconds (as the node's)")
    parser.add_argument("--queue-size", type=int, default=10, help="pairing queue per topic (as the node's)")
    parser.add_argument("--lidar-to-camera", type=float, nargs=16, metavar="M",
                        help="4x4 row-major transform overriding the bag's /tf_static")
    parser.add_argument("--panels", type=int, default=4, help="number of image panels to draw")
    parser.add_argument("--predictions-bag", help="also write the predicted depth to this rosbag2 (for RViz)")
    parser.add_argument("--predictions-distro", default="humble", choices=("humble", "jazzy"))


def run(args) -> int:
    import numpy as np

    from ..evaluation.bag_eval import BagTopics, evaluate_bag
    from ..evaluation.scoring import print_summary
    from ..pipeline import FrameProcessor

    topics = BagTopics(args.image_topic, args.info_topic, args.points_topic,
                       None if args.gt_topic.lower() == "none" else args.gt_topic)
    transform = None if args.lidar_to_camera is None else np.array(args.lidar_to_camera).reshape(4, 4)
    engine = engine_from_args(args)
    processor = FrameProcessor(engine, options=pipeline_options_from_args(args))
    summary = evaluate_bag(args.bag, processor, args.out, topics=topics, slop_s=args.slop,
                           queue_size=args.queue_size, lidar_to_camera=transform, panels=args.panels,
                           predictions_bag=args.predictions_bag, predictions_distro=args.predictions_distro)
    print_summary(summary, args.out)
    return 0
