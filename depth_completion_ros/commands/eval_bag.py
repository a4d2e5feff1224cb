"""`dcros eval-bag`: score depth against a bag's ground-truth topic, either by replaying the bag through the
pipeline (the default) or, with `--recorded-depth`, by scoring the depth images that the live node
published and `ros2 bag record` recorded (no network runs)."""
from __future__ import annotations

import argparse

from ._common import add_engine_arguments, add_pipeline_arguments, engine_from_args, pipeline_options_from_args

HELP = ("replay a rosbag through the pipeline, or score a recording of the node's depth output "
        "(--recorded-depth), with the KITTI metrics")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 folder (or ROS 1 .bag): the source, with the ground-truth topic")
    parser.add_argument("--out", required=True, help="report folder (metrics.json, frames.csv, plots, panels)")
    recorded = parser.add_argument_group(
        "recorded mode (no network runs: the model, pipeline and pairing options are not used)")
    recorded.add_argument("--recorded-depth", metavar="RECORDED_BAG",
                          help="rosbag2 folder recorded from the live node (`ros2 bag record /depth/image`, "
                               "sqlite3 or mcap); its depth images (32FC1 m or 16UC1 mm) are scored against "
                               "BAG's --gt-topic, paired by header stamp (same stamp, else nearest within "
                               "--slop); BAG's --image-topic, if present, goes into the panels")
    recorded.add_argument("--recorded-topic", default="/depth/image",
                          help="depth topic of RECORDED_BAG (default: %(default)s; if absent and the bag has "
                               "exactly one sensor_msgs/Image topic, that one)")
    add_engine_arguments(parser)
    add_pipeline_arguments(parser)
    topics = parser.add_argument_group("topics (defaults: kitti2bag's layout)")
    topics.add_argument("--image-topic", default="/kitti/camera_color_left/image_raw")
    topics.add_argument("--info-topic", default="/kitti/camera_color_left/camera_info")
    topics.add_argument("--points-topic", default="/kitti/velo/pointcloud")
    topics.add_argument("--gt-topic", default="/kitti/camera_color_left/depth_gt",
                        help="32FC1 (m) or 16UC1 (mm) ground truth; 'none' to only time the pipeline")
    parser.add_argument("--slop", type=float, default=0.05,
                        help="pairing tolerance in seconds (as the node's); also pairs ground truth")
    parser.add_argument("--queue-size", type=int, default=10, help="pairing queue per topic (as the node's)")
    parser.add_argument("--lidar-to-camera", type=float, nargs=16, metavar="M",
                        help="4x4 row-major transform overriding the bag's /tf_static")
    parser.add_argument("--panels", type=int, default=4, help="number of image panels to draw")
    parser.add_argument("--predictions-bag", help="also write the predicted depth to this rosbag2 (for RViz)")
    parser.add_argument("--predictions-distro", default="humble", choices=("humble", "jazzy"))


def run(args) -> int:
    import numpy as np

    from ..evaluation.bag_eval import BagTopics, evaluate_bag, evaluate_recorded
    from ..evaluation.scoring import print_summary
    from ..pipeline import FrameProcessor

    topics = BagTopics(args.image_topic, args.info_topic, args.points_topic,
                       None if args.gt_topic.lower() == "none" else args.gt_topic)
    if args.recorded_depth is not None:
        if topics.ground_truth is None:
            raise ValueError("--recorded-depth scores against ground truth: --gt-topic cannot be 'none'")
        if args.predictions_bag is not None:
            raise ValueError("--predictions-bag writes the pipeline's predictions; with --recorded-depth no "
                             "pipeline runs")
        summary = evaluate_recorded(args.bag, args.recorded_depth, args.out, recorded_topic=args.recorded_topic,
                                    topics=topics, slop_s=args.slop, panels=args.panels,
                                    max_depth=min(args.max_depth, 80.0))
        print_summary(summary, args.out)
        return 0
    transform = None if args.lidar_to_camera is None else np.array(args.lidar_to_camera).reshape(4, 4)
    engine = engine_from_args(args)
    processor = FrameProcessor(engine, options=pipeline_options_from_args(args))
    summary = evaluate_bag(args.bag, processor, args.out, topics=topics, slop_s=args.slop,
                           queue_size=args.queue_size, lidar_to_camera=transform, panels=args.panels,
                           predictions_bag=args.predictions_bag, predictions_distro=args.predictions_distro)
    print_summary(summary, args.out)
    return 0
