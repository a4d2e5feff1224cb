"""Offline replay of a rosbag (ROS 1 or rosbag2) through the pipeline, scored against a ground-truth
depth topic with the project's KITTI metrics.

Messages are replayed in the bag's timestamp order; image, CameraInfo and cloud are paired by their header
stamps with the node's approximate-time policy (`data.sync.ApproximateTimePairing`), the LiDAR->camera
transform comes from the bag's /tf_static and /tf (the first transform of each edge; sensor mounts are
rigid) unless given, and each set goes through the same `FrameProcessor` as the node. Ground truth
(32FC1 metres or 16UC1 millimetres) is matched to the camera image by stamp: the same stamp, else the
nearest within the slop.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import messages
from ..data.rosbag import BagError, bag_topics, open_bag_writer, read_bag
from ..data.sync import ApproximateTimePairing
from ..geometry import TransformTree
from ..pipeline import FrameProcessor
from .scoring import FrameScorer, panel_indices

LOGGER = logging.getLogger(__name__)
TF_TOPICS = ("/tf_static", "/tf")
PREDICTION_TOPIC = "/depth_completion/depth/image"
PREDICTION_INFO_TOPIC = "/depth_completion/depth/camera_info"


@dataclass(frozen=True)
class BagTopics:
    """Topic names; the defaults follow kitti2bag's layout. ground_truth None: no scoring, timing only."""

    image: str = "/kitti/camera_color_left/image_raw"
    camera_info: str = "/kitti/camera_color_left/camera_info"
    points: str = "/kitti/velo/pointcloud"
    ground_truth: str | None = "/kitti/camera_color_left/depth_gt"


def static_transforms(bag_path: Path, available: dict) -> TransformTree:
    """The transform tree of the bag's /tf_static and /tf messages (first transform of each edge)."""
    tree = TransformTree()
    topics = [t for t in TF_TOPICS if t in available]
    if not topics:
        return tree
    seen = set()
    for record in read_bag(bag_path, topics):
        for stamped in record.msg.transforms:
            edge = (stamped.header.frame_id.lstrip("/"), stamped.child_frame_id.lstrip("/"))
            if edge not in seen:
                seen.add(edge)
                tree.add(edge[0], edge[1], messages.transform_from_msg(stamped.transform))
    return tree


def evaluate_bag(bag_path: str | Path, processor: FrameProcessor, out_dir: str | Path,
                 topics: BagTopics = BagTopics(), slop_s: float = 0.05, queue_size: int = 10,
                 lidar_to_camera: np.ndarray | None = None, panels: int = 4,
                 predictions_bag: str | Path | None = None, predictions_distro: str = "humble",
                 progress: bool = True) -> dict:
    """Replay, process, score and write the report (see evaluation.report). Returns the summary."""
    from tqdm import tqdm

    bag_path, out_dir = Path(bag_path), Path(out_dir)
    available = bag_topics(bag_path)
    required = [topics.image, topics.camera_info, topics.points] + ([topics.ground_truth] if topics.ground_truth else [])
    missing = [t for t in required if t not in available]
    if missing:
        raise BagError(f"bag {bag_path} has no topic {', '.join(missing)} (topics: {', '.join(sorted(available))})")
    if lidar_to_camera is None:
        tree = static_transforms(bag_path, available)
        if not tree.frames:
            raise BagError(f"bag {bag_path} has no /tf_static or /tf to take the LiDAR->camera transform from; "
                           "give it explicitly")
    expected = available[topics.image][1]
    scorer = FrameScorer(out_dir, panel_indices(expected, panels), max_depth=min(processor.options.max_depth, 80.0))
    pairing = ApproximateTimePairing(3, queue_size=queue_size, slop_s=slop_s)
    slop_ns = int(round(slop_s * 1e9))
    ground_truth: dict[int, object] = {}
    waiting: list[tuple[int, object, object, np.ndarray]] = []  # processed frames whose ground truth may follow

    def ground_truth_for(stamp_ns: int):
        if stamp_ns in ground_truth:
            return ground_truth[stamp_ns]
        near = [s for s in ground_truth if abs(s - stamp_ns) < slop_ns]
        return ground_truth[min(near, key=lambda s: abs(s - stamp_ns))] if near else None

    def score_ready(now_ns: int | None) -> None:
        """Score frames whose ground truth arrived, or that can no longer get one (bag time moved on)."""
        while waiting:
            stamp_ns, image_msg, result, rgb = waiting[0]
            gt_msg = ground_truth_for(stamp_ns) if topics.ground_truth else None
            if gt_msg is None and now_ns is not None and topics.ground_truth and now_ns <= stamp_ns + slop_ns:
                return
            gt = messages.depth_from_image(gt_msg) if gt_msg is not None else None
            scorer.add(result, rgb, gt, name=f"{stamp_ns}")
            waiting.pop(0)
            for stale in [s for s in ground_truth if s <= stamp_ns]:
                del ground_truth[stale]

    inputs = {topics.image: 0, topics.camera_info: 1, topics.points: 2}
    transforms: dict[tuple[str, str], np.ndarray] = {}
    with contextlib.ExitStack() as stack:
        writer = None
        if predictions_bag is not None:
            writer = stack.enter_context(open_bag_writer(predictions_bag, distro=predictions_distro))
            writer.add_topic(PREDICTION_TOPIC, "sensor_msgs/msg/Image")
            writer.add_topic(PREDICTION_INFO_TOPIC, "sensor_msgs/msg/CameraInfo")
        for record in tqdm(read_bag(bag_path, required), total=sum(available[t][1] for t in required),
                           desc=f"eval-bag {bag_path.name}", unit="msg", disable=not progress):
            stamp_ns = messages.stamp_to_ns(record.msg.header.stamp)
            if record.topic == topics.ground_truth:
                ground_truth[stamp_ns] = record.msg
                score_ready(record.stamp_ns)
                continue
            matched = pairing.add(inputs[record.topic], stamp_ns, record.msg)
            if matched is None:
                score_ready(record.stamp_ns)
                continue
            image_msg, info_msg, cloud_msg = matched
            try:
                transform = lidar_to_camera
                if transform is None:
                    key = (image_msg.header.frame_id, cloud_msg.header.frame_id)
                    if key not in transforms:
                        transforms[key] = tree.lookup(*key)
                    transform = transforms[key]
                result = processor.process_messages(image_msg, cloud_msg, camera=info_msg, lidar_to_camera=transform)
                rgb = messages.rgb_from_image(image_msg)
            except (ValueError, LookupError) as error:
                scorer.drop(type(error).__name__, error)
                LOGGER.warning("frame at %d ns dropped: %s", stamp_ns, error)
                continue
            if writer is not None:
                types = writer.types
                header = messages.build_header(types, result.stamp_ns, image_msg.header.frame_id)
                writer.write(PREDICTION_TOPIC, record.stamp_ns, messages.make_message(
                    types["sensor_msgs/msg/Image"], header=header,
                    **messages.depth_to_image_fields(result.dense, invalid="nan")))
                writer.write(PREDICTION_INFO_TOPIC, record.stamp_ns, messages.build_camera_info(
                    types, header, messages.camera_from_camera_info(info_msg)))
            waiting.append((result.stamp_ns, image_msg, result, rgb))
            score_ready(record.stamp_ns)
        score_ready(None)
    scorer.drop("unsynchronized_image", count=pairing.dropped()[0])
    return scorer.finish({"bag": str(bag_path), "topics": topics.__dict__, "slop_s": slop_s,
                          "queue_size": queue_size, "messages_unpaired": dict(zip(("image", "camera_info", "points"),
                                                                                  pairing.dropped())),
                          "predictions_bag": str(predictions_bag) if predictions_bag else None})
