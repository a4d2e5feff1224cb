"""Global SPKD (spatial/channel/batch similarity) and Tung & Mori's batch-wise SP."""
import math

import pytest
import torch
import torch.nn.functional as F

from depth_completion_ros.distill import (
    BatchSimilarityLoss,
    GlobalSimilarityLoss,
    channel_similarity,
    spatial_similarity,
)


def test_spatial_similarity_is_hw_by_hw_cosine_matrix():
    features = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(0))
    matrix = spatial_similarity(features)
    assert matrix.shape == (2, 12, 12)
    # Entry (p, q) is the cosine between positions p and q in row-major order.
    p, q = 1 * 4 + 2, 2 * 4 + 0
    expected = F.cosine_similarity(features[1, :, 1, 2], features[1, :, 2, 0], dim=0)
    torch.testing.assert_close(matrix[1, p, q], expected)
    torch.testing.assert_close(torch.diagonal(matrix, dim1=1, dim2=2), torch.ones(2, 12))


def test_channel_similarity_is_cosine_between_channel_maps():
    features = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    matrix = channel_similarity(features)
    assert matrix.shape == (1, 3, 3)
    expected = F.cosine_similarity(features[0, 0].flatten(), features[0, 2].flatten(), dim=0)
    torch.testing.assert_close(matrix[0, 0, 2], expected)


def test_global_loss_is_zero_for_equal_features_and_positive_otherwise():
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(3, 6, 4, 5, generator=generator)
    loss = GlobalSimilarityLoss(6, 6)
    assert loss.adapter is None
    total, terms = loss.forward_with_terms(features, features.clone())
    assert set(terms) == {"spatial", "channel", "batch"}
    assert total.item() == pytest.approx(0.0, abs=1e-10)
    assert loss(features, torch.randn(3, 6, 4, 5, generator=generator)).item() > 1e-3


def test_global_loss_terms_follow_their_definitions_with_an_adapter():
    generator = torch.Generator().manual_seed(3)
    teacher = torch.randn(2, 8, 3, 3, generator=generator)
    student = torch.randn(2, 4, 3, 3, generator=generator)
    loss = GlobalSimilarityLoss(8, 4, spatial_weight=2.0, channel_weight=0.5, batch_weight=0.0)
    assert loss.adapter is not None
    total, terms = loss.forward_with_terms(teacher, student)
    assert set(terms) == {"spatial", "channel"}
    torch.testing.assert_close(terms["spatial"], F.mse_loss(spatial_similarity(student), spatial_similarity(teacher)))
    torch.testing.assert_close(
        terms["channel"], F.mse_loss(channel_similarity(loss.adapter(student)), channel_similarity(teacher)))
    torch.testing.assert_close(total, 2.0 * terms["spatial"] + 0.5 * terms["channel"])


def test_global_loss_gradients_reach_student_and_adapter_only():
    generator = torch.Generator().manual_seed(4)
    teacher = torch.randn(2, 8, 3, 4, generator=generator, requires_grad=True)
    student = torch.randn(2, 4, 3, 4, generator=generator, requires_grad=True)
    loss = GlobalSimilarityLoss(8, 4)
    loss(teacher, student).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())


def test_batch_similarity_loss_equals_hand_computed_value():
    # Teacher rows a = (1, 0), b = (1, 1): F F^T = [[1, 1], [1, 2]], rows normalised.
    teacher = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(2, 2, 1, 1)
    # Student rows (1, 0), (0, 1): F F^T = I.
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 1, 1, 2)
    expected = ((1 / math.sqrt(2) - 1) ** 2 + (1 / math.sqrt(2)) ** 2
                + (1 / math.sqrt(5)) ** 2 + (2 / math.sqrt(5) - 1) ** 2) / 4
    assert BatchSimilarityLoss()(teacher, student).item() == pytest.approx(expected, rel=1e-6)
    assert BatchSimilarityLoss()(teacher, teacher.clone()).item() == 0.0


def test_spkd_bad_inputs_raise():
    with pytest.raises(ValueError, match="teacher features has 6 channels"):
        GlobalSimilarityLoss(8, 4)(torch.randn(1, 6, 3, 3), torch.randn(1, 4, 3, 3))
    with pytest.raises(ValueError, match="spatial_weight"):
        GlobalSimilarityLoss(8, 4, spatial_weight=-1)
