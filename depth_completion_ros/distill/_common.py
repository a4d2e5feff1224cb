"""Shared checks and small tensor helpers for the distillation losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Guards divisions by a norm or a count; small enough not to move any real feature.
EPS = 1e-8


def check_feature_map(tensor: torch.Tensor, what: str) -> None:
    """Raise ValueError unless `tensor` is a floating-point [B, C, H, W] tensor with no empty dimension."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 4:
        raise ValueError(f"{what} must have shape [B, C, H, W], got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got {tensor.dtype}")
    if min(tensor.shape) == 0:
        raise ValueError(f"{what} has an empty dimension: {tuple(tensor.shape)}")


def check_same_batch(teacher: torch.Tensor, student: torch.Tensor) -> None:
    """Raise ValueError when teacher and student feature maps come from different batch sizes."""
    if teacher.shape[0] != student.shape[0]:
        raise ValueError(
            f"teacher and student batch sizes differ: {teacher.shape[0]} vs {student.shape[0]}"
        )


def check_channels(tensor: torch.Tensor, expected: int, what: str) -> None:
    """Raise ValueError when a feature map does not have the channel count a loss was built for."""
    if tensor.shape[1] != expected:
        raise ValueError(f"{what} has {tensor.shape[1]} channels, the loss was built for {expected}")


def check_feature_pair(teacher: torch.Tensor, student: torch.Tensor, teacher_channels: int,
                       student_channels: int) -> None:
    """The checks of a loss built for fixed channel counts: both [B, C, H, W], one batch, right channels."""
    check_feature_map(teacher, "teacher features")
    check_feature_map(student, "student features")
    check_same_batch(teacher, student)
    check_channels(teacher, teacher_channels, "teacher features")
    check_channels(student, student_channels, "student features")


def resize_to(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a [B, C, H, W] map to `size` = (H, W); returned unchanged when it already fits."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)


def check_depth_pair(first: torch.Tensor, second: torch.Tensor, first_name: str, second_name: str) -> None:
    """Raise ValueError unless both depth maps are floating [B, 1, H, W] tensors of one shape."""
    for tensor, name in ((first, first_name), (second, second_name)):
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4 or tensor.shape[1] != 1:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{name} must be a depth tensor [B, 1, H, W], got {shape}")
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
    if first.shape != second.shape:
        raise ValueError(
            f"{first_name} and {second_name} shapes differ: {tuple(first.shape)} vs {tuple(second.shape)}"
        )


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the entries where `mask` is true; 0 (still differentiable) when none is."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)
