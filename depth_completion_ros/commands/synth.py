"""`dcros synth`: generate the deterministic synthetic driving world in the KITTI layouts."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate synthetic KITTI-format drives (camera 02, Velodyne, depth completion folders)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options."""
    parser.add_argument("--out", required=True, type=Path, help="output folder (kitti_raw/, data_depth_*/ ...)")
    parser.add_argument("--drives", type=int, default=1, help="number of drives (default 1)")
    parser.add_argument("--frames", type=int, default=10, help="frames per drive at 10 Hz (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes")
    parser.add_argument("--val-drives", type=int, default=None,
                        help="how many of the last drives form the val split "
                             "(default: 1 when there are >= 2 drives, else 0)")
    parser.add_argument("--variety", action="store_true",
                        help="give every drive its own rig and light: a 32-, 64- or 128-beam LiDAR, mount height "
                             "and pitch, sun elevation, ambient light, exposure and image noise (recorded per "
                             "drive in the manifest); for training sets that do not fit one rendering")
    parser.add_argument("--drives-per-rig", type=int, default=1, metavar="N",
                        help="with --variety: consecutive groups of N drives share one rig (drives 1..N rig 1, "
                             "N+1..2N rig 2, ...): the same LiDAR beams, mount height and pitch, each drive on its "
                             "own street in its own light; the manifest records each drive's rig_id (default 1: "
                             "every drive its own rig). To adapt a model on some drives of one rig and score it on "
                             "others, e.g. --variety --drives-per-rig 4 --rig-beams 32 --drives 4 --val-drives 2: "
                             "drives 1-2 (train) and 3-4 (val) are one 32-beam rig; or pick drives by name")
    parser.add_argument("--rig-beams", type=int, default=None, metavar="B",
                        help="with --variety: every rig's LiDAR has B beams (32, 64 or 128) instead of a drawn "
                             "number; the rest of each rig and light is drawn as without it")
    parser.add_argument("--raw-camera", default=None, metavar="MODEL[:c1,c2,...]",
                        help="render camera 02 (image_02 and its velodyne_raw/groundtruth PNGs) as a raw camera "
                             "through a lens distortion, exactly (one ray per distorted pixel), with the usual "
                             "P_rect_02 as its rectified camera, recorded in calib_cam_to_cam.txt (K_02, D_02, "
                             "R_rect_02) and the manifest; for testing rectification. MODEL: plumb_bob (k1,k2,p1,"
                             "p2,k3; default -0.3,0.1,0,0,0), rational_polynomial (k1,k2,p1,p2,k3,k4,k5,k6; default "
                             "-0.2,0.05,0,0,0,0.1,0,0) or equidistant (fisheye k1,k2,k3,k4; default -0.02,0.005,0,0). "
                             "Raw K: the rectified K, or its focal lengths scaled down until the raw image sees "
                             "every rectified pixel. Such drives get no data_depth_selection crops")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset, then print the statistics read back from its files."""
    from depth_completion_ros.data.synth import format_summary, generate_dataset, summarize_dataset
    from depth_completion_ros.data.synth.rawcam import parse_raw_camera

    raw_camera = None if args.raw_camera is None else parse_raw_camera(args.raw_camera)
    manifest = generate_dataset(args.out, drives=args.drives, frames=args.frames, seed=args.seed,
                                val_drives=args.val_drives, progress=not args.no_progress, variety=args.variety,
                                raw_camera=raw_camera, drives_per_rig=args.drives_per_rig,
                                rig_beams=args.rig_beams)
    print(format_summary(summarize_dataset(args.out)))
    if raw_camera is not None:
        record = manifest["raw_camera"]
        print(f"camera 02 is a raw camera: {record['model']} D={record['D']}, focal scale "
              f"{record['focal_scale']:g} of the rectified K (no data_depth_selection crops)")
    print(f"written to {args.out} (manifest: {args.out / 'synth_manifest.json'})")
    return 0
