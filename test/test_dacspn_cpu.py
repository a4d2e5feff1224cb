"""DA-CSPN++'s propagation as fused CPU loops (models/dacspn_cpu.py) against the PyTorch refinement, and the
engine path that runs it after an ONNX graph which stops before the propagation."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from depth_completion_ros.inference import (
    OUTPUT_NAME, Engine, example_inputs, export_onnx, onnx_cache_path, read_onnx_refinement,
)
from depth_completion_ros.models import dacspn_cpu
from depth_completion_ros.models.checkpoint import save_checkpoint
from depth_completion_ros.models.dacspn import DACSPN, RefinementLayout

pytestmark = pytest.mark.skipif(dacspn_cpu.available() is not None, reason=str(dacspn_cpu.available()))
TOLERANCE_M = 1e-3


def _refinement_inputs(module: DACSPN, height: int, width: int, seed: int = 0):
    """coarse, sparse, guidance features for a DACSPN with 6 feature channels at every scale."""
    generator = torch.Generator().manual_seed(seed)
    coarse = 1 + 40 * torch.rand(2, 1, height, width, generator=generator)
    sparse = torch.where(torch.rand(2, 1, height, width, generator=generator) < 0.1,
                         1 + 40 * torch.rand(2, 1, height, width, generator=generator), torch.zeros(()))
    features = {d: torch.randn(2, 6, height // d, width // d, generator=generator) for d in module.dilations}
    return coarse, sparse, features


@pytest.mark.parametrize("kernel_sizes, dilations, iterations", [
    ((3, 5, 7), (2, 1), 3),   # PENet's refinement, shortened
    ((3, 5), (2, 1), 2),      # the lite network's
    ((5,), (4, 1), 2),        # one kernel size (no confidence head), a guidance grid of 1/4
])
def test_fused_refinement_equals_the_pytorch_refinement(kernel_sizes, dilations, iterations):
    torch.manual_seed(0)
    module = DACSPN({1: 6, 2: 6, 4: 6}, kernel_sizes=kernel_sizes, dilations=dilations, iterations=iterations).eval()
    for parameter in module.parameters():  # trained-like magnitudes: the affinities matter
        parameter.data.normal_(0, 0.3)
    coarse, sparse, features = _refinement_inputs(module, 24, 40)
    with torch.no_grad():
        expected = module(coarse, sparse, features).numpy()
        raw = module.raw_guidance_on_features(features)
    layout = RefinementLayout.of(module)
    guidance = [([a.numpy() for a in affinities], weights.numpy()) for affinities, weights in raw]
    refined = dacspn_cpu.refine(coarse.numpy(), sparse.numpy(), guidance, layout, threads=2)
    assert refined.shape == expected.shape and refined.dtype == np.float32
    assert np.abs(refined - expected).max() < 1e-4 * np.abs(expected).max()
    # Sparse depth comes back bit-exactly, and the propagation changed the other pixels.
    measured = sparse.numpy() > 0
    assert np.array_equal(refined[measured], sparse.numpy()[measured])
    assert np.abs(refined - coarse.numpy())[~measured].max() > 0.1


def test_fused_refinement_names_a_guidance_grid_that_does_not_fit():
    module = DACSPN({1: 6, 2: 6}, kernel_sizes=(3,), dilations=(2,), iterations=1).eval()
    coarse, sparse, features = _refinement_inputs(module, 24, 40)
    with torch.no_grad():
        (affinities, weights), = module.raw_guidance_on_features(features)
    crooked = [([affinities[0][..., :-1, :].numpy()], weights[..., :-1, :].numpy())]
    with pytest.raises(ValueError, match="not the depth grid 24x40"):
        dacspn_cpu.refine(coarse.numpy(), sparse.numpy(), crooked, RefinementLayout.of(module))


@pytest.fixture(scope="module")
def lite_checkpoint(tmp_path_factory):
    lite = {"kernel_sizes": (3, 5), "iterations": 2, "guidance": "separable", "prior": "morphological"}
    engine = Engine.from_name("cdspn_x32", device="cpu", precision="fp32", seed=2, **lite)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "lite.pt", engine.model), engine


def test_engine_runs_the_propagation_fused_on_the_cpu_with_the_same_depth(lite_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path))
    path, torch_engine = lite_checkpoint
    fused = Engine.from_checkpoint(path, device="cpu", backend="onnx")  # refinement "auto"
    graph = Engine.from_checkpoint(path, device="cpu", backend="onnx", refinement="graph")
    assert fused.refinement == "fused" and "refinement='fused'" in repr(fused)
    assert graph.refinement == "graph" and fused.onnx_path != graph.onnx_path
    assert fused.onnx_path == onnx_cache_path(path, refinement="fused")
    assert read_onnx_refinement(fused.onnx_path) == RefinementLayout((2, 1), (3, 5), 2)
    assert read_onnx_refinement(graph.onnx_path) is None
    rgb, sparse = example_inputs(45, 70, batch=2, seed=4)  # not a multiple of the stride: padded and cropped
    expected = torch_engine.predict(rgb, sparse)
    for engine in (fused, graph):
        depth = engine.predict(rgb, sparse)
        assert depth.shape == (2, 1, 45, 70)
        assert (depth - expected).abs().max().item() < TOLERANCE_M
    # The numpy path, and a file loaded on its own (the metadata carries the layout).
    rgb_np = (rgb[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.abs(Engine.from_onnx(fused.onnx_path, device="cpu").predict(rgb_np, sparse[0, 0].numpy())
                  - torch_engine.predict(rgb_np, sparse[0, 0].numpy())).max() < TOLERANCE_M


def test_fused_export_outputs_the_layouts_names(lite_checkpoint, tmp_path):
    import onnx

    path, _ = lite_checkpoint
    out = export_onnx(path, tmp_path / "fused.onnx", example_size=(64, 96), refinement="fused")
    names = [node.name for node in onnx.load(str(out)).graph.output]
    assert names == read_onnx_refinement(out).names() and OUTPUT_NAME not in names
    assert names[:2] == ["coarse_depth", "sparse_depth_padded"] and "stage0_k5_affinity" in names


def test_fused_refinement_is_refused_where_it_cannot_run(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path))
    engine = Engine.from_name("lspkd_student", device="cpu", seed=0)
    path = save_checkpoint(tmp_path / "student.pt", engine.model)
    with pytest.raises(ValueError, match="needs a CDSPN"):
        Engine.from_checkpoint(path, device="cpu", backend="onnx", refinement="fused")
    with pytest.raises(ValueError, match="refinement must be one of auto, graph, fused"):
        Engine.from_checkpoint(path, device="cpu", backend="onnx", refinement="numba")
    # Networks without DA-CSPN++ keep their whole graph under "auto".
    assert Engine.from_checkpoint(path, device="cpu", backend="onnx").refinement == "graph"


def test_without_numba_auto_keeps_the_whole_graph_and_says_why(lite_checkpoint, tmp_path, monkeypatch, caplog):
    # numba missing is the case under test; dacspn_cpu reports it through `available()`.
    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(dacspn_cpu, "_IMPORT_ERROR", ImportError("No module named 'numba'"))
    path, _ = lite_checkpoint
    with caplog.at_level(logging.INFO, logger="depth_completion_ros.inference"):
        engine = Engine.from_checkpoint(path, device="cpu", backend="onnx")
    assert engine.refinement == "graph"
    assert any("numba is not importable" in record.getMessage() for record in caplog.records)
    with pytest.raises(RuntimeError, match="numba is not importable"):
        Engine.from_checkpoint(path, device="cpu", backend="onnx", refinement="fused")


def test_pytorch_engine_on_the_cpu_fuses_the_propagation_too(lite_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path))
    path, _ = lite_checkpoint
    fused = Engine.from_checkpoint(path, device="cpu", backend="torch")
    graph = Engine.from_checkpoint(path, device="cpu", backend="torch", refinement="graph")
    assert (fused.backend, fused.refinement) == ("torch", "fused") and graph.refinement == "graph"
    rgb, sparse = example_inputs(45, 70, batch=2, seed=5)
    expected = graph.predict(rgb, sparse)
    depth = fused.predict(rgb, sparse)
    assert depth.shape == expected.shape and depth.dtype == torch.float32
    assert (depth - expected).abs().max().item() < TOLERANCE_M
    rgb_np = (rgb[1].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.abs(fused.predict(rgb_np, sparse[1, 0].numpy()) - graph.predict(rgb_np, sparse[1, 0].numpy())).max() \
        < TOLERANCE_M


def _propagation_reference(initial, raw, sparse, kernel_size, dilation, iterations, scale, eps):
    """The propagation one iteration at a time over whole planes (numpy, float32, taps summed in order): what the
    wavefront of row bands must reproduce bit for bit."""
    rows, cols = dacspn_cpu.tap_offsets(kernel_size, dilation)
    norm = np.zeros(raw.shape[1:], np.float32)
    for tap in range(len(rows)):
        norm += np.abs(raw[tap])
    norm = np.maximum(norm, eps)
    weights = raw / norm
    total = np.zeros_like(norm)
    for tap in range(len(rows)):
        total += weights[tap]
    centre = np.float32(1.0) - total
    up = 1 << scale
    weights = weights.repeat(up, axis=1).repeat(up, axis=2)
    centre = centre.repeat(up, axis=0).repeat(up, axis=1)
    radius = (kernel_size // 2) * dilation
    height, width = initial.shape
    depth = initial
    for _ in range(iterations):
        padded = np.pad(depth, radius, mode="edge")
        out = None
        for tap, (dy, dx) in enumerate(zip(rows, cols)):
            product = weights[tap] * padded[radius + dy:radius + dy + height, radius + dx:radius + dx + width]
            out = product if out is None else out + product
        out = centre * initial + out
        depth = np.where(sparse > 0, sparse, out)
    return depth


@pytest.mark.parametrize("kernel_size, dilation, scale, iterations", [(7, 1, 0, 6), (5, 2, 1, 4), (3, 4, 2, 3),
                                                                      (7, 2, 1, 1), (3, 3, 0, 2)])
def test_row_bands_give_the_whole_plane_propagation_bit_for_bit(kernel_size, dilation, scale, iterations):
    # Bands of rows run all iterations as a wavefront, each computing the rows beyond its edges it needs: any
    # number of bands (here more than the threads) must give what one pass per iteration over the image gives.
    rng = np.random.default_rng(3)
    height, width = 40, 24
    initial = rng.uniform(1, 80, (height, width)).astype(np.float32)
    sparse = np.where(rng.random((height, width)) < 0.1, rng.uniform(1, 80, (height, width)), 0).astype(np.float32)
    rows, cols = dacspn_cpu.tap_offsets(kernel_size, dilation)
    raw = rng.normal(size=(len(rows), height >> scale, width >> scale)).astype(np.float32)
    untouched = raw.copy()
    eps = np.float32(1e-6)
    expected = _propagation_reference(initial, raw, sparse, kernel_size, dilation, iterations, scale, eps)
    radius = (kernel_size // 2) * dilation
    for band_count in (1, 2, 3, 7):
        workspace = dacspn_cpu.Workspace()
        bands, rings = dacspn_cpu.band_scratch(workspace, height, width, len(rows), radius, scale, iterations,
                                               band_count)
        result = np.full((height, width), np.nan, np.float32)
        dacspn_cpu._propagate(initial, initial, raw, eps, sparse, rows, cols, radius, iterations, scale, bands, rings,
                              result)
        np.testing.assert_array_equal(result, expected, err_msg=f"{band_count} bands")
    np.testing.assert_array_equal(raw, untouched)  # the guidance is only read


def test_bands_are_one_per_thread_unless_the_rows_computed_twice_would_dominate():
    # The default CDSPN's stages at 256 rows, 6 iterations, on 2 threads: both stages split in two.
    assert dacspn_cpu.band_count(256, radius=3, scale=0, iterations=6, threads=2) == 2
    assert dacspn_cpu.band_count(256, radius=6, scale=1, iterations=6, threads=2) == 2
    # Many threads: each band stays at least 3 x 6 iterations x 3 rows of lag tall (256 // 54 = 4 bands).
    assert dacspn_cpu.band_count(256, radius=3, scale=0, iterations=6, threads=16) == 4
    # A small image, or one thread: one band, no row computed twice.
    assert dacspn_cpu.band_count(40, radius=3, scale=0, iterations=6, threads=8) == 1
    assert dacspn_cpu.band_count(256, radius=3, scale=0, iterations=6, threads=1) == 1


def test_fused_refinement_refuses_an_even_kernel_by_name():
    rng = np.random.default_rng(0)
    coarse = rng.uniform(1, 9, (1, 1, 8, 8)).astype(np.float32)
    guidance = [([rng.normal(size=(1, 3, 8, 8)).astype(np.float32)], np.ones((1, 1, 8, 8), np.float32))]
    with pytest.raises(ValueError, match=r"kernel sizes \(2,\): DA-CSPN\+\+'s kernels are odd"):
        dacspn_cpu.refine(coarse, np.zeros_like(coarse), guidance, RefinementLayout((1,), (2,), 1))
