"""Global similarity-preserving distillation: SPKD as the LSPKD paper compares it, and batch-wise SP.

`GlobalSimilarityLoss` follows Yoon et al. (IEEE SPL 2020, image matting; the LSPKD paper's ref. [15]):
pairwise similarities over spatial positions, over channels and over the batch are matched between
teacher and student. The spatial matrix is H*W x H*W per image, so its memory grows with (H*W)^2:
that is the cost the 8-neighbour LSPKD avoids. `BatchSimilarityLoss` is Tung & Mori's (ICCV 2019)
batch-wise similarity preservation: a B x B matrix, cheap, and not the memory baseline.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import EPS, check_feature_map, check_feature_pair, check_same_batch, resize_to


def spatial_similarity(features: torch.Tensor) -> torch.Tensor:
    """[B, H*W, H*W] cosine similarities between all spatial positions of each image.

    A[b, p, q] = f_b(p) . f_b(q), with f the features L2-normalised over channels and positions
    p, q in row-major order. Memory: B * (H*W)^2 values.
    """
    check_feature_map(features, "features")
    flat = F.normalize(features, p=2.0, dim=1, eps=EPS).flatten(2)  # [B, C, HW]
    return torch.bmm(flat.transpose(1, 2), flat)


def channel_similarity(features: torch.Tensor) -> torch.Tensor:
    """[B, C, C] cosine similarities between the channels of each image.

    G[b, c, d] = g_b(c) . g_b(d), with g(c) the c-th channel's H*W responses L2-normalised.
    """
    check_feature_map(features, "features")
    flat = F.normalize(features.flatten(2), p=2.0, dim=2, eps=EPS)  # [B, C, HW]
    return torch.bmm(flat, flat.transpose(1, 2))


def batch_similarity(features: torch.Tensor) -> torch.Tensor:
    """[B, B] Tung & Mori similarity: G = F F^T with F = B x (C*H*W), then each row L2-normalised."""
    check_feature_map(features, "features")
    flat = features.flatten(1)
    return F.normalize(flat @ flat.t(), p=2.0, dim=1, eps=EPS)


class BatchSimilarityLoss(nn.Module):
    """Tung & Mori's similarity-preserving KD: L = ||G_t - G_s||_F^2 / B^2 with G = `batch_similarity`.

    Works for any teacher/student channel counts and spatial sizes (G is B x B). Teacher detached.
    """

    def forward(self, teacher_features: torch.Tensor, student_features: torch.Tensor) -> torch.Tensor:
        """Batch-similarity loss (scalar); with B = 1 it is always 0."""
        check_feature_map(teacher_features, "teacher features")
        check_feature_map(student_features, "student features")
        check_same_batch(teacher_features, student_features)
        with torch.no_grad():
            teacher_gram = batch_similarity(teacher_features.detach())
        student_gram = batch_similarity(student_features)
        batch = teacher_features.shape[0]
        return (teacher_gram - student_gram).square().sum() / batch**2


class GlobalSimilarityLoss(nn.Module):
    """SPKD (Yoon et al.): match global similarity matrices of a teacher/student layer pair.

        L = w_s * mean((A_t - A_s)^2) + w_c * mean((G_t - G_c)^2) + w_b * ||B_t - B_s||_F^2 / B^2

    A = `spatial_similarity` ([B, HW, HW], the (H*W)^2 memory term), G = `channel_similarity`
    ([B, C_t, C_t]) and B = `batch_similarity`. The student map is bilinearly resized to the
    teacher's H x W when they differ. C_t x C_t and C_s x C_s channel matrices are not comparable,
    so when the channel counts differ the channel term uses phi(F_s), a 1x1 convolution from student
    to teacher channels owned by this module (optimise it with the student); with equal counts the
    student's own channels are used and there is no adapter. Teacher detached.
    """

    def __init__(
        self,
        teacher_channels: int,
        student_channels: int,
        spatial_weight: float = 1.0,
        channel_weight: float = 1.0,
        batch_weight: float = 1.0,
    ):
        super().__init__()
        for name, value in (("teacher_channels", teacher_channels), ("student_channels", student_channels)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("spatial_weight", spatial_weight), ("channel_weight", channel_weight),
                            ("batch_weight", batch_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.student_channels = int(student_channels)
        self.teacher_channels = int(teacher_channels)
        self.weights = {"spatial": float(spatial_weight), "channel": float(channel_weight),
                        "batch": float(batch_weight)}
        self.adapter = (
            nn.Conv2d(self.student_channels, self.teacher_channels, kernel_size=1)
            if self.student_channels != self.teacher_channels else None
        )
        self.batch_loss = BatchSimilarityLoss()

    def forward_with_terms(
        self, teacher_features: torch.Tensor, student_features: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(weighted total, {"spatial", "channel", "batch": unweighted terms}); zero-weight terms are skipped."""
        check_feature_pair(teacher_features, student_features, self.teacher_channels, self.student_channels)
        teacher = teacher_features.detach()
        student = resize_to(student_features, tuple(teacher.shape[-2:]))
        terms: dict[str, torch.Tensor] = {}
        if self.weights["spatial"] > 0:
            with torch.no_grad():
                teacher_spatial = spatial_similarity(teacher)
            terms["spatial"] = F.mse_loss(spatial_similarity(student), teacher_spatial)
            del teacher_spatial
        if self.weights["channel"] > 0:
            adapted = self.adapter(student) if self.adapter is not None else student
            with torch.no_grad():
                teacher_channel = channel_similarity(teacher)
            terms["channel"] = F.mse_loss(channel_similarity(adapted), teacher_channel)
        if self.weights["batch"] > 0:
            terms["batch"] = self.batch_loss(teacher, student)
        total = sum((self.weights[name] * value for name, value in terms.items()),
                    start=student_features.new_zeros(()))
        return total, terms

    def forward(self, teacher_features: torch.Tensor, student_features: torch.Tensor) -> torch.Tensor:
        """Weighted SPKD loss (scalar)."""
        return self.forward_with_terms(teacher_features, student_features)[0]
