"""KITTI depth-completion metrics: the one implementation behind training validation, KITTI evaluation
and rosbag evaluation.

Definitions follow the KITTI devkit (`evaluate_depth.cpp`, `io_depth.h`):
- only pixels whose ground truth is > 0 (and finite) count;
- per image: MAE = mean|pred - gt|, RMSE = sqrt(mean (pred - gt)^2), iMAE = mean|1/gt - 1/pred|,
  iRMSE = sqrt(mean (1/gt - 1/pred)^2), in m and 1/m; REL = mean |pred - gt| / gt; delta_k = fraction of
  pixels with max(pred/gt, gt/pred) < 1.25^k (NYU-style reports);
- the reported figure is the MEAN OVER IMAGES of the per-image values (`reduction="image_mean"`), in mm and
  1/km; `reduction="pooled"` pools all pixels of all images instead (one RMSE over every pixel);
- no clipping and no depth cap;
- predictions <= 0 (or non-finite) are missing and, by default, FILLED before scoring with the devkit's
  `interpolateBackground` rule (see `devkit_fill`).

Missing predictions. A ground-truth pixel whose prediction is still missing after the fill (or, with
`fill_missing=False`, missing at all) is left out of the errors and counted in `missing`; `compute()`
reports `missing` and `coverage` = scored / (scored + missing). With the fill this happens only when the
whole predicted image is empty; without it, the errors describe the predicted pixels only (useful for
judging a sparse input where it exists) and `coverage` says how much was predicted. An image with no
scored pixel contributes no per-image row (it is counted in `images_skipped`).

Deviation from the devkit, deliberate: the devkit leaves rows without any valid prediction *between*
valid rows untouched and then scores them against its invalid marker (-1 m), which makes every ratio
metric meaningless. Here such rows copy the nearest valid row (the smaller value where two are equally
near). Top and bottom empty rows follow the devkit exactly. An all-empty prediction stays empty (the
devkit would score it as -1 m everywhere); its pixels are counted as missing.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

# Columns of the per-image sums, in this order, for the numpy and torch paths alike.
_SUM_FIELDS = ("pixels", "missing", "abs", "sq", "inv_abs", "inv_sq", "rel", "delta1", "delta2", "delta3")
DELTA_BASE = 1.25
# Keys of compute(): the KITTI four in mm and 1/km, then the NYU-style ratios.
SUMMARY_KEYS = ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km", "rel", "delta1", "delta2", "delta3")


# ------------------------------------------------------------------------------------------------ fill
def devkit_fill(pred: np.ndarray) -> np.ndarray:
    """Fill missing predicted pixels (<= 0 or non-finite) with the KITTI devkit's rule.

    Per row: a gap between two valid pixels takes the smaller of those two values; a leading gap copies the
    first valid value of the row, a trailing gap the last. Rows with no valid value: rows above the first
    valid row copy it, rows below the last valid row copy that one, and rows in between copy the nearest
    valid row (per pixel the smaller value on a tie; the devkit leaves these, see the module notes).
    An image without any valid value is returned unchanged (all missing). Returns a new float array.
    """
    pred = np.asarray(pred)
    if pred.ndim != 2:
        raise ValueError(f"prediction must be a 2-D (H, W) depth image, got shape {pred.shape}")
    values = pred.astype(np.float64 if pred.dtype == np.float64 else np.float32, copy=True)
    valid = np.isfinite(values) & (values > 0)
    values[~valid] = 0
    height, width = values.shape
    if valid.all() or not valid.any():
        return values

    # Index of the previous / next valid column of every pixel (forward and backward fill on indices).
    columns = np.broadcast_to(np.arange(width), (height, width))
    previous = np.maximum.accumulate(np.where(valid, columns, -1), axis=1)
    following = np.flip(np.minimum.accumulate(np.flip(np.where(valid, columns, width), axis=1), axis=1), axis=1)
    rows = np.arange(height)[:, None]
    value_before = values[rows, np.clip(previous, 0, width - 1)]
    value_after = values[rows, np.clip(following, 0, width - 1)]
    has_before, has_after = previous >= 0, following < width
    row_filled = np.where(
        has_before & has_after,
        np.minimum(value_before, value_after),  # interior gap: the smaller neighbour
        np.where(has_after, value_after, np.where(has_before, value_before, 0)),  # leading / trailing gap
    )
    values = np.where(valid, values, row_filled).astype(values.dtype, copy=False)

    row_valid = valid.any(axis=1)
    if row_valid.all():
        return values
    # Empty rows: nearest valid row above / below (on row indices, as above).
    row_index = np.arange(height)
    above = np.maximum.accumulate(np.where(row_valid, row_index, -1))
    below = np.flip(np.minimum.accumulate(np.flip(np.where(row_valid, row_index, height))))
    row_above = values[np.clip(above, 0, height - 1)]
    row_below = values[np.clip(below, 0, height - 1)]
    has_above, has_below = (above >= 0)[:, None], (below < height)[:, None]
    distance_above, distance_below = (row_index - above)[:, None], (below - row_index)[:, None]
    between = np.where(
        distance_above < distance_below,
        row_above,
        np.where(distance_below < distance_above, row_below, np.minimum(row_above, row_below)),
    )
    from_rows = np.where(has_above & has_below, between, np.where(has_below, row_below, row_above))
    return np.where(row_valid[:, None], values, from_rows).astype(values.dtype, copy=False)


def _devkit_fill_torch(pred: "torch.Tensor") -> "torch.Tensor":
    """`devkit_fill` for a batch [B, H, W] of torch tensors on any device (same rule, same results)."""
    import torch

    values = pred.clone()
    valid = torch.isfinite(values) & (values > 0)
    values = torch.where(valid, values, torch.zeros_like(values))
    batch, height, width = values.shape
    if bool(valid.all()):
        return values
    device = values.device

    columns = torch.arange(width, device=device).expand(batch, height, width)
    previous = torch.cummax(torch.where(valid, columns, torch.full_like(columns, -1)), dim=2).values
    following = torch.flip(
        torch.cummin(torch.flip(torch.where(valid, columns, torch.full_like(columns, width)), dims=[2]), dim=2).values,
        dims=[2],
    )
    value_before = torch.gather(values, 2, previous.clamp(0, width - 1))
    value_after = torch.gather(values, 2, following.clamp(0, width - 1))
    has_before, has_after = previous >= 0, following < width
    zero = torch.zeros_like(values)
    row_filled = torch.where(
        has_before & has_after,
        torch.minimum(value_before, value_after),
        torch.where(has_after, value_after, torch.where(has_before, value_before, zero)),
    )
    values = torch.where(valid, values, row_filled)

    row_valid = valid.any(dim=2)  # [B, H]
    row_index = torch.arange(height, device=device).expand(batch, height)
    above = torch.cummax(torch.where(row_valid, row_index, torch.full_like(row_index, -1)), dim=1).values
    below = torch.flip(
        torch.cummin(torch.flip(torch.where(row_valid, row_index, torch.full_like(row_index, height)), dims=[1]),
                     dim=1).values,
        dims=[1],
    )

    def gather_rows(index):
        return torch.gather(values, 1, index.clamp(0, height - 1)[..., None].expand(-1, -1, width))

    row_above, row_below = gather_rows(above), gather_rows(below)
    has_above, has_below = (above >= 0)[..., None], (below < height)[..., None]
    distance_above, distance_below = (row_index - above)[..., None], (below - row_index)[..., None]
    between = torch.where(
        distance_above < distance_below,
        row_above,
        torch.where(distance_below < distance_above, row_below, torch.minimum(row_above, row_below)),
    )
    from_rows = torch.where(has_above & has_below, between, torch.where(has_below, row_below, row_above))
    # An image without any valid value has neither a row above nor below: it copies its own (zero) row 0.
    return torch.where(row_valid[..., None], values, from_rows)


# ------------------------------------------------------------------------------------------ per image
def _check_pair(pred_shape: Sequence[int], gt_shape: Sequence[int]) -> None:
    if tuple(pred_shape) != tuple(gt_shape):
        raise ValueError(f"prediction and ground truth differ in size: {tuple(pred_shape)} vs {tuple(gt_shape)}")


def _sums_numpy(pred: np.ndarray, gt: np.ndarray, fill_missing: bool) -> np.ndarray:
    """The per-image sums of `_SUM_FIELDS` for one (H, W) pair, float64."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if gt.ndim != 2:
        raise ValueError(f"ground truth must be a 2-D (H, W) depth image, got shape {gt.shape}")
    _check_pair(pred.shape, gt.shape)
    if fill_missing:
        pred = devkit_fill(pred)
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)
    has_gt = np.isfinite(gt) & (gt > 0)
    has_pred = np.isfinite(pred) & (pred > 0)
    scored = has_gt & has_pred
    p, g = pred[scored], gt[scored]
    error = np.abs(p - g)
    inverse_error = np.abs(1.0 / g - 1.0 / p)
    ratio = np.maximum(p / g, g / p)
    return np.array([
        scored.sum(),
        (has_gt & ~has_pred).sum(),
        error.sum(),
        np.square(error).sum(),
        inverse_error.sum(),
        np.square(inverse_error).sum(),
        (error / g).sum(),
        (ratio < DELTA_BASE).sum(),
        (ratio < DELTA_BASE ** 2).sum(),
        (ratio < DELTA_BASE ** 3).sum(),
    ], dtype=np.float64)


def _sums_torch(pred: "torch.Tensor", gt: "torch.Tensor", fill_missing: bool) -> np.ndarray:
    """Per-image sums for a batch [B, H, W] computed on the tensors' device; returns (B, K) float64 numpy."""
    import torch

    if fill_missing:
        pred = _devkit_fill_torch(pred)
    # float64 sums where the device has it; Apple's MPS has no float64.
    dtype = torch.float32 if pred.device.type == "mps" else torch.float64
    pred, gt = pred.to(dtype), gt.to(dtype)
    has_gt = torch.isfinite(gt) & (gt > 0)
    has_pred = torch.isfinite(pred) & (pred > 0)
    scored = has_gt & has_pred
    # Unscored pixels get pred = gt = 1: their errors are exactly 0 (ratio 1, so the deltas mask them).
    p = torch.where(scored, pred, torch.ones_like(pred))
    g = torch.where(scored, gt, torch.ones_like(gt))
    error = (p - g).abs()
    inverse_error = (1.0 / g - 1.0 / p).abs()
    ratio = torch.maximum(p / g, g / p)

    def total(x):  # per image; stacking [B] vectors keeps memory at a few maps
        return x.sum(dim=(1, 2))

    sums = torch.stack([
        total(scored.to(dtype)),
        total((has_gt & ~has_pred).to(dtype)),
        total(error),
        total(error.square()),
        total(inverse_error),
        total(inverse_error.square()),
        total(error / g),
        total(((ratio < DELTA_BASE) & scored).to(dtype)),
        total(((ratio < DELTA_BASE ** 2) & scored).to(dtype)),
        total(((ratio < DELTA_BASE ** 3) & scored).to(dtype)),
    ], dim=1)  # [B, K]: one transfer per batch
    return sums.detach().to(dtype).cpu().to(torch.float64).numpy()


def _errors_from_sums(sums: np.ndarray) -> dict:
    """SI errors (m, 1/m, fractions) from one row of sums; NaN where nothing was scored."""
    s = dict(zip(_SUM_FIELDS, (float(v) for v in sums)))
    n = s["pixels"]
    if n == 0:
        nan = float("nan")
        errors = dict(mae=nan, rmse=nan, imae=nan, irmse=nan, rel=nan, delta1=nan, delta2=nan, delta3=nan)
    else:
        errors = dict(
            mae=s["abs"] / n,
            rmse=math.sqrt(s["sq"] / n),
            imae=s["inv_abs"] / n,
            irmse=math.sqrt(s["inv_sq"] / n),
            rel=s["rel"] / n,
            delta1=s["delta1"] / n,
            delta2=s["delta2"] / n,
            delta3=s["delta3"] / n,
        )
    errors.update(pixels=int(n), missing=int(s["missing"]))
    return errors


def image_errors(pred, gt, fill_missing: bool = True) -> dict:
    """Errors of one (H, W) prediction against its ground truth, in SI units.

    Keys: mae, rmse (m), imae, irmse (1/m), rel, delta1..3 (fractions), pixels (scored), missing (ground-truth
    pixels without a prediction after the optional devkit fill). Errors are NaN when nothing was scored.
    """
    return _errors_from_sums(_sums_numpy(pred, gt, fill_missing))


# -------------------------------------------------------------------------------------- accumulator
def _as_batch(x, what: str) -> "torch.Tensor":
    """[B,1,H,W], [B,H,W] or [H,W] -> [B,H,W]."""
    if x.ndim == 2:
        return x[None]
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    raise ValueError(f"{what} must be [B,1,H,W], [B,H,W] or [H,W], got shape {tuple(x.shape)}")


@dataclass
class DepthMetrics:
    """Accumulates per-image results over a data set; `compute()` gives the KITTI / NYU-style figures.

    `update(pred, gt)` takes numpy (H, W) arrays or torch tensors ([B,1,H,W], [B,H,W] or [H,W], any
    device; sums are computed there and only B rows of numbers come back). Per-image rows are kept, so
    accumulators of several processes combine with `merge` or `from_per_image`.
    """

    fill_missing: bool = True
    _rows: list = field(default_factory=list, init=False, repr=False)  # _SUM_FIELDS per scored image
    _names: list = field(default_factory=list, init=False, repr=False)
    images_skipped: int = 0  # images with no scored pixel (no ground truth, or nothing predicted)
    skipped_missing: int = 0  # ground-truth pixels of skipped images

    def update(self, pred, gt, names: Iterable[str] | None = None) -> None:
        """Add one image or a batch. `names` (optional) label the per-image rows."""
        torch = sys.modules.get("torch")  # loaded wherever a tensor exists; numpy needs no PyTorch
        if torch is not None and (isinstance(pred, torch.Tensor) or isinstance(gt, torch.Tensor)):
            pred_t = torch.as_tensor(pred)
            gt_t = torch.as_tensor(gt, device=pred_t.device)
            pred_t, gt_t = _as_batch(pred_t, "prediction"), _as_batch(gt_t, "ground truth")
            _check_pair(pred_t.shape, gt_t.shape)
            sums = _sums_torch(pred_t.detach(), gt_t.detach(), self.fill_missing)
        else:
            pred_a, gt_a = np.asarray(pred), np.asarray(gt)
            if pred_a.ndim != 2:  # batches of numpy arrays: one image at a time
                pred_a, gt_a = _as_batch(pred_a, "prediction"), _as_batch(gt_a, "ground truth")
                _check_pair(pred_a.shape, gt_a.shape)
                sums = np.stack([_sums_numpy(p, g, self.fill_missing) for p, g in zip(pred_a, gt_a)])
            else:
                sums = _sums_numpy(pred_a, gt_a, self.fill_missing)[None]
        names = [None] * len(sums) if names is None else list(names)
        if len(names) != len(sums):
            raise ValueError(f"got {len(names)} names for {len(sums)} images")
        for row, name in zip(sums, names):
            if row[0] == 0:
                self.images_skipped += 1
                self.skipped_missing += int(row[1])
                continue
            self._rows.append(row)
            self._names.append(name)

    def __len__(self) -> int:
        return len(self._rows)

    def reset(self) -> None:
        """Forget everything (start of a new validation pass)."""
        self._rows.clear()
        self._names.clear()
        self.images_skipped = 0
        self.skipped_missing = 0

    def per_image(self) -> list[dict]:
        """One dict per scored image: name, SI errors (see `image_errors`) and the raw sums."""
        rows = []
        for name, sums in zip(self._names, self._rows):
            row = {"name": name, **_errors_from_sums(sums)}
            row["sums"] = [float(v) for v in sums]
            rows.append(row)
        return rows

    @classmethod
    def from_per_image(cls, rows: Iterable[dict], fill_missing: bool = True,
                       images_skipped: int = 0, skipped_missing: int = 0) -> "DepthMetrics":
        """Rebuild an accumulator from `per_image()` rows (e.g. gathered from several processes)."""
        metrics = cls(fill_missing=fill_missing, images_skipped=images_skipped, skipped_missing=skipped_missing)
        for row in rows:
            if "sums" not in row or len(row["sums"]) != len(_SUM_FIELDS):
                raise ValueError(f"per-image row lacks its {len(_SUM_FIELDS)} 'sums' values: {row!r}")
            metrics._rows.append(np.asarray(row["sums"], dtype=np.float64))
            metrics._names.append(row.get("name"))
        return metrics

    def merge(self, other: "DepthMetrics") -> "DepthMetrics":
        """Append another accumulator's images to this one; returns self."""
        if other.fill_missing != self.fill_missing:
            raise ValueError("cannot merge metrics computed with and without the devkit fill")
        self._rows.extend(other._rows)
        self._names.extend(other._names)
        self.images_skipped += other.images_skipped
        self.skipped_missing += other.skipped_missing
        return self

    def compute(self, reduction: str = "image_mean") -> dict:
        """The figures: rmse_mm, mae_mm, irmse_1km, imae_1km, rel, delta1..3, images, pixels, missing,
        coverage, images_skipped, reduction. `image_mean` (KITTI's) averages per-image values; `pooled`
        pools the pixels of all images."""
        if reduction not in ("image_mean", "pooled"):
            raise ValueError(f"reduction must be 'image_mean' or 'pooled', got {reduction!r}")
        sums = np.stack(self._rows) if self._rows else np.zeros((0, len(_SUM_FIELDS)))
        total = dict(zip(_SUM_FIELDS, sums.sum(axis=0)))
        pixels, missing = int(total["pixels"]), int(total["missing"]) + self.skipped_missing
        if not self._rows:
            si = {k: float("nan") for k in ("mae", "rmse", "imae", "irmse", "rel", "delta1", "delta2", "delta3")}
        elif reduction == "pooled":
            si = _errors_from_sums(sums.sum(axis=0))
        else:
            per_image = [_errors_from_sums(row) for row in sums]
            si = {k: float(np.mean([row[k] for row in per_image]))
                  for k in ("mae", "rmse", "imae", "irmse", "rel", "delta1", "delta2", "delta3")}
        return {
            "rmse_mm": si["rmse"] * 1000.0,
            "mae_mm": si["mae"] * 1000.0,
            "irmse_1km": si["irmse"] * 1000.0,
            "imae_1km": si["imae"] * 1000.0,
            "rel": si["rel"],
            "delta1": si["delta1"],
            "delta2": si["delta2"],
            "delta3": si["delta3"],
            "images": len(self._rows),
            "pixels": pixels,
            "missing": missing,
            "coverage": pixels / (pixels + missing) if pixels + missing else float("nan"),
            "images_skipped": self.images_skipped,
            "reduction": reduction,
        }


def format_summary(summary: dict) -> str:
    """One human-readable block of `DepthMetrics.compute()` output."""
    lines = [
        f"RMSE  {summary['rmse_mm']:10.2f} mm",
        f"MAE   {summary['mae_mm']:10.2f} mm",
        f"iRMSE {summary['irmse_1km']:10.3f} 1/km",
        f"iMAE  {summary['imae_1km']:10.3f} 1/km",
        f"REL   {summary['rel']:10.4f}",
        f"d<1.25 {summary['delta1']:9.4f}   d<1.25^2 {summary['delta2']:.4f}   d<1.25^3 {summary['delta3']:.4f}",
        f"{summary['images']} images ({summary['reduction']}), {summary['pixels']} pixels scored, "
        f"{summary['missing']} without prediction (coverage {summary['coverage']:.4f})",
    ]
    if summary.get("images_skipped"):
        lines.append(f"{summary['images_skipped']} images skipped (no scored pixel)")
    return "\n".join(lines)
