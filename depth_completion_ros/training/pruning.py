"""Random layer pruning stability test (CDSPN thesis, section 3.2.3, Algorithm 1 and Table 3.1).

One layer at a time, a random `fraction` of its filters is disabled, the network is evaluated on the
validation frames, and the filters are restored. How much the RMSE moves says whether the layer has more
filters than it needs (small change: prune or shrink it), about the right number (keep) or too few
(large change: grow it). No retraining happens and the weights are never touched: filters are disabled by
a forward hook that zeroes their output channels, and the hook is removed before the next layer.

What "disabling a filter" means here:
- CDSPN (any model with `prunable_layers()` whose layers are `SeparableConvBlock`s): the chosen output
  channels of the block's normalisation are zeroed, i.e. after the point-wise conv AND its BatchNorm,
  before the residual add and the ReLU. That is what removing the filter does: the BatchNorm shift of a
  removed channel disappears with it (zeroing the conv output alone would leave that constant), and the
  parameter-free identity skip of a residual layer still carries its input. For a non-residual block
  this equals zeroing the block's output. Prediction heads (blocks without normalisation) have their
  bias zeroed with the filter.
- Any other model (e.g. LSPKD, which has no `prunable_layers()`): every Conv2d / ConvTranspose2d that
  runs in the forward pass, by module name. Where the conv's normalisation can be found — the next
  module of the same nn.Sequential, or the sibling `bnN` of a `convN` (residual blocks) — its output is
  masked (as above); otherwise the conv's own output is, and a normalisation applied elsewhere still
  adds its shift. Modules that never run (e.g. distillation adapters) are left out. The last conv to run
  is taken as the prediction head.

Prediction heads have a fixed output layout (depth, confidence), so their proposed channel count stays
as it is whatever the verdict.
"""
from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import json
import logging
import math
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

LOGGER = logging.getLogger(__name__)

VERDICTS = ("prune", "shrink", "keep", "grow")
DEFAULT_SHRINK_FACTOR = 0.5
DEFAULT_GROW_FACTOR = 1.5
_CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)
_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)


# ----------------------------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class PruneThresholds:
    """The epsilons of Algorithm 1, as fractions of the baseline RMSE (the thesis chooses them
    "respectively to the base accuracy").

    With r = (RMSE after pruning - baseline RMSE) / baseline RMSE (negative when pruning helped):
      r <  eps_prune             -> "prune"  (eps_1: no real loss; the layer is over-parameterised)
      eps_prune <= r < eps_keep  -> "shrink" (eps_2: a small loss; fewer filters will do)
      r >  eps_grow              -> "grow"   (eps_3: a large loss; the layer is important)
      otherwise                  -> "keep"
    Algorithm 1 writes these on accuracy (Acc_new + eps_1 > Acc, Acc_new + eps_2 > Acc, Acc_new + eps_3 < Acc);
    on RMSE, where lower is better, the loss of accuracy is the RMSE increase. A non-finite r (the pruned
    network predicts nothing scorable) counts as a large loss: "grow".

    Defaults (the thesis gives no numbers), read off its Table 3.1 (baseline 886 mm, 75 % pruned): the
    bottleneck layers it calls over-parameterised (e10, d1) move by -0.1 % to +3.7 %, so 1 % separates
    "prune" from "shrink" and 5 % "shrink" from "keep"; the input and early encoder layers, which more
    than double the RMSE (+120 % to +1670 %), are the ones to "grow" (eps_grow = 1.0, i.e. +100 %).
    """

    eps_prune: float = 0.01
    eps_keep: float = 0.05
    eps_grow: float = 1.0

    def __post_init__(self):
        for name in ("eps_prune", "eps_keep", "eps_grow"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number (a fraction of the baseline RMSE), got {value!r}")
        if not self.eps_prune <= self.eps_keep <= self.eps_grow:
            raise ValueError(f"thresholds must satisfy eps_prune <= eps_keep <= eps_grow, got "
                             f"{self.eps_prune}, {self.eps_keep}, {self.eps_grow}")

    @classmethod
    def coerce(cls, thresholds: "PruneThresholds | Sequence[float] | None") -> "PruneThresholds":
        """A PruneThresholds from itself, None (defaults) or a sequence (eps_prune, eps_keep[, eps_grow])."""
        if thresholds is None:
            return cls()
        if isinstance(thresholds, cls):
            return thresholds
        values = tuple(thresholds)
        if len(values) not in (2, 3):
            raise ValueError(f"thresholds must be (eps_prune, eps_keep) or (eps_prune, eps_keep, eps_grow), "
                             f"got {len(values)} values")
        return cls(*values)


def decide_verdict(relative_delta: float, thresholds: PruneThresholds | Sequence[float] | None = None) -> str:
    """The verdict of one layer from its relative RMSE change (see `PruneThresholds` for the rule)."""
    thresholds = PruneThresholds.coerce(thresholds)
    delta = float(relative_delta)
    if not math.isfinite(delta):
        return "grow"
    if delta < thresholds.eps_prune:
        return "prune"
    if delta < thresholds.eps_keep:
        return "shrink"
    if delta > thresholds.eps_grow:
        return "grow"
    return "keep"


def _check_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction of filters to prune must be a number in [0, 1], got {fraction!r}")
    return float(fraction)


def pruned_channel_count(out_channels: int, fraction: float) -> int:
    """How many of a layer's filters the test disables: fraction * out_channels rounded half up, and at
    least one whenever fraction > 0 (so that every layer is actually tested)."""
    fraction = _check_fraction(fraction)
    if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
        raise ValueError(f"out_channels must be a positive integer, got {out_channels!r}")
    if fraction == 0.0:
        return 0
    return min(out_channels, max(1, math.floor(fraction * out_channels + 0.5)))


def choose_pruned_channels(out_channels: int, fraction: float, seed: int, layer: str) -> list[int]:
    """The output channels disabled in `layer`: a uniform random subset, sorted. The generator is seeded by
    (seed, CRC-32 of the layer name), so a layer gets the same channels whichever other layers are tested."""
    count = pruned_channel_count(out_channels, fraction)
    rng = np.random.default_rng([int(seed), zlib.crc32(layer.encode("utf-8"))])
    return sorted(int(c) for c in rng.choice(out_channels, size=count, replace=False))


def propose_channels(out_channels: int, verdict: str, fraction: float,
                     shrink_factor: float = DEFAULT_SHRINK_FACTOR, grow_factor: float = DEFAULT_GROW_FACTOR) -> int:
    """Proposed out-channel count of a layer for the next design iteration (Algorithm 1's "apply changes").

    prune:  the filters the test left (out - pruned), but no more than "shrink" would keep;
    shrink: ceil(out * shrink_factor);   keep: out;   grow: ceil(out * grow_factor) ("carefully" larger).
    Never below one filter (removing a layer outright is a structural change, left to the designer).
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    if not 0.0 < shrink_factor <= 1.0:
        raise ValueError(f"shrink_factor must be in (0, 1], got {shrink_factor!r}")
    if not grow_factor >= 1.0:
        raise ValueError(f"grow_factor must be >= 1, got {grow_factor!r}")
    shrunk = max(1, math.ceil(out_channels * shrink_factor))
    if verdict == "prune":
        return max(1, min(out_channels - pruned_channel_count(out_channels, fraction), shrunk))
    if verdict == "shrink":
        return shrunk
    if verdict == "grow":
        return max(out_channels, math.ceil(out_channels * grow_factor))
    return out_channels


# ------------------------------------------------------------------------------------ prunable layers
@dataclass(frozen=True)
class PrunableUnit:
    """One prunable layer: `conv` holds its filters, `target` is the module whose output is masked
    (`target_name` in the model), `fixed` marks a prediction head whose channel layout cannot change."""

    name: str
    conv: nn.Module
    target: nn.Module
    target_name: str
    out_channels: int
    fixed: bool = False


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(module): name for name, module in model.named_modules()}


def prunable_units(model: nn.Module) -> "OrderedDict[str, PrunableUnit]":
    """The model's prunable layers in order: `prunable_layers()` where the model has it (CDSPN: the
    thesis' layer names), else every Conv2d / ConvTranspose2d by module name (see the module docstring)."""
    names = _module_names(model)
    units: "OrderedDict[str, PrunableUnit]" = OrderedDict()
    if hasattr(model, "prunable_layers"):
        blocks = {id(getattr(m, "pointwise")): m for m in model.modules()
                  if isinstance(getattr(m, "pointwise", None), nn.Module) and hasattr(m, "norm")}
        for layer, conv in model.prunable_layers().items():
            block = blocks.get(id(conv))
            target = block.norm if block is not None else conv
            # A block without normalisation is a prediction head (SeparableConvBlock's output_layer).
            fixed = block is not None and isinstance(block.norm, nn.Identity)
            units[layer] = PrunableUnit(layer, conv, target, names.get(id(target), layer), conv.out_channels, fixed)
        return units
    modules = dict(model.named_modules())
    for name, module in model.named_modules():
        if not isinstance(module, _CONV_TYPES):
            continue
        target, target_name = module, name
        parent_name, _, child = name.rpartition(".")
        parent = modules.get(parent_name)  # "" is the model itself
        prefix = f"{parent_name}." if parent_name else ""
        if isinstance(parent, nn.Sequential) and child.isdigit() and int(child) + 1 < len(parent):
            following = parent[int(child) + 1]  # conv -> norm -> activation in one Sequential
            if isinstance(following, _NORM_TYPES):
                target, target_name = following, f"{prefix}{int(child) + 1}"
        elif "conv" in child:
            norm_name = child.replace("conv", "bn", 1)  # the conv1 / bn1 naming of residual blocks
            if isinstance(getattr(parent, norm_name, None), _NORM_TYPES):
                target, target_name = getattr(parent, norm_name), f"{prefix}{norm_name}"
        units[name] = PrunableUnit(name, module, target, target_name, module.out_channels, False)
    return units


@contextmanager
def masked_channels(unit: PrunableUnit, channels: Iterable[int]) -> Iterator[None]:
    """Inside the `with` statement, the given output channels of `unit` are zero (its filters disabled).
    The hook is removed on exit, also after an error; the weights are never modified."""
    channels = sorted(set(int(c) for c in channels))
    if channels and not 0 <= channels[0] <= channels[-1] < unit.out_channels:
        raise ValueError(f"{unit.name}: channels must lie in [0, {unit.out_channels}), got {channels}")
    index_cpu = torch.tensor(channels, dtype=torch.long)
    index_cache: dict[torch.device, torch.Tensor] = {}

    def zero_channels(module, inputs, output):
        if output.shape[1] != unit.out_channels:
            raise ValueError(f"{unit.name}: expected {unit.out_channels} output channels at "
                             f"{unit.target_name}, got {output.shape[1]}")
        index = index_cache.get(output.device)
        if index is None:
            index = index_cache[output.device] = index_cpu.to(output.device)
        return output.index_fill(1, index, 0.0)

    handle = unit.target.register_forward_hook(zero_channels)
    try:
        yield
    finally:
        handle.remove()


# ------------------------------------------------------------------------------------------ report
@dataclass(frozen=True)
class LayerResult:
    """One row of the pruning table."""

    layer: str
    out_channels: int
    pruned_channels: tuple[int, ...]
    rmse_mm: float
    mae_mm: float
    delta_rmse_mm: float
    relative_delta: float
    verdict: str
    proposed_channels: int
    fixed: bool
    masked_module: str

    @property
    def pruned(self) -> int:
        return len(self.pruned_channels)


_CSV_COLUMNS = ("layer", "out_channels", "pruned", "rmse_mm", "mae_mm", "delta_rmse_mm", "delta_rmse_percent",
                "verdict", "proposed_channels", "fixed", "masked_module", "pruned_channels")


@dataclass
class PruneReport:
    """The result of `prune_test`: baseline, one `LayerResult` per layer, the rule that was applied."""

    architecture: str
    arch_kwargs: dict
    baseline_rmse_mm: float
    baseline_mae_mm: float
    images: int
    fraction: float
    seed: int
    thresholds: PruneThresholds
    shrink_factor: float
    grow_factor: float
    layers: list[LayerResult] = field(default_factory=list)
    supports_channel_overrides: bool = False
    tied_groups: tuple[tuple[str, ...], ...] = ()  # layers added together: their counts must agree

    def row(self, layer: str) -> LayerResult:
        """The result of one layer by name."""
        for result in self.layers:
            if result.layer == layer:
                return result
        raise KeyError(f"layer {layer!r} is not in this report")

    def proposed_configuration(self) -> "OrderedDict[str, int]":
        """{layer: proposed out channels}, in test order."""
        return OrderedDict((r.layer, r.proposed_channels) for r in self.layers)

    def model_channels(self) -> "OrderedDict[str, int]":
        """The proposal as the architecture's `channels` keyword: every layer that is not a fixed head, each
        group of layers that are added together raised to the largest proposal in it (Algorithm 1's
        "maintain residual connections": shrinking one term of a sum alone would not fit)."""
        proposed = OrderedDict((r.layer, r.proposed_channels) for r in self.layers if not r.fixed)
        for group in self.tied_groups:
            members = [layer for layer in group if layer in proposed]
            if members:
                largest = max(proposed[layer] for layer in members)
                for layer in members:
                    proposed[layer] = largest
        return proposed

    def current_configuration(self) -> "OrderedDict[str, int]":
        """{layer: current out channels}, in test order."""
        return OrderedDict((r.layer, r.out_channels) for r in self.layers)

    def rule_text(self) -> str:
        t = self.thresholds
        return (f"r = dRMSE / baseline; prune if r < {t.eps_prune:g}, shrink if r < {t.eps_keep:g}, "
                f"grow if r > {t.eps_grow:g}, else keep; proposed channels: prune -> out - pruned (at most "
                f"shrink's), shrink -> ceil(out x {self.shrink_factor:g}), grow -> ceil(out x {self.grow_factor:g}); "
                f"prediction heads (fixed) keep theirs")

    def to_markdown(self) -> str:
        """The table in the shape of the thesis' Table 3.1, with the verdicts and proposals added."""
        lines = [
            f"Random layer pruning test: {self.architecture} {self.arch_kwargs}, "
            f"{self.fraction * 100:g} % of the filters of each layer pruned separately (seed {self.seed}), "
            f"{self.images} validation images.",
            "",
            f"Rule: {self.rule_text()}.",
            "",
            "| layer | out channels | pruned | RMSE [mm] | dRMSE [mm] | dRMSE [%] | MAE [mm] | verdict "
            "| proposed channels |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|",
            f"| baseline | | | {self.baseline_rmse_mm:.1f} | | | {self.baseline_mae_mm:.1f} | | |",
        ]
        for r in self.layers:
            proposed = f"{r.proposed_channels} (fixed)" if r.fixed else str(r.proposed_channels)
            lines.append(f"| {r.layer} | {r.out_channels} | {r.pruned} | {r.rmse_mm:.1f} | {r.delta_rmse_mm:+.1f} | "
                         f"{r.relative_delta * 100:+.2f} | {r.mae_mm:.1f} | {r.verdict} | {proposed} |")
        counts = {v: sum(r.verdict == v for r in self.layers) for v in VERDICTS}
        lines += ["", "Verdicts: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + "."]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """One header row, one row per layer (`pruned_channels` space-separated)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for r in self.layers:
            writer.writerow([r.layer, r.out_channels, r.pruned, f"{r.rmse_mm:.6f}", f"{r.mae_mm:.6f}",
                             f"{r.delta_rmse_mm:.6f}", f"{r.relative_delta * 100:.6f}", r.verdict,
                             r.proposed_channels, int(r.fixed), r.masked_module,
                             " ".join(str(c) for c in r.pruned_channels)])
        return buffer.getvalue()

    def to_dict(self) -> dict:
        """Everything, as plain JSON-ready data."""
        return {
            "architecture": self.architecture,
            "arch_kwargs": self.arch_kwargs,
            "baseline": {"rmse_mm": self.baseline_rmse_mm, "mae_mm": self.baseline_mae_mm, "images": self.images},
            "fraction": self.fraction,
            "seed": self.seed,
            "thresholds": asdict(self.thresholds),
            "shrink_factor": self.shrink_factor,
            "grow_factor": self.grow_factor,
            "rule": self.rule_text(),
            "supports_channel_overrides": self.supports_channel_overrides,
            "layers": [{**asdict(r), "pruned": r.pruned, "pruned_channels": list(r.pruned_channels)}
                       for r in self.layers],
            "proposed_channels": dict(self.proposed_configuration()),
            "tied_groups": [list(group) for group in self.tied_groups],
            "model_channels": dict(self.model_channels()) if self.supports_channel_overrides else None,
        }

    def to_yaml(self) -> str:
        """The proposed configuration: {layer: channels} under `channels`, with the current counts beside."""
        import yaml

        if self.supports_channel_overrides:
            note = ("# `channels` is the architecture's keyword argument: put it under model.kwargs of a training\n"
                    "# config to train the proposed network. Layers that are added together take the largest\n"
                    "# proposal of their group; `per_layer_proposals` holds each layer's own.")
        else:
            note = (f"# {self.architecture} takes no per-layer channel overrides: the counts below are a design\n"
                    f"# proposal to apply by hand (keeping the layers that are added together equal, as\n"
                    f"# Algorithm 1's 'maintain residual connections' step asks), then retrain.")
        payload = {
            "architecture": self.architecture,
            "arch_kwargs": self.arch_kwargs,
            "fraction": self.fraction,
            "seed": self.seed,
            "thresholds": asdict(self.thresholds),
            "current_channels": dict(self.current_configuration()),
        }
        if self.supports_channel_overrides:
            payload["per_layer_proposals"] = dict(self.proposed_configuration())
            payload["channels"] = dict(self.model_channels())
        else:
            payload["channels"] = dict(self.proposed_configuration())
        header = "# Proposed channel configuration from the random layer pruning stability test.\n" + note + "\n"
        return header + yaml.safe_dump(payload, sort_keys=False)

    def write(self, out_dir: str | Path, stem: str = "prune_test") -> dict[str, Path]:
        """Write <stem>.md, <stem>.csv, <stem>.json and proposed_channels.yaml; return their paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv",
                 "json": out_dir / f"{stem}.json", "yaml": out_dir / "proposed_channels.yaml"}
        paths["markdown"].write_text(self.to_markdown())
        paths["csv"].write_text(self.to_csv())
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        paths["yaml"].write_text(self.to_yaml())
        return paths


# --------------------------------------------------------------------------------- validation data
def _compact(tensor: torch.Tensor, scale: float, dtype: torch.dtype) -> tuple[torch.Tensor, float | None]:
    """Store `tensor` as round(tensor * scale) in `dtype` when that is lossless (8-bit images, KITTI's
    1/256 m depths), else as it is; returns (stored, scale or None)."""
    info = torch.iinfo(dtype)
    scaled = torch.round(tensor * scale)
    if scaled.min() >= info.min and scaled.max() <= info.max:
        stored = scaled.to(dtype)
        if torch.equal(stored.to(tensor.dtype) / scale, tensor):
            return stored, scale
    return tensor, None


def _expand(stored: torch.Tensor, scale: float | None) -> torch.Tensor:
    return stored if scale is None else stored.to(torch.float32) / scale


class _ValidationBatches:
    """The validation batches, read once and kept in memory in compact form (8-bit RGB, 16-bit depths),
    since the test evaluates the same frames once per layer plus once for the baseline."""

    def __init__(self, dataset, batch_size: int, limit: int | None, num_workers: int = 0, cache: bool = True):
        from torch.utils.data import DataLoader, Subset

        if len(dataset) == 0:
            raise ValueError("the validation data set has no frames")
        count = len(dataset) if limit is None else min(int(limit), len(dataset))
        self.subset = Subset(dataset, range(count)) if count < len(dataset) else dataset
        self.loader = DataLoader(self.subset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        self.cache = cache
        self._stored: list | None = None

    def __len__(self) -> int:
        return len(self.subset)

    def __iter__(self):
        if self._stored is not None:
            for (rgb, rgb_scale), (sparse, sparse_scale), (gt, gt_scale) in self._stored:
                yield _expand(rgb, rgb_scale), _expand(sparse, sparse_scale), _expand(gt, gt_scale)
            return
        stored = []
        for batch in self.loader:
            rgb, sparse, gt = batch["rgb"], batch["sparse"], batch["gt"]
            if self.cache:
                stored.append((_compact(rgb, 255.0, torch.uint8), _compact(sparse, 256.0, torch.uint16),
                               _compact(gt, 256.0, torch.uint16)))
            yield rgb, sparse, gt
        if self.cache:
            self._stored = stored


def _evaluate(engine, batches: _ValidationBatches) -> dict:
    from ..evaluation.metrics import DepthMetrics

    metrics = DepthMetrics()
    for rgb, sparse, gt in batches:
        prediction = engine.predict(rgb, sparse)
        metrics.update(prediction, gt.to(prediction.device))
    return metrics.compute()


def _supports_channel_overrides(model: nn.Module) -> bool:
    try:
        return "channels" in inspect.signature(type(model).__init__).parameters
    except (TypeError, ValueError):
        return False


# -------------------------------------------------------------------------------------------- test
def prune_test(
    model: nn.Module,
    dataset,
    fraction: float = 0.75,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    thresholds: PruneThresholds | Sequence[float] | None = None,
    shrink_factor: float = DEFAULT_SHRINK_FACTOR,
    grow_factor: float = DEFAULT_GROW_FACTOR,
    precision: str = "fp32",
    num_workers: int = 0,
    progress: bool = False,
) -> PruneReport:
    """Run the random layer pruning stability test of `model` on `dataset` (items with rgb, sparse, gt,
    e.g. `KittiDepthCompletion(root, "val_selection_cropped", crop=...)`).

    1. Baseline RMSE and MAE (KITTI definitions, `DepthMetrics`) on the first `limit` frames (all if None).
    2. For each prunable layer in order (`layers` picks a subset by name): disable
       `pruned_channel_count(out, fraction)` random filters (`choose_pruned_channels`, seeded by `seed` and
       the layer name), evaluate, restore; record dRMSE in mm and relative to the baseline.
    3. Verdict per layer with `decide_verdict` (the thresholds are fractions of the baseline RMSE; defaults
       and the exact rule in `PruneThresholds`), and a proposed channel count (`propose_channels`).
    The model is evaluated in eval mode on `device` (it stays on that device; its train/eval mode and
    memory layout are restored); its weights are not modified. Layers that never run in the forward pass are left out.
    Raises ValueError for a bad fraction, an unknown layer name, or frames without ground truth.
    """
    from ..inference import Engine

    fraction = _check_fraction(fraction)
    thresholds = PruneThresholds.coerce(thresholds)
    propose_channels(1, "keep", fraction, shrink_factor, grow_factor)  # validates the factors early
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")

    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    all_units = prunable_units(model)
    if not all_units:
        raise ValueError(f"{type(model).__name__} has no prunable convolution layers")
    selected = list(all_units) if layers is None else list(layers)
    unknown = [name for name in selected if name not in all_units]
    if unknown:
        raise ValueError(f"unknown layer(s) {', '.join(unknown)}; prunable layers: {', '.join(all_units)}")

    was_training = model.training
    # The engine may convert the weights to channels-last; a model that came in contiguous leaves so
    # (the values never change, but the memory layout picks other kernels and rounding).
    was_contiguous = all(p.is_contiguous() for p in model.parameters() if p.dim() == 4)
    engine = Engine.from_model(model, device=device, precision=precision)  # eval mode, on `device`
    batches = _ValidationBatches(dataset, batch_size, limit, num_workers=num_workers)

    # Baseline pass; counting hooks on every prunable layer find those that actually run and, for models
    # without prunable_layers(), which one runs last (the prediction head).
    order: list[str] = []

    def first_call_recorder(name):
        def hook(module, inputs, output):
            if name not in order:
                order.append(name)
        return hook

    handles = [unit.target.register_forward_hook(first_call_recorder(name)) for name, unit in all_units.items()]
    try:
        baseline = _evaluate(engine, batches)
    finally:
        for handle in handles:
            handle.remove()
    if not baseline["images"]:
        raise ValueError(f"none of the {len(batches)} validation frames has ground truth inside the image "
                         f"(or the model predicted nothing); cannot measure a baseline RMSE")
    unused = [name for name in selected if name not in order]
    if unused:
        LOGGER.info("left out %d layers that do not run in the forward pass: %s", len(unused), ", ".join(unused))
    chosen = set(selected) - set(unused)
    units = OrderedDict((name, unit) for name, unit in all_units.items() if name in chosen)
    if not hasattr(model, "prunable_layers") and order and order[-1] in units:
        units[order[-1]] = dataclasses.replace(units[order[-1]], fixed=True)

    base_rmse, base_mae = baseline["rmse_mm"], baseline["mae_mm"]
    report = PruneReport(
        architecture=getattr(model, "architecture", type(model).__name__),
        arch_kwargs=dict(getattr(model, "arch_kwargs", {})),
        baseline_rmse_mm=base_rmse, baseline_mae_mm=base_mae, images=int(baseline["images"]),
        fraction=fraction, seed=int(seed), thresholds=thresholds, shrink_factor=shrink_factor,
        grow_factor=grow_factor, supports_channel_overrides=_supports_channel_overrides(model),
        tied_groups=tuple(tuple(g) for g in getattr(model, "tied_channel_groups", lambda: ())()),
    )
    from tqdm import tqdm

    for name, unit in tqdm(units.items(), desc="prune-test", unit="layer", disable=not progress):
        channels = choose_pruned_channels(unit.out_channels, fraction, seed, name)
        with masked_channels(unit, channels):
            figures = _evaluate(engine, batches)
        rmse = figures["rmse_mm"]
        delta = rmse - base_rmse
        relative = delta / base_rmse if base_rmse > 0 else (0.0 if delta == 0 else math.inf)
        verdict = decide_verdict(relative, thresholds)
        proposed = unit.out_channels if unit.fixed else propose_channels(
            unit.out_channels, verdict, fraction, shrink_factor, grow_factor)
        report.layers.append(LayerResult(
            layer=name, out_channels=unit.out_channels, pruned_channels=tuple(channels), rmse_mm=rmse,
            mae_mm=figures["mae_mm"], delta_rmse_mm=delta, relative_delta=relative, verdict=verdict,
            proposed_channels=proposed, fixed=unit.fixed, masked_module=unit.target_name,
        ))
        LOGGER.debug("%s: RMSE %.1f mm (%+.2f %%) -> %s", name, rmse, relative * 100, verdict)
    model.train(was_training)
    if was_contiguous:
        model.to(memory_format=torch.contiguous_format)
    return report
