"""Scoring of pipeline results frame by frame, shared by the rosbag and the KITTI-folder evaluations, so
both produce the same figures and the same report from the same frames."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..pipeline import FrameResult
from .metrics import DepthMetrics, format_summary, image_errors
from .report import ErrorByDistance, save_panel, summarize_latency, write_report


class FrameScorer:
    """Accumulates KITTI metrics, per-frame rows, error by distance and a few image panels."""

    def __init__(self, out_dir: Path, panel_frames: set[int] = frozenset(), max_depth: float = 80.0):
        self.out_dir = Path(out_dir)
        self.metrics = DepthMetrics()
        self.distance = ErrorByDistance()
        self.rows: list[dict] = []
        self.panel_frames = set(panel_frames)
        self.panels: list[Path] = []
        self.max_depth = max_depth
        self.frames_processed = 0
        self.frames_without_gt = 0
        self.drops: dict[str, int] = {}
        self.first_error: str | None = None
        self._started = time.perf_counter()

    def drop(self, reason: str, error: Exception | None = None, count: int = 1) -> None:
        """Count frames that could not be processed (the evaluation goes on, as the node would)."""
        if count <= 0:
            return
        self.drops[reason] = self.drops.get(reason, 0) + count
        if error is not None and self.first_error is None:
            self.first_error = f"{reason}: {error}"

    def add(self, result: FrameResult, rgb: np.ndarray, gt: np.ndarray | None, name: str) -> dict:
        """Score one processed frame against its ground truth (metres, 0 = none) or just time it."""
        return self.score(result.dense, result.stamp_ns, name, gt, rgb=rgb, sparse=result.sparse,
                          timings_ms=result.timings_ms, sparse_pixels=result.projection.pixels)

    def score(self, dense: np.ndarray, stamp_ns: int | None, name: str, gt: np.ndarray | None,
              rgb: np.ndarray | None = None, sparse: np.ndarray | None = None,
              timings_ms: dict[str, float] | None = None, sparse_pixels: int | None = None) -> dict:
        """Score one dense prediction (H, W metres; NaN, 0 or less = none, filled as the devkit does) against
        its ground truth (metres, 0 = none; None: counted as a frame without ground truth).

        `rgb` (H, W, 3) is needed for this frame's panel, if it is one (without it no panel is drawn);
        `sparse` (the network's input) is shown in the panel when given; `timings_ms` (stage -> ms) and
        `sparse_pixels` go into the frame's row when given (a recorded prediction has neither).
        """
        index = self.frames_processed
        self.frames_processed += 1
        prediction = np.nan_to_num(dense, nan=0.0)
        row = {"frame": index, "name": name, "stamp_ns": stamp_ns}
        if sparse_pixels is not None:
            row["sparse_pixels"] = sparse_pixels
        row.update({f"{stage}_ms": value for stage, value in (timings_ms or {}).items()})
        if gt is not None:
            if gt.shape != prediction.shape:
                raise ValueError(f"{name}: ground truth is {gt.shape[1]}x{gt.shape[0]} but the prediction is "
                                 f"{prediction.shape[1]}x{prediction.shape[0]}")
            errors = image_errors(prediction, gt)
            row.update(gt_pixels=int((gt > 0).sum()), rmse_mm=errors["rmse"] * 1000, mae_mm=errors["mae"] * 1000,
                       irmse_1km=errors["irmse"] * 1000, imae_1km=errors["imae"] * 1000)
            self.metrics.update(prediction, gt, names=[name])
            self.distance.update(prediction, gt)
        else:
            self.frames_without_gt += 1
        self.rows.append(row)
        if index in self.panel_frames and rgb is not None:
            panel_dir = self.out_dir / "panels"
            panel_dir.mkdir(parents=True, exist_ok=True)
            path = panel_dir / f"frame_{index:05d}.png"
            title = name if gt is None else f"{name}   RMSE {row['rmse_mm']:.0f} mm   MAE {row['mae_mm']:.0f} mm"
            save_panel(path, rgb, sparse, dense, gt, title=title, max_depth=self.max_depth)
            self.panels.append(path)
        return row

    def finish(self, extra: dict | None = None) -> dict:
        """Write the report; return the summary (also in metrics.json)."""
        if self.frames_processed == 0:
            detail = f" (first error: {self.first_error})" if self.first_error else ""
            raise ValueError(f"no frame could be processed{detail}")
        elapsed = time.perf_counter() - self._started
        summary = self.metrics.compute()
        summary.update(frames_processed=self.frames_processed, frames_scored=len(self.metrics),
                       frames_without_gt=self.frames_without_gt, frames_dropped=sum(self.drops.values()),
                       drops=dict(self.drops), wall_s=elapsed, fps=self.frames_processed / elapsed if elapsed else None)
        summary.update(extra or {})
        summary["latency_ms"] = summarize_latency(self.rows)
        summary["error_by_distance"] = self.distance.table()
        summary["report"] = {"folder": str(self.out_dir), "panels": [str(p) for p in self.panels]}
        write_report(self.out_dir, summary, self.rows)
        return summary


def panel_indices(expected_frames: int, panels: int) -> set[int]:
    """`panels` frame indices spread evenly over the expected frames."""
    if panels <= 0 or expected_frames <= 0:
        return set()
    return {int(round(i)) for i in np.linspace(0, expected_frames - 1, min(panels, expected_frames))}


def print_summary(summary: dict, out_dir: Path) -> None:
    print(format_summary(summary))
    latency = summary.get("latency_ms", {}).get("total", {})
    if latency:
        print(f"latency per frame: p50 {latency['p50']:.1f} ms, p90 {latency['p90']:.1f} ms; "
              f"{summary['fps']:.2f} frames/s end to end")
    print(f"frames: {summary['frames_processed']} processed, {summary['frames_scored']} scored, "
          f"{summary['frames_dropped']} dropped {summary['drops'] or ''}")
    if summary.get("mode") == "recorded":
        print(f"recorded depth {summary['recorded_topic']} of {summary['recorded_bag']}: "
              f"{summary['frames_recorded']} frames, {summary['frames_without_gt']} without ground truth; "
              f"{summary['frames_missing_prediction']} of {summary['frames_ground_truth']} ground-truth frames "
              "have no recorded depth")
    print(f"report: {Path(out_dir) / 'metrics.json'}")
