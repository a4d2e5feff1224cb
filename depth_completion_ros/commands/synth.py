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
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset, then print the statistics read back from its files."""
    from depth_completion_ros.data.synth import format_summary, generate_dataset, summarize_dataset

    generate_dataset(args.out, drives=args.drives, frames=args.frames, seed=args.seed,
                     val_drives=args.val_drives, progress=not args.no_progress, variety=args.variety)
    print(format_summary(summarize_dataset(args.out)))
    print(f"written to {args.out} (manifest: {args.out / 'synth_manifest.json'})")
    return 0
