"""Attention transfer and probabilistic knowledge transfer on hand-computed tiny arrays."""
import math

import pytest
import torch

from depth_completion_ros.distill import AttentionTransferLoss, PKTLoss, attention_map, pkt_probabilities
from depth_completion_ros.distill.pkt import grid_stride


def test_attention_loss_equals_hand_computed_value():
    # Teacher: channel 0 = (1, 2), channel 1 = (3, 0) -> mean of squares (5, 2) -> (5, 2) / sqrt(29).
    teacher = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    # Student (one channel, negative values count by magnitude): (-2, 1) -> (4, 1) / sqrt(17).
    student = torch.tensor([[[[-2.0, 1.0]]]])
    a_t = [5 / math.sqrt(29), 2 / math.sqrt(29)]
    a_s = [4 / math.sqrt(17), 1 / math.sqrt(17)]
    expected = ((a_t[0] - a_s[0]) ** 2 + (a_t[1] - a_s[1]) ** 2) / 2
    assert AttentionTransferLoss()(teacher, student).item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(attention_map(teacher), torch.tensor([a_t]))


def test_attention_loss_zero_for_equal_features_and_resizes_student_map():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 4, 6, 8, generator=generator)
    assert AttentionTransferLoss()(features, features.clone()).item() == pytest.approx(0.0, abs=1e-12)
    # A constant student map of another size and channel count gives a uniform attention map.
    teacher = torch.ones(1, 3, 4, 4)
    student = torch.full((1, 7, 2, 2), 2.0)
    assert AttentionTransferLoss()(teacher, student).item() == pytest.approx(0.0, abs=1e-12)


def test_attention_gradients_reach_student_only():
    generator = torch.Generator().manual_seed(1)
    teacher = torch.randn(2, 4, 5, 5, generator=generator, requires_grad=True)
    student = torch.randn(2, 2, 5, 5, generator=generator, requires_grad=True)
    AttentionTransferLoss()(teacher, student).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def _hand_pkt_loss():
    # Teacher samples (1, 0), (0, 1): cosines [[1, 0], [0, 1]] -> (s+1)/2 rows [1, .5] -> [2/3, 1/3].
    p_t = [[2 / 3, 1 / 3], [1 / 3, 2 / 3]]
    # Student samples (1, 0), (1, 1): cosine 1/sqrt(2) -> (s+1)/2 = c; rows [1, c] / (1 + c).
    c = (1 + 1 / math.sqrt(2)) / 2
    p_s = [[1 / (1 + c), c / (1 + c)], [c / (1 + c), 1 / (1 + c)]]
    eps = 1e-7
    return sum(p_t[i][k] * math.log((p_t[i][k] + eps) / (p_s[i][k] + eps))
               for i in range(2) for k in range(2)) / 4


def test_pkt_loss_equals_hand_computed_value_for_images_and_pixels():
    teacher_vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    student_vectors = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    expected = _hand_pkt_loss()
    # As images: two images, each a 2-channel 1x1 map.
    images = PKTLoss(samples="images")(teacher_vectors.view(2, 2, 1, 1), student_vectors.view(2, 2, 1, 1))
    assert images.item() == pytest.approx(expected, rel=1e-5)
    # As pixels: one image, two positions of a 2-channel map.
    pixels = PKTLoss(samples="pixels")(teacher_vectors.t().reshape(1, 2, 1, 2),
                                       student_vectors.t().reshape(1, 2, 1, 2))
    assert pixels.item() == pytest.approx(expected, rel=1e-5)


def test_pkt_probabilities_are_row_stochastic_and_loss_zero_for_equal_features():
    generator = torch.Generator().manual_seed(2)
    probabilities = pkt_probabilities(torch.randn(3, 10, 4, generator=generator))
    torch.testing.assert_close(probabilities.sum(dim=2), torch.ones(3, 10))
    assert (probabilities >= 0).all()
    features = torch.randn(2, 5, 9, 11, generator=generator)
    assert PKTLoss(max_samples=16)(features, features.clone()).item() == pytest.approx(0.0, abs=1e-9)


def test_pkt_subsamples_positions_on_a_grid_within_the_budget():
    for height, width, budget in ((9, 11, 16), (176, 608, 1024), (5, 5, 100), (1, 50, 7)):
        stride = grid_stride(height, width, budget)
        assert math.ceil(height / stride) * math.ceil(width / stride) <= budget
        if stride > 1:
            assert math.ceil(height / (stride - 1)) * math.ceil(width / (stride - 1)) > budget
    with pytest.raises(ValueError, match="samples must be one of"):
        PKTLoss(samples="rows")


def test_pkt_gradients_reach_student_only():
    generator = torch.Generator().manual_seed(3)
    teacher = torch.randn(2, 4, 6, 6, generator=generator, requires_grad=True)
    student = torch.randn(2, 3, 3, 3, generator=generator, requires_grad=True)
    PKTLoss(max_samples=9)(teacher, student).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
