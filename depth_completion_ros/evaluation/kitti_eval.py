"""Evaluation over the KITTI depth-completion folder layout: each frame's RGB and `velodyne_raw` sparse
depth go through the same `FrameProcessor` as the node (from the projection stage on), predictions are
written as KITTI 16-bit PNGs that the official devkit can score, and the report matches `eval-bag`'s."""
from __future__ import annotations

from pathlib import Path

from ..data.image_io import write_depth_png
from ..data.kitti import KittiDepthCompletion
from ..pipeline import FrameProcessor
from .html_report import describe_engine
from .scoring import FrameScorer, panel_indices


def prediction_name(dataset: KittiDepthCompletion, index: int) -> str:
    """File name of a prediction PNG. The devkit pairs ground truth and predictions by sorted position, so
    predictions take the ground-truth file's own name (selection split) or drive_camera_frame (train/val),
    which sort in the same order as the data set's frames."""
    frame = dataset.frames[index]
    if dataset.split == "val_selection_cropped":
        return frame.gt_path.name
    return f"{frame.drive}_{frame.camera}_{frame.frame_id:010d}.png"


def evaluate_kitti(data_root: str | Path, split: str, processor: FrameProcessor, out_dir: str | Path,
                   limit: int | None = None, panels: int = 4, write_predictions: bool = True,
                   progress: bool = True) -> dict:
    from tqdm import tqdm

    out_dir = Path(out_dir)
    dataset = KittiDepthCompletion(data_root, split=split, crop=None)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise ValueError(f"{data_root}: split {split!r} has no frames")
    scorer = FrameScorer(out_dir, panel_indices(count, panels), max_depth=min(processor.options.max_depth, 80.0))
    prediction_dir = out_dir / "predictions"
    for index in tqdm(range(count), desc=f"eval-kitti {split}", unit="frame", disable=not progress):
        rgb, sparse, gt, camera = dataset.load(index)
        result = processor.process_depth(rgb, sparse, camera=camera)
        scorer.add(result, rgb, gt, name=dataset.frames[index].name)
        if write_predictions:
            write_depth_png(prediction_dir / prediction_name(dataset, index), result.dense)
    return scorer.finish({"engine": describe_engine(processor.engine), "data": str(data_root), "split": split,
                          "predictions": str(prediction_dir) if write_predictions else None})
