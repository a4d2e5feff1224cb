"""Attention transfer (ATT, Zagoruyko & Komodakis, ICLR 2017), one of the LSPKD paper's baselines."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import EPS, check_feature_map, check_same_batch, resize_to


def attention_map(features: torch.Tensor, power: float = 2.0, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Spatial attention a(F) = normalise(mean over channels of |F|^p), as [B, H*W].

    The [B, 1, H, W] map is bilinearly resized to `size` (when given) before it is flattened per
    image and L2-normalised, so maps of different resolutions become comparable.
    """
    check_feature_map(features, "features")
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    energy = features.abs().pow(power).mean(dim=1, keepdim=True)
    if size is not None:
        energy = resize_to(energy, size)
    return F.normalize(energy.flatten(1), p=2.0, dim=1, eps=EPS)


class AttentionTransferLoss(nn.Module):
    """ATT loss: L = mean over B*H*W of (a(F_s) - a(F_t))^2 with a = `attention_map`, p = 2.

    Channel counts may differ (the map averages over channels). When spatial sizes differ the
    student's attention map is resized to the teacher's H x W. Teacher detached.
    """

    def __init__(self, power: float = 2.0):
        super().__init__()
        if power <= 0:
            raise ValueError(f"power must be > 0, got {power}")
        self.power = float(power)

    def forward(self, teacher_features: torch.Tensor, student_features: torch.Tensor) -> torch.Tensor:
        """Attention-transfer loss (scalar)."""
        check_feature_map(teacher_features, "teacher features")
        check_feature_map(student_features, "student features")
        check_same_batch(teacher_features, student_features)
        size = tuple(teacher_features.shape[-2:])
        with torch.no_grad():
            teacher_attention = attention_map(teacher_features.detach(), self.power)
        student_attention = attention_map(student_features, self.power, size=size)
        return (student_attention - teacher_attention).square().mean()
