"""Probabilistic knowledge transfer (PKT / "PROB", Passalis & Tefas, ECCV 2018), an LSPKD paper baseline."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._common import EPS, check_feature_map, check_same_batch, resize_to

SAMPLE_MODES = ("pixels", "images")


def pkt_probabilities(vectors: torch.Tensor) -> torch.Tensor:
    """Conditional probabilities P[g, i, k] from samples `vectors` [G, N, D] (G independent groups).

    Cosine similarity s between L2-normalised samples, rescaled to (s + 1) / 2 in [0, 1] and
    normalised per row into P(k | i) = s_ik / sum_k s_ik (the sample itself included).
    """
    if vectors.dim() != 3:
        raise ValueError(f"vectors must have shape [groups, samples, dims], got {tuple(vectors.shape)}")
    unit = F.normalize(vectors, p=2.0, dim=2, eps=EPS)
    similarity = (torch.bmm(unit, unit.transpose(1, 2)) + 1.0) / 2.0
    return similarity / similarity.sum(dim=2, keepdim=True).clamp_min(EPS)


def grid_stride(height: int, width: int, max_samples: int) -> int:
    """Smallest stride s such that the grid [::s, ::s] of an H x W map holds at most `max_samples` positions."""
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    stride = max(1, math.floor(math.sqrt(height * width / max_samples)))
    while math.ceil(height / stride) * math.ceil(width / stride) > max_samples:
        stride += 1
    return stride


class PKTLoss(nn.Module):
    """PKT loss: L = mean(P_t * log((P_t + eps) / (P_s + eps))) with P = `pkt_probabilities`.

    Which vectors are the "samples" (the LSPKD paper applies PKT to feature maps without saying how):
    - samples="pixels" (default): per image, the C-dim feature vectors at spatial positions are the
      samples; positions are taken on a regular grid [::s, ::s] with the smallest stride s that keeps
      at most `max_samples` of them, so memory is B * max_samples^2 whatever H*W. Works with B = 1.
    - samples="images": the flattened C*H*W map of each image is one sample and the batch is the
      group (the original formulation over a batch; always 0 for B = 1).
    The mean runs over all G*N*N entries. Channel counts may differ; when spatial sizes differ the
    student map is bilinearly resized to the teacher's H x W first. Teacher detached.
    eps = 1e-7 guards the logarithm.
    """

    def __init__(self, samples: str = "pixels", max_samples: int = 1024, eps: float = 1e-7):
        super().__init__()
        if samples not in SAMPLE_MODES:
            raise ValueError(f"samples must be one of {SAMPLE_MODES}, got {samples!r}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.samples = samples
        self.max_samples = int(max_samples)
        self.eps = float(eps)

    def _vectors(self, features: torch.Tensor) -> torch.Tensor:
        if self.samples == "images":
            return features.flatten(1).unsqueeze(0)  # one group of B samples
        stride = grid_stride(features.shape[2], features.shape[3], self.max_samples)
        return features[:, :, ::stride, ::stride].flatten(2).transpose(1, 2)  # [B, N, C]

    def forward(self, teacher_features: torch.Tensor, student_features: torch.Tensor) -> torch.Tensor:
        """PKT loss (scalar)."""
        check_feature_map(teacher_features, "teacher features")
        check_feature_map(student_features, "student features")
        check_same_batch(teacher_features, student_features)
        student = resize_to(student_features, tuple(teacher_features.shape[-2:]))
        with torch.no_grad():
            teacher_probability = pkt_probabilities(self._vectors(teacher_features.detach()))
        student_probability = pkt_probabilities(self._vectors(student))
        ratio = (teacher_probability + self.eps) / (student_probability + self.eps)
        return (teacher_probability * torch.log(ratio)).mean()
