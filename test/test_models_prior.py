"""The in-network classical prior (models/prior.py): CDSPN's fusion with it and the LSPKD networks' correction of it
(`prior: morphological`)."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from depth_completion_ros.baselines import morphological_fill
from depth_completion_ros.models import build_model
from depth_completion_ros.models.cdspn import CDSPN, NO_PRIOR_LOGIT
from depth_completion_ros.models.prior import morphological_prior


def scan_lines(height=60, width=90, rows=range(20, 60, 4), every=3, seed=0):
    """Sparse returns on every 4th row from row 20 down (like LiDAR rings), a near box in front of a far
    wall: depth 30 m, except 8 m inside columns 30..49."""
    rng = np.random.default_rng(seed)
    sparse = np.zeros((height, width), np.float32)
    for row in rows:
        cols = np.arange(rng.integers(0, every), width, every)
        sparse[row, cols] = np.where((cols >= 30) & (cols < 50), 8.0, 30.0)
    return sparse


def as_batch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)[None, None]


def test_prior_keeps_returns_fills_between_them_and_prefers_the_near_surface():
    sparse = scan_lines()
    prior = morphological_prior(as_batch(sparse))[0, 0].numpy()
    valid = sparse > 0
    assert np.array_equal(prior[valid], sparse[valid])
    assert (prior[20:, :] > 0).all()  # every gap between the rings is filled
    # Inside the box and on the wall away from its edges the fill is the surface's depth.
    np.testing.assert_allclose(prior[24:56, 34:46], 8.0, atol=1e-4)
    np.testing.assert_allclose(prior[24:56, 60:80], 30.0, atol=1e-4)
    # At the box's edges the dilation on inverted depth favours the near surface (IP-Basic's argument).
    edge = prior[24:56, 28:30]
    assert np.median(edge) < 19.0


def test_prior_leaves_far_pixels_empty_and_ignores_invalid_input():
    sparse = np.zeros((80, 80), np.float32)
    sparse[70, 70] = 5.0
    sparse[10, 10] = np.nan
    sparse[20, 50] = -3.0
    prior = morphological_prior(as_batch(sparse))[0, 0].numpy()
    assert np.isfinite(prior).all()
    assert prior[70, 70] == 5.0 and prior[60, 60] == pytest.approx(5.0)
    assert prior[0, 0] == 0.0  # ~100 px from the only return: beyond the dilations' reach, no prior
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        morphological_prior(torch.zeros(1, 2, 8, 8))


def test_prior_is_the_opencv_fill_below_the_scan_top():
    """Same steps as baselines.morphological_fill except its 5x5 median and its top extension."""
    sparse = scan_lines(seed=4)
    prior = morphological_prior(as_batch(sparse))[0, 0].numpy()
    fill = morphological_fill(sparse, extend_to_top=False)
    below = np.s_[22:, :]
    assert np.median(np.abs(prior[below] - fill[below])) < 0.01
    assert np.mean(np.abs(prior[below] - fill[below])) < 0.5


def test_cdspn_fuses_the_prior_as_a_third_candidate():
    torch.manual_seed(0)
    model = build_model("cdspn_x32", iterations=2, prior="morphological").train()
    sparse = scan_lines(height=77, width=50, rows=range(62, 77, 4))
    rgb = torch.rand(2, 3, 77, 50)
    sparse = torch.stack([as_batch(sparse)[0]] * 2)
    depth, features = model(rgb, sparse, return_features=True)
    weights = features["fusion_weights"]
    assert weights.shape == (2, 3, 77, 50)
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 77, 50))
    prior = features["prior_depth"]
    expected = (weights[:, :1] * features["rgb_branch_depth"] + weights[:, 1:2] * features["depth_branch_depth"]
                + weights[:, 2:] * prior)
    torch.testing.assert_close(features["coarse_depth"], expected)
    # Where no return is within reach (the empty top rows) the prior has no weight; elsewhere it starts
    # with most of it.
    assert (prior[..., :20, :] == 0).all() and (weights[:, 2, :20, :] == 0).all()
    assert (features["prior_confidence"][..., :20, :] == NO_PRIOR_LOGIT).all()
    assert weights[:, 2][prior[:, 0] > 0].median() > 0.5
    depth.abs().mean().backward()
    assert model.prior_confidence.weight.grad.abs().sum() > 0


def test_cdspn_prior_argument_and_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="prior must be None or one of morphological"):
        CDSPN(width=8, prior="bilateral")
    from depth_completion_ros.models.checkpoint import load_model, save_checkpoint

    model = build_model("cdspn_x32", width=8, iterations=1, prior="morphological").eval()
    path = save_checkpoint(tmp_path / "prior.pt", model)
    loaded, checkpoint = load_model(path)
    assert checkpoint.kwargs["prior"] == "morphological" and loaded.prior == "morphological"
    rgb, sparse = torch.rand(1, 3, 24, 40), as_batch(scan_lines(height=24, width=40, rows=range(4, 24, 3)))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(rgb, sparse), model(rgb, sparse))


def _tiny_lspkd(**kwargs):
    return build_model("lspkd_student", blocks=(1, 1, 1, 1), width=0.125, adapter_width=None, **kwargs)


def test_lspkd_with_prior_starts_as_the_fill_and_learns_a_correction():
    torch.manual_seed(0)
    model = _tiny_lspkd(prior="morphological").train()
    # Returns on rows 60..89 only: the fill does not reach the top rows.
    sparse = torch.stack([as_batch(scan_lines(height=90, width=70, rows=range(60, 90, 4)))[0]] * 2)
    rgb = torch.rand(2, 3, 90, 70)
    depth = model(rgb, sparse)
    prior = morphological_prior(sparse)
    reached = prior > 0
    assert reached.any() and (~reached).any()
    # Zero-initialised correction: the fill itself where it reaches, the head's own depth elsewhere.
    torch.testing.assert_close(depth[reached], prior[reached])
    plain = _tiny_lspkd().train()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("prior_")})
    torch.testing.assert_close(depth[~reached], plain(rgb, sparse)[~reached])
    ((depth - 20.0).abs() * reached).mean().backward()
    assert model.prior_correction.weight.grad.abs().sum() > 0
    # Once the correction is not zero, the fill fed to the LiDAR stem gets gradient too.
    with torch.no_grad():
        model.prior_correction.weight.normal_(0, 0.01)
    model.zero_grad()
    ((model(rgb, sparse) - 20.0).abs() * reached).mean().backward()
    assert model.prior_input.weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.prior_correction.weight.zero_()
        model.prior_correction.bias.fill_(0.1)  # log-ratio: 10.5 % deeper everywhere the fill reaches
        moved = model.eval()(rgb, sparse)
    torch.testing.assert_close(moved[reached], prior[reached] * math.exp(0.1))
    with pytest.raises(ValueError, match="prior must be None or one of morphological"):
        _tiny_lspkd(prior="median")


def test_lspkd_with_prior_exports_to_onnx_and_round_trips(tmp_path, caplog):
    ort = pytest.importorskip("onnxruntime")
    from depth_completion_ros.inference import export_onnx
    from depth_completion_ros.models.checkpoint import load_model, save_checkpoint

    torch.manual_seed(0)
    model = _tiny_lspkd(prior="morphological").eval()
    with torch.no_grad():
        model.prior_correction.weight.normal_(0, 0.01)
        model.prior_input.weight.normal_(0, 0.1)
    loaded, checkpoint = load_model(save_checkpoint(tmp_path / "student.pt", model))
    assert checkpoint.kwargs["prior"] == "morphological"
    with caplog.at_level(logging.WARNING, logger="depth_completion_ros.inference"):
        path = export_onnx(loaded, tmp_path / "student.onnx", example_size=(40, 64))
    # A tracer warning would mean a Python value (e.g. an input shape check) was frozen into the graph.
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    rgb = torch.rand(1, 3, 45, 70)
    sparse = as_batch(scan_lines(height=45, width=70, rows=range(20, 45, 4)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_depth,) = session.run(None, {"rgb": rgb.numpy(), "sparse_depth": sparse.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_depth, model(rgb, sparse).numpy(), rtol=1e-4, atol=1e-3)
