"""LSPKD: local similarity against a brute-force loop, border mask, memory structure, gradients."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from depth_completion_ros.distill import (
    NEIGHBOUR_OFFSETS,
    LocalSimilarityLoss,
    LSPKDLoss,
    local_similarity,
)


def brute_force_similarity(features: torch.Tensor):
    """S and validity by explicit loops over images, pixels and neighbours (float64)."""
    array = features.detach().double().numpy()
    batch, _, height, width = array.shape
    similarity = np.zeros((batch, 8, height, width))
    valid = np.zeros((1, 8, height, width), dtype=bool)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                reference = array[b, :, y, x] / max(np.linalg.norm(array[b, :, y, x]), 1e-8)
                for j, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < height and 0 <= nx < width:
                        other = array[b, :, ny, nx] / max(np.linalg.norm(array[b, :, ny, nx]), 1e-8)
                        similarity[b, j, y, x] = reference @ other
                        valid[0, j, y, x] = True
    return similarity, valid


def brute_force_similarity_loss(teacher, student):
    s_t, valid = brute_force_similarity(teacher)
    s_s, _ = brute_force_similarity(student)
    return ((s_t - s_s) ** 2)[np.broadcast_to(valid, s_t.shape)].mean()


def test_local_similarity_matches_brute_force_including_border_mask():
    features = torch.randn(2, 5, 4, 6, generator=torch.Generator().manual_seed(0))
    similarity, valid = local_similarity(features)
    assert similarity.shape == (2, 8, 4, 6)
    assert valid.shape == (1, 8, 4, 6) and valid.dtype == torch.bool
    expected, expected_valid = brute_force_similarity(features)
    np.testing.assert_array_equal(valid.numpy(), expected_valid)
    np.testing.assert_allclose(similarity.double().numpy(), expected, atol=1e-6)
    # Corners have 3 in-map neighbours, edge pixels 5, inner pixels 8.
    counts = valid[0].sum(dim=0)
    assert counts[0, 0] == 3 and counts[0, 2] == 5 and counts[2, 3] == 8


def test_local_similarity_is_independent_of_channel_count_and_scale():
    generator = torch.Generator().manual_seed(1)
    for channels in (1, 3, 64):
        similarity, _ = local_similarity(torch.randn(1, channels, 3, 3, generator=generator))
        assert similarity.shape == (1, 8, 3, 3)
    features = torch.randn(1, 4, 5, 5, generator=generator)
    scale = torch.rand(1, 1, 5, 5, generator=generator) + 0.5  # positive per-pixel scale: same cosines
    torch.testing.assert_close(local_similarity(features)[0], local_similarity(features * scale)[0])


def test_similarity_loss_matches_brute_force_on_a_batch_of_eight():
    generator = torch.Generator().manual_seed(2)
    teacher = torch.randn(8, 16, 7, 9, generator=generator)
    student = torch.randn(8, 12, 7, 9, generator=generator)
    loss = LocalSimilarityLoss()(teacher, student)
    assert loss.item() == pytest.approx(brute_force_similarity_loss(teacher, student), rel=1e-5)


class _LargestTensorProbe(TorchDispatchMode):
    """Records the largest tensor any operator produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for item in result if isinstance(result, (tuple, list)) else (result,):
            if isinstance(item, torch.Tensor):
                self.largest = max(self.largest, item.numel())
        return result


def _largest_tensor_in_loss_and_backward(loss_fn, teacher, student):
    student = student.clone().requires_grad_(True)
    with _LargestTensorProbe() as probe:
        loss_fn(teacher, student).backward()
    return probe.largest


def test_lspkd_never_builds_a_nine_times_channel_tensor():
    batch, channels, height, width = 2, 16, 20, 24
    generator = torch.Generator().manual_seed(3)
    teacher = torch.randn(batch, channels, height, width, generator=generator)
    student = torch.randn(batch, channels, height, width, generator=generator)
    feature_map = batch * channels * height * width
    largest = _largest_tensor_in_loss_and_backward(LSPKDLoss(channels, channels), teacher, student)
    assert largest <= feature_map

    # The probe does see an unfold-based computation of the same similarities.
    def unfold_similarity_loss(t, s):
        def similarity(x):
            f = F.normalize(x, dim=1)
            patches = F.unfold(f, 3, padding=1).view(x.shape[0], x.shape[1], 9, -1)
            return (patches * f.flatten(2).unsqueeze(2)).sum(1)
        return (similarity(t) - similarity(s)).square().mean()

    assert _largest_tensor_in_loss_and_backward(unfold_similarity_loss, teacher, student) >= 9 * feature_map


def test_losses_are_zero_for_equal_features_and_identity_adapter():
    features = torch.randn(2, 6, 5, 7, generator=torch.Generator().manual_seed(4))
    assert LocalSimilarityLoss()(features, features.clone()).item() == 0.0
    loss = LSPKDLoss(6, 6)
    with torch.no_grad():
        loss.adapter.weight.copy_(torch.eye(6).view(6, 6, 1, 1))
        loss.adapter.bias.zero_()
    total, terms = loss.forward_with_terms(features, features.clone())
    assert total.item() == pytest.approx(0.0, abs=1e-12)
    assert set(terms) == {"feature", "similarity"}
    # A different student gives a positive loss.
    assert loss(features, features.flip(-1)).item() > 1e-3


def test_lspkd_total_is_feature_term_plus_weighted_similarity():
    generator = torch.Generator().manual_seed(5)
    teacher = torch.randn(2, 8, 6, 6, generator=generator)
    student = torch.randn(2, 4, 6, 6, generator=generator)
    loss = LSPKDLoss(8, 4, similarity_weight=0.5)
    total, terms = loss.forward_with_terms(teacher, student)
    expected_feature = F.mse_loss(loss.adapter(student), teacher)
    torch.testing.assert_close(terms["feature"], expected_feature)
    assert terms["similarity"].item() == pytest.approx(brute_force_similarity_loss(teacher, student), rel=1e-5)
    torch.testing.assert_close(total, terms["feature"] + 0.5 * terms["similarity"])


def test_gradients_reach_student_and_adapter_but_not_teacher():
    generator = torch.Generator().manual_seed(6)
    teacher_net = torch.nn.Conv2d(3, 8, 3, padding=1)
    student_net = torch.nn.Conv2d(3, 4, 3, padding=1)
    image = torch.randn(2, 3, 6, 7, generator=generator)
    teacher_features = teacher_net(image)
    student_features = student_net(image)
    loss_module = LSPKDLoss(8, 4)
    loss_module(teacher_features, student_features).backward()
    assert all(p.grad is None for p in teacher_net.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student_net.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss_module.parameters())


def test_student_of_another_size_is_resized_bilinearly_to_the_teacher():
    generator = torch.Generator().manual_seed(7)
    teacher = torch.randn(1, 8, 8, 10, generator=generator)
    student = torch.randn(1, 4, 4, 5, generator=generator)
    loss = LSPKDLoss(8, 4)
    total, terms = loss.forward_with_terms(teacher, student)
    resized = F.interpolate(student, size=(8, 10), mode="bilinear", align_corners=False)
    torch.testing.assert_close(terms["similarity"], LocalSimilarityLoss()(teacher, resized))
    torch.testing.assert_close(terms["feature"], F.mse_loss(loss.adapter(resized), teacher))


def test_bad_inputs_raise_value_errors_that_name_the_problem():
    loss = LSPKDLoss(8, 4)
    with pytest.raises(ValueError, match="student features has 3 channels"):
        loss(torch.randn(1, 8, 4, 4), torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        local_similarity(torch.randn(4, 4, 4))
    with pytest.raises(ValueError, match="batch sizes differ"):
        loss(torch.randn(2, 8, 4, 4), torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="positive integer"):
        LSPKDLoss(8, 0)


def test_zero_features_and_half_precision_give_finite_similarities():
    features = torch.randn(1, 4, 4, 5, generator=torch.Generator().manual_seed(8))
    features[:, :, 1, 2] = 0.0  # a dead pixel has no direction: similarity 0, not NaN
    similarity, _ = local_similarity(features)
    assert torch.isfinite(similarity).all() and similarity[0, :, 1, 2].abs().max() == 0
    half, _ = local_similarity(features.half())
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    torch.testing.assert_close(half, similarity, atol=2e-3, rtol=0)


def test_external_adapter_is_used_but_not_owned():
    generator = torch.Generator().manual_seed(9)
    teacher = torch.randn(2, 8, 5, 6, generator=generator)
    student = torch.randn(2, 4, 5, 6, generator=generator)
    external = torch.nn.Conv2d(4, 8, 1, bias=False)
    loss = LSPKDLoss(8, 4, adapter=external)
    assert loss.adapter is None and list(loss.parameters()) == []
    owned = LSPKDLoss(8, 4)
    with torch.no_grad():
        owned.adapter.weight.copy_(external.weight)
        owned.adapter.bias.zero_()
    value = loss(teacher, student)
    torch.testing.assert_close(value, owned(teacher, student))
    value.backward()
    assert external.weight.grad is not None and external.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="adapted student features has 6 channels"):
        LSPKDLoss(8, 4, adapter=torch.nn.Conv2d(4, 6, 1))(teacher, student)
