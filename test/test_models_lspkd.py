"""LSPKD teacher and students: sizes against the paper, the models contract, features, padding."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from depth_completion_ros.models import build_model, describe_model, list_models
from depth_completion_ros.models.checkpoint import load_model, save_checkpoint
from depth_completion_ros.models.flops import count_flops, count_parameters
from depth_completion_ros.models.lspkd import (
    ENCODER_FEATURES, FEATURE_NAMES, SIZE_MULTIPLE, BasicBlock, LSPKDNet,
)

NAMES = ("lspkd_teacher", "lspkd_student", "lspkd_student_nyu")
# The LSPKD paper, Tables 1 and 2: parameters (M) and GFLOPs at 912 x 220.
PAPER_PARAMS_M = {"lspkd_teacher": 51.77, "lspkd_student": 8.56, "lspkd_student_nyu": 0.66}
PAPER_GFLOPS_912x220 = {"lspkd_teacher": 349.36, "lspkd_student": 59.22}
HEIGHT, WIDTH = 37, 50  # not a multiple of 32: exercises the internal padding


def _meta_model(name: str) -> nn.Module:
    with torch.device("meta"):  # shapes only: counting needs no weights
        return build_model(name)


def _inputs(batch: int = 2, height: int = HEIGHT, width: int = WIDTH, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.rand(batch, 3, height, width, generator=generator)
    depth = 2.0 + 60.0 * torch.rand(batch, 1, height, width, generator=generator)
    sparse = torch.where(torch.rand(batch, 1, height, width, generator=generator) < 0.1, depth, torch.zeros(()))
    return rgb, sparse


def test_models_are_registered_with_descriptions():
    for name in NAMES:
        assert name in list_models()
        assert describe_model(name).startswith("LSPKD")


def test_teacher_parameter_count_matches_the_paper():
    assert count_parameters(_meta_model("lspkd_teacher")) / 1e6 == pytest.approx(51.77, rel=0.05)


@pytest.mark.parametrize("name", ["lspkd_student", "lspkd_student_nyu"])
def test_student_parameter_counts_match_the_paper_with_their_adapters(name):
    teacher, student = _meta_model("lspkd_teacher"), _meta_model(name)
    assert count_parameters(student) / 1e6 == pytest.approx(PAPER_PARAMS_M[name], rel=0.05)
    # The adapters (phi, eq. 3) map E0..E4 to the teacher's channels, without bias.
    assert list(student.adapters) == list(ENCODER_FEATURES)
    for feature, adapter in student.adapters.items():
        assert (adapter.in_channels, adapter.out_channels) == (student.feature_channels[feature],
                                                               teacher.feature_channels[feature])
        assert adapter.bias is None
    # Without them the inference network follows the width law: about width^2 of the full-width one.
    with torch.device("meta"):
        bare = build_model(name, adapter_width=None)
        full_width = build_model(name, width=1.0, adapter_width=None)
    assert count_parameters(bare) < PAPER_PARAMS_M[name] * 1e6
    assert count_parameters(bare) / count_parameters(full_width) == pytest.approx(student.width ** 2, rel=0.05)


def test_adapters_do_not_run_in_forward_and_map_features_to_teacher_channels():
    torch.manual_seed(0)
    student = build_model("lspkd_student_nyu").eval()
    rgb, sparse = _inputs(batch=1)
    with torch.no_grad():
        with_adapters = student(rgb, sparse)
        bare = build_model("lspkd_student_nyu", adapter_width=None).eval()
        bare.load_state_dict({k: v for k, v in student.state_dict().items() if not k.startswith("adapters.")})
        torch.testing.assert_close(bare(rgb, sparse), with_adapters)
        _, features = student(rgb, sparse, return_features=True)
        adapted = student.adapt("E2", features["E2"])
    assert adapted.shape[1] == 2 * 128 and adapted.shape[-2:] == features["E2"].shape[-2:]
    with pytest.raises(ValueError, match="no adapter for feature 'D2'"):
        student.adapt("D2", features["D2"])


@pytest.mark.parametrize("name", ["lspkd_teacher", "lspkd_student"])
def test_gflops_at_912x220_match_the_paper_when_deconvolutions_are_charged_per_output_pixel(name):
    model = _meta_model(name)
    paper_rule = count_flops(model, 220, 912, transposed_at_output=True) / 1e9
    exact = count_flops(model, 220, 912) / 1e9
    assert paper_rule == pytest.approx(PAPER_GFLOPS_912x220[name], rel=0.15)
    # Exact counting charges each 3x3 stride-2 deconvolution per input pixel, a quarter of the
    # per-output-pixel rule; the stride-1 head costs the same either way.
    padded_pixels = (-(-220 // SIZE_MULTIPLE) * SIZE_MULTIPLE) * (-(-912 // SIZE_MULTIPLE) * SIZE_MULTIPLE)
    deconv_exact = sum(
        2 * m.in_channels * m.out_channels * 9 * padded_pixels // 4 ** level
        for level, m in zip(range(5, 0, -1), [layer[0] for layer in model.decoder]))
    assert paper_rule - exact == pytest.approx(3 * deconv_exact / 1e9, rel=1e-9)


def test_student_is_resnet18_depth_at_half_width():
    teacher, student = _meta_model("lspkd_teacher"), _meta_model("lspkd_student")
    for model, blocks in ((teacher, 16), (student, 8)):
        for encoder in (model.rgb_encoder, model.lidar_encoder):
            assert sum(isinstance(m, BasicBlock) for m in encoder.modules()) == blocks
    for name, channels in teacher.feature_channels.items():
        assert student.feature_channels[name] == channels // 2


# The teacher runs on a smaller odd size (padded to 32 x 32) to keep the test fast.
@pytest.mark.parametrize("name,height,width", [
    ("lspkd_teacher", 21, 29), ("lspkd_student", HEIGHT, WIDTH), ("lspkd_student_nyu", HEIGHT, WIDTH)])
def test_forward_backward_on_odd_size_is_finite_non_negative_and_reaches_both_encoders(name, height, width):
    torch.manual_seed(0)
    model = build_model(name).train()
    rgb, sparse = _inputs(height=height, width=width)
    depth = model(rgb, sparse)
    assert depth.shape == (2, 1, height, width)
    assert torch.isfinite(depth).all() and (depth >= 0).all()
    depth.mean().backward()
    for encoder in (model.rgb_encoder, model.lidar_encoder):
        grad = encoder.stem[0].weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_named_features_have_documented_channels_and_sizes():
    torch.manual_seed(0)
    model = build_model("lspkd_student_nyu").eval()
    rgb, sparse = _inputs()
    with torch.no_grad():
        depth, features = model(rgb, sparse, return_features=True)
        plain = model(rgb, sparse)
    torch.testing.assert_close(depth, plain)
    assert list(features) == list(FEATURE_NAMES)
    levels = {f"E{k}": k for k in range(5)} | {f"D{k}": 4 - k for k in range(5)}
    for name, feature in features.items():
        scale = 2 ** levels[name]
        assert feature.shape == (2, model.feature_channels[name], math.ceil(HEIGHT / scale),
                                 math.ceil(WIDTH / scale)), name
    # E_k is the RGB encoder's feature followed by the LiDAR encoder's (computed in the padded frame).
    rgb_channels = model.rgb_encoder.stem_channels
    pad = (0, -WIDTH % SIZE_MULTIPLE, 0, -HEIGHT % SIZE_MULTIPLE)
    with torch.no_grad():
        normalised = F.pad((rgb - model.rgb_mean) / model.rgb_std, pad, mode="replicate")
        stem_rgb = model.rgb_encoder.stem(normalised)[..., :HEIGHT, :WIDTH]
        stem_lidar = model.lidar_encoder.stem(F.pad(sparse / model.depth_scale, pad))[..., :HEIGHT, :WIDTH]
    torch.testing.assert_close(features["E0"][:, :rgb_channels], stem_rgb)
    torch.testing.assert_close(features["E0"][:, rgb_channels:], stem_lidar)


def test_internal_padding_is_replicate_rgb_zero_sparse_and_the_crop_is_exact():
    torch.manual_seed(0)
    model = build_model("lspkd_student_nyu").eval()
    rgb, sparse = _inputs()
    padded_h = -(-HEIGHT // SIZE_MULTIPLE) * SIZE_MULTIPLE
    padded_w = -(-WIDTH // SIZE_MULTIPLE) * SIZE_MULTIPLE
    pad = (0, padded_w - WIDTH, 0, padded_h - HEIGHT)
    rgb_padded = F.pad(rgb, pad, mode="replicate")
    sparse_padded = F.pad(sparse, pad, value=0.0)
    with torch.no_grad():
        direct = model(rgb, sparse)
        on_multiple = model(rgb_padded, sparse_padded)  # already a multiple of 32: no padding inside
    assert on_multiple.shape == (2, 1, padded_h, padded_w)
    torch.testing.assert_close(direct, on_multiple[..., :HEIGHT, :WIDTH], rtol=0, atol=0)


def test_depth_is_predicted_in_units_of_depth_scale():
    torch.manual_seed(0)
    model = build_model("lspkd_student_nyu").eval()
    rescaled = build_model("lspkd_student_nyu", depth_scale=2 * model.depth_scale).eval()
    rescaled.load_state_dict(model.state_dict())
    rgb, sparse = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(rescaled(rgb, 2 * sparse), 2 * model(rgb, sparse))


def test_checkpoint_round_trip_keeps_custom_architecture(tmp_path):
    torch.manual_seed(0)
    model = build_model("lspkd_student", blocks=(1, 1, 1, 1), width=0.125).eval()
    path = save_checkpoint(tmp_path / "tiny.pt", model)
    loaded, checkpoint = load_model(path)
    assert checkpoint.architecture == "lspkd_student"
    assert tuple(checkpoint.kwargs["blocks"]) == (1, 1, 1, 1)
    rgb, sparse = _inputs(batch=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(rgb, sparse), model(rgb, sparse), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs,message", [
    ({"width": 0}, "width"), ({"blocks": (2, 2, 2)}, "blocks"), ({"blocks": (2, 0, 2, 2)}, "blocks"),
    ({"depth_scale": -1.0}, "depth_scale"),
])
def test_bad_architecture_arguments_are_rejected_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LSPKDNet(**kwargs)


def test_bad_inputs_are_rejected_by_name():
    model = build_model("lspkd_student_nyu", blocks=(1, 1, 1, 1))
    rgb, sparse = _inputs(batch=1)
    with pytest.raises(ValueError, match="rgb"):
        model(rgb[:, :1], sparse)
    with pytest.raises(ValueError, match="sparse"):
        model(rgb, sparse[:, 0])
    with pytest.raises(ValueError, match="differ"):
        model(rgb, sparse[..., :-1])
    with pytest.raises(ValueError, match="floating point"):
        model((rgb * 255).to(torch.uint8), sparse)
