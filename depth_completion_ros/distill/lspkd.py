"""Local similarity-preserving knowledge distillation (LSPKD, Jeong et al., Sensors 2022, sec. 2.3).

Each pixel of a channel-normalised feature map is compared with its 8 neighbours:

    S(x, y, j) = f(x, y) . f(x + dx_j, y + dy_j),   f = F / ||F||_2 over channels,  j = 1..8

so S has shape [B, 8, H, W] whatever the channel count C, and computing it costs memory in
H*W*(C + 8), not the (H*W)^2 of a global similarity matrix (see `spkd.GlobalSimilarityLoss`).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._common import EPS, check_channels, check_feature_map, check_feature_pair, check_same_batch, resize_to

# (dy, dx) of the 8 neighbours in row-major order; index j of S follows this order.
NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = (
    (-1, -1), (-1, 0), (-1, 1),
    (0, -1), (0, 1),
    (1, -1), (1, 0), (1, 1),
)


def _overlap(offset: int, size: int) -> tuple[int, int]:
    """Range [start, stop) of reference coordinates whose neighbour at `offset` lies inside [0, size)."""
    return max(0, -offset), size - max(0, offset)


def neighbour_mask(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean [1, 8, H, W]: true where the j-th neighbour of a pixel lies inside the H x W map."""
    mask = torch.zeros(1, len(NEIGHBOUR_OFFSETS), height, width, dtype=torch.bool, device=device)
    for j, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
        y0, y1 = _overlap(dy, height)
        x0, x1 = _overlap(dx, width)
        mask[:, j, y0:y1, x0:x1] = True
    return mask


def local_similarity(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarity of every pixel's feature vector to its 8 neighbours.

    Args:
        features: [B, C, H, W] feature map.
    Returns:
        (S, valid): S [B, 8, H, W] with S[:, j, y, x] = f(x, y) . f(x + dx_j, y + dy_j) for the
        channel-L2-normalised features f (neighbour order `NEIGHBOUR_OFFSETS`), and the boolean
        mask valid [1, 8, H, W] of neighbours inside the map. Where a neighbour falls outside the
        map S holds 0, which is no similarity: losses must exclude those entries with `valid`.

    The 8 planes are computed one at a time from two shifted views (slices) of the normalised map,
    multiplied and summed over channels, so no 9*C-channel unfolded tensor is ever built.
    """
    check_feature_map(features, "features")
    if features.dtype in (torch.float16, torch.bfloat16):
        features = features.float()  # half precision would round EPS to 0 and the dot products coarsely
    normalised = F.normalize(features, p=2.0, dim=1, eps=EPS)
    batch, _, height, width = normalised.shape
    similarity = normalised.new_zeros(batch, len(NEIGHBOUR_OFFSETS), height, width)
    for j, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
        y0, y1 = _overlap(dy, height)
        x0, x1 = _overlap(dx, width)
        if y0 >= y1 or x0 >= x1:  # a 1-pixel-high/wide map has no neighbour in this direction
            continue
        reference = normalised[:, :, y0:y1, x0:x1]
        neighbour = normalised[:, :, y0 + dy:y1 + dy, x0 + dx:x1 + dx]
        similarity[:, j, y0:y1, x0:x1] = (reference * neighbour).sum(dim=1)
    return similarity, neighbour_mask(height, width, device=features.device)


class LocalSimilarityLoss(nn.Module):
    """The local-similarity term of LSPKD alone: mean over valid entries of (S_t - S_s)^2.

    S is `local_similarity`; entries whose neighbour lies outside the map are excluded (not
    zero-padded into fake similarities), so the mean runs over B * (number of valid (j, y, x)).
    The student map is bilinearly resized to the teacher's H x W when they differ (S does not
    depend on channels, so no adapter is needed). The teacher is detached.
    """

    def forward(self, teacher_features: torch.Tensor, student_features: torch.Tensor) -> torch.Tensor:
        """Similarity loss between a teacher and a student feature map (any channel counts)."""
        check_feature_map(teacher_features, "teacher features")
        check_feature_map(student_features, "student features")
        check_same_batch(teacher_features, student_features)
        with torch.no_grad():
            teacher_similarity, valid = local_similarity(teacher_features.detach())
        student = resize_to(student_features, tuple(teacher_features.shape[-2:]))
        student_similarity, _ = local_similarity(student)
        squared = (teacher_similarity - student_similarity).square() * valid
        count = valid.sum() * teacher_features.shape[0]
        return squared.sum() / count.clamp_min(1)


class LSPKDLoss(nn.Module):
    """Full LSPKD loss of one teacher/student layer pair (the paper's L_LSPKD):

        L_LSPKD = ||F_t - phi(F_s)||^2 + lambda * ||S_t - S_s||^2

    with phi a 1x1 convolution from student to teacher channels, and S the
    8-neighbour `local_similarity` (S_s from the student's own features, which needs no phi).
    Reduction: both terms are means of squared differences, the feature term over B*C_t*H*W,
    the similarity term over the valid (in-map) neighbour entries. When the student map's size
    differs from the teacher's, phi(F_s) and F_s are bilinearly resized to the teacher's H x W.
    The teacher is detached: no gradient reaches the teacher or its parameters.

    phi: by default this module owns a new 1x1 convolution (with bias) as `self.adapter`, and the
    trainer must optimise the loss module's parameters together with the student. A network that
    carries its own phi (the LSPKD students' `adapters`) can pass it as `adapter`, any callable
    [B, C_s, H, W] -> [B, C_t, H, W] (e.g. `functools.partial(student.adapt, "E2")`); it is then
    not registered here, so its parameters stay the student's and are not counted twice.

    Default lambda = 1: both terms are means of squared differences of comparable magnitude and
    weigh the same; tune it per data set.
    """

    def __init__(self, teacher_channels: int, student_channels: int, similarity_weight: float = 1.0,
                 adapter: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        for name, value in (("teacher_channels", teacher_channels), ("student_channels", student_channels)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if similarity_weight < 0:
            raise ValueError(f"similarity_weight must be >= 0, got {similarity_weight}")
        self.student_channels = int(student_channels)
        self.teacher_channels = int(teacher_channels)
        self.similarity_weight = float(similarity_weight)
        if adapter is not None and not callable(adapter):
            raise ValueError(f"adapter must be callable (features -> features), got {type(adapter).__name__}")
        # A tuple attribute is not registered as a submodule: an external adapter's parameters
        # stay with their owner.
        self._external_adapter = (adapter,) if adapter is not None else None
        self.adapter = (nn.Conv2d(self.student_channels, self.teacher_channels, kernel_size=1)
                        if adapter is None else None)
        self.similarity = LocalSimilarityLoss()

    def adapt(self, student_features: torch.Tensor) -> torch.Tensor:
        """phi(F_s): the student features mapped to the teacher's channel count."""
        if self._external_adapter is not None:
            adapted = self._external_adapter[0](student_features)
            check_channels(adapted, self.teacher_channels, "adapted student features")
            return adapted
        return self.adapter(student_features)

    def forward_with_terms(
        self, teacher_features: torch.Tensor, student_features: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(weighted total, {"feature": unweighted term, "similarity": unweighted term})."""
        check_feature_pair(teacher_features, student_features, self.teacher_channels, self.student_channels)
        size = tuple(teacher_features.shape[-2:])
        adapted = resize_to(self.adapt(student_features), size)
        feature_term = F.mse_loss(adapted, teacher_features.detach())
        similarity_term = self.similarity(teacher_features, student_features)
        total = feature_term + self.similarity_weight * similarity_term
        return total, {"feature": feature_term, "similarity": similarity_term}

    def forward(self, teacher_features: torch.Tensor, student_features: torch.Tensor) -> torch.Tensor:
        """Weighted LSPKD loss (scalar)."""
        return self.forward_with_terms(teacher_features, student_features)[0]
