"""`dcros kitti2bag`: convert a KITTI raw drive into a rosbag2 with kitti2bag's topic and frame layout."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("convert a KITTI raw drive (camera 02, Velodyne, calibration, OXTS ego motion on /tf, depth ground truth) "
        "into a rosbag2")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kitti-root", required=True, type=Path,
                        help="KITTI root holding kitti_raw/<date>/<drive>/ and optionally data_depth_annotated/")
    parser.add_argument("--drive", required=True,
                        help="drive folder name, e.g. 2011_09_26_drive_0002_sync")
    parser.add_argument("--out", required=True, type=Path, help="rosbag2 folder to create (must not exist)")
    parser.add_argument("--distro", choices=("humble", "jazzy"), default="humble",
                        help="target ROS 2 distro: humble writes bag version 8, jazzy version 9 (default: humble)")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default=None,
                        help="storage plugin (default: sqlite3 for humble, mcap for jazzy)")
    parser.add_argument("--no-ground-truth", action="store_true",
                        help="leave the ground-truth topic out even where data_depth_annotated/ has the drive (a "
                             "bag as a vehicle records it, e.g. for dcros adapt)")
    parser.add_argument("--frames", default=None, metavar="A:B",
                        help="convert only frame ids A <= id < B (either side may be left out, e.g. 10: or :50)")


def parse_frame_range(text: str | None) -> tuple[int | None, int | None]:
    """'A:B' -> (A, B) with None for an omitted side; None -> (None, None)."""
    if text is None:
        return None, None
    start, sep, stop = text.partition(":")
    if not sep:
        raise ValueError(f"--frames must look like A:B (e.g. 0:100), got {text!r}")
    try:
        bounds = tuple(int(part) if part.strip() else None for part in (start, stop))
    except ValueError:
        raise ValueError(f"--frames bounds must be integers, got {text!r}") from None
    if bounds[0] is not None and bounds[1] is not None and bounds[1] <= bounds[0]:
        raise ValueError(f"--frames {text}: the end must be larger than the start")
    return bounds


def select_frames(frame_ids, frame_range: tuple[int | None, int | None]) -> list[int]:
    """The frame ids within [start, stop)."""
    start, stop = frame_range
    selected = [f for f in frame_ids if (start is None or f >= start) and (stop is None or f < stop)]
    if not selected:
        raise ValueError(f"no frame of the drive lies in {start}:{stop} (frames {min(frame_ids)}..{max(frame_ids)})")
    return selected


def run(args: argparse.Namespace) -> int:
    from depth_completion_ros.data.kitti import KittiRawDrive, raw_camera_of_drive
    from depth_completion_ros.data.rosbag import DISTROS, write_kitti_drive_bag

    kitti_root = Path(args.kitti_root)
    if not kitti_root.is_dir():
        raise FileNotFoundError(f"KITTI root not found: {kitti_root}")
    drive = KittiRawDrive(kitti_root / "kitti_raw", args.drive)
    frame_ids = select_frames(list(drive.frame_ids), parse_frame_range(args.frames))
    raw_camera = raw_camera_of_drive(kitti_root, args.drive)  # a synthetic raw-camera drive (dcros synth --raw-camera)
    counts = write_kitti_drive_bag(
        drive,
        args.out,
        frame_ids=frame_ids,
        # ground truth is looked up under data_depth_annotated/{train,val}/
        depth_root=None if args.no_ground_truth else kitti_root,
        distro=args.distro,
        storage=args.storage,
        progress=True,
        raw_camera=raw_camera,
    )
    bag_format = DISTROS[args.distro]
    storage = args.storage or bag_format.storage
    print(f"wrote {args.out} ({args.distro}: rosbag2 version {bag_format.version}, {storage}), "
          f"{len(frame_ids)} frames of {args.drive}")
    if raw_camera is not None:
        print(f"  camera_info: the raw camera of image_02 ({raw_camera.model or 'rectification rotation only'}, "
              f"d={raw_camera.D.tolist()}); images and ground truth in its distorted grid")
    width = max(len(topic) for topic in counts)
    for topic, count in counts.items():
        print(f"  {topic:<{width}}  {count:6d} messages")
    return 0
