"""The anchor objective (distillation.type anchor): ground truth where there is some, the starting model elsewhere."""
import pytest
import torch

from depth_completion_ros.training.config import ConfigError, DistillationConfig, LossConfig, TrainConfig
from depth_completion_ros.training.losses import AnchoredCriterion, build_criterion


def test_the_anchor_pulls_only_the_pixels_without_ground_truth():
    ground_truth = torch.zeros(1, 1, 2, 2)
    ground_truth[0, 0, 0, 0] = 10.0
    teacher = torch.full((1, 1, 2, 2), 5.0)
    student = torch.tensor([[[[11.0, 6.0], [5.0, 3.0]]]], requires_grad=True)
    criterion = build_criterion(LossConfig(), DistillationConfig(type="anchor", teacher="t.pt", anchor_weight=0.5))
    assert isinstance(criterion, AnchoredCriterion)
    loss, terms = criterion(student, ground_truth, teacher)
    # L1 on the one ground-truth pixel (|11 - 10| = 1) + 0.5 * mean L1 to the teacher on the other three
    assert terms["gt_l1"].item() == pytest.approx(1.0)
    assert terms["anchor_l1"].item() == pytest.approx((1.0 + 0.0 + 2.0) / 3)
    assert loss.item() == pytest.approx(1.0 + 0.5 * 1.0)
    loss.backward()
    assert student.grad[0, 0, 0, 0] == pytest.approx(1.0)  # the ground-truth pixel ignores the teacher
    assert student.grad[0, 0, 1, 0] == 0.0 and student.grad[0, 0, 1, 1] < 0  # equal to the teacher / below it


def test_anchor_configuration():
    config = TrainConfig.from_dict({"model": {"name": "cdspn_x32"}, "schedule": {"epochs": 1},
                                    "distillation": {"type": "anchor", "teacher": "start.pt", "anchor_weight": 2}})
    assert config.distillation.anchor_weight == 2.0
    assert TrainConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    with pytest.raises(ConfigError, match="teacher"):
        DistillationConfig.parse({"type": "anchor"})
    with pytest.raises(ConfigError, match="does not apply"):
        DistillationConfig.parse({"type": "anchor", "teacher": "t.pt", "depth_weight": 0.1})
    with pytest.raises(ConfigError, match="does not apply"):
        DistillationConfig.parse({"type": "blackbox", "teacher": "t.pt", "anchor_weight": 1.0})
