"""Prediction distillation and the full LSPKD training objective (LSPKD paper, sec. 2.4).

The student is supervised by the ground truth and by the teacher's dense prediction, both with an
L1 loss ("adopted for better depth boundary predictions"), and the feature distillation is added:

    L_pred = L1_mask(D_s, D_gt) + alpha * L1(D_s, D_t)
    L      = L_pred + beta * L_feat            (L_feat: `FeatureDistiller`, LSPKD by default)

alpha and beta are user parameters in the paper, which sets one of them to 0.1 for its NYUv2
student; we read that as the distillation weight beta. Defaults: alpha = 1 (ground truth and
teacher weigh the same), beta = 0.1; set them per data set.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ._common import check_depth_pair, masked_mean
from .feature_distiller import FeatureDistiller


def masked_l1(prediction: torch.Tensor, ground_truth: torch.Tensor) -> torch.Tensor:
    """Mean |prediction - ground_truth| over pixels with ground_truth > 0 (0 when there are none)."""
    check_depth_pair(prediction, ground_truth, "prediction", "ground truth")
    return masked_mean((prediction - ground_truth).abs(), ground_truth > 0)


class PredictionDistillationLoss(nn.Module):
    """L_pred = L1_mask(D_s, D_gt) + alpha * L1(D_s, D_t).

    L1_mask averages over pixels with D_gt > 0; L1(D_s, D_t) averages over all pixels (the teacher's
    prediction is dense). All depths [B, 1, H, W] in metres; the teacher depth is detached.
    """

    def __init__(self, teacher_weight: float = 1.0):
        super().__init__()
        if teacher_weight < 0:
            raise ValueError(f"teacher_weight (alpha) must be >= 0, got {teacher_weight}")
        self.teacher_weight = float(teacher_weight)

    def forward_with_terms(
        self, student_depth: torch.Tensor, teacher_depth: torch.Tensor, ground_truth: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(L_pred, {"ground_truth_l1", "teacher_l1": unweighted terms})."""
        check_depth_pair(student_depth, teacher_depth, "student depth", "teacher depth")
        ground_truth_term = masked_l1(student_depth, ground_truth)
        teacher_term = (student_depth - teacher_depth.detach()).abs().mean()
        total = ground_truth_term + self.teacher_weight * teacher_term
        return total, {"ground_truth_l1": ground_truth_term, "teacher_l1": teacher_term}

    def forward(self, student_depth: torch.Tensor, teacher_depth: torch.Tensor,
                ground_truth: torch.Tensor) -> torch.Tensor:
        """L_pred (scalar)."""
        return self.forward_with_terms(student_depth, teacher_depth, ground_truth)[0]


class LSPKDObjective(nn.Module):
    """The LSPKD paper's final student loss L = L_pred + beta * L_feat.

    `feature_distiller` computes L_feat from named teacher/student features (None: prediction
    distillation only). Its adapters are parameters of this module: optimise
    `objective.parameters()` together with the student's.
    """

    def __init__(self, feature_distiller: FeatureDistiller | None = None,
                 teacher_weight: float = 1.0, feature_weight: float = 0.1):
        super().__init__()
        if feature_weight < 0:
            raise ValueError(f"feature_weight (beta) must be >= 0, got {feature_weight}")
        self.prediction = PredictionDistillationLoss(teacher_weight)
        self.feature_distiller = feature_distiller
        self.feature_weight = float(feature_weight)

    def forward(
        self,
        student_depth: torch.Tensor,
        teacher_depth: torch.Tensor,
        ground_truth: torch.Tensor,
        teacher_features: Mapping[str, torch.Tensor] | None = None,
        student_features: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, detached terms for logging: "pred/...", "feat/..." and "pred", "feat", "total")."""
        prediction_loss, prediction_terms = self.prediction.forward_with_terms(
            student_depth, teacher_depth, ground_truth)
        terms = {f"pred/{name}": value.detach() for name, value in prediction_terms.items()}
        terms["pred"] = prediction_loss.detach()
        total = prediction_loss
        if self.feature_distiller is not None and self.feature_weight > 0:
            if teacher_features is None or student_features is None:
                raise ValueError("this objective distils features: pass teacher_features and student_features")
            feature_loss, feature_terms = self.feature_distiller(teacher_features, student_features)
            terms.update({f"feat/{name}": value for name, value in feature_terms.items()})
            terms["feat"] = feature_loss.detach()
            total = total + self.feature_weight * feature_loss
        terms["total"] = total.detach()
        return total, terms
