"""KITTI metrics of the classical (no-learning) baselines over a KITTI-layout depth-completion split.

Methods, each scored with the project's one metrics implementation (`DepthMetrics`, devkit definitions,
mean over images):
  sparse_devkit_filled  the LiDAR input itself, scored as the devkit scores an incomplete submission
                        (missing pixels filled by its row rule before scoring);
  sparse_measured_only  the LiDAR input only where it has a value (no fill): the sensor's own error
                        against the ground truth, with `coverage` = the share of ground truth it covers;
  nearest_fill          every pixel takes the nearest LiDAR return (`baselines.nearest_fill`);
  morphological_fill    IP-Basic-style morphology (`baselines.morphological_fill`).
Frames are read at full size, as `dcros eval-kitti` reads them. Time per frame is the fill alone.
For scale: IP-Basic scores 1288 mm RMSE on the real KITTI test set; a synthetic world (`dcros synth`)
gives other figures.

    python benchmarks/baselines_kitti.py --data /path/to/kitti --limit 100 --json baselines.json
    python benchmarks/baselines_kitti.py --data synth/ --predictions out/morphological   # devkit-ready PNGs
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402

from depth_completion_ros.baselines import morphological_fill, nearest_fill  # noqa: E402
from depth_completion_ros.data.image_io import write_depth_png  # noqa: E402
from depth_completion_ros.data.kitti import SPLITS, KittiDepthCompletion  # noqa: E402
from depth_completion_ros.evaluation.kitti_eval import prediction_name  # noqa: E402
from depth_completion_ros.evaluation.metrics import DepthMetrics  # noqa: E402
from depth_completion_ros.geometry import bottom_crop_offsets  # noqa: E402

METHODS = ("sparse_devkit_filled", "sparse_measured_only", "nearest_fill", "morphological_fill")


def score_baselines(data_root: str | Path, split: str = "val_selection_cropped", limit: int | None = None,
                    max_depth: float = 100.0, predictions_dir: str | Path | None = None,
                    progress: bool = True, crop: tuple[int, int] | None = None) -> dict:
    """Score every method over the first `limit` frames of `split` (all if None), on the bottom `crop`
    (height, width) of each frame or the whole frame; optionally write the morphological fill's predictions
    as KITTI 16-bit PNGs named as `dcros eval-kitti` names them.
    Returns {"frames": n, "methods": {method: DepthMetrics figures + fill timings}}."""
    from tqdm import tqdm

    dataset = KittiDepthCompletion(data_root, split=split, crop=None)
    count = len(dataset) if limit is None else min(int(limit), len(dataset))
    if count < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    metrics = {method: DepthMetrics(fill_missing=method != "sparse_measured_only") for method in METHODS}
    fill_ms: dict[str, list[float]] = {"nearest_fill": [], "morphological_fill": []}
    predictions_dir = Path(predictions_dir) if predictions_dir is not None else None

    for index in tqdm(range(count), desc=f"baselines {split}", unit="frame", disable=not progress):
        _, sparse, gt, _ = dataset.load(index)
        if crop is not None:
            top, left = bottom_crop_offsets(*sparse.shape, *crop)
            sparse, gt = (a[top:top + crop[0], left:left + crop[1]] for a in (sparse, gt))
        name = [dataset.frames[index].name]
        metrics["sparse_devkit_filled"].update(sparse, gt, names=name)
        metrics["sparse_measured_only"].update(sparse, gt, names=name)
        start = time.perf_counter()
        nearest = nearest_fill(sparse)
        fill_ms["nearest_fill"].append((time.perf_counter() - start) * 1000.0)
        metrics["nearest_fill"].update(nearest, gt, names=name)
        start = time.perf_counter()
        morphological = morphological_fill(sparse, max_depth=max_depth)
        fill_ms["morphological_fill"].append((time.perf_counter() - start) * 1000.0)
        metrics["morphological_fill"].update(morphological, gt, names=name)
        if predictions_dir is not None:
            write_depth_png(predictions_dir / prediction_name(dataset, index), morphological)

    results = {}
    for method, accumulator in metrics.items():
        figures = accumulator.compute()
        if method in fill_ms:
            samples = np.asarray(fill_ms[method])
            figures.update(fill_ms_median=float(np.median(samples)), fill_ms_mean=float(samples.mean()))
        results[method] = figures
    return {"data": str(data_root), "split": split, "frames": count, "max_depth": max_depth,
            "predictions": str(predictions_dir) if predictions_dir is not None else None, "methods": results}


def format_table(summary: dict) -> str:
    """The methods as a fixed-width text table."""
    header = (f"{'method':<22}{'RMSE mm':>10}{'MAE mm':>10}{'iRMSE':>8}{'iMAE':>8}{'REL':>8}{'d<1.25':>8}"
              f"{'coverage':>10}{'ms/frame':>10}")
    lines = [f"{summary['split']}: {summary['frames']} frames of {summary['data']}", header, "-" * len(header)]
    for method, f in summary["methods"].items():
        timing = f"{f['fill_ms_median']:10.1f}" if "fill_ms_median" in f else f"{'-':>10}"
        lines.append(f"{method:<22}{f['rmse_mm']:10.1f}{f['mae_mm']:10.1f}{f['irmse_1km']:8.2f}{f['imae_1km']:8.2f}"
                     f"{f['rel']:8.4f}{f['delta1']:8.4f}{f['coverage']:10.4f}{timing}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, score the baselines, print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="KITTI depth-completion root (real, or from `dcros synth`)")
    parser.add_argument("--split", default="val_selection_cropped", choices=SPLITS)
    parser.add_argument("--limit", type=int, default=None, help="score the first N frames only")
    parser.add_argument("--max-depth", type=float, default=100.0, help="metres; the morphological fill's range")
    parser.add_argument("--predictions", type=Path, default=None,
                        help="write the morphological fill's predictions here as KITTI 16-bit PNGs")
    parser.add_argument("--json", default=None, help="write the figures (and the machine) here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = score_baselines(args.data, args.split, limit=args.limit, max_depth=args.max_depth,
                                  predictions_dir=args.predictions, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as error:
        print(f"baselines_kitti: error: {error}", file=sys.stderr)
        return 2
    print(format_table(summary))
    if args.predictions is not None:
        print(f"predictions: {args.predictions}")
    write_json(args.json, {"machine": describe_machine(), **summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
