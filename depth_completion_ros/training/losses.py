"""Training objectives: masked ground-truth losses and the two distillation objectives behind one interface.

Every criterion is an `nn.Module` called as

    criterion(student_depth, ground_truth, teacher_depth=None, teacher_features=None, student_features=None)
        -> (total loss, {term name: detached tensor})

so the trainer treats supervised training, LSPKD feature distillation and CDSPN black-box distillation
alike. Ground-truth terms average over pixels with ground truth > 0 only (KITTI's annotated depth is
semi-dense; 0 = no value). The distillation formulas live in `depth_completion_ros.distill`.
"""
from __future__ import annotations

import torch
from torch import nn

from depth_completion_ros.distill import (
    BlackBoxDistillationLoss,
    FeatureDistiller,
    LayerPair,
    LSPKDObjective,
    masked_l1,
    probe_feature_channels,
    student_adapters,
)

from .config import DistillationConfig, LossConfig


def masked_mse(prediction: torch.Tensor, ground_truth: torch.Tensor) -> torch.Tensor:
    """Mean (prediction - ground_truth)^2 over pixels with ground_truth > 0 (0 when there are none)."""
    if prediction.shape != ground_truth.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and ground truth {tuple(ground_truth.shape)} "
                         "differ in shape")
    mask = (ground_truth > 0).to(prediction.dtype)
    return ((prediction - ground_truth).square() * mask).sum() / mask.sum().clamp_min(1.0)


class GroundTruthLoss(nn.Module):
    """l1 (LSPKD), l2 = MSE (PENet, CDSPN) or l1+l2 (weighted sum) against the ground truth, masked to gt > 0.

    `intermediate` ({named depth output: weight}) adds PENet's deep supervision of the model's intermediate
    depths with the same loss: (1 - sum w) * loss(final) + sum w * loss(output). CDSPN's DA-CSPN++ anchors
    every propagation step to the coarse depth, so a coarse depth that drifts (nothing else supervises it)
    stays in the output wherever LiDAR returns are far apart.
    """

    needs_teacher = False

    def __init__(self, kind: str = "l1", l1_weight: float = 1.0, l2_weight: float = 1.0,
                 intermediate: dict | None = None):
        super().__init__()
        if kind not in ("l1", "l2", "l1+l2"):
            raise ValueError(f"loss type must be l1, l2 or l1+l2, got {kind!r}")
        self.kind = kind
        self.l1_weight = float(l1_weight)
        self.l2_weight = float(l2_weight)
        self.intermediate = {str(name): float(weight) for name, weight in (intermediate or {}).items()}
        if sum(self.intermediate.values()) >= 1.0 or any(w <= 0 for w in self.intermediate.values()):
            raise ValueError(f"intermediate weights must be > 0 and sum to less than 1, got {self.intermediate}")

    @property
    def needs_features(self) -> bool:
        return bool(self.intermediate)

    def _supervise(self, depth: torch.Tensor, ground_truth: torch.Tensor, prefix: str = ""):
        terms = {}
        total = None
        if self.kind in ("l1", "l1+l2"):
            terms[prefix + "gt_l1"] = masked_l1(depth, ground_truth)
            total = (self.l1_weight if self.kind == "l1+l2" else 1.0) * terms[prefix + "gt_l1"]
        if self.kind in ("l2", "l1+l2"):
            terms[prefix + "gt_l2"] = masked_mse(depth, ground_truth)
            weighted = (self.l2_weight if self.kind == "l1+l2" else 1.0) * terms[prefix + "gt_l2"]
            total = weighted if total is None else total + weighted
        return total, terms

    def forward(self, student_depth: torch.Tensor, ground_truth: torch.Tensor, teacher_depth=None,
                teacher_features=None, student_features=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, {"gt_l1" and/or "gt_l2": unweighted terms, and "<output>/gt_l1" ... per intermediate output})."""
        total, terms = self._supervise(student_depth, ground_truth)
        if self.intermediate:
            total = (1.0 - sum(self.intermediate.values())) * total
            for name, weight in self.intermediate.items():
                depth = _named_depth(student_features, name, ground_truth)
                loss, named_terms = self._supervise(depth, ground_truth, prefix=f"{name}/")
                total = total + weight * loss
                terms.update(named_terms)
        return total, {name: value.detach() for name, value in terms.items()}


def _named_depth(features, name: str, ground_truth: torch.Tensor) -> torch.Tensor:
    """The model's intermediate depth `name`, checked to be a [B,1,H,W] map like the ground truth."""
    if not features:
        raise ValueError(f"loss.intermediate names {name!r}, but the model returned no named outputs")
    if name not in features:
        depths = sorted(k for k, v in features.items() if v.shape == ground_truth.shape)
        raise ValueError(f"loss.intermediate: the model has no output {name!r}; its depth-shaped outputs are "
                         f"{', '.join(depths) or 'none'}")
    depth = features[name]
    if depth.shape != ground_truth.shape:
        raise ValueError(f"loss.intermediate: {name!r} is {tuple(depth.shape)}, not a depth map like the "
                         f"ground truth {tuple(ground_truth.shape)}")
    return depth


class FeatureDistillationCriterion(nn.Module):
    """LSPKD seed objective: L1_mask(D_s, D_gt) + alpha L1(D_s, D_t) + beta * feature distillation.

    Wraps `distill.LSPKDObjective`; its adapters (1x1 convolutions of LSPKD/SPKD) are parameters of
    this module and train with the student.
    """

    needs_teacher = True
    needs_features = True

    def __init__(self, objective: LSPKDObjective):
        super().__init__()
        self.objective = objective

    def forward(self, student_depth, ground_truth, teacher_depth=None, teacher_features=None,
                student_features=None):
        """(loss, terms "pred/...", "feat/...", "pred", "feat")."""
        if teacher_depth is None:
            raise ValueError("feature distillation needs the teacher's depth prediction")
        total, terms = self.objective(student_depth, teacher_depth, ground_truth, teacher_features, student_features)
        terms.pop("total", None)
        return total, terms


class BlackBoxCriterion(nn.Module):
    """CDSPN thesis objective (1 - l1 - l2) MSE_mask(D_s, D_gt) + l1 MSE(D_t, D_s) + l2 MSE(g(D_t), g(D_s))."""

    needs_teacher = True
    needs_features = False

    def __init__(self, loss: BlackBoxDistillationLoss):
        super().__init__()
        self.loss = loss

    def forward(self, student_depth, ground_truth, teacher_depth=None, teacher_features=None,
                student_features=None):
        """(loss, terms "ground_truth_mse", "teacher_depth_mse", "teacher_gradient_mse")."""
        if teacher_depth is None:
            raise ValueError("black-box distillation needs the teacher's depth prediction")
        total, terms = self.loss.forward_with_terms(student_depth, teacher_depth, ground_truth)
        return total, {name: value.detach() for name, value in terms.items()}


class AnchoredCriterion(nn.Module):
    """The ground-truth loss where there is ground truth, plus anchor_weight * L1 to the teacher (the starting
    weights) on the pixels without: fine-tuning on sparse targets without drifting where they say nothing."""

    needs_teacher = True
    needs_features = False

    def __init__(self, ground_truth_loss: GroundTruthLoss, anchor_weight: float):
        super().__init__()
        self.ground_truth_loss = ground_truth_loss
        self.anchor_weight = float(anchor_weight)

    def forward(self, student_depth, ground_truth, teacher_depth=None, teacher_features=None,
                student_features=None):
        """(loss, the ground-truth terms and "anchor_l1")."""
        if teacher_depth is None:
            raise ValueError("the anchor needs the starting model's depth prediction")
        total, terms = self.ground_truth_loss(student_depth, ground_truth)
        unsupervised = ground_truth <= 0
        anchor = (student_depth - teacher_depth.detach()).abs()[unsupervised]
        anchor = anchor.mean() if anchor.numel() else student_depth.sum() * 0.0
        terms["anchor_l1"] = anchor.detach()
        return total + self.anchor_weight * anchor, terms


class PhotometricCriterion(nn.Module):
    """Another criterion plus weight * the photometric consistency of the depth with its neighbouring views
    (`photometric.PhotometricLoss`): supervision between the LiDAR's beams, where no target is. Called with
    `views` = dict(rgb, K, views, poses, valid) of the batch."""

    needs_views = True

    def __init__(self, base: nn.Module, weight: float):
        super().__init__()
        from .photometric import PhotometricLoss

        self.base = base
        self.weight = float(weight)
        self.photometric = PhotometricLoss()

    @property
    def needs_teacher(self) -> bool:
        return getattr(self.base, "needs_teacher", False)

    @property
    def needs_features(self) -> bool:
        return getattr(self.base, "needs_features", False)

    def forward(self, student_depth, ground_truth, teacher_depth=None, teacher_features=None,
                student_features=None, views=None):
        """(loss, the base criterion's terms, "photometric" and "photometric_pixels" (the share scored))."""
        if views is None:
            raise ValueError("the photometric loss needs the batch's neighbouring views (data set views > 0)")
        total, terms = self.base(student_depth, ground_truth, teacher_depth, teacher_features, student_features)
        loss, share = self.photometric(student_depth, **views)
        terms["photometric"] = loss.detach()
        terms["photometric_pixels"] = share
        return total + self.weight * loss, terms


def feature_layer_pairs(teacher: nn.Module, student: nn.Module, layers, probe_size=(64, 64)) -> list[LayerPair]:
    """LayerPairs for [(teacher_layer, student_layer), ...] with channel counts probed from both models."""
    teacher_channels = probe_feature_channels(teacher, *probe_size)
    student_channels = probe_feature_channels(student, *probe_size)
    pairs = []
    for teacher_layer, student_layer in layers:
        for side, name, channels in (("teacher", teacher_layer, teacher_channels),
                                     ("student", student_layer, student_channels)):
            if name not in channels:
                raise ValueError(f"distillation.layers: the {side} has no feature layer {name!r}; "
                                 f"it has {', '.join(sorted(channels))}")
        pairs.append(LayerPair(teacher_layer, student_layer, teacher_channels[teacher_layer],
                               student_channels[student_layer]))
    return pairs


def build_criterion(loss: LossConfig, distillation: DistillationConfig, student: nn.Module | None = None,
                    teacher: nn.Module | None = None) -> nn.Module:
    """The criterion a configuration asks for (with loss.photometric_weight > 0, plus the photometric term).
    Feature distillation needs both models (to size adapters)."""
    criterion = _supervision(loss, distillation, student, teacher)
    return PhotometricCriterion(criterion, loss.photometric_weight) if loss.photometric_weight > 0 else criterion


def _supervision(loss: LossConfig, distillation: DistillationConfig, student: nn.Module | None,
                 teacher: nn.Module | None) -> nn.Module:
    if distillation.type == "none":
        return GroundTruthLoss(loss.type, loss.l1_weight, loss.l2_weight, loss.intermediate)
    if distillation.type == "feature":
        if student is None or teacher is None:
            raise ValueError("feature distillation needs the student and the teacher to build its adapters")
        pairs = feature_layer_pairs(teacher, student, distillation.layers)
        distiller = FeatureDistiller(
            pairs,
            method=list(distillation.methods),
            method_weights=dict(distillation.method_weights) or None,
            lspkd_similarity_weight=distillation.lspkd_similarity_weight,
            # A student that carries its own phi (the LSPKD students' `adapters`) trains it here, so the
            # saved student holds the adapters the paper counts with it; other layers get the distiller's.
            adapters=student_adapters(student, pairs) or None,
        )
        return FeatureDistillationCriterion(LSPKDObjective(distiller, teacher_weight=distillation.teacher_weight,
                                                           feature_weight=distillation.feature_weight))
    if distillation.type == "blackbox":
        return BlackBoxCriterion(BlackBoxDistillationLoss(distillation.depth_weight, distillation.gradient_weight))
    if distillation.type == "anchor":
        return AnchoredCriterion(GroundTruthLoss(loss.type, loss.l1_weight, loss.l2_weight),
                                 distillation.anchor_weight)
    raise ValueError(f"unknown distillation type {distillation.type!r}")
