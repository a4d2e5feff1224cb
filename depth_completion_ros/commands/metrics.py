"""`dcros metrics`: score a folder of predicted KITTI depth PNGs against a folder of ground truth."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "KITTI depth-completion metrics (RMSE, MAE, iRMSE, iMAE, REL, delta) of two folders of 16-bit PNGs"
_SHOWN_DIFFERENCES = 5


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, type=Path, help="folder of ground-truth KITTI depth PNGs")
    parser.add_argument("--pred", required=True, type=Path, help="folder of predicted KITTI depth PNGs "
                        "(same file names as --gt)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures and per-image rows here")
    parser.add_argument("--pooled", action="store_true",
                        help="pool all pixels of all images instead of KITTI's mean over images")
    parser.add_argument("--no-fill", action="store_true",
                        help="score predicted pixels only (no devkit fill); missing ones are counted")


def _png_names(folder: Path, role: str) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{role} folder not found: {folder}")
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not names:
        raise ValueError(f"{role} folder holds no PNG files: {folder}")
    return names


def paired_png_names(gt_dir: Path, pred_dir: Path) -> list[str]:
    """File names present in both folders; refuses folders whose PNG names differ (lists a few)."""
    gt_names, pred_names = _png_names(gt_dir, "ground-truth"), _png_names(pred_dir, "prediction")
    only_gt = sorted(set(gt_names) - set(pred_names))
    only_pred = sorted(set(pred_names) - set(gt_names))
    if only_gt or only_pred:
        parts = []
        if only_gt:
            parts.append(f"{len(only_gt)} only in {gt_dir} (e.g. {', '.join(only_gt[:_SHOWN_DIFFERENCES])})")
        if only_pred:
            parts.append(f"{len(only_pred)} only in {pred_dir} (e.g. {', '.join(only_pred[:_SHOWN_DIFFERENCES])})")
        raise ValueError("ground-truth and prediction file names differ: " + "; ".join(parts))
    return gt_names


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from depth_completion_ros.data.image_io import read_depth_png
    from depth_completion_ros.evaluation.metrics import DepthMetrics, format_summary

    names = paired_png_names(args.gt, args.pred)
    metrics = DepthMetrics(fill_missing=not args.no_fill)
    for name in tqdm(names, desc="metrics", unit="image", disable=len(names) < 50, file=sys.stderr):
        gt = read_depth_png(args.gt / name)
        pred = read_depth_png(args.pred / name)
        if gt.shape != pred.shape:
            raise ValueError(f"{name}: prediction is {pred.shape[1]}x{pred.shape[0]} but ground truth is "
                             f"{gt.shape[1]}x{gt.shape[0]}")
        metrics.update(pred, gt, names=[name])
    summary = metrics.compute("pooled" if args.pooled else "image_mean")
    summary["fill_missing"] = not args.no_fill
    print(format_summary(summary))
    if summary["images"] == 0:
        print("warning: no image had a scored pixel", file=sys.stderr)
    if args.json is not None:
        report = dict(summary, gt=str(args.gt), pred=str(args.pred), per_image=[
            {k: v for k, v in row.items() if k != "sums"} for row in metrics.per_image()
        ])
        args.json.parent.mkdir(parents=True, exist_ok=True)
        # NaN (no scored image) is written as null so the file stays strict JSON.
        args.json.write_text(json.dumps(_nan_to_none(report), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _nan_to_none(value):
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value
