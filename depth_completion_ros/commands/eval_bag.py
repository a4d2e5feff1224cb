"""`dcros eval-bag`: score depth against a bag's ground-truth topic, either by replaying the bag through the
pipeline (the default) or, with `--recorded-depth`, by scoring the depth images that the live node
published and `ros2 bag record` recorded (no network runs). A bag without a ground-truth topic (a drive
converted by any tool) is scored against KITTI's ground-truth PNGs with `--kitti-gt`."""
from __future__ import annotations

import argparse

from ._common import add_engine_arguments, add_pipeline_arguments, engine_from_args, pipeline_options_from_args

HELP = ("replay a rosbag through the pipeline, or score a recording of the node's depth output "
        "(--recorded-depth), with the KITTI metrics, against its ground-truth topic or KITTI's PNGs (--kitti-gt)")
KITTI_GT_DEFAULTS = {"kitti_raw": None, "drive": None, "match": "stamp", "match_tolerance": 0.02, "first_frame": 0}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="the source: rosbag2 folder, ROS 1 .bag or bare .mcap/.db3 file, with the "
                                    "ground-truth topic unless --kitti-gt")
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
    topics = parser.add_argument_group(
        "topics ('auto', the default: kitti2bag's name where the bag has it, else found in the bag)")
    topics.add_argument("--image-topic", default="auto",
                        help="camera image; auto: the only colour Image with a camera_info in its namespace")
    topics.add_argument("--info-topic", default="auto",
                        help="CameraInfo; auto: the camera_info beside the image, else the only CameraInfo. The "
                             "intrinsics are the left 3x3 of P; P's Tx is not applied, tf gives the camera's pose")
    topics.add_argument("--points-topic", default="auto", help="PointCloud2; auto: the only PointCloud2")
    topics.add_argument("--gt-topic",
                        help="32FC1 (m) or 16UC1 (mm) ground truth (default: /kitti/camera_color_left/depth_gt, "
                             "none with --kitti-gt); 'none' to only time the pipeline")
    kitti = parser.add_argument_group(
        "ground truth from KITTI's folders, for a bag without a ground-truth topic (pipeline mode)")
    kitti.add_argument("--kitti-gt", metavar="DIR",
                       help="a data_depth_annotated root (train/, val/) or one drive's "
                            "proj_depth/groundtruth/image_02 folder; PNG name = drive frame number")
    kitti.add_argument("--kitti-raw", metavar="DIR",
                       help="the kitti_raw root or the drive's raw folder, for its image_02/timestamps.txt "
                            "(needed by --match stamp)")
    kitti.add_argument("--drive", help="drive name (2011_09_26_drive_0001_sync); default: from the --kitti-gt "
                                       "or --kitti-raw path")
    kitti.add_argument("--match", choices=("stamp", "index"),
                       help="stamp (default): the camera image's header stamp to the nearest drive timestamp "
                            "within --match-tolerance; index: the n-th camera image of the bag is drive frame "
                            "--first-frame + n (assumes the bag starts there and lost no image)")
    kitti.add_argument("--match-tolerance", type=float, metavar="S",
                       help=f"seconds (default: {KITTI_GT_DEFAULTS['match_tolerance']})")
    kitti.add_argument("--first-frame", type=int, metavar="K",
                       help="drive frame of the bag's first camera image with --match index (default: 0)")
    parser.add_argument("--slop", type=float, default=0.05,
                        help="pairing tolerance in seconds (as the node's); also pairs ground truth")
    parser.add_argument("--queue-size", type=int, default=10, help="pairing queue per topic (as the node's)")
    parser.add_argument("--lidar-to-camera", type=float, nargs=16, metavar="M",
                        help="4x4 row-major LiDAR->camera transform overriding the bag's /tf_static and /tf")
    parser.add_argument("--panels", type=int, default=4, help="number of image panels to draw")
    parser.add_argument("--predictions-bag", help="also write the predicted depth to this rosbag2 (for RViz)")
    parser.add_argument("--predictions-distro", default="humble", choices=("humble", "jazzy"))


def run(args) -> int:
    import numpy as np

    from ..evaluation.bag_eval import BagTopics, KittiGroundTruth, evaluate_bag, evaluate_recorded
    from ..evaluation.scoring import print_summary
    from ..pipeline import FrameProcessor

    kitti_given = [name for name in KITTI_GT_DEFAULTS if getattr(args, name) is not None]
    if args.kitti_gt is None and kitti_given:
        raise ValueError(f"--{kitti_given[0].replace('_', '-')} goes with --kitti-gt")
    if args.kitti_gt is not None and args.gt_topic is not None and args.gt_topic.lower() != "none":
        raise ValueError("--kitti-gt and --gt-topic both name the ground truth: give one")
    gt_topic = BagTopics().ground_truth if args.gt_topic is None and args.kitti_gt is None else args.gt_topic
    topics = BagTopics(args.image_topic, args.info_topic, args.points_topic,
                       None if gt_topic is None or gt_topic.lower() == "none" else gt_topic)
    if args.recorded_depth is not None:
        if args.kitti_gt is not None:
            raise ValueError("--kitti-gt scores the pipeline's predictions; with --recorded-depth, the source bag's "
                             "ground-truth topic is used")
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
    kitti_gt = None
    if args.kitti_gt is not None:
        options = {name: KITTI_GT_DEFAULTS[name] if getattr(args, name) is None else getattr(args, name)
                   for name in KITTI_GT_DEFAULTS}
        kitti_gt = KittiGroundTruth.from_folders(args.kitti_gt, raw_dir=options["kitti_raw"], drive=options["drive"],
                                                 match=options["match"], tolerance_s=options["match_tolerance"],
                                                 first_frame=options["first_frame"])
    engine = engine_from_args(args)
    processor = FrameProcessor(engine, options=pipeline_options_from_args(args))
    summary = evaluate_bag(args.bag, processor, args.out, topics=topics, slop_s=args.slop,
                           queue_size=args.queue_size, lidar_to_camera=transform, panels=args.panels,
                           predictions_bag=args.predictions_bag, predictions_distro=args.predictions_distro,
                           kitti_gt=kitti_gt)
    print_summary(summary, args.out)
    if summary.get("kitti_gt"):
        print(format_kitti_gt(summary["kitti_gt"]))
    return 0


def format_kitti_gt(matched: dict) -> str:
    """One line on how the bag's frames found KITTI's ground truth (the summary's "kitti_gt")."""
    if matched["match"] == "stamp":
        offset = "none" if matched["max_offset_s"] is None else f"{matched['max_offset_s'] * 1000:.3f} ms"
        how = f"by stamp within {matched['tolerance_s']} s (largest offset {offset})"
    else:
        how = f"by order from frame {matched['first_frame']}"
    return (f"KITTI ground truth of {matched['drive']}: {matched['frames_matched']} frames matched {how}, "
            f"{matched['frames_unmatched']} unmatched, {matched['frames_without_gt_png']} without a PNG")
