"""How much the photometric consistency with neighbouring frames can still teach a model: its loss at the true
depth against its loss at the model's depth.

On frames with ground truth (a KITTI-layout split whose drives have poses: OXTS or `lidar_poses.txt`), the
photometric loss of `training.photometric` (the one `dcros adapt --photometric-weight` trains with, both
neighbouring frames) is computed for:

- the ground truth, filled to every pixel by the nearest return (what a near-perfect model predicts);
- the model's depth, and the model's depth scaled by 0.9 and 1.1 (a clearly wrong depth);

and, on the ground-truth pixels only, the per-pixel minimum reconstruction error of the true depth and of the
model's. Where the model's loss is already as low as the true depth's, the loss has nothing left to teach it.

    python benchmarks/photometric_signal.py --root runs/adaptation_bench/rig32_seed301 --split train \\
        --model default --frames 6 --json benchmarks/results/photometric_signal.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402


def measure(root: Path, split: str, model: str, frames: int) -> dict:
    import torch

    from depth_completion_ros.baselines import nearest_fill
    from depth_completion_ros.data.kitti import KittiDepthCompletion
    from depth_completion_ros.model_zoo import resolve_engine
    from depth_completion_ros.training.photometric import PhotometricLoss

    data = KittiDepthCompletion(root, split, views=1)
    engine = resolve_engine(model, device="cpu")
    loss = PhotometricLoss()
    rows = []
    # Evenly spaced, away from each drive's ends (a frame needs both neighbours)
    for index in sorted({int(round(i)) for i in np.linspace(1, len(data) - 2, frames)}):
        item = data[index]
        if not bool(item["view_valid"].all()):
            continue
        batch = {key: value[None] for key, value in item.items() if key != "name"}
        truth = item["gt"][0].numpy()
        predicted = engine.predict(item["rgb"].permute(1, 2, 0).numpy(), item["sparse"][0].numpy())
        depths = {"ground truth (filled)": torch.from_numpy(nearest_fill(truth))[None, None],
                  "model": torch.from_numpy(np.asarray(predicted, dtype=np.float32))[None, None]}
        depths["model x 0.9"], depths["model x 1.1"] = depths["model"] * 0.9, depths["model"] * 1.1
        row = {"frame": item["name"]}
        for name, depth in depths.items():
            value, share = loss(depth, batch["rgb"], batch["K"], batch["views"], batch["view_poses"],
                                batch["view_valid"])
            row[name] = {"loss": float(value), "pixels_scored": float(share)}
        on_truth = torch.from_numpy(truth > 0)[None, None]
        for name in ("ground truth (filled)", "model"):
            best, _ = loss.error_maps(depths[name], batch["rgb"], batch["K"], batch["views"], batch["view_poses"],
                                      batch["view_valid"])
            row[name]["error_on_ground_truth_pixels"] = float(best[on_truth & torch.isfinite(best)].mean())
        rows.append(row)
    names = ("ground truth (filled)", "model", "model x 0.9", "model x 1.1")
    summary = {name: float(np.median([row[name]["loss"] for row in rows])) for name in names}
    on_pixels = {name: float(np.median([row[name]["error_on_ground_truth_pixels"] for row in rows]))
                 for name in names[:2]}
    return {"root": str(root), "split": split, "model": model, "frames": rows, "median_loss": summary,
            "median_error_on_ground_truth_pixels": on_pixels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a KITTI-layout root with ground truth and poses")
    parser.add_argument("--split", default="train")
    parser.add_argument("--model", default="default")
    parser.add_argument("--frames", type=int, default=6, help="frames, evenly spaced over the split (default 6)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = measure(args.root, args.split, args.model, args.frames)
    print(f"{len(result['frames'])} frames of {args.root} ({args.split}), model {args.model}; medians:")
    for name, value in result["median_loss"].items():
        print(f"  photometric loss at {name:22s} {value:.4f}")
    for name, value in result["median_error_on_ground_truth_pixels"].items():
        print(f"  error on ground-truth pixels, {name:22s} {value:.4f}")
    if args.json:
        command = "python benchmarks/photometric_signal.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json(args.json, {**result, "command": command, "machine": describe_machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
