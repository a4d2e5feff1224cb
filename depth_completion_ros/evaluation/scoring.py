"""Scoring of pipeline results frame by frame, shared by the rosbag and the KITTI-folder evaluations, so
both produce the same figures and the same report from the same frames.

Frames processed with the LiDAR hold-out self-check (`--self-check FRACTION`) also get its figures beside
their ground-truth metrics: self-check columns in frames.csv, a "self_check" section in metrics.json (its
mean, pooled and per-band figures, and its Pearson and Spearman correlation with the ground-truth RMSE over
frames) and self_check_vs_gt.png, a scatter plot of the two per frame."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..pipeline import FrameResult
from ..self_check import BAND_LABELS, SelfCheck
from .metrics import DepthMetrics, format_summary, image_errors
from .report import FRAME_COLUMNS, ErrorByDistance, save_panel, summarize_latency, write_report

SELF_CHECK_COLUMNS = (("self_check_pixels", "self_check_rmse_mm", "self_check_mae_mm", "self_check_bias_mm",
                       "self_check_isolated", "edge_agreement", "self_check_ms")
                      + tuple(f"self_check_rmse_mm_{label.replace(' m', '').replace('-', '_').replace('+', '_up')}"
                              for label in BAND_LABELS))
SELF_CHECK_PLOT = "self_check_vs_gt.png"


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
        """Score one processed frame against its ground truth (metres, 0 = none) or just time it; its
        self-check, if it has one, goes beside."""
        return self.score(result.dense, result.stamp_ns, name, gt, rgb=rgb, sparse=result.sparse,
                          timings_ms=result.timings_ms, sparse_pixels=result.projection.pixels,
                          self_check=result.self_check, roi_first_row=result.roi_top)

    def score(self, dense: np.ndarray, stamp_ns: int | None, name: str, gt: np.ndarray | None,
              rgb: np.ndarray | None = None, sparse: np.ndarray | None = None,
              timings_ms: dict[str, float] | None = None, sparse_pixels: int | None = None,
              self_check: SelfCheck | None = None, roi_first_row: int | None = None) -> dict:
        """Score one dense prediction (H, W metres; NaN, 0 or less = none, filled as the devkit does) against
        its ground truth (metres, 0 = none; None: counted as a frame without ground truth).

        `rgb` (H, W, 3) is needed for this frame's panel, if it is one (without it no panel is drawn);
        `sparse` (the network's input) is shown in the panel when given; `timings_ms` (stage -> ms) and
        `sparse_pixels` go into the frame's row when given (a recorded prediction has neither), and so does
        the frame's `self_check`, and `roi_first_row` (the first row the network ran on; rows above it are
        invalid).
        """
        index = self.frames_processed
        self.frames_processed += 1
        prediction = np.nan_to_num(dense, nan=0.0)
        row = {"frame": index, "name": name, "stamp_ns": stamp_ns}
        if sparse_pixels is not None:
            row["sparse_pixels"] = sparse_pixels
        if roi_first_row is not None:
            row["roi_first_row"] = roi_first_row
        row.update({f"{stage}_ms": value for stage, value in (timings_ms or {}).items()})
        if self_check is not None:
            row.update(self_check_row(self_check))
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
        checked = [row for row in self.rows if "self_check_pixels" in row]
        if checked:
            summary["self_check"] = summarize_self_check(checked)
            scored = [row for row in checked if row.get("rmse_mm") is not None
                      and row.get("self_check_rmse_mm") is not None]
            if scored:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                plot_self_check(self.out_dir / SELF_CHECK_PLOT, scored, summary["self_check"])
                summary["self_check"]["plot"] = str(self.out_dir / SELF_CHECK_PLOT)
        write_report(self.out_dir, summary, self.rows, FRAME_COLUMNS + SELF_CHECK_COLUMNS if checked else FRAME_COLUMNS)
        return summary


def self_check_row(check: SelfCheck) -> dict:
    """The frames.csv entries of one frame's self-check (None where it scored nothing)."""
    row = {"self_check_fraction": check.fraction, "self_check_pixels": check.scored,
           "self_check_rmse_mm": check.rmse_mm,
           "self_check_mae_mm": check.mae_mm, "self_check_bias_mm": check.bias_mm,
           "self_check_isolated": check.isolated, "edge_agreement": check.edge_agreement}
    for column, band in zip(SELF_CHECK_COLUMNS[-len(BAND_LABELS):], check.bands):
        row[column] = band.rmse_mm
    row["self_check_bands"] = {band.label: (band.count, band.rmse_mm, band.mae_mm) for band in check.bands}
    return row


def correlations(x, y) -> dict:
    """Pearson and Spearman correlation of two equally long sequences over the pairs where both are
    numbers (None where undefined: fewer than 3 pairs or a constant sequence), with the number of pairs."""
    x, y = (np.array([np.nan if v is None else v for v in values], np.float64) for values in (x, y))
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    result = {"frames": int(x.size), "pearson": None, "spearman": None}
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return result
    from scipy.stats import rankdata

    result["pearson"] = float(np.corrcoef(x, y)[0, 1])
    result["spearman"] = float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])
    return result


def summarize_self_check(rows: list[dict]) -> dict:
    """metrics.json's "self_check": per-frame means, figures pooled over all held-out pixels (overall and
    per band), edge agreement, and the correlation of the per-frame self-check RMSE with the ground-truth
    RMSE over the frames that have both."""
    scored = [row for row in rows if row["self_check_rmse_mm"] is not None]
    pixels = np.array([row["self_check_pixels"] for row in scored], np.float64)
    rmse = np.array([row["self_check_rmse_mm"] for row in scored], np.float64)
    mae = np.array([row["self_check_mae_mm"] for row in scored], np.float64)
    bands = {}
    for label in BAND_LABELS:
        count = sum(row["self_check_bands"][label][0] for row in scored)
        squares = sum(row["self_check_bands"][label][0] * (row["self_check_bands"][label][1] or 0.0) ** 2
                      for row in scored)
        absolute = sum(row["self_check_bands"][label][0] * (row["self_check_bands"][label][2] or 0.0)
                       for row in scored)
        bands[label] = {"pixels": int(count), "rmse_mm": math.sqrt(squares / count) if count else None,
                        "mae_mm": absolute / count if count else None}
    agreement = [row["edge_agreement"] for row in rows if row["edge_agreement"] is not None]
    both = [row for row in scored if row.get("rmse_mm") is not None]
    return {
        "fraction": rows[0]["self_check_fraction"],
        "frames": len(rows), "frames_scored": len(scored), "held_out_pixels": int(pixels.sum()),
        "isolated_pixels": int(sum(row["self_check_isolated"] for row in rows)),
        "mean_rmse_mm": float(rmse.mean()) if scored else None,
        "mean_mae_mm": float(mae.mean()) if scored else None,
        "pooled_rmse_mm": float(math.sqrt(np.dot(rmse ** 2, pixels) / pixels.sum())) if scored else None,
        "pooled_mae_mm": float(np.dot(mae, pixels) / pixels.sum()) if scored else None,
        "bands": bands,
        "mean_edge_agreement": float(np.mean(agreement)) if agreement else None,
        "correlation_with_gt_rmse": correlations([row["self_check_rmse_mm"] for row in both],
                                                 [row["rmse_mm"] for row in both]),
    }


def plot_self_check(path: Path, rows: list[dict], summary: dict) -> None:
    """Scatter plot of the self-check RMSE against the ground-truth RMSE, one point per frame."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    x = [row["self_check_rmse_mm"] for row in rows]
    y = [row["rmse_mm"] for row in rows]
    corr = summary["correlation_with_gt_rmse"]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.scatter(x, y, s=18)
    ax.set_xlabel("self-check RMSE at held-out LiDAR pixels (mm)")
    ax.set_ylabel("ground-truth RMSE (mm)")
    title = f"Self-check vs ground truth, {len(rows)} frames"
    if corr["pearson"] is not None:
        title += f"\nPearson {corr['pearson']:.2f}, Spearman {corr['spearman']:.2f}"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    check = summary.get("self_check")
    if check:
        corr = check["correlation_with_gt_rmse"]
        mean = "n/a" if check["mean_rmse_mm"] is None else f"{check['mean_rmse_mm']:.1f} mm"
        pearson = "n/a" if corr["pearson"] is None else f"{corr['pearson']:.2f}"
        spearman = "n/a" if corr["spearman"] is None else f"{corr['spearman']:.2f}"
        print(f"self-check: mean RMSE {mean} over {check['frames_scored']} frames "
              f"({check['held_out_pixels']} held-out pixels); correlation with ground-truth RMSE over "
              f"{corr['frames']} frames: Pearson {pearson}, Spearman {spearman}")
    print(f"report: {Path(out_dir) / 'metrics.json'}")
