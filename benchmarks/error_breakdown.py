"""Where a model loses to a classical fill: errors split by distance to the nearest LiDAR return, by
ground-truth depth and by the image's sides, for several models on the same frames of a KITTI-layout split.

The devkit's figures are means over images; this table pools pixels within each band (every ground-truth
pixel of every frame counts once), so that bands of a few thousand pixels can be compared. Per band and
model: pixels, MAE and RMSE (mm), iRMSE (1/km) and the band's share of the model's summed squared
inverse-depth error (what iRMSE is made of). `--outputs` adds a network's intermediate depths (CDSPN:
coarse_depth, rgb_branch_depth, depth_branch_depth, refined_dilation<d>) as rows "model:output", run
through PyTorch.

    python benchmarks/error_breakdown.py --data data/synth_test --split val \\
        --models default baseline:morphological baseline:nearest --outputs coarse_depth \
        --json benchmarks/results/error_breakdown.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402

from depth_completion_ros.data.kitti import KittiDepthCompletion  # noqa: E402
from depth_completion_ros.model_zoo import checkpoint_of, resolve_engine  # noqa: E402

RETURN_DISTANCE_PX = (0.0, 0.5, 2.0, 4.0, 8.0, float("inf"))
DEPTH_M = (0.0, 10.0, 20.0, 40.0, float("inf"))


def band_masks(sparse: np.ndarray, gt: np.ndarray, side_px: int) -> dict[str, np.ndarray]:
    """{band name: mask of ground-truth pixels in it} for one frame."""
    valid = gt > 0
    distance = ndimage.distance_transform_edt(sparse <= 0)  # 0 on a return
    masks = {"all": valid}
    for low, high in zip(RETURN_DISTANCE_PX[:-1], RETURN_DISTANCE_PX[1:]):
        masks[f"return {low:g}-{high:g} px"] = valid & (distance >= low) & (distance < high)
    for low, high in zip(DEPTH_M[:-1], DEPTH_M[1:]):
        masks[f"depth {low:g}-{high:g} m"] = valid & (gt >= low) & (gt < high)
    columns = np.arange(gt.shape[1])[None, :]
    sides = (columns < side_px) | (columns >= gt.shape[1] - side_px)
    masks[f"sides ({side_px} px)"] = valid & sides
    masks["middle"] = valid & ~sides
    return masks


class BandSums:
    """Running sums per band: pixels, |error| (m), error^2 (m^2), inverse error^2 (1/km^2)."""

    def __init__(self):
        self.sums: dict[str, np.ndarray] = {}

    def add(self, masks: dict[str, np.ndarray], prediction: np.ndarray, gt: np.ndarray) -> None:
        valid = gt > 0
        error = np.where(valid, prediction - gt, 0.0)
        # As the devkit: predictions are clamped to >= 1 mm before inverting.
        inverse_error = np.where(valid, 1000.0 / np.maximum(prediction, 1e-3) - 1000.0 / np.where(valid, gt, 1.0), 0.0)
        for name, mask in masks.items():
            totals = np.array([mask.sum(), np.abs(error[mask]).sum(), np.square(error[mask]).sum(),
                               np.square(inverse_error[mask]).sum()])
            self.sums[name] = self.sums.get(name, 0.0) + totals

    def table(self) -> dict[str, dict]:
        total_inverse = self.sums["all"][3]
        out = {}
        for name, (pixels, absolute, squared, inverse) in self.sums.items():
            if pixels == 0:
                out[name] = {"pixels": 0}
                continue
            out[name] = {"pixels": int(pixels), "mae_mm": 1000.0 * absolute / pixels,
                         "rmse_mm": 1000.0 * np.sqrt(squared / pixels), "irmse_1km": float(np.sqrt(inverse / pixels)),
                         "inverse_error_share": float(inverse / total_inverse) if total_inverse else 0.0}
        return out


def intermediate_depths(model: str, outputs: list[str]):
    """A function (rgb, sparse) -> {output: depth (H, W)} through the checkpoint's PyTorch network, or None
    for a model without a checkpoint (a classical fill)."""
    path = None if model.startswith("baseline:") else checkpoint_of(model)
    if path is None or not outputs:
        return None
    import torch

    from depth_completion_ros.inference import _check_numpy_inputs
    from depth_completion_ros.models.checkpoint import load_model

    network = load_model(path)[0].eval()

    def run(rgb: np.ndarray, sparse: np.ndarray) -> dict[str, np.ndarray]:
        # The engine's own numpy -> batch conversion and checks (uint8 scaling, NaN returns as none).
        rgb_batch, sparse_batch = _check_numpy_inputs(rgb, sparse)
        with torch.no_grad():
            _, features = network(torch.from_numpy(rgb_batch), torch.from_numpy(sparse_batch), return_features=True)
        missing = [name for name in outputs if name not in features]
        if missing:
            raise ValueError(f"{model} has no output {', '.join(missing)}; it has {', '.join(sorted(features))}")
        return {name: features[name][0, 0].double().numpy() for name in outputs}

    return run


def breakdown(data: Path, split: str, models: list[str], limit: int | None = None, side_px: int = 40,
              threads: int = 0, outputs: list[str] = ()) -> dict[str, dict]:
    """{model (or "model:output"): {band: figures}} over the split's frames (the first `limit`)."""
    dataset = KittiDepthCompletion(data, split=split, crop=None)
    engines = {model: resolve_engine(model, device="cpu", threads=threads) for model in models}
    extras = {model: intermediate_depths(model, list(outputs)) for model in models}
    sums: dict[str, BandSums] = {}
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(count):
        rgb, sparse, gt, _ = dataset.load(index)
        masks = band_masks(sparse, gt, side_px)
        for model, engine in engines.items():
            sums.setdefault(model, BandSums()).add(masks, np.asarray(engine.predict(rgb, sparse), np.float64), gt)
            if extras[model] is not None:
                for name, depth in extras[model](rgb, sparse).items():
                    sums.setdefault(f"{model}:{name}", BandSums()).add(masks, depth, gt)
    return {name: band_sums.table() for name, band_sums in sums.items()}


def print_table(tables: dict[str, dict]) -> None:
    models = list(tables)
    bands = list(next(iter(tables.values())))
    print(f"{'band':<20} {'pixels':>8}  " + "  ".join(f"{m[-22:]:>22}" for m in models))
    print(f"{'':<20} {'':>8}  " + "  ".join(f"{'MAE mm / iRMSE / share':>22}" for _ in models))
    for band in bands:
        row = tables[models[0]][band]
        cells = []
        for model in models:
            figures = tables[model][band]
            cells.append(f"{figures['mae_mm']:8.0f} {figures['irmse_1km']:6.2f} {figures['inverse_error_share']:6.2f}"
                         if figures["pixels"] else f"{'-':>22}")
        print(f"{band:<20} {row['pixels']:>8}  " + "  ".join(f"{c:>22}" for c in cells))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="KITTI-layout folder (e.g. from dcros synth)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--models", nargs="+", default=["default", "baseline:morphological", "baseline:nearest"])
    parser.add_argument("--outputs", nargs="*", default=[],
                        help="intermediate depths of the networks to add (e.g. coarse_depth)")
    parser.add_argument("--limit", type=int, default=None, help="first N frames only")
    parser.add_argument("--side-px", type=int, default=40, help="width of the left and right image sides")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0: the cores available)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    tables = breakdown(args.data, args.split, args.models, args.limit, args.side_px, args.threads, args.outputs)
    print_table(tables)
    if args.json:
        arguments = sys.argv[1:] if argv is None else argv
        write_json(args.json, {"benchmark": "error breakdown by band (pixels pooled over frames)",
                               "command": "python benchmarks/error_breakdown.py " + " ".join(arguments),
                               "data": str(args.data), "split": args.split, "side_px": args.side_px,
                               "models": tables, "machine": describe_machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
