"""Prediction distillation, the LSPKD objective and the layer-pair feature distiller."""
import pytest
import torch
from torch import nn

from depth_completion_ros.distill import (
    DEFAULT_LAYERS,
    FeatureDistiller,
    LayerPair,
    LSPKDLoss,
    LSPKDObjective,
    PredictionDistillationLoss,
    layer_pairs,
    masked_l1,
    probe_feature_channels,
    student_adapters,
)


class TinyEncoderDecoder(nn.Module):
    """A small real network following the models contract, with features E0..E4 and D0..D4."""

    def __init__(self, width: int):
        super().__init__()
        self.encoder = nn.ModuleList(
            [nn.Conv2d(4 if i == 0 else width * i, width * (i + 1), 3, stride=2 if i else 1, padding=1)
             for i in range(5)])
        self.decoder = nn.ModuleList(
            [nn.Conv2d(width * (5 - i), width * (4 - i) if i < 4 else width, 3, padding=1) for i in range(5)])
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, rgb, sparse, return_features=False):
        x = torch.cat([rgb, sparse], dim=1)
        features = {}
        for i, layer in enumerate(self.encoder):
            x = torch.relu(layer(x))
            features[f"E{i}"] = x
        for i, layer in enumerate(self.decoder):
            x = torch.relu(layer(x))
            features[f"D{i}"] = x
        depth = nn.functional.interpolate(self.head(x), size=rgb.shape[-2:], mode="bilinear", align_corners=False)
        return (depth, features) if return_features else depth


def test_masked_l1_and_prediction_loss_equal_hand_computed_values():
    student = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    teacher = torch.tensor([[1.5, 2.0], [1.0, 4.0]]).view(1, 1, 2, 2)
    ground_truth = torch.tensor([[0.0, 1.0], [5.0, 0.0]]).view(1, 1, 2, 2)
    # GT pixels: |2 - 1| = 1 and |3 - 5| = 2 -> 1.5. Teacher over all pixels: (0.5 + 0 + 2 + 0) / 4.
    assert masked_l1(student, ground_truth).item() == pytest.approx(1.5)
    loss, terms = PredictionDistillationLoss(teacher_weight=2.0).forward_with_terms(student, teacher, ground_truth)
    assert terms["teacher_l1"].item() == pytest.approx(0.625)
    assert loss.item() == pytest.approx(1.5 + 2.0 * 0.625)
    # No ground truth at all: the masked term is 0, not NaN.
    assert masked_l1(student, torch.zeros_like(student)).item() == 0.0


def test_prediction_loss_zero_for_perfect_student_and_teacher_gets_no_gradient():
    depth = torch.rand(2, 1, 4, 5) * 50 + 1
    assert PredictionDistillationLoss()(depth, depth.clone(), depth.clone()).item() == 0.0
    teacher = depth.clone().requires_grad_(True)
    student = (depth + 1).requires_grad_(True)
    PredictionDistillationLoss()(student, teacher, depth).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shapes differ"):
        PredictionDistillationLoss()(depth, depth[:, :, :3], depth)


def test_feature_distiller_sums_methods_over_layer_pairs_with_weights():
    generator = torch.Generator().manual_seed(0)
    teacher = {"E2": torch.randn(2, 8, 6, 6, generator=generator), "D2": torch.randn(2, 6, 12, 12, generator=generator)}
    student = {"E2": torch.randn(2, 4, 6, 6, generator=generator), "D2": torch.randn(2, 3, 12, 12, generator=generator)}
    pairs = [("E2", "E2", 8, 4), LayerPair("D2", "D2", 6, 3)]
    distiller = FeatureDistiller(pairs, method=["lspkd", "att", "pkt", "sp"], method_weights={"att": 10.0},
                                 pkt_max_samples=16)
    total, terms = distiller(teacher, student)
    per_pair = [terms[f"{m}/{p}"] for m in ("lspkd", "pkt", "sp") for p in ("E2-E2", "D2-D2")]
    expected = sum(per_pair) + 10.0 * (terms["att/E2-E2"] + terms["att/D2-D2"])
    torch.testing.assert_close(total.detach(), expected)
    assert "lspkd/E2-E2/similarity" in terms and "lspkd/D2-D2/feature" in terms
    # The LSPKD term for one pair is what a stand-alone LSPKD loss with the same adapter gives.
    standalone = LSPKDLoss(8, 4)
    standalone.load_state_dict(distiller.losses["lspkd_0"].state_dict())
    torch.testing.assert_close(terms["lspkd/E2-E2"], standalone(teacher["E2"], student["E2"]).detach())
    assert all(not value.requires_grad for value in terms.values())


def test_feature_distiller_is_zero_for_equal_features_with_every_method():
    generator = torch.Generator().manual_seed(1)
    features = {"E2": torch.randn(2, 4, 5, 5, generator=generator), "D2": torch.randn(2, 4, 5, 5, generator=generator)}
    distiller = FeatureDistiller(layer_pairs({"E2": 4, "D2": 4}, {"E2": 4, "D2": 4}),
                                 method=["lspkd", "spkd", "att", "pkt", "sp"])
    for name, module in distiller.losses.items():
        if name.startswith("lspkd"):
            with torch.no_grad():
                module.adapter.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
                module.adapter.bias.zero_()
    total, _ = distiller(features, {k: v.clone() for k, v in features.items()})
    assert total.item() == pytest.approx(0.0, abs=1e-9)


def test_distiller_for_models_uses_default_mid_level_layers_and_trains_adapters():
    assert DEFAULT_LAYERS == ("E2", "D2")
    torch.manual_seed(2)
    teacher, student = TinyEncoderDecoder(8), TinyEncoderDecoder(4)
    assert probe_feature_channels(teacher) == {
        "E0": 8, "E1": 16, "E2": 24, "E3": 32, "E4": 40, "D0": 32, "D1": 24, "D2": 16, "D3": 8, "D4": 8}
    objective = LSPKDObjective(FeatureDistiller.for_models(teacher, student), teacher_weight=1.0, feature_weight=0.1)
    assert [p.label for p in objective.feature_distiller.pairs] == ["E2-E2", "D2-D2"]
    rgb, sparse = torch.rand(2, 3, 16, 20), torch.rand(2, 1, 16, 20) * 10
    ground_truth = torch.where(torch.rand(2, 1, 16, 20) > 0.5, torch.rand(2, 1, 16, 20) * 30, torch.zeros(1))
    teacher_depth, teacher_features = teacher(rgb, sparse, return_features=True)
    student_depth, student_features = student(rgb, sparse, return_features=True)
    total, terms = objective(student_depth, teacher_depth, ground_truth, teacher_features, student_features)
    torch.testing.assert_close(total.detach(), terms["pred"] + 0.1 * terms["feat"])
    total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in objective.parameters())


def test_feature_distiller_rejects_bad_configuration_and_missing_layers():
    with pytest.raises(ValueError, match="unknown distillation method 'fitnet'"):
        FeatureDistiller([("E2", "E2", 4, 4)], method="fitnet")
    with pytest.raises(ValueError, match="at least one layer pair"):
        FeatureDistiller([])
    with pytest.raises(ValueError, match="positive integer"):
        FeatureDistiller([("E2", "E2", 0, 4)])
    with pytest.raises(ValueError, match="student has no feature layer 'D2'"):
        layer_pairs({"E2": 4, "D2": 4}, {"E2": 4})
    distiller = FeatureDistiller([("E2", "E1", 4, 4)])
    with pytest.raises(ValueError, match="student features have no layer 'E1'"):
        distiller({"E2": torch.randn(1, 4, 3, 3)}, {"E2": torch.randn(1, 4, 3, 3)})
    with pytest.raises(ValueError, match="pass teacher_features and student_features"):
        LSPKDObjective(distiller)(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))


def test_distiller_on_the_registered_lspkd_networks_uses_student_adapters_and_reduces_its_loss():
    from depth_completion_ros.models import build_model

    torch.manual_seed(3)
    # A quarter-width teacher and an NYU student whose adapters map to that width keep the test fast.
    teacher = build_model("lspkd_teacher", width=0.25).eval()
    student = build_model("lspkd_student_nyu", adapter_width=0.25).eval()
    distiller = FeatureDistiller.for_models(teacher, student, probe_size=(16, 32))
    assert [(p.teacher_channels, p.student_channels) for p in distiller.pairs] == [(64, 32), (16, 8)]
    # E2 borrows the student's own phi; D2 (no student adapter) gets one owned by the distiller.
    assert student_adapters(student, distiller.pairs) == {"E2": student.adapters["E2"]}
    assert distiller.losses["lspkd_0"].adapter is None
    assert distiller.losses["lspkd_1"].adapter is not None
    assert {id(p) for p in distiller.parameters()}.isdisjoint(id(p) for p in student.parameters())
    rgb, sparse = torch.rand(2, 3, 16, 32), torch.rand(2, 1, 16, 32) * 5
    with torch.no_grad():
        _, teacher_features = teacher(rgb, sparse, return_features=True)
    optimiser = torch.optim.SGD([*student.parameters(), *distiller.parameters()], lr=0.05)

    def feature_loss():
        _, student_features = student(rgb, sparse, return_features=True)
        return distiller(teacher_features, student_features)[0]

    before = feature_loss()
    optimiser.zero_grad()
    before.backward()
    assert student.adapters["E2"].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    optimiser.step()
    with torch.no_grad():
        after = feature_loss()
    assert torch.isfinite(before) and after.item() < before.item()
