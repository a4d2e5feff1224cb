"""Parameter and FLOP counting against hand-computed values, and the `dcros models` table."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from depth_completion_ros import cli
from depth_completion_ros.models import build_model, describe_model, list_models
from depth_completion_ros.models.flops import count_flops, count_parameters


class RGBLayer(nn.Module):
    """A single layer applied to the RGB input, behind the models' (rgb, sparse) interface."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, rgb, sparse):
        return self.layer(rgb)


@pytest.mark.parametrize("groups,stride", [(1, 1), (3, 2)])
def test_conv2d_flops_equal_two_per_multiply_add(groups, stride):
    conv = nn.Conv2d(3, 12, kernel_size=3, stride=stride, padding=1, groups=groups)
    height, width = 20, 30
    out_h, out_w = -(-height // stride), -(-width // stride)
    expected = 2 * 3 * 12 * 3 * 3 * out_h * out_w // groups
    assert count_flops(RGBLayer(conv), height, width) == expected
    assert count_flops(RGBLayer(conv), height, width, batch_size=4) == 4 * expected


def test_transposed_conv_is_charged_per_input_pixel_or_per_output_pixel_on_request():
    deconv = nn.ConvTranspose2d(3, 8, kernel_size=3, stride=2, padding=1, output_padding=1)
    height, width = 10, 14
    per_pixel = 2 * 3 * 8 * 3 * 3
    model = RGBLayer(deconv)
    assert count_flops(model, height, width) == per_pixel * height * width
    assert count_flops(model, height, width, transposed_at_output=True) == per_pixel * (2 * height) * (2 * width)
    # The charging hooks are removed afterwards: a plain count is exact again.
    assert count_flops(model, height, width) == per_pixel * height * width


class DataDependent(nn.Module):
    """Branches on a value of its input (impossible on the meta device) and has BatchNorm."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, rgb, sparse):
        y = self.norm(self.conv(rgb))
        if sparse.sum() > 0:  # never true for the zero inputs: one conv only
            y = self.conv(rgb)
        return y


def test_data_dependent_model_falls_back_to_a_real_pass_without_side_effects():
    model = DataDependent().train()
    before = model.norm.running_mean.clone()
    assert count_flops(model, 5, 6) == 2 * 3 * 4 * 5 * 6
    assert model.training, "the model's training mode must be restored"
    assert torch.equal(model.norm.running_mean, before), "counting must not update BatchNorm statistics"


def test_parameter_count_matches_hand_count_shared_and_frozen_parameters():
    first = nn.Linear(5, 7)  # 5*7 + 7 = 42
    tied = nn.Linear(5, 7)
    tied.weight = first.weight  # a tied weight is counted once: only tied.bias (7) is new
    model = nn.Sequential(first, nn.ReLU(), nn.Linear(7, 5), tied)
    assert count_parameters(model) == 42 + (7 * 5 + 5) + 7
    model[2].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 42 + 7
    assert count_parameters(nn.BatchNorm2d(4)) == 8  # running statistics are buffers, not parameters


@pytest.mark.parametrize("height,width", [(0, 10), (10, -1), (2.5, 10)])
def test_bad_sizes_are_rejected_by_name(height, width):
    with pytest.raises(ValueError, match="height|width"):
        count_flops(RGBLayer(nn.Conv2d(3, 1, 1)), height, width)


def test_models_command_lists_every_registered_model_with_counts(tmp_path, capsys):
    exact_path, paper_path = tmp_path / "exact.json", tmp_path / "paper.json"
    assert cli.main(["models", "--height", "40", "--width", "48", "--json", str(exact_path)]) == 0
    printed = capsys.readouterr().out
    assert cli.main(["models", "--height", "64", "--width", "64", "--transposed-at-output",
                     "--json", str(paper_path)]) == 0
    exact = json.loads(exact_path.read_text())
    paper = json.loads(paper_path.read_text())
    assert [row["name"] for row in exact["models"]] == list_models()
    for name in list_models():
        assert name in printed and describe_model(name) in printed
    rows = {row["name"]: row for row in exact["models"]}
    paper_rows = {row["name"]: row for row in paper["models"]}
    teacher, student = rows["lspkd_teacher"], rows["lspkd_student"]
    assert f"{teacher['parameters'] / 1e6:.3f}" in printed
    assert teacher["parameters"] > student["parameters"] > rows["lspkd_student_nyu"]["parameters"]
    # 40 x 48 is padded to 64 x 64 inside the LSPKD networks, so it costs what 64 x 64 costs exactly;
    # charging the deconvolutions per output pixel can only add to that.
    with torch.device("meta"):
        assert teacher["flops"] == count_flops(build_model("lspkd_teacher"), 64, 64)
    assert paper_rows["lspkd_teacher"]["flops"] > teacher["flops"]


def test_models_command_rejects_a_bad_size(capsys):
    assert cli.main(["models", "--width", "0"]) == 2
    assert "--width must be a positive" in capsys.readouterr().err
