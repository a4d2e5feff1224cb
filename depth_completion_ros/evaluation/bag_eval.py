"""Scoring of depth against a rosbag's ground-truth depth topic with the project's KITTI metrics, in two modes.

Pipeline mode (`evaluate_bag`): offline replay of a rosbag (ROS 1 or rosbag2) through the pipeline.
Messages are replayed in the bag's timestamp order; image, CameraInfo and cloud are paired by their header
stamps with the node's approximate-time policy (`data.sync.ApproximateTimePairing`), the LiDAR->camera
transform comes from the bag's /tf_static and /tf (the first transform of each edge; sensor mounts are
rigid) unless given, and each set goes through the same `FrameProcessor` as the node. Ground truth
(32FC1 metres or 16UC1 millimetres) is matched to the camera image by stamp: the same stamp, else the
nearest within the slop (`nearest_stamp`). A bag without a ground-truth topic (any drive converted by
another tool) is scored against KITTI's own ground-truth PNGs instead (`KittiGroundTruth`): each camera
image finds its drive frame by header stamp against the drive's image_02/timestamps.txt, or by order.

Bags from other converters read as they are: ROS 1 `.bag` (kitti2bag's own output), rosbag2 folders
with or without message definitions, bare `.mcap` files (see `data.rosbag`). Topics given as "auto" are
found in the bag (`resolve_topics`): kitti2bag's names where the bag has them, else the only colour Image
with a CameraInfo beside it, and the only PointCloud2.

Camera model and pose: the intrinsics are the left 3x3 of CameraInfo's P (the rectified camera); P's
fourth column (Tx = fx * b of KITTI's P_rect_02, as kitti2bag writes it) is not applied, because tf
already gives the pose of the image's own frame (kitti2bag's camera_color_left is camera 02, baseline
included). A P with Tx projects points given in the stereo pair's first camera (KITTI's camera 00), not
in the image's own frame; applied to points in camera_color_left it would move the camera by its
baseline a second time. In its own optical frame a camera projects with [K | 0] (CameraInfo's monocular
case, Tx = Ty = 0), so tf wins; the summary says whether a translation was present and left out.

Recorded mode (`evaluate_recorded`): no network runs. The depth images that the live node published and
`ros2 bag record` recorded (a second bag; sensor_msgs/Image 32FC1 metres, NaN = none, or 16UC1
millimetres) are scored against the source bag's ground truth, each paired by header stamp with the same
rule. The source bag's camera images, where present, go into the panels. Recorded frames whose size differs
from their ground truth are dropped and counted by reason; ground-truth frames that no recorded depth pairs
with are counted as `frames_missing_prediction` (frames the live run lost).

Both modes write the same report (evaluation.report) through `FrameScorer`; the summary's "mode" says
which ("pipeline" or "recorded"). A recording carries no per-stage timings, so its report has no latency
figures (empty timing columns in frames.csv, no latency.png) and its panels no sparse-input row.
"""
from __future__ import annotations

import bisect
import contextlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data import messages
from ..data.image_io import read_depth_png
from ..data.kitti import find_groundtruth_folder, find_raw_drive_folder, is_drive_name, read_timestamps
from ..data.rosbag import BagError, BagMessage, bag_topics, open_bag_writer, read_bag
from ..data.sync import ApproximateTimePairing
from ..geometry import TransformTree
from ..pipeline import FrameProcessor
from ..raw_camera import RawCamera, depth_in_raw_grid, seen_by_rectified
from .html_report import describe_engine
from .scoring import FrameScorer, panel_indices

LOGGER = logging.getLogger(__name__)
TF_TOPICS = ("/tf_static", "/tf")
PREDICTION_TOPIC = "/depth_completion/depth/image"
PREDICTION_INFO_TOPIC = "/depth_completion/depth/camera_info"
RECORDED_TOPIC = "/depth/image"  # the node's output, as `ros2 bag record /depth/image` names it
IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
DEPTH_ENCODINGS = ("32FC1", "16UC1", "mono16")
AUTO = "auto"  # a topic to find in the bag (`resolve_topics`)
MATCH_METHODS = ("stamp", "index")


@dataclass(frozen=True)
class BagTopics:
    """Topic names; the defaults follow kitti2bag's layout. ground_truth None: no ground-truth topic (timing
    only, or KITTI's PNGs). image, camera_info and points may be "auto" (`resolve_topics`)."""

    image: str = "/kitti/camera_color_left/image_raw"
    camera_info: str = "/kitti/camera_color_left/camera_info"
    points: str = "/kitti/velo/pointcloud"
    ground_truth: str | None = "/kitti/camera_color_left/depth_gt"


KITTI2BAG_TOPICS = BagTopics()


def _namespace(topic: str) -> str:
    return topic.rsplit("/", 1)[0]


def first_message(bag_path: Path, topic: str):
    """A topic's first message (None: the topic has none)."""
    with contextlib.closing(read_bag(bag_path, [topic])) as records:
        record = next(records, None)
    return None if record is None else record.msg


def _first_encoding(bag_path: Path, topic: str) -> str | None:
    """The encoding of a topic's first Image (None: the topic has no message)."""
    msg = first_message(bag_path, topic)
    return None if msg is None else str(msg.encoding)


def _only(bag_path: Path, what: str, candidates: list[str], flag: str, detail: str = "") -> str:
    """The single candidate, else a BagError listing them and the flag that names one."""
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(candidates) if candidates else "none"
    raise BagError(f"bag {bag_path}: cannot tell which topic is the {what} ({len(candidates)} candidates: "
                   f"{found}{detail}); name it with {flag}")


def _discover_image(bag_path: Path, available: dict) -> str:
    default = KITTI2BAG_TOPICS.image
    if available.get(default, (None,))[0] == IMAGE_TYPE:
        return default
    images = sorted(name for name, (msgtype, _) in available.items() if msgtype == IMAGE_TYPE)
    encodings = {name: _first_encoding(bag_path, name) for name in images}
    colour = [name for name in images if encodings[name] not in DEPTH_ENCODINGS]
    infos = {name for name, (msgtype, _) in available.items() if msgtype == CAMERA_INFO_TYPE}
    with_info = [name for name in colour if f"{_namespace(name)}/camera_info" in infos]
    if len(with_info) == 1 or (not with_info and len(colour) == 1):
        return (with_info or colour)[0]
    depth = [f"{name} ({encodings[name]})" for name in images if name not in colour]
    detail = f"; depth images left out: {', '.join(depth)}" if depth else ""
    return _only(bag_path, "camera image (a colour Image with a camera_info beside it)", with_info or colour,
                 "--image-topic", detail)


def _discover_camera_info(bag_path: Path, available: dict, image: str) -> str:
    beside = f"{_namespace(image)}/camera_info"
    if available.get(beside, (None,))[0] == CAMERA_INFO_TYPE:
        return beside
    infos = sorted(name for name, (msgtype, _) in available.items() if msgtype == CAMERA_INFO_TYPE)
    return _only(bag_path, f"CameraInfo of {image}", infos, "--info-topic")


def _discover_points(bag_path: Path, available: dict) -> str:
    default = KITTI2BAG_TOPICS.points
    if available.get(default, (None,))[0] == CLOUD_TYPE:
        return default
    clouds = sorted(name for name, (msgtype, _) in available.items() if msgtype == CLOUD_TYPE)
    return _only(bag_path, "LiDAR cloud (a PointCloud2)", clouds, "--points-topic")


def resolve_topics(bag_path: str | Path, available: dict, topics: BagTopics) -> BagTopics:
    """`topics` with every "auto" replaced by the bag's topic (`available`: `bag_topics`' answer).

    image: kitti2bag's name where the bag has it; else the only Image, not a depth image (its first message
    is 32FC1, 16UC1 or mono16), with a CameraInfo topic `camera_info` in the same namespace (or the only
    non-depth Image at all). camera_info: the `camera_info` beside the image, else the only CameraInfo.
    points: kitti2bag's name, else the only PointCloud2. No single candidate: a BagError that lists the
    candidates and names the flag to pass. Names given explicitly are kept as they are.
    """
    bag_path = Path(bag_path)
    image = _discover_image(bag_path, available) if topics.image == AUTO else topics.image
    info = _discover_camera_info(bag_path, available, image) if topics.camera_info == AUTO else topics.camera_info
    points = _discover_points(bag_path, available) if topics.points == AUTO else topics.points
    return BagTopics(image, info, points, topics.ground_truth)


# ------------------------------------------------------------------------------ ground truth from KITTI
@dataclass(frozen=True, eq=False)
class KittiGroundTruth:
    """Ground truth from KITTI's depth-completion folders for a bag without a ground-truth topic.

    `folder` holds one drive's PNGs (`<drive>/proj_depth/groundtruth/image_02/%010d.png`, metres * 256,
    0 = none). A bag frame finds its drive frame by `match`:
    - "stamp": the camera image's header stamp against the drive's camera timestamps
      (`image_stamps_ns`, image_02/timestamps.txt, one per frame number); the nearest one, if it is at
      most `tolerance_s` away (KITTI's camera runs at 10 Hz: keep it well under 0.05 s);
    - "index": the n-th camera image of the bag (bag order, from 0) is frame `first_frame + n`. This holds
      only if the bag starts at that frame and no camera image was lost or added.
    Frames whose drive frame has no PNG (KITTI annotates neither the first nor the last 5 frames of a
    drive) are counted, not scored.
    """

    folder: Path
    drive: str
    match: str = "stamp"
    image_stamps_ns: np.ndarray | None = None
    tolerance_s: float = 0.02
    first_frame: int = 0
    camera: str = "image_02"

    def __post_init__(self):
        if self.match not in MATCH_METHODS:
            raise ValueError(f"match must be one of {', '.join(MATCH_METHODS)}, got {self.match!r}")
        if self.match == "stamp" and self.image_stamps_ns is None:
            raise ValueError("matching by stamp needs the drive's camera timestamps: give the KITTI raw folder "
                             "(--kitti-raw), or match by order (--match index)")
        if not (np.isfinite(self.tolerance_s) and self.tolerance_s >= 0):
            raise ValueError(f"the match tolerance must be a finite number of seconds >= 0, got {self.tolerance_s}")
        if self.first_frame < 0:
            raise ValueError(f"the first frame must be >= 0, got {self.first_frame}")

    @classmethod
    def from_folders(cls, gt_dir: str | Path, raw_dir: str | Path | None = None, drive: str | None = None,
                     match: str = "stamp", tolerance_s: float = 0.02, first_frame: int = 0,
                     camera: str = "image_02") -> "KittiGroundTruth":
        """From a ground-truth folder (`data.kitti.find_groundtruth_folder`: a drive's PNG folder or a
        data_depth_annotated root) and, to match by stamp, the raw drive (`data.kitti.find_raw_drive_folder`:
        the drive folder or the kitti_raw root). The drive: `drive`, else the ground-truth path's, else the
        raw drive folder's name."""
        if drive is None and raw_dir is not None and is_drive_name(Path(raw_dir).name):
            drive = Path(raw_dir).name
        folder, drive = find_groundtruth_folder(gt_dir, drive, camera)
        stamps = None
        if raw_dir is not None:
            stamps = read_timestamps(find_raw_drive_folder(raw_dir, drive) / camera / "timestamps.txt")
        elif match == "stamp":
            raise ValueError(f"matching frames of drive {drive} by stamp needs its camera timestamps: give the "
                             "KITTI raw folder (--kitti-raw), or match by order (--match index)")
        return cls(folder, drive, match, stamps, float(tolerance_s), int(first_frame), camera)

    def nearest_frame(self, stamp_ns: int) -> tuple[int, int]:
        """(frame number, stamp_ns minus that frame's timestamp) of the drive frame nearest to `stamp_ns`."""
        stamps = self.image_stamps_ns
        if stamps is None or len(stamps) == 0:
            raise ValueError(f"drive {self.drive} has no camera timestamps")
        frame = int(np.argmin(np.abs(stamps - np.int64(stamp_ns))))  # a scan: no assumption on the file's order
        return frame, int(stamp_ns) - int(stamps[frame])

    def frame_for(self, stamp_ns: int, ordinal: int | None) -> tuple[int | None, int | None]:
        """(drive frame or None, offset in ns of the stamp from the nearest frame's timestamp, or None when
        matching by order) of the bag frame with camera stamp `stamp_ns`, the `ordinal`-th image of the bag."""
        if self.match == "index":
            return (None if ordinal is None else self.first_frame + ordinal), None
        frame, offset = self.nearest_frame(stamp_ns)
        return (frame if abs(offset) <= round(self.tolerance_s * 1e9) else None), offset

    def path(self, frame: int) -> Path:
        return self.folder / f"{int(frame):010d}.png"

    def check_stamps(self, bag_path: Path, stamps_ns: list[int]) -> None:
        """Raise a BagError when none of the bag's camera stamps is within the tolerance of the drive's
        timestamps, saying how far the bag starts from the drive (a whole number of hours: a converter that
        wrote local time)."""
        if self.match != "stamp" or not stamps_ns:
            return
        if any(abs(self.nearest_frame(stamp)[1]) <= round(self.tolerance_s * 1e9) for stamp in stamps_ns):
            return
        # Start to start: a bag shifted as a whole (e.g. by a time zone) shows its shift here.
        start_s = (min(stamps_ns) - int(np.min(self.image_stamps_ns))) / 1e9
        hours = round(start_s / 3600)
        hint = (f", about {hours:+d} h: stamps written in local time instead of UTC?"
                if hours and abs(start_s - hours * 3600) < 60 else "")
        raise BagError(f"none of the {len(stamps_ns)} camera stamps of {bag_path} is within {self.tolerance_s} s "
                       f"of a timestamp of drive {self.drive} (the bag's first stamp is {start_s:+.3f} s from the "
                       f"drive's first{hint}); check the drive (--drive, --kitti-raw) or match by order "
                       "(--match index)")


class _KittiScoring:
    """Scores processed frames against a `KittiGroundTruth` and counts how they matched."""

    def __init__(self, source: KittiGroundTruth):
        self.source = source
        self.matched = self.unmatched = self.without_png = 0
        self.max_offset_ns: int | None = None

    def score(self, scorer: FrameScorer, result, rgb, ordinal: int | None) -> None:
        frame, offset = self.source.frame_for(result.stamp_ns, ordinal)
        if frame is None:
            self.unmatched += 1
            LOGGER.info("frame at %d ns matches no frame of drive %s", result.stamp_ns, self.source.drive)
            scorer.add(result, rgb, None, name=f"{result.stamp_ns}")
            return
        self.matched += 1
        if offset is not None and (self.max_offset_ns is None or abs(offset) > self.max_offset_ns):
            self.max_offset_ns = abs(offset)
        name = f"{self.source.drive}/{self.source.camera}/{frame:010d}"
        path = self.source.path(frame)
        if not path.is_file():
            self.without_png += 1
            scorer.add(result, rgb, None, name=name)
            return
        gt = read_depth_png(path)
        if gt.shape != result.dense.shape:
            error = ValueError(f"{name}: ground truth {path.name} is {gt.shape[1]}x{gt.shape[0]} but the camera "
                               f"image is {result.dense.shape[1]}x{result.dense.shape[0]}")
            scorer.drop("size_mismatch", error)
            LOGGER.warning("frame at %d ns dropped: %s", result.stamp_ns, error)
            return
        scorer.add(result, rgb, gt, name=name)

    def summary(self) -> dict:
        source = self.source
        return {"folder": str(source.folder), "drive": source.drive, "camera": source.camera,
                "match": source.match, "tolerance_s": source.tolerance_s if source.match == "stamp" else None,
                "first_frame": source.first_frame if source.match == "index" else None,
                "frames_matched": self.matched, "frames_unmatched": self.unmatched,
                "frames_without_gt_png": self.without_png,
                "max_offset_s": None if self.max_offset_ns is None else self.max_offset_ns / 1e9}


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


def nearest_stamp(stamps, stamp_ns: int, slop_ns: int) -> int | None:
    """The pairing rule of both modes: `stamp_ns` itself if it is among `stamps`, else the stamp nearest to
    it that is less than `slop_ns` away (the first of them in `stamps`' order on a tie), else None."""
    if stamp_ns in stamps:
        return stamp_ns
    near = [s for s in stamps if abs(s - stamp_ns) < slop_ns]
    return min(near, key=lambda s: abs(s - stamp_ns)) if near else None


def evaluate_bag(bag_path: str | Path, processor: FrameProcessor, out_dir: str | Path,
                 topics: BagTopics = BagTopics(), slop_s: float = 0.05, queue_size: int = 10,
                 lidar_to_camera: np.ndarray | None = None, panels: int = 4,
                 predictions_bag: str | Path | None = None, predictions_distro: str = "humble",
                 progress: bool = True,
                 kitti_gt: KittiGroundTruth | None = None) -> dict:
    """Replay, process, score and write the report (see evaluation.report). Returns the summary.

    `topics` may say "auto" for the image, CameraInfo and cloud (`resolve_topics`; the summary's "topics"
    holds the names used). `kitti_gt` scores against KITTI's ground-truth PNGs instead of a ground-truth
    topic (`topics.ground_truth` is then not read); the summary's "kitti_gt" says how many frames found
    their drive frame, by which method, within which tolerance and with what largest offset, and
    "camera_info_translation_ignored" whether CameraInfo's P held a translation that was not applied.
    """
    from tqdm import tqdm

    bag_path, out_dir = Path(bag_path), Path(out_dir)
    if kitti_gt is not None:
        topics = replace(topics, ground_truth=None)
    available = bag_topics(bag_path)
    topics = resolve_topics(bag_path, available, topics)
    required = [topics.image, topics.camera_info, topics.points]
    required += [topics.ground_truth] if topics.ground_truth else []
    missing = [t for t in required if t not in available]
    if missing:
        raise BagError(f"bag {bag_path} has no topic {', '.join(missing)} (topics: {', '.join(sorted(available))})")
    if lidar_to_camera is None:
        tree = static_transforms(bag_path, available)
        if not tree.frames:
            raise BagError(f"bag {bag_path} has no /tf_static or /tf to take the LiDAR->camera transform from; "
                           "give it explicitly")
    if kitti_gt is not None and kitti_gt.match == "stamp":
        # CameraInfo shares the image's header and is small: a quick check before any frame is processed.
        kitti_gt.check_stamps(bag_path, [messages.stamp_to_ns(r.msg.header.stamp)
                                         for r in read_bag(bag_path, [topics.camera_info])])
    elif kitti_gt is not None:
        LOGGER.warning("matching by order: the n-th camera image of %s is taken as frame %d + n of drive %s, "
                       "which holds only if the bag starts at that frame and lost no image", bag_path,
                       kitti_gt.first_frame, kitti_gt.drive)
    kitti = _KittiScoring(kitti_gt) if kitti_gt is not None else None
    image_ordinals: dict[int, int] = {}  # camera stamp -> position of the image in the bag
    tx_ignored = False
    rectified_frames, unrectified_frames, unrectified_reason = 0, 0, None
    expected = available[topics.image][1]
    scorer = FrameScorer(out_dir, panel_indices(expected, panels), max_depth=min(processor.options.max_depth, 80.0))
    pairing = ApproximateTimePairing(3, queue_size=queue_size, slop_s=slop_s)
    slop_ns = int(round(slop_s * 1e9))
    ground_truth: dict[int, object] = {}
    waiting: list[tuple[int, object, object, np.ndarray]] = []  # processed frames whose ground truth may follow

    def ground_truth_for(stamp_ns: int):
        key = nearest_stamp(ground_truth, stamp_ns, slop_ns)
        return None if key is None else ground_truth[key]

    outside_view = [0]  # ground-truth pixels of a raw camera that its rectified camera does not see

    def score_ready(now_ns: int | None) -> None:
        """Score frames whose ground truth arrived, or that can no longer get one (bag time moved on)."""
        while waiting:
            stamp_ns, image_msg, result, rgb = waiting[0]
            gt_msg = ground_truth_for(stamp_ns) if topics.ground_truth else None
            if gt_msg is None and now_ns is not None and topics.ground_truth and now_ns <= stamp_ns + slop_ns:
                return
            gt = messages.depth_from_image(gt_msg) if gt_msg is not None else None
            if gt is not None and result.raw_camera is not None:
                gt, outside = ground_truth_seen_by_rectified(gt, result.raw_camera)
                outside_view[0] += outside
            scorer.add(result.in_raw_grid(), rgb, gt, name=f"{stamp_ns}")
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
            if record.topic == topics.image:
                image_ordinals.setdefault(stamp_ns, len(image_ordinals))
            matched = pairing.add(inputs[record.topic], stamp_ns, record.msg)
            if matched is None:
                score_ready(record.stamp_ns)
                continue
            image_msg, info_msg, cloud_msg = matched
            if not tx_ignored and np.any(messages.camera_info_translation(info_msg) != 0):
                tx_ignored = True
                LOGGER.warning("CameraInfo %s has a translation in P's fourth column (Tx, Ty, Tz = %s); it is not "
                               "applied: the pose of frame %s comes from tf (or the given transform)",
                               topics.camera_info, messages.camera_info_translation(info_msg).tolist(),
                               image_msg.header.frame_id)
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
            if writer is not None:  # the depth as the node publishes it: in the rectified camera where rectified
                types = writer.types
                header = messages.build_header(types, result.stamp_ns, image_msg.header.frame_id)
                writer.write(PREDICTION_TOPIC, record.stamp_ns, messages.make_message(
                    types["sensor_msgs/msg/Image"], header=header,
                    **messages.depth_to_image_fields(result.dense, invalid="nan")))
                writer.write(PREDICTION_INFO_TOPIC, record.stamp_ns, messages.build_camera_info(
                    types, header, result.camera))
            if result.raw_camera is not None:
                if not rectified_frames:
                    LOGGER.info("CameraInfo %s describes a raw camera (%s): its images are rectified, and the "
                                "predictions scored in the ground truth's raw grid", topics.camera_info,
                                result.raw_camera.model or "rectification rotation only")
                rectified_frames += 1
            elif result.unrectified is not None:
                if not unrectified_frames:
                    LOGGER.warning("CameraInfo %s has lens distortion or a rectification r, and its images are not "
                                   "rectified: %s", topics.camera_info, result.unrectified)
                unrectified_frames += 1
                unrectified_reason = result.unrectified
            if kitti is not None:
                kitti.score(scorer, result, rgb, image_ordinals.get(result.stamp_ns))
            else:
                waiting.append((result.stamp_ns, image_msg, result, rgb))
            score_ready(record.stamp_ns)
        score_ready(None)
    scorer.drop("unsynchronized_image", count=pairing.dropped()[0])
    return scorer.finish({"mode": "pipeline", "engine": describe_engine(processor.engine), "bag": str(bag_path),
                          "topics": topics.__dict__, "slop_s": slop_s,
                          "queue_size": queue_size, "messages_unpaired": dict(zip(("image", "camera_info", "points"),
                                                                                  pairing.dropped())),
                          "predictions_bag": str(predictions_bag) if predictions_bag else None,
                          "kitti_gt": kitti.summary() if kitti is not None else None,
                          "camera_info_translation_ignored": tx_ignored,
                          "rectified_frames": rectified_frames, "unrectified_raw_camera_frames": unrectified_frames,
                          "ground_truth_pixels_outside_rectified_view": outside_view[0],
                          "unrectified_reason": unrectified_reason, "rectify": processor.options.rectify})


# ---------------------------------------------------------------------------------------- recorded mode
@dataclass
class _RecordedFrame:
    """What the first pass learns of one recorded depth image."""

    stamp_ns: int
    ground_truth: int | None = None  # stamp of its ground truth, if one pairs with it
    image: int | None = None  # stamp of the source image for its panel, if it gets one
    drop: tuple[str, str] | None = None  # (reason, detail) of a frame that is not scored


def _stamps_near(sorted_stamps: list[int], stamp_ns: int, slop_ns: int) -> list[int]:
    """The stamps of a sorted list within slop_ns of stamp_ns (bounds included), as candidates of
    `nearest_stamp`: a look-up in a window instead of a scan of the whole bag."""
    lo = bisect.bisect_left(sorted_stamps, stamp_ns - slop_ns)
    return sorted_stamps[lo:bisect.bisect_right(sorted_stamps, stamp_ns + slop_ns, lo=lo)]


def recorded_depth_topic(bag_path: str | Path, available: dict, topic: str = RECORDED_TOPIC) -> str:
    """The topic of a recorded bag to score: `topic` if the bag has it, else the bag's only
    sensor_msgs/msg/Image topic (with a warning); otherwise a BagError listing the Image topics."""
    if topic in available:
        if available[topic][0] != IMAGE_TYPE:
            raise BagError(f"topic {topic} of {bag_path} holds {available[topic][0]}, not {IMAGE_TYPE}")
        return topic
    images = sorted(name for name, (msgtype, _) in available.items() if msgtype == IMAGE_TYPE)
    if len(images) == 1:
        LOGGER.warning("recorded bag %s has no topic %s; scoring its only Image topic, %s", bag_path, topic,
                       images[0])
        return images[0]
    found = ", ".join(images) if images else "none"
    raise BagError(f"recorded bag {bag_path} has no topic {topic} and "
                   f"{'no' if not images else 'more than one'} other {IMAGE_TYPE} topic to score instead "
                   f"(Image topics: {found}); name one with --recorded-topic")


def ground_truth_seen_by_rectified(gt: np.ndarray, camera: RawCamera) -> tuple[np.ndarray, int]:
    """Raw-grid ground truth restricted to the pixels the rectified camera sees (the others cannot have a
    rectified prediction: scored, they would only measure the calibration's choice of P), and how many valid
    ground-truth pixels that left out."""
    seen = seen_by_rectified(camera)
    outside = int(np.count_nonzero((gt > 0) & ~seen))
    return np.where(seen, gt, np.float32(0)), outside


def recorded_raw_camera(source_bag: Path, available: dict, image_topic: str | None, info_topic: str,
                        recorded_bag: Path, recorded_available: dict, recorded_topic: str) -> RawCamera | None:
    """The source's raw camera where the live node rectified it: the recorded depth is then in the rectified
    camera and its ground truth in the raw one. None where the source camera needs no rectification, its P
    carries a stereo translation (the node takes such an image as rectified), or the recorded depth's
    CameraInfo (beside it, e.g. /depth/camera_info) still has the source's distortion (the node ran with
    rectify false). Without a recorded CameraInfo the node's default, rectify auto, is assumed (logged)."""
    try:
        if info_topic == AUTO:
            image_topic = image_topic or _discover_image(source_bag, available)
            info_topic = _discover_camera_info(source_bag, available, image_topic)
    except BagError as error:
        LOGGER.info("no CameraInfo in %s to tell a raw camera by (%s): the recorded depth is scored as it is",
                    source_bag, error)
        return None
    info = first_message(source_bag, info_topic) if info_topic in available else None
    if info is None:
        return None
    raw = RawCamera.from_camera_info(info)
    if not raw.needs_rectification or np.any(messages.camera_info_translation(info)):
        return None
    recorded_info = f"{_namespace(recorded_topic)}/camera_info"
    if recorded_available.get(recorded_info, (None,))[0] != CAMERA_INFO_TYPE:
        LOGGER.warning("%s describes a raw camera and %s has no %s: scoring the recorded depth as rectified (the "
                       "node's default, rectify auto)", info_topic, recorded_bag, recorded_info)
        return raw
    recorded = RawCamera.from_camera_info(first_message(recorded_bag, recorded_info))
    return None if recorded.needs_rectification else raw


def evaluate_recorded(source_bag: str | Path, recorded_bag: str | Path, out_dir: str | Path,
                      recorded_topic: str = RECORDED_TOPIC, topics: BagTopics = BagTopics(),
                      slop_s: float = 0.05, panels: int = 4, max_depth: float = 80.0,
                      progress: bool = True) -> dict:
    """Score the depth images recorded from the live node (`recorded_bag`, topic `recorded_topic`) against
    the ground truth of `source_bag` (topic `topics.ground_truth`) and write the report; no network runs.

    Each recorded depth pairs with the ground truth of the same header stamp, else the nearest within
    `slop_s` (`nearest_stamp`, as `evaluate_bag`), and is scored by the same `FrameScorer`. Counted in the
    summary: `frames_recorded`; `frames_scored`; `frames_without_gt` (recorded frames that no ground truth
    pairs with); `frames_ground_truth` and `frames_missing_prediction` (ground-truth frames that no recorded
    depth pairs with: frames the live run lost); `drops`, by reason, of recorded frames that cannot be
    scored (`size_mismatch`: not the size of their ground truth; `duplicate_stamp`: a header stamp recorded
    before; `unsupported_encoding`: not 32FC1/16UC1). Panels show the source bag's `topics.image` ("auto":
    found as `resolve_topics` finds it, none if that fails) where it has an image for the frame (no sparse
    input row). Returns the summary (also in metrics.json), with
    "mode": "recorded", the recorded bag and the topic scored.

    Two passes over each bag: the first reads stamps and sizes only and pairs them; the second holds just
    the ground-truth and source images that recorded frames still need, so memory stays small.
    """
    from tqdm import tqdm

    source_bag, recorded_bag, out_dir = Path(source_bag), Path(recorded_bag), Path(out_dir)
    if topics.ground_truth is None:
        raise ValueError("scoring a recorded bag needs a ground-truth topic")
    available = bag_topics(source_bag)
    if topics.ground_truth not in available:
        raise BagError(f"bag {source_bag} has no topic {topics.ground_truth} "
                       f"(topics: {', '.join(sorted(available))})")
    shown = topics.image if topics.image in available else None
    if topics.image == AUTO:
        try:
            shown = _discover_image(source_bag, available)
        except BagError as error:
            LOGGER.info("%s", error)
    image_topic = shown if panels > 0 else None
    if panels > 0 and image_topic is None:
        LOGGER.info("bag %s has no topic %s: the report has no panels", source_bag, topics.image)
    recorded_available = bag_topics(recorded_bag)
    recorded_topic = recorded_depth_topic(recorded_bag, recorded_available, recorded_topic)
    raw_camera = recorded_raw_camera(source_bag, available, shown, topics.camera_info, recorded_bag,
                                     recorded_available, recorded_topic)
    outside_view = 0
    slop_ns = int(round(slop_s * 1e9))

    # Pass 1: stamps and sizes; pair every recorded frame.
    gt_sizes: dict[int, tuple[int, int]] = {}  # ground-truth stamp -> (height, width), first message wins
    image_stamps: set[int] = set()
    source_topics = [topics.ground_truth] + ([image_topic] if image_topic else [])
    for record in read_bag(source_bag, source_topics):
        stamp_ns = messages.stamp_to_ns(record.msg.header.stamp)
        if record.topic == topics.ground_truth:
            gt_sizes.setdefault(stamp_ns, (int(record.msg.height), int(record.msg.width)))
        else:
            image_stamps.add(stamp_ns)
    gt_sorted, images_sorted = sorted(gt_sizes), sorted(image_stamps)
    plan: list[_RecordedFrame] = []
    seen: set[int] = set()
    for record in read_bag(recorded_bag, [recorded_topic]):
        msg = record.msg
        frame = _RecordedFrame(messages.stamp_to_ns(msg.header.stamp))
        plan.append(frame)
        if msg.encoding not in DEPTH_ENCODINGS:
            frame.drop = ("unsupported_encoding", f"{msg.encoding} is no depth encoding ({', '.join(DEPTH_ENCODINGS)})")
            continue
        if frame.stamp_ns in seen:
            frame.drop = ("duplicate_stamp", f"a second depth image stamped {frame.stamp_ns} ns")
            continue
        seen.add(frame.stamp_ns)
        frame.ground_truth = nearest_stamp(_stamps_near(gt_sorted, frame.stamp_ns, slop_ns), frame.stamp_ns, slop_ns)
        size = (int(msg.height), int(msg.width))
        if frame.ground_truth is not None and gt_sizes[frame.ground_truth] != size and raw_camera is None:
            height, width = gt_sizes[frame.ground_truth]
            frame.drop = ("size_mismatch", f"depth at {frame.stamp_ns} ns is {size[1]}x{size[0]}, its ground "
                                           f"truth {width}x{height}")
    kept = [frame for frame in plan if frame.drop is None]  # scored, or counted as without ground truth
    for index in panel_indices(len(kept), panels if image_topic else 0):
        frame = kept[index]
        frame.image = nearest_stamp(_stamps_near(images_sorted, frame.stamp_ns, slop_ns), frame.stamp_ns, slop_ns)
    # Ground truth that a recorded depth pairs with, even one dropped for its size (counted in the drops).
    paired = {frame.ground_truth for frame in plan if frame.ground_truth is not None}

    # Pass 2: score, reading the source bag only as far as the recorded frames need.
    uses = {"gt": {}, "image": {}}
    for frame in kept:
        for kind, stamp in (("gt", frame.ground_truth), ("image", frame.image)):
            if stamp is not None:
                uses[kind][stamp] = uses[kind].get(stamp, 0) + 1
    held: dict[str, dict[int, object]] = {"gt": {}, "image": {}}
    scorer = FrameScorer(out_dir, max_depth=max_depth)  # panel frames are marked as they come
    with contextlib.closing(read_bag(source_bag, source_topics)) as source, \
            contextlib.closing(read_bag(recorded_bag, [recorded_topic])) as records:

        def take(kind: str, stamp_ns: int):
            """The source message of this kind and stamp, read on to it if needed; forgotten at its last use."""
            while stamp_ns not in held[kind]:
                record: BagMessage | None = next(source, None)
                if record is None:
                    raise BagError(f"bag {source_bag} changed while it was read: no message stamped {stamp_ns}")
                found = "gt" if record.topic == topics.ground_truth else "image"
                stamp = messages.stamp_to_ns(record.msg.header.stamp)
                if uses[found].get(stamp, 0) > 0 and stamp not in held[found]:
                    held[found][stamp] = record.msg
            msg = held[kind][stamp_ns]
            uses[kind][stamp_ns] -= 1
            if uses[kind][stamp_ns] == 0:
                del held[kind][stamp_ns]
            return msg

        for frame, record in tqdm(zip(plan, records), total=len(plan), desc=f"eval-bag {recorded_bag.name}",
                                  unit="frame", disable=not progress):
            if frame.drop is not None:
                scorer.drop(frame.drop[0], ValueError(frame.drop[1]))
                LOGGER.warning("recorded frame at %d ns dropped: %s", frame.stamp_ns, frame.drop[1])
                continue
            gt_msg = take("gt", frame.ground_truth) if frame.ground_truth is not None else None
            image_msg = take("image", frame.image) if frame.image is not None else None
            try:
                depth = messages.depth_from_image(record.msg)
                gt = messages.depth_from_image(gt_msg) if gt_msg is not None else None
                if raw_camera is not None:  # rectified by the node: seen from the ground truth's raw pixels
                    depth = depth_in_raw_grid(depth, raw_camera, fill=np.nan)
                    if gt is not None:
                        gt, outside = ground_truth_seen_by_rectified(gt, raw_camera)
                        outside_view += outside
            except ValueError as error:
                scorer.drop(type(error).__name__, error)
                LOGGER.warning("recorded frame at %d ns dropped: %s", frame.stamp_ns, error)
                continue
            rgb = None
            if image_msg is not None:
                try:
                    rgb = messages.rgb_from_image(image_msg)
                except ValueError as error:
                    LOGGER.warning("no panel for the frame at %d ns: %s", frame.stamp_ns, error)
            if rgb is not None:
                scorer.panel_frames.add(scorer.frames_processed)
            scorer.score(depth, frame.stamp_ns, f"{frame.stamp_ns}", gt, rgb=rgb)
    return scorer.finish({"mode": "recorded", "bag": str(source_bag), "recorded_bag": str(recorded_bag),
                          "recorded_topic": recorded_topic,
                          "topics": {"ground_truth": topics.ground_truth, "image": shown},
                          "slop_s": slop_s, "frames_recorded": len(plan), "frames_ground_truth": len(gt_sizes),
                          "scored_in_raw_grid": raw_camera is not None,
                          "ground_truth_pixels_outside_rectified_view": outside_view,
                          "frames_missing_prediction": len(gt_sizes) - len(paired)})
