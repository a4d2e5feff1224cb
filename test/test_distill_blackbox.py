"""CDSPN black-box distillation loss and the on-disk teacher prediction cache."""
import json

import numpy as np
import pytest
import torch

from depth_completion_ros.distill import (
    BlackBoxDistillationLoss,
    TeacherCache,
    TeacherCacheError,
    depth_gradients,
)


def as_depth(rows):
    return torch.tensor(rows, dtype=torch.float32).view(1, 1, len(rows), len(rows[0]))


def test_black_box_loss_equals_hand_computed_value():
    student = as_depth([[1.0, 2.0], [3.0, 4.0]])
    teacher = as_depth([[1.0, 1.0], [1.0, 1.0]])
    ground_truth = as_depth([[0.0, 2.0], [5.0, 0.0]])
    # GT term over the 2 valid pixels: ((2-2)^2 + (3-5)^2) / 2 = 2.
    # Teacher depth term over all pixels: (0 + 1 + 4 + 9) / 4 = 3.5.
    # Gradients: student g_x = (1, 1), g_y = (2, 2); teacher's are 0 -> (1 + 1 + 4 + 4) / 4 = 2.5.
    loss, terms = BlackBoxDistillationLoss().forward_with_terms(student, teacher, ground_truth)
    assert terms["ground_truth_mse"].item() == pytest.approx(2.0)
    assert terms["teacher_depth_mse"].item() == pytest.approx(3.5)
    assert terms["teacher_gradient_mse"].item() == pytest.approx(2.5)
    assert loss.item() == pytest.approx(0.8 * 2.0 + 0.1 * 3.5 + 0.1 * 2.5)
    weighted = BlackBoxDistillationLoss(depth_weight=0.3, gradient_weight=0.0)(student, teacher, ground_truth)
    assert weighted.item() == pytest.approx(0.7 * 2.0 + 0.3 * 3.5)


def test_forward_differences_and_zero_loss_for_equal_depths():
    depth = as_depth([[1.0, 4.0, 9.0], [2.0, 2.0, 2.0]])
    g_x, g_y = depth_gradients(depth)
    torch.testing.assert_close(g_x, as_depth([[3.0, 5.0], [0.0, 0.0]]))
    torch.testing.assert_close(g_y, as_depth([[1.0, -2.0, -7.0]]))
    assert BlackBoxDistillationLoss()(depth, depth.clone(), depth.clone()).item() == 0.0


def test_black_box_gradients_reach_student_only_and_bad_weights_raise():
    teacher = (torch.rand(2, 1, 5, 6) * 10).requires_grad_(True)
    student = (torch.rand(2, 1, 5, 6) * 10).requires_grad_(True)
    BlackBoxDistillationLoss()(student, teacher, torch.rand(2, 1, 5, 6)).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="sum <= 1"):
        BlackBoxDistillationLoss(0.6, 0.6)
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        BlackBoxDistillationLoss()(torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3))


class CountingTeacher:
    """A small fixed convolutional teacher that counts how often each sample reaches it."""

    def __init__(self):
        torch.manual_seed(0)
        self.network = torch.nn.Conv2d(4, 1, 3, padding=1)
        self.samples_seen = 0

    def __call__(self, rgb, sparse):
        self.samples_seen += rgb.shape[0]
        return torch.nn.functional.softplus(self.network(torch.cat([rgb, sparse], 1))) * 20


def make_dataset(count=6, height=5, width=7):
    generator = torch.Generator().manual_seed(1)
    names = [f"2011_09_26_drive_0001_sync/image_02/{i:010d}" for i in range(count)]
    rgb = torch.rand(count, 3, height, width, generator=generator)
    sparse = torch.rand(count, 1, height, width, generator=generator) * 50
    return names, rgb, sparse


def test_cache_runs_teacher_once_per_name_over_two_epochs(tmp_path):
    names, rgb, sparse = make_dataset()
    teacher = CountingTeacher()
    cache = TeacherCache(tmp_path / "cache", teacher, teacher_id="teacher-a")
    first_epoch = {}
    for batch in ([0, 1, 2], [3, 4, 5]):
        depth = cache.get([names[i] for i in batch], rgb[batch], sparse[batch])
        assert depth.shape == (3, 1, 5, 7) and depth.dtype == torch.float32
        first_epoch.update({names[i]: depth[k] for k, i in enumerate(batch)})
    assert teacher.samples_seen == 6
    # Second epoch, other batching and order, and a fresh cache object on the same directory.
    cache = TeacherCache(tmp_path / "cache", teacher, teacher_id="teacher-a")
    for batch in ([5, 0], [2, 4, 1, 3]):
        depth = cache.get([names[i] for i in batch], rgb[batch], sparse[batch])
        for k, i in enumerate(batch):
            assert torch.equal(depth[k], first_epoch[names[i]])
    assert teacher.samples_seen == 6
    assert (cache.hits, cache.misses) == (6, 0)
    # uint16 storage keeps the KITTI quantisation: within half a 1/256 m step of the teacher.
    with torch.no_grad():
        exact = teacher(rgb, sparse)
    stacked = torch.stack([first_epoch[name] for name in names])
    assert (stacked - exact).abs().max().item() <= 0.5 / 256 + 1e-6


def test_float32_storage_returns_the_teacher_output_exactly(tmp_path):
    names, rgb, sparse = make_dataset(count=2)
    teacher = CountingTeacher()
    cache = TeacherCache(tmp_path, teacher, teacher_id="teacher-a", storage="float32")
    depth = cache.get(names, rgb, sparse)
    with torch.no_grad():
        assert torch.equal(depth, teacher(rgb, sparse))


def test_corrupt_missing_or_resized_entries_are_recomputed(tmp_path):
    names, rgb, sparse = make_dataset(count=3)
    teacher = CountingTeacher()
    cache = TeacherCache(tmp_path, teacher, teacher_id="teacher-a")
    reference = cache.get(names, rgb, sparse)
    cache.path_for(names[0]).write_bytes(b"not a numpy file")
    cache.path_for(names[1]).unlink()
    again = cache.get(names, rgb, sparse)
    assert teacher.samples_seen == 3 + 2
    assert torch.equal(again, reference)
    # The same name at another input size is a stale entry: recomputed at the new size.
    small = cache.get(names[2:], rgb[2:, :, :4, :6], sparse[2:, :, :4, :6])
    assert small.shape == (1, 1, 4, 6) and teacher.samples_seen == 6
    assert np.load(cache.path_for(names[2])).shape == (4, 6)


def test_cache_refuses_another_teachers_directory(tmp_path):
    TeacherCache(tmp_path, CountingTeacher(), teacher_id="teacher-a")
    assert json.loads((tmp_path / "teacher.json").read_text())["teacher_id"] == "teacher-a"
    with pytest.raises(TeacherCacheError, match="caches teacher 'teacher-a', not 'teacher-b'"):
        TeacherCache(tmp_path, CountingTeacher(), teacher_id="teacher-b")
    with pytest.raises(TeacherCacheError, match="stores 'uint16'"):
        TeacherCache(tmp_path, CountingTeacher(), teacher_id="teacher-a", storage="float32")
    assert issubclass(TeacherCacheError, ValueError)


def test_cache_rejects_bad_arguments_and_teacher_outputs(tmp_path):
    names, rgb, sparse = make_dataset(count=2)
    cache = TeacherCache(tmp_path, lambda rgb, sparse: torch.zeros(rgb.shape[0], 2, 5, 7), teacher_id="bad")
    with pytest.raises(ValueError, match=r"teacher must return depth of shape \(2, 1, 5, 7\)"):
        cache.get(names, rgb, sparse)
    with pytest.raises(ValueError, match="one per name"):
        cache.get(names[:1], rgb, sparse)
    with pytest.raises(ValueError, match="storage must be one of"):
        TeacherCache(tmp_path / "other", CountingTeacher(), teacher_id="a", storage="float16")
    # Distinct names that sanitise to the same text still get distinct files.
    assert cache.path_for("a/b") != cache.path_for("a_b")
