"""`dcros prune-test`: the random layer pruning stability test of a checkpoint (CDSPN thesis, Algorithm 1)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

HELP = "random layer pruning stability test: per-layer RMSE change, verdicts and a proposed channel configuration"

_CROP_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_crop(text: str) -> tuple[int, int]:
    """"352x1216" -> (352, 1216): height x width of KITTI's bottom crop."""
    match = _CROP_PATTERN.match(text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"crop must be HEIGHTxWIDTH in pixels, e.g. 352x1216, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options."""
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file of this package")
    parser.add_argument("--data", required=True, help="KITTI depth-completion root (e.g. written by `dcros synth`)")
    parser.add_argument("--split", default="val_selection_cropped", choices=("val_selection_cropped", "val"))
    parser.add_argument("--fraction", type=float, default=0.75,
                        help="fraction of each layer's filters pruned at random (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random filter choice (default %(default)s)")
    parser.add_argument("--limit", type=int, help="evaluate on the first N frames only")
    parser.add_argument("--crop", type=parse_crop, default=(352, 1216),
                        help="bottom crop HEIGHTxWIDTH of every frame (default 352x1216, KITTI's)")
    parser.add_argument("--layers", help="comma-separated layer names to test (default: every prunable layer)")
    parser.add_argument("--out", default="prune_test", help="report folder (default ./%(default)s)")
    parser.add_argument("--eps-prune", type=float, default=0.01,
                        help="relative RMSE change below which a layer is 'prune' (default %(default)s = 1 %%)")
    parser.add_argument("--eps-keep", type=float, default=0.05,
                        help="relative RMSE change below which a layer is 'shrink', at or above it 'keep' "
                             "(default %(default)s)")
    parser.add_argument("--eps-grow", type=float, default=1.0,
                        help="relative RMSE change above which a layer is 'grow' (default %(default)s = +100 %%)")
    parser.add_argument("--shrink-factor", type=float, default=0.5,
                        help="channel factor of 'shrink' (default %(default)s)")
    parser.add_argument("--grow-factor", type=float, default=1.5, help="channel factor of 'grow' (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="data loader processes (default %(default)s)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint and the split, run the test, print the table and write the report files."""
    from ..runtime.spec import require_torch

    require_torch("dcros prune-test")
    from ..data.kitti import KittiDepthCompletion
    from ..models.checkpoint import load_model
    from ..training.pruning import PruneThresholds, prune_test

    thresholds = PruneThresholds(args.eps_prune, args.eps_keep, args.eps_grow)
    layers = [name.strip() for name in args.layers.split(",") if name.strip()] if args.layers else None
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    model, _ = load_model(args.checkpoint)
    dataset = KittiDepthCompletion(args.data, split=args.split, crop=args.crop)
    report = prune_test(model, dataset, fraction=args.fraction, seed=args.seed, layers=layers,
                        batch_size=args.batch_size, device=args.device, limit=args.limit, thresholds=thresholds,
                        shrink_factor=args.shrink_factor, grow_factor=args.grow_factor,
                        num_workers=args.workers, progress=not args.no_progress)
    paths = report.write(Path(args.out))
    print(report.to_markdown())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
