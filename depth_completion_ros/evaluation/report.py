"""Evaluation reports shared by `eval-bag`, `eval-kitti` and the demo: metrics.json, a per-frame CSV,
error-by-distance and latency plots, image panels (RGB | sparse | predicted | ground truth | error), and
report.html, all of it on one self-contained page (html_report.py)."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .html_report import write_html_report
from .metrics import devkit_fill

DISTANCE_BIN_EDGES_M = (0, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 1e9)
FRAME_COLUMNS = ("frame", "name", "stamp_ns", "rmse_mm", "mae_mm", "irmse_1km", "imae_1km", "gt_pixels",
                 "sparse_pixels", "roi_first_row", "conversion_ms", "projection_ms", "inference_ms",
                 "postprocess_ms", "total_ms")


@dataclass
class ErrorByDistance:
    """Pooled absolute and squared errors per ground-truth distance bin, over every scored pixel."""

    edges: tuple = DISTANCE_BIN_EDGES_M
    count: np.ndarray = field(default=None)
    abs_sum: np.ndarray = field(default=None)
    sq_sum: np.ndarray = field(default=None)

    def __post_init__(self):
        bins = len(self.edges) - 1
        self.count = np.zeros(bins, np.int64) if self.count is None else self.count
        self.abs_sum = np.zeros(bins) if self.abs_sum is None else self.abs_sum
        self.sq_sum = np.zeros(bins) if self.sq_sum is None else self.sq_sum

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Scores like the metrics do: ground-truth pixels only, missing predictions filled as the devkit."""
        pred = np.nan_to_num(np.asarray(pred, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if not (pred > 0).all():
            pred = devkit_fill(pred)
        gt = np.asarray(gt, np.float64)
        valid = gt > 0
        distance, error = gt[valid], pred[valid] - gt[valid]
        index = np.clip(np.searchsorted(self.edges, distance, side="right") - 1, 0, len(self.count) - 1)
        self.count += np.bincount(index, minlength=len(self.count))
        self.abs_sum += np.bincount(index, weights=np.abs(error), minlength=len(self.count))
        self.sq_sum += np.bincount(index, weights=error * error, minlength=len(self.count))

    def table(self) -> list[dict]:
        rows = []
        for i, n in enumerate(self.count):
            upper = self.edges[i + 1]
            rows.append({"from_m": self.edges[i], "to_m": None if upper >= 1e9 else upper, "pixels": int(n),
                         "mae_mm": float(self.abs_sum[i] / n * 1000) if n else None,
                         "rmse_mm": float(math.sqrt(self.sq_sum[i] / n) * 1000) if n else None})
        return rows


def latency_percentiles(values_ms) -> dict:
    values = np.asarray(list(values_ms), dtype=np.float64)
    if values.size == 0:
        return {}
    return {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
            "p90": float(np.percentile(values, 90)), "p99": float(np.percentile(values, 99)),
            "max": float(values.max())}


def write_frames_csv(path: Path, rows: list[dict], columns=FRAME_COLUMNS) -> None:
    """frames.csv with the given columns (floats to 4 decimals, None as an empty cell)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_error_by_distance(path: Path, table: list[dict]) -> None:
    plt = _pyplot()
    rows = [r for r in table if r["pixels"]]
    labels = [f"{r['from_m']:g}-{r['to_m']:g}" if r["to_m"] else f">{r['from_m']:g}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, [r["rmse_mm"] for r in rows], 0.4, label="RMSE")
    ax.bar(x + 0.2, [r["mae_mm"] for r in rows], 0.4, label="MAE")
    ax.set_xticks(x, labels, rotation=30)
    ax.set_xlabel("ground-truth distance (m)")
    ax.set_ylabel("error (mm)")
    ax.set_title("Error against distance")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(path: Path, rows: list[dict]) -> None:
    plt = _pyplot()
    fig, (hist, stages) = plt.subplots(1, 2, figsize=(10, 4))
    totals = [r["total_ms"] for r in rows]
    hist.hist(totals, bins=min(30, max(5, len(totals) // 2)))
    hist.set_xlabel("pipeline latency per frame (ms)")
    hist.set_ylabel("frames")
    hist.set_title("Latency histogram")
    names = ["conversion", "projection", "inference", "postprocess"]
    stages.bar(names, [float(np.median([r[f"{n}_ms"] for r in rows])) for n in names])
    stages.set_ylabel("median ms")
    stages.set_title("Median time per stage")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_panel(path: Path, rgb: np.ndarray, sparse: np.ndarray | None, pred: np.ndarray, gt: np.ndarray | None,
               title: str = "", max_depth: float = 80.0) -> None:
    """RGB | sparse input | prediction | ground truth | absolute error, stacked vertically. Without `sparse`
    (a recorded prediction) or `gt` their rows are left out."""
    from scipy.ndimage import grey_dilation

    plt = _pyplot()
    panels = [("RGB", rgb, None)]
    if sparse is not None:
        panels.append(("sparse input (dilated for display)", grey_dilation(sparse, size=(3, 3)), "turbo"))
    panels.append(("prediction", pred, "turbo"))
    if gt is not None:
        error = np.where(gt > 0, np.abs(np.nan_to_num(pred) - gt), np.nan)
        panels += [("ground truth (dilated for display)", grey_dilation(gt, size=(3, 3)), "turbo"),
                   ("|prediction - ground truth| (m)", grey_dilation(np.nan_to_num(error), size=(3, 3)), "inferno")]
    height, width = rgb.shape[:2]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 12 * height * len(panels) / width / 0.95))
    for ax, (name, image, cmap) in zip(axes, panels):
        if cmap is None:
            ax.imshow(image)
        else:
            shown = np.ma.masked_where(~(np.nan_to_num(image) > 0), image)
            vmax = 5.0 if cmap == "inferno" else max_depth
            artist = ax.imshow(shown, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
            fig.colorbar(artist, ax=ax, fraction=0.02, pad=0.01)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97) if title else None)  # leave the title its own line
    fig.savefig(path, dpi=80)
    plt.close(fig)


def summarize_latency(rows: list[dict]) -> dict:
    """Latency percentiles per pipeline stage over the per-frame rows that were timed ({} for a stage none
    of the rows has, e.g. scored recordings)."""
    return {stage: latency_percentiles(r[f"{stage}_ms"] for r in rows if f"{stage}_ms" in r)
            for stage in ("conversion", "projection", "inference", "postprocess", "total")}


def write_report(out_dir: Path, summary: dict, rows: list[dict], frame_columns=FRAME_COLUMNS) -> dict:
    """metrics.json (the summary as given), frames.csv (`frame_columns`), the plots (the latency plot only
    when the rows were timed) and report.html. Returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out_dir / "metrics.json", "frames": out_dir / "frames.csv"}
    paths["metrics"].write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    write_frames_csv(paths["frames"], rows, frame_columns)
    if rows:
        paths["error_by_distance"] = out_dir / "error_by_distance.png"
        plot_error_by_distance(paths["error_by_distance"], summary["error_by_distance"])
        timed = [r for r in rows if "total_ms" in r]
        if timed:
            paths["latency"] = out_dir / "latency.png"
            plot_latency(paths["latency"], timed)
    # Last: the page embeds the plots above and the panels the scorer has already drawn.
    paths["html"] = write_html_report(out_dir, summary, rows)
    return paths


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
