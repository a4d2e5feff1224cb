"""Training configuration: the YAML schema of `dcros train`, validated on load.

A configuration is a YAML mapping with these sections (every key optional unless marked):

    model:        name (required, a registered model), kwargs (mapping passed to build_model),
                  init (checkpoint whose weights initialise the model), new_layers (modules that init
                  does not hold and that keep their own initialisation)
    data:         root (a folder, or a list of folders trained and validated on together), train_split,
                  val_split (null: no validation), cameras, crop [h, w] | null, random_crop [h, w] | null,
                  augment, jitter, batch_size (per process), val_batch_size, workers, limit_train,
                  limit_val (frame counts for quick runs, evenly spaced)
    optimizer:    name (adam | adamw), lr, betas [b1, b2], weight_decay, grad_clip_norm
    schedule:     type (constant | step | multistep | cosine), epochs, step_size, gamma, milestones,
                  min_lr — stepped once per epoch, restarted at every stage
    loss:         type (l1 | l2 | l1+l2), l1_weight, l2_weight — on pixels with ground truth > 0;
                  photometric_weight (> 0: photometric consistency with photometric_views neighbouring
                  frames on each side, which need the drives' poses; see LossConfig)
    stages:       list of {name, epochs (required), lr, train (all | backbone | refinement),
                  refine (bool), batch_size, random_crop}; absent: one stage "all" of schedule.epochs
    distillation: type (none | feature | blackbox | anchor) and the keys of that type (see DistillationConfig)
    seed, deterministic, device (auto | cpu | cuda), output, save_every_steps, progress, tensorboard,
    best_metric (rmse_mm | mae_mm | irmse_1km | imae_1km: the validation figure best.pt minimises),
    validate_start (validate the starting weights before the first epoch: they are best.pt until an
    epoch beats them, so a fine-tune never ends worse than where it started on the validation figure)

Unknown keys, wrong types and out-of-range values raise `ConfigError` (a ValueError) naming the key by
its dotted path, e.g. `data.batch_size` or `stages[1].train`.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOSS_TYPES = ("l1", "l2", "l1+l2")
SCHEDULE_TYPES = ("constant", "step", "multistep", "cosine")
OPTIMIZERS = ("adam", "adamw")
STAGE_TRAIN = ("all", "backbone", "refinement")
DISTILLATION_TYPES = ("none", "feature", "blackbox", "anchor")
FEATURE_METHODS = ("lspkd", "spkd", "att", "pkt", "sp")
CACHE_STORAGE = ("uint16", "float32")
BEST_METRICS = ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A training configuration that does not fit the schema; the message names the bad key."""


# ----------------------------------------------------------------------------------------- checks
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# PyYAML follows YAML 1.1, which reads 1e-4 (no dot in the mantissa) as a string; accept that spelling.
_EXPONENT_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$")


def _number(value: Any, key: str, minimum: float | None = None, maximum: float | None = None,
            strictly_positive: bool = False) -> float:
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
        value = float(value)
    if not _is_number(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    value = float(value)
    if strictly_positive and value <= 0:
        raise ConfigError(f"{key} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key} must be <= {maximum}, got {value!r}")
    return value


def _integer(value: Any, key: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {value!r}")
    return value


def _optional_integer(value: Any, key: str, minimum: int | None = None) -> int | None:
    return None if value is None else _integer(value, key, minimum)


def _boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _optional_string(value: Any, key: str) -> str | None:
    return None if value is None else _string(value, key)


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _size(value: Any, key: str) -> tuple[int, int] | None:
    """[height, width] of positive integers, or None."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{key} must be [height, width] or null, got {value!r}")
    return (_integer(value[0], f"{key}[0]", 1), _integer(value[1], f"{key}[1]", 1))


def _mapping(value: Any, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping, got {type(value).__name__} {value!r}")
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(f"{key} has a non-string key {name!r}")
    return dict(value)


def _check_keys(section: dict, cls, key: str) -> None:
    """Reject keys that are not fields of the dataclass `cls`."""
    allowed = [f.name for f in dataclasses.fields(cls)]
    for name in section:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise ConfigError(f"unknown key {where} (allowed: {', '.join(allowed)})")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# --------------------------------------------------------------------------------------- sections
@dataclass
class ModelConfig:
    """The network: a registered model name, the keyword arguments of its factory, and optionally `init`,
    a checkpoint of the same architecture whose weights start the run (e.g. distillation as a booster
    stage after the base model converged). `new_layers` names modules (e.g. `prior_confidence`) that the
    kwargs add to the architecture of `init`: their weights may be missing from it and start from the
    model's own initialisation; every other weight must still be in `init`, with its shape."""

    name: str = ""
    kwargs: dict = field(default_factory=dict)
    init: str | None = None
    new_layers: list = field(default_factory=list)

    @classmethod
    def parse(cls, data: Any, key: str = "model") -> "ModelConfig":
        data = _mapping(data, key)
        _check_keys(data, cls, key)
        if "name" not in data:
            raise ConfigError(f"{key}.name is required (a registered model name)")
        name = _string(data["name"], f"{key}.name")
        from depth_completion_ros.models import list_models  # torch import, only when parsing

        if name not in list_models():
            raise ConfigError(f"{key}.name {name!r} is not a registered model; choose from "
                              f"{', '.join(list_models())}")
        new_layers = data.get("new_layers", [])
        if not isinstance(new_layers, list) or not all(isinstance(n, str) and n for n in new_layers):
            raise ConfigError(f"{key}.new_layers must be a list of module names, got {new_layers!r}")
        init = _optional_string(data.get("init"), f"{key}.init")
        if new_layers and init is None:
            raise ConfigError(f"{key}.new_layers needs {key}.init (the checkpoint that lacks them)")
        return cls(name=name, kwargs=_mapping(data.get("kwargs"), f"{key}.kwargs"), init=init,
                   new_layers=list(new_layers))


@dataclass
class DataConfig:
    """Where the KITTI-layout data set is and how it is cut, augmented and batched.

    Paths are relative to the working directory. `root` is one data set, or a list of them whose splits
    are concatenated (both for training and validation; frame names get their root as a prefix). `crop:
    null` keeps whole images, whose size differs between KITTI recording days (1224x370 .. 1242x376): use
    batch_size 1 then, or a crop.
    """

    root: str | tuple[str, ...] = "data/synth"
    train_split: str = "train"
    val_split: str | None = "val"
    cameras: tuple[str, ...] = ("image_02",)
    crop: tuple[int, int] | None = (352, 1216)
    random_crop: tuple[int, int] | None = None
    augment: bool = True
    jitter: float = 0.2
    batch_size: int = 4
    val_batch_size: int | None = None
    workers: int = 2
    limit_train: int | None = None
    limit_val: int | None = None

    @classmethod
    def parse(cls, data: Any, key: str = "data") -> "DataConfig":
        data = _mapping(data, key)
        _check_keys(data, cls, key)
        out = cls()
        k = lambda name: f"{key}.{name}"  # noqa: E731
        if "root" in data:
            out.root = _roots(data["root"], k("root"))
        if "train_split" in data:
            out.train_split = _choice(data["train_split"], k("train_split"), ("train", "val"))
        if "val_split" in data:
            out.val_split = (None if data["val_split"] is None else
                             _choice(data["val_split"], k("val_split"), ("train", "val", "val_selection_cropped")))
        if "cameras" in data:
            cameras = data["cameras"]
            if not isinstance(cameras, (list, tuple)) or not cameras:
                raise ConfigError(f"{k('cameras')} must be a non-empty list (image_02, image_03), got {cameras!r}")
            out.cameras = tuple(_choice(c, f"{k('cameras')}[{i}]", ("image_02", "image_03"))
                                for i, c in enumerate(cameras))
        if "crop" in data:
            out.crop = _size(data["crop"], k("crop"))
        if "random_crop" in data:
            out.random_crop = _size(data["random_crop"], k("random_crop"))
        if "augment" in data:
            out.augment = _boolean(data["augment"], k("augment"))
        if "jitter" in data:
            out.jitter = _number(data["jitter"], k("jitter"), 0.0, 1.0)
        if "batch_size" in data:
            out.batch_size = _integer(data["batch_size"], k("batch_size"), 1)
        if "val_batch_size" in data:
            out.val_batch_size = _optional_integer(data["val_batch_size"], k("val_batch_size"), 1)
        if "workers" in data:
            out.workers = _integer(data["workers"], k("workers"), 0)
        if "limit_train" in data:
            out.limit_train = _optional_integer(data["limit_train"], k("limit_train"), 1)
        if "limit_val" in data:
            out.limit_val = _optional_integer(data["limit_val"], k("limit_val"), 1)
        _check_random_crop(out.random_crop, out.crop, k("random_crop"))
        if out.random_crop is not None and not out.augment:
            raise ConfigError(f"{k('random_crop')} needs {k('augment')}: true (random windows are an augmentation)")
        return out


def _roots(value: Any, key: str) -> str | tuple[str, ...]:
    """One data set folder, or a list of two or more distinct ones (a one-item list is that folder)."""
    if isinstance(value, str):
        return _string(value, key)
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{key} must be a folder or a non-empty list of folders, got {value!r}")
    roots = tuple(_string(item, f"{key}[{index}]") for index, item in enumerate(value))
    if len(set(roots)) != len(roots):
        raise ConfigError(f"{key} lists a folder more than once: {list(roots)}")
    return roots[0] if len(roots) == 1 else roots


def _check_random_crop(random_crop, crop, key: str) -> None:
    if random_crop is not None and crop is not None and (random_crop[0] > crop[0] or random_crop[1] > crop[1]):
        raise ConfigError(f"{key} {list(random_crop)} is larger than data.crop {list(crop)}")


@dataclass
class OptimizerConfig:
    """Adam (the seeds' optimiser; lr 1e-3, default betas) or AdamW, and optional gradient clipping."""

    name: str = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip_norm: float | None = None

    @classmethod
    def parse(cls, data: Any, key: str = "optimizer") -> "OptimizerConfig":
        data = _mapping(data, key)
        _check_keys(data, cls, key)
        out = cls()
        if "name" in data:
            out.name = _choice(data["name"], f"{key}.name", OPTIMIZERS)
        if "lr" in data:
            out.lr = _number(data["lr"], f"{key}.lr", strictly_positive=True)
        if "betas" in data:
            betas = data["betas"]
            if not isinstance(betas, (list, tuple)) or len(betas) != 2:
                raise ConfigError(f"{key}.betas must be [beta1, beta2], got {betas!r}")
            out.betas = tuple(_number(b, f"{key}.betas[{i}]", 0.0) for i, b in enumerate(betas))
            if any(b >= 1.0 for b in out.betas):
                raise ConfigError(f"{key}.betas must lie in [0, 1), got {list(betas)}")
        if "weight_decay" in data:
            out.weight_decay = _number(data["weight_decay"], f"{key}.weight_decay", 0.0)
        if "grad_clip_norm" in data and data["grad_clip_norm"] is not None:
            out.grad_clip_norm = _number(data["grad_clip_norm"], f"{key}.grad_clip_norm", strictly_positive=True)
        return out


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped once per epoch and restarted at the start of every stage."""

    type: str = "constant"
    epochs: int | None = None
    step_size: int = 5
    gamma: float = 0.5
    milestones: tuple[int, ...] = ()
    min_lr: float = 0.0

    @classmethod
    def parse(cls, data: Any, key: str = "schedule") -> "ScheduleConfig":
        data = _mapping(data, key)
        _check_keys(data, cls, key)
        out = cls()
        if "type" in data:
            out.type = _choice(data["type"], f"{key}.type", SCHEDULE_TYPES)
        if "epochs" in data:
            out.epochs = _optional_integer(data["epochs"], f"{key}.epochs", 1)
        if "step_size" in data:
            out.step_size = _integer(data["step_size"], f"{key}.step_size", 1)
        if "gamma" in data:
            out.gamma = _number(data["gamma"], f"{key}.gamma", maximum=1.0, strictly_positive=True)
        if "milestones" in data:
            milestones = data["milestones"]
            if not isinstance(milestones, (list, tuple)):
                raise ConfigError(f"{key}.milestones must be a list of epochs, got {milestones!r}")
            out.milestones = tuple(_integer(m, f"{key}.milestones[{i}]", 1) for i, m in enumerate(milestones))
            if list(out.milestones) != sorted(set(out.milestones)):
                raise ConfigError(f"{key}.milestones must be increasing, got {list(milestones)}")
        if "min_lr" in data:
            out.min_lr = _number(data["min_lr"], f"{key}.min_lr", 0.0)
        if out.type == "multistep" and not out.milestones:
            raise ConfigError(f"{key}.milestones must list at least one epoch for type multistep")
        return out


@dataclass
class LossConfig:
    """Ground-truth loss on pixels with ground truth > 0: L1 (LSPKD), L2/MSE (PENet, CDSPN) or both.

    intermediate: {named depth output of the model: weight} supervised with the same loss, PENet's deep
    supervision: total = (1 - sum of weights) * loss(final) + sum(weight * loss(output)). The names are
    those the model returns with `return_features=True` that are depth maps (CDSPN: rgb_branch_depth,
    depth_branch_depth, coarse_depth, refined_dilation<d>).

    photometric_weight: > 0 adds that weight times the photometric consistency of the depth with the images of
    the `photometric_views` frames before and after (`training.photometric`): supervision where no ground truth
    is. The frames' poses come from the drive (`KittiRawDrive.lidar_poses`: OXTS, or a recording's poses file).
    """

    type: str = "l1"
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    intermediate: dict = field(default_factory=dict)
    photometric_weight: float = 0.0
    photometric_views: int = 1

    @classmethod
    def parse(cls, data: Any, key: str = "loss") -> "LossConfig":
        data = _mapping(data, key)
        _check_keys(data, cls, key)
        out = cls()
        if "type" in data:
            out.type = _choice(data["type"], f"{key}.type", LOSS_TYPES)
        if "l1_weight" in data:
            out.l1_weight = _number(data["l1_weight"], f"{key}.l1_weight", 0.0)
        if "l2_weight" in data:
            out.l2_weight = _number(data["l2_weight"], f"{key}.l2_weight", 0.0)
        if "intermediate" in data:
            weights = _mapping(data["intermediate"], f"{key}.intermediate")
            out.intermediate = {name: _number(weight, f"{key}.intermediate.{name}", 0.0, 1.0, strictly_positive=True)
                                for name, weight in weights.items()}
            if sum(out.intermediate.values()) >= 1.0:
                raise ConfigError(f"{key}.intermediate: the weights sum to {sum(out.intermediate.values()):g}; "
                                  "they must sum to less than 1 (the final output keeps 1 - their sum)")
        if "photometric_weight" in data:
            out.photometric_weight = _number(data["photometric_weight"], f"{key}.photometric_weight", 0.0)
        if "photometric_views" in data:
            out.photometric_views = _integer(data["photometric_views"], f"{key}.photometric_views", 1)
        return out


@dataclass
class StageConfig:
    """One training stage: which parameters train, whether the forward pass refines, for how long.

    train: all | backbone (CDSPN two-branch backbone) | refinement (DA-CSPN++ only, backbone frozen).
    refine: False runs the model's coarse (backbone) output, for models whose forward takes `refine`.
    lr, batch_size, random_crop: override optimizer.lr, data.batch_size, data.random_crop.
    """

    name: str = "all"
    epochs: int = 1
    lr: float | None = None
    train: str = "all"
    refine: bool = True
    batch_size: int | None = None
    random_crop: tuple[int, int] | None = None

    @classmethod
    def parse(cls, data: Any, key: str, index: int = 0) -> "StageConfig":
        data = _mapping(data, key)
        _check_keys(data, cls, key)
        if "epochs" not in data:
            raise ConfigError(f"{key}.epochs is required")
        out = cls(name=f"stage{index + 1}", epochs=_integer(data["epochs"], f"{key}.epochs", 1))
        if "name" in data:
            out.name = _string(data["name"], f"{key}.name")
        if "lr" in data and data["lr"] is not None:
            out.lr = _number(data["lr"], f"{key}.lr", strictly_positive=True)
        if "train" in data:
            out.train = _choice(data["train"], f"{key}.train", STAGE_TRAIN)
        if "refine" in data:
            out.refine = _boolean(data["refine"], f"{key}.refine")
        if "batch_size" in data:
            out.batch_size = _optional_integer(data["batch_size"], f"{key}.batch_size", 1)
        if "random_crop" in data:
            out.random_crop = _size(data["random_crop"], f"{key}.random_crop")
        if not out.refine and out.train != "backbone":
            raise ConfigError(f"{key}.train must be 'backbone' when {key}.refine is false "
                              "(the refinement is not run, so it cannot train)")
        if out.refine is True and out.train == "backbone":
            raise ConfigError(f"{key}.refine must be false when {key}.train is 'backbone' "
                              "(train the backbone on its own coarse output)")
        return out


@dataclass
class DistillationConfig:
    """Knowledge distillation during training.

    type none: ground-truth loss only.
    type feature (LSPKD seed, sec. 2.3-2.4): L = L1_mask(D_s, D_gt) + teacher_weight * L1(D_s, D_t)
        + feature_weight * sum over methods and layer pairs; keys: teacher (checkpoint, required),
        methods (lspkd | spkd | att | pkt | sp, one or more), layers (names of same-named pairs, or
        [teacher_layer, student_layer] pairs; default the mid-level E2, D2), method_weights,
        teacher_weight (alpha), feature_weight (beta), lspkd_similarity_weight. Requires loss.type l1.
    type blackbox (CDSPN thesis, sec. 4.2): L = (1 - l1 - l2) MSE_mask(D_s, D_gt) + l1 MSE(D_t, D_s)
        + l2 MSE(g(D_t), g(D_s)); keys: teacher (checkpoint) and/or cache_dir, depth_weight (l1),
        gradient_weight (l2), cache (store teacher predictions once per frame), storage, teacher_id
        (required when the cache is used without a teacher checkpoint). Requires loss.type l2.
    type anchor (fine-tuning on sparse targets, `dcros adapt`): L = L_gt (loss.type, on pixels with ground truth)
        + anchor_weight * L1(D_s, D_t) on the pixels without; keys: teacher (the starting checkpoint, required),
        anchor_weight. Where the targets say nothing (between a LiDAR's beams) the model keeps the teacher's
        depth instead of drifting unseen.
    """

    type: str = "none"
    teacher: str | None = None
    methods: tuple[str, ...] = ("lspkd",)
    layers: tuple[tuple[str, str], ...] = (("E2", "E2"), ("D2", "D2"))
    method_weights: dict = field(default_factory=dict)
    teacher_weight: float = 1.0
    feature_weight: float = 0.1
    lspkd_similarity_weight: float = 1.0
    depth_weight: float = 0.1
    gradient_weight: float = 0.1
    cache: bool = True
    cache_dir: str | None = None
    storage: str = "uint16"
    teacher_id: str | None = None
    anchor_weight: float = 1.0

    FEATURE_KEYS = ("methods", "layers", "method_weights", "teacher_weight", "feature_weight",
                    "lspkd_similarity_weight")
    BLACKBOX_KEYS = ("depth_weight", "gradient_weight", "cache", "cache_dir", "storage", "teacher_id")
    ANCHOR_KEYS = ("anchor_weight",)

    @classmethod
    def parse(cls, data: Any, key: str = "distillation") -> "DistillationConfig":
        data = _mapping(data, key)
        _check_keys(data, cls, key)
        out = cls()
        if "type" in data:
            out.type = _choice(data["type"], f"{key}.type", DISTILLATION_TYPES)
        foreign = {"none": cls.FEATURE_KEYS + cls.BLACKBOX_KEYS + cls.ANCHOR_KEYS + ("teacher",),
                   "feature": cls.BLACKBOX_KEYS + cls.ANCHOR_KEYS, "blackbox": cls.FEATURE_KEYS + cls.ANCHOR_KEYS,
                   "anchor": cls.FEATURE_KEYS + cls.BLACKBOX_KEYS}[out.type]
        for name in data:
            if name in foreign:
                raise ConfigError(f"{key}.{name} does not apply to {key}.type {out.type!r}")
        if "teacher" in data:
            out.teacher = _optional_string(data["teacher"], f"{key}.teacher")
        if "methods" in data:
            methods = data["methods"]
            methods = [methods] if isinstance(methods, str) else methods
            if not isinstance(methods, (list, tuple)) or not methods:
                raise ConfigError(f"{key}.methods must name one or more of {', '.join(FEATURE_METHODS)}")
            out.methods = tuple(_choice(m, f"{key}.methods[{i}]", FEATURE_METHODS) for i, m in enumerate(methods))
            if len(set(out.methods)) != len(out.methods):
                raise ConfigError(f"{key}.methods lists a method twice: {list(methods)}")
        if "layers" in data:
            out.layers = _layer_pairs(data["layers"], f"{key}.layers")
        if "method_weights" in data:
            weights = _mapping(data["method_weights"], f"{key}.method_weights")
            for name, value in weights.items():
                if name not in out.methods:
                    raise ConfigError(f"{key}.method_weights.{name}: {name!r} is not among {key}.methods")
                weights[name] = _number(value, f"{key}.method_weights.{name}", 0.0)
            out.method_weights = weights
        for name in ("teacher_weight", "feature_weight", "lspkd_similarity_weight"):
            if name in data:
                setattr(out, name, _number(data[name], f"{key}.{name}", 0.0))
        for name in ("depth_weight", "gradient_weight"):
            if name in data:
                setattr(out, name, _number(data[name], f"{key}.{name}", 0.0, 1.0))
        if out.depth_weight + out.gradient_weight > 1.0:
            raise ConfigError(f"{key}.depth_weight + {key}.gradient_weight must be <= 1, "
                              f"got {out.depth_weight} + {out.gradient_weight}")
        if "cache" in data:
            out.cache = _boolean(data["cache"], f"{key}.cache")
        if "cache_dir" in data:
            out.cache_dir = _optional_string(data["cache_dir"], f"{key}.cache_dir")
        if "storage" in data:
            out.storage = _choice(data["storage"], f"{key}.storage", CACHE_STORAGE)
        if "teacher_id" in data:
            out.teacher_id = _optional_string(data["teacher_id"], f"{key}.teacher_id")

        if "anchor_weight" in data:
            out.anchor_weight = _number(data["anchor_weight"], f"{key}.anchor_weight", 0.0)
        if out.type == "anchor" and out.teacher is None:
            raise ConfigError(f"{key}.teacher (the starting checkpoint) is required for the anchor")
        if out.type == "feature" and out.teacher is None:
            raise ConfigError(f"{key}.teacher (a checkpoint) is required for feature distillation")
        if out.type == "blackbox":
            if out.teacher is None and not (out.cache and out.cache_dir):
                raise ConfigError(f"{key}.teacher is required for black-box distillation unless "
                                  f"{key}.cache_dir names an existing cache (with cache: true)")
            if out.teacher is None and out.teacher_id is None:
                raise ConfigError(f"{key}.teacher_id is required when the cache is used without {key}.teacher")
        return out


def _layer_pairs(value: Any, key: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{key} must be a non-empty list of layer names or [teacher, student] pairs")
    pairs = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            pairs.append((item, item))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            pairs.append((_string(item[0], f"{key}[{index}][0]"), _string(item[1], f"{key}[{index}][1]")))
        else:
            raise ConfigError(f"{key}[{index}] must be a layer name or [teacher_layer, student_layer], got {item!r}")
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"{key} lists a layer pair twice: {value!r}")
    return tuple(pairs)


# ------------------------------------------------------------------------------------------- root
@dataclass
class TrainConfig:
    """A whole training run. Build with `TrainConfig.from_dict` / `load_config`, never by hand-editing
    fields after validation (`validate()` re-checks the cross-section rules)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stages: tuple[StageConfig, ...] = ()
    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"
    output: str | None = None
    save_every_steps: int = 0
    progress: bool = True
    tensorboard: bool | str = "auto"
    best_metric: str = "rmse_mm"
    validate_start: bool = False

    @classmethod
    def from_dict(cls, data: Any, source: str = "configuration") -> "TrainConfig":
        """Validate a parsed YAML mapping (see the module docstring for the schema)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
        _check_keys(data, cls, "")
        if "model" not in data:
            raise ConfigError("model is required (model.name: a registered model)")
        out = cls(
            model=ModelConfig.parse(data["model"]),
            data=DataConfig.parse(data.get("data")),
            optimizer=OptimizerConfig.parse(data.get("optimizer")),
            schedule=ScheduleConfig.parse(data.get("schedule")),
            loss=LossConfig.parse(data.get("loss")),
            distillation=DistillationConfig.parse(data.get("distillation")),
        )
        stages = data.get("stages")
        if stages is not None:
            if not isinstance(stages, (list, tuple)) or not stages:
                raise ConfigError(f"stages must be a non-empty list of stages, got {stages!r}")
            out.stages = tuple(StageConfig.parse(stage, f"stages[{i}]", i) for i, stage in enumerate(stages))
        if "seed" in data:
            out.seed = _integer(data["seed"], "seed", 0)
        if "deterministic" in data:
            out.deterministic = _boolean(data["deterministic"], "deterministic")
        if "device" in data:
            out.device = _choice(data["device"], "device", DEVICES)
        if "output" in data:
            out.output = _optional_string(data["output"], "output")
        if "save_every_steps" in data:
            out.save_every_steps = _integer(data["save_every_steps"], "save_every_steps", 0)
        if "progress" in data:
            out.progress = _boolean(data["progress"], "progress")
        if "tensorboard" in data:
            value = data["tensorboard"]
            if value != "auto" and not isinstance(value, bool):
                raise ConfigError(f"tensorboard must be true, false or auto, got {value!r}")
            out.tensorboard = value
        if "best_metric" in data:
            out.best_metric = _choice(data["best_metric"], "best_metric", BEST_METRICS)
        if "validate_start" in data:
            out.validate_start = _boolean(data["validate_start"], "validate_start")
        out.validate()
        return out

    def validate(self) -> None:
        """Rules that span sections."""
        if not self.stages and self.schedule.epochs is None:
            raise ConfigError("schedule.epochs is required when no stages are given")
        if self.stages and self.schedule.epochs is not None:
            raise ConfigError("schedule.epochs conflicts with stages (each stage sets its epochs); remove one")
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stages: names must be unique, got {names}")
        for index, stage in enumerate(self.stages):
            _check_random_crop(stage.random_crop, self.data.crop, f"stages[{index}].random_crop")
            if stage.random_crop is not None and not self.data.augment:
                raise ConfigError(f"stages[{index}].random_crop needs data.augment: true")
        kind = self.distillation.type
        if kind != "none" and self.loss.intermediate:
            raise ConfigError("loss.intermediate supervises without distillation only; remove it or "
                              f"distillation ({kind})")
        if kind == "feature" and self.loss.type != "l1":
            raise ConfigError("loss.type must be l1 with feature distillation (the LSPKD objective supervises "
                              f"with L1 on ground truth and teacher), got {self.loss.type!r}")
        if kind == "blackbox" and self.loss.type != "l2":
            raise ConfigError("loss.type must be l2 with black-box distillation (the CDSPN objective uses MSE "
                              f"on ground truth), got {self.loss.type!r}")
        if kind == "blackbox" and self.distillation.cache:
            # The cache keeps one prediction per frame of the un-augmented crop; flips and random windows
            # would no longer line up with it.
            if self.data.augment:
                raise ConfigError("data.augment must be false with a black-box teacher cache (one cached "
                                  "prediction per frame); set distillation.cache: false to run the teacher "
                                  "on every augmented batch instead")

    def stage_list(self) -> list[StageConfig]:
        """The stages to run: the configured ones, or one stage "all" of schedule.epochs."""
        if self.stages:
            return list(self.stages)
        return [StageConfig(name="all", epochs=int(self.schedule.epochs))]

    @property
    def total_epochs(self) -> int:
        """Epochs over all stages."""
        return sum(stage.epochs for stage in self.stage_list())

    def to_dict(self) -> dict:
        """Plain data (lists, dicts, numbers, strings) that `from_dict` reads back to an equal config."""
        def plain(value):
            if dataclasses.is_dataclass(value):
                return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        out = plain(self)
        if not self.stages:
            out.pop("stages")
        # Absent as in configs written before they existed (resume compares them).
        if not self.loss.intermediate:
            out["loss"].pop("intermediate")
        if not self.loss.photometric_weight:
            out["loss"].pop("photometric_weight")
            out["loss"].pop("photometric_views")
        if not self.model.new_layers:
            out["model"].pop("new_layers")
        if not self.validate_start:
            out.pop("validate_start")
        kind = self.distillation.type
        feature, blackbox, anchor = (DistillationConfig.FEATURE_KEYS, DistillationConfig.BLACKBOX_KEYS,
                                     DistillationConfig.ANCHOR_KEYS)
        foreign = {"none": feature + blackbox + anchor + ("teacher",), "feature": blackbox + anchor,
                   "blackbox": feature + anchor, "anchor": feature + blackbox}[kind]
        out["distillation"] = {k: v for k, v in out["distillation"].items() if k not in foreign}
        return out


# --------------------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[list[str], Any]:
    """`data.batch_size=2` -> (["data", "batch_size"], 2); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".")]
    if not key.strip() or any(not part for part in path):
        raise ConfigError(f"--set: bad key {key!r} (use dotted keys such as data.batch_size or stages.0.lr)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML: {error}") from None
    return path, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """A deep copy of `data` with each `key=value` of `overrides` set (lists indexed by number)."""
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for depth, part in enumerate(path[:-1]):
            where = ".".join(path[:depth + 1])
            if isinstance(node, list):
                node = node[_list_index(node, part, where)]
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {'.'.join(path)}: {where} is a value, not a section")
        last = path[-1]
        if isinstance(node, list):
            node[_list_index(node, last, ".".join(path))] = value
        else:
            node[last] = value
    return data


def _list_index(node: list, part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set: {where} must index an existing list item (0..{len(node) - 1})")
    return int(part)


def load_config_dict(path: str | Path) -> dict:
    """The raw mapping of a YAML file (yaml.safe_load), with clear errors for missing or broken files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Load, override (`key=value` strings) and validate a training configuration file."""
    data = apply_overrides(load_config_dict(path), list(overrides or []))
    try:
        return TrainConfig.from_dict(data, source=str(path))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
