"""The inference engine: numpy/torch paths, input checks, device/precision fallback, ONNX export and run."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from depth_completion_ros import cli
from depth_completion_ros.inference import (
    INPUT_NAMES, OUTPUT_NAME, Engine, ExportError, example_inputs, export_onnx, onnx_cache_path,
    read_onnx_architecture, read_onnx_metadata,
)
from depth_completion_ros.models.checkpoint import save_checkpoint

SMALL_MODEL = "cdspn_x32"        # the smallest registered network
FAST_KWARGS = {"iterations": 1}  # one refinement pass per stage: same operators, quicker tests
OTHER_MODEL = "cdspn_x64"
HEIGHT, WIDTH = 37, 50           # run size: odd, not a multiple of any stride
EXPORT_SIZE = (64, 96)           # ONNX example size, deliberately different from the run size
ONNX_TOLERANCE_M = 1e-3
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback where CUDA is absent")


def _frame(seed: int = 0, height: int = HEIGHT, width: int = WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB (H,W,3) and float32 sparse depth (H,W) with ~10 % of pixels measured."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 60.0, size=(height, width)).astype(np.float32)
    sparse = np.where(rng.random((height, width)) < 0.1, depth, np.float32(0)).astype(np.float32)
    return rgb, sparse


@pytest.fixture(scope="module")
def cpu_engine():
    return Engine.from_name(SMALL_MODEL, device="cpu", precision="fp32", seed=0, **FAST_KWARGS)


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    engine = Engine.from_name(SMALL_MODEL, device="cpu", seed=3, **FAST_KWARGS)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt", engine.model,
                           metadata={"trained_on": "synthetic"})


@pytest.fixture(scope="module")
def default_engine():
    """SMALL_MODEL in its default (shipping) configuration."""
    return Engine.from_name(SMALL_MODEL, device="cpu", precision="fp32", seed=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, default_engine):
    """default_engine's model exported with dynamic H/W from an EXPORT_SIZE example."""
    return export_onnx(default_engine.model, tmp_path_factory.mktemp("onnx") / "small.onnx",
                       example_size=EXPORT_SIZE)


# ----------------------------------------------------------------------------- torch backend

def test_numpy_prediction_is_float32_depth_of_input_size(cpu_engine):
    rgb, sparse = _frame()
    depth = cpu_engine.predict(rgb, sparse)
    assert isinstance(depth, np.ndarray)
    assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.float32
    assert np.isfinite(depth).all()


def test_numpy_and_torch_paths_agree(cpu_engine):
    rgb, sparse = _frame()
    from_uint8 = cpu_engine.predict(rgb, sparse)
    rgb_float = rgb.astype(np.float32) / 255.0
    from_float = cpu_engine.predict(rgb_float, sparse)
    rgb_tensor = torch.from_numpy(rgb_float).permute(2, 0, 1)[None]
    from_torch = cpu_engine.predict(rgb_tensor, torch.from_numpy(sparse)[None, None])
    assert isinstance(from_torch, torch.Tensor)
    assert from_torch.shape == (1, 1, HEIGHT, WIDTH) and from_torch.dtype == torch.float32
    assert from_torch.device == cpu_engine.device
    np.testing.assert_array_equal(from_torch[0, 0].numpy(), from_float)
    np.testing.assert_allclose(from_uint8, from_float, rtol=0, atol=1e-4)


def test_batch_matches_single_frames(cpu_engine):
    frames = [_frame(seed) for seed in (1, 2)]
    rgb = torch.stack([torch.from_numpy(r.astype(np.float32) / 255.0).permute(2, 0, 1) for r, _ in frames])
    sparse = torch.stack([torch.from_numpy(s)[None] for _, s in frames])
    batched = cpu_engine.predict(rgb, sparse)
    for index in range(2):
        single = cpu_engine.predict(rgb[index:index + 1], sparse[index:index + 1])
        torch.testing.assert_close(batched[index:index + 1], single, rtol=0, atol=1e-4)
    assert not torch.allclose(batched[0], batched[1])  # the two frames really differ


def test_sparse_depth_steers_the_output(cpu_engine):
    rgb, sparse = _frame()
    assert not np.allclose(cpu_engine.predict(rgb, sparse), cpu_engine.predict(rgb, sparse * 2.0))


def test_nan_sparse_counts_as_no_measurement(cpu_engine):
    rgb, sparse = _frame()
    with_nan = np.where(sparse > 0, sparse, np.float32(np.nan))
    np.testing.assert_array_equal(cpu_engine.predict(rgb, with_nan), cpu_engine.predict(rgb, sparse))


def test_from_model_puts_model_in_eval_mode_and_keeps_names():
    model = Engine.from_name(SMALL_MODEL, device="cpu", **FAST_KWARGS).model
    model.train()
    engine = Engine.from_model(model, device="cpu")
    assert not model.training
    assert engine.architecture == SMALL_MODEL and engine.backend == "torch" and engine.precision == "fp32"


def test_seed_fixes_untrained_weights():
    rgb, sparse = _frame()
    first = Engine.from_name(SMALL_MODEL, device="cpu", seed=5, **FAST_KWARGS).predict(rgb, sparse)
    again = Engine.from_name(SMALL_MODEL, device="cpu", seed=5, **FAST_KWARGS).predict(rgb, sparse)
    other = Engine.from_name(SMALL_MODEL, device="cpu", seed=6, **FAST_KWARGS).predict(rgb, sparse)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_warmup_leaves_results_unchanged(cpu_engine):
    rgb, sparse = _frame()
    before = cpu_engine.predict(rgb, sparse)
    cpu_engine.warmup(HEIGHT, WIDTH, runs=2)
    np.testing.assert_array_equal(cpu_engine.predict(rgb, sparse), before)
    with pytest.raises(ValueError, match="runs must be >= 0"):
        cpu_engine.warmup(HEIGHT, WIDTH, runs=-1)


def test_from_checkpoint_restores_model_and_metadata(checkpoint_path):
    # The whole network in PyTorch on both sides, so that restored weights give bit-identical depth.
    engine = Engine.from_checkpoint(checkpoint_path, device="cpu", refinement="graph")
    reference = Engine.from_name(SMALL_MODEL, device="cpu", seed=3, **FAST_KWARGS)
    rgb, sparse = _frame()
    np.testing.assert_array_equal(engine.predict(rgb, sparse), reference.predict(rgb, sparse))
    assert engine.architecture == SMALL_MODEL
    assert engine.metadata == {"trained_on": "synthetic"}
    assert engine.kwargs == FAST_KWARGS


# ----------------------------------------------------------------------------- input checks

def test_size_mismatch_names_both_sizes(cpu_engine):
    rgb, sparse = _frame()
    with pytest.raises(ValueError, match=r"rgb is 37x50 \(HxW\) but sparse depth is 36x50"):
        cpu_engine.predict(rgb, sparse[:-1])
    rgb_t, sparse_t = example_inputs(HEIGHT, WIDTH)
    with pytest.raises(ValueError, match=r"rgb is 37x50 \(HxW\) but sparse depth is 37x49"):
        cpu_engine.predict(rgb_t, sparse_t[..., :-1])


@pytest.mark.parametrize("rgb_change, sparse_change, message", [
    (lambda r: r[..., 0], None, r"rgb must be an \(H, W, 3\)"),
    (lambda r: r.astype(np.float32), None, "float rgb must lie in 0..1"),
    (lambda r: r.astype(np.int32), None, "rgb must be uint8"),
    (None, lambda s: (s * 256).astype(np.uint16), "sparse depth must be float metres"),
    (None, lambda s: s[..., None], r"sparse depth must be an \(H, W\) map"),
    (None, lambda s: -s, "must be >= 0 metres"),
    (None, lambda s: torch.from_numpy(s), "sparse depth must be one too"),
])
def test_bad_numpy_input_is_named(cpu_engine, rgb_change, sparse_change, message):
    rgb, sparse = _frame()
    rgb = rgb_change(rgb) if rgb_change else rgb
    sparse = sparse_change(sparse) if sparse_change else sparse
    with pytest.raises(ValueError, match=message):
        cpu_engine.predict(rgb, sparse)


def test_bad_tensor_input_is_named(cpu_engine):
    rgb, sparse = example_inputs(HEIGHT, WIDTH, batch=2)
    with pytest.raises(ValueError, match="batch size 2 but sparse depth has 1"):
        cpu_engine.predict(rgb, sparse[:1])
    with pytest.raises(ValueError, match=r"rgb tensor must be \[B, 3, H, W\]"):
        cpu_engine.predict(rgb[0], sparse[0])
    with pytest.raises(ValueError, match="rgb tensor must be float"):
        cpu_engine.predict((rgb * 255).to(torch.uint8), sparse)
    with pytest.raises(ValueError, match="numpy array or a torch tensor"):
        cpu_engine.predict(rgb.tolist(), sparse)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="device must be"):
        Engine.from_name(SMALL_MODEL, device="tpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        Engine.from_name(SMALL_MODEL, device="cpu", precision="int8")
    with pytest.raises(ValueError, match="unknown model 'no_such_net'"):
        Engine.from_name("no_such_net", device="cpu")


def test_bad_backend_is_named(checkpoint_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        Engine.from_checkpoint(checkpoint_path, device="cpu", backend="tensorrt")


# ----------------------------------------------------------------------------- device and precision

@needs_no_cuda
def test_cuda_request_without_cuda_falls_back_to_cpu(caplog):
    with caplog.at_level(logging.WARNING, logger="depth_completion_ros.inference"):
        engine = Engine.from_name(SMALL_MODEL, device="cuda", **FAST_KWARGS)
    assert engine.device.type == "cpu" and engine.precision == "fp32"
    assert any("CUDA is not available" in record.getMessage() for record in caplog.records)
    assert engine.predict(*_frame()).shape == (HEIGHT, WIDTH)


@needs_no_cuda
def test_auto_device_without_cuda_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="depth_completion_ros.inference"):
        engine = Engine.from_name(SMALL_MODEL, **FAST_KWARGS)
    assert engine.device.type == "cpu"
    assert any("CUDA is not available" in record.getMessage() for record in caplog.records)


def test_fp16_on_cpu_falls_back_to_fp32(caplog, cpu_engine):
    with caplog.at_level(logging.WARNING, logger="depth_completion_ros.inference"):
        engine = Engine.from_name(SMALL_MODEL, device="cpu", precision="fp16", seed=0, **FAST_KWARGS)
    assert engine.precision == "fp32"
    assert any("fp16 is not used on the CPU" in record.getMessage() for record in caplog.records)
    rgb, sparse = _frame()
    np.testing.assert_array_equal(engine.predict(rgb, sparse), cpu_engine.predict(rgb, sparse))


@needs_cuda
def test_cuda_fp32_matches_cpu(cpu_engine):
    engine = Engine.from_name(SMALL_MODEL, device="cuda", precision="fp32", seed=0, **FAST_KWARGS)
    assert engine.device.type == "cuda"
    rgb, sparse = _frame()
    np.testing.assert_allclose(engine.predict(rgb, sparse), cpu_engine.predict(rgb, sparse), rtol=1e-3, atol=1e-2)


@needs_cuda
def test_cuda_fp16_returns_float32_close_to_fp32(cpu_engine):
    engine = Engine.from_name(SMALL_MODEL, device="cuda", seed=0, **FAST_KWARGS)
    assert engine.precision == "fp16"  # the "auto" choice on CUDA
    rgb_t, sparse_t = example_inputs(HEIGHT, WIDTH, batch=2, device="cuda")
    output = engine.predict(rgb_t, sparse_t)
    assert output.dtype == torch.float32 and output.device.type == "cuda" and output.shape == (2, 1, HEIGHT, WIDTH)
    reference = cpu_engine.predict(rgb_t.cpu(), sparse_t.cpu())
    scale = reference.abs().max().item() + 1.0
    assert (output.cpu() - reference).abs().max().item() < 0.02 * scale


# ----------------------------------------------------------------------------- ONNX

def test_onnx_graph_has_named_dynamic_axes(exported):
    import onnx

    graph = onnx.load(str(exported)).graph
    assert [node.name for node in graph.input] == list(INPUT_NAMES)
    assert [node.name for node in graph.output] == [OUTPUT_NAME]
    for node in (*graph.input, *graph.output):
        dims = node.type.tensor_type.shape.dim
        assert [dims[axis].dim_param for axis in (0, 2, 3)] == ["batch", "height", "width"], node.name
    assert read_onnx_architecture(exported) == (SMALL_MODEL, {})


def test_onnx_matches_torch_at_another_size(default_engine, exported):
    onnx_engine = Engine.from_onnx(exported, device="cpu")
    assert onnx_engine.backend == "onnx" and onnx_engine.architecture == SMALL_MODEL
    rgb, sparse = _frame(seed=4)
    assert rgb.shape[:2] != EXPORT_SIZE
    expected = default_engine.predict(rgb, sparse)
    actual = onnx_engine.predict(rgb, sparse)
    assert actual.shape == (HEIGHT, WIDTH) and actual.dtype == np.float32
    assert np.abs(actual - expected).max() < ONNX_TOLERANCE_M
    # Batched tensors through the same session, at yet another size.
    rgb_t, sparse_t = example_inputs(41, 70, batch=2, seed=5)
    difference = (onnx_engine.predict(rgb_t, sparse_t) - default_engine.predict(rgb_t, sparse_t)).abs().max().item()
    assert difference < ONNX_TOLERANCE_M


def test_lite_refinement_exports_and_matches_torch(tmp_path):
    """The lite configuration (kernels 3 and 5, separable guidance, the in-network prior) exports with
    dynamic H/W and gives PyTorch's depth; the ONNX file records its architecture kwargs."""
    lite = {"kernel_sizes": (3, 5), "iterations": 2, "guidance": "separable", "prior": "morphological"}
    engine = Engine.from_name(SMALL_MODEL, device="cpu", precision="fp32", seed=1, **lite)
    path = save_checkpoint(tmp_path / "lite.pt", engine.model)
    onnx_engine = Engine.from_checkpoint(path, device="cpu", backend="onnx")
    assert onnx_engine.backend == "onnx" and onnx_engine.kwargs["guidance"] == "separable"
    rgb, sparse = _frame(seed=6)
    assert np.abs(onnx_engine.predict(rgb, sparse) - engine.predict(rgb, sparse)).max() < ONNX_TOLERANCE_M


class PadsOnlyWhenNeeded(nn.Module):
    """An encoder-decoder whose padding sits behind a Python branch on the input size: tracing at a size
    that needs no padding drops the padding from the graph."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.fuse = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, rgb, sparse):
        height, width = rgb.shape[-2:]
        x = torch.cat([rgb, sparse], 1)
        if height % 2 or width % 2:
            x = F.pad(x, (0, width % 2, 0, height % 2))
        up = F.interpolate(self.down(x), scale_factor=2.0, mode="nearest")
        return self.fuse(torch.cat([up, x], 1))[..., :height, :width]


def test_export_refuses_a_graph_with_a_size_frozen_by_tracing(tmp_path):
    out = tmp_path / "frozen.onnx"
    with pytest.raises(ExportError, match="frozen by tracing"):
        export_onnx(PadsOnlyWhenNeeded(), out, example_size=(64, 96))
    assert not out.exists()
    # Traced at a size that takes the padding branch, the same model exports correctly.
    assert export_onnx(PadsOnlyWhenNeeded(), out, example_size=(63, 95)).is_file()


def test_onnx_backend_from_checkpoint_exports_once_to_cache(checkpoint_path, tmp_path, monkeypatch):
    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path / "cache"))
    cached = onnx_cache_path(checkpoint_path, refinement="fused")  # a CDSPN on the CPU: propagation outside
    assert not cached.exists()
    engine = Engine.from_checkpoint(checkpoint_path, device="cpu", backend="onnx")
    assert engine.onnx_path == cached and cached.is_file()
    assert engine.metadata == {"trained_on": "synthetic"}
    written_at = cached.stat().st_mtime_ns
    again = Engine.from_checkpoint(checkpoint_path, device="cpu", backend="onnx")
    assert cached.stat().st_mtime_ns == written_at  # reused, not exported again
    rgb, sparse = _frame(seed=6)
    torch_engine = Engine.from_checkpoint(checkpoint_path, device="cpu")
    assert np.abs(again.predict(rgb, sparse) - torch_engine.predict(rgb, sparse)).max() < ONNX_TOLERANCE_M


def test_onnx_cache_name_follows_the_network_code(checkpoint_path, tmp_path, monkeypatch):
    """A graph exported by other network code (same checkpoint, same version: an editable install after an
    edit) is not reused."""
    import shutil

    from depth_completion_ros import inference
    from depth_completion_ros.runtime import onnx_files

    code = tmp_path / "models"
    shutil.copytree(Path(inference.__file__).parent / "models", code)
    before = inference.model_code_digest(code)
    assert before == inference.model_code_digest(code)
    with open(code / "dacspn.py", "a") as stream:
        stream.write("# changed\n")
    assert inference.model_code_digest(code) != before
    first = onnx_cache_path(checkpoint_path)
    monkeypatch.setattr(onnx_files, "model_code_digest", lambda folder=None: "0" * 16)
    assert onnx_cache_path(checkpoint_path) != first


def test_onnx_file_of_another_architecture_is_refused(exported, tmp_path):
    other = save_checkpoint(tmp_path / "other.pt", Engine.from_name(OTHER_MODEL, device="cpu", **FAST_KWARGS).model)
    with pytest.raises(ValueError, match=f"holds '{SMALL_MODEL}' but checkpoint .* is '{OTHER_MODEL}'"):
        Engine.from_checkpoint(other, device="cpu", backend="onnx", onnx_path=exported)
    with pytest.raises(FileNotFoundError, match="ONNX file not found"):
        Engine.from_checkpoint(other, device="cpu", backend="onnx", onnx_path=tmp_path / "absent.onnx")


def test_export_command_reports_file_and_difference(checkpoint_path, tmp_path, capsys):
    out = tmp_path / "cli" / "small.onnx"
    status = cli.main(["export", "--checkpoint", str(checkpoint_path), "--onnx", str(out),
                       "--height", "48", "--width", "80"])
    printed = capsys.readouterr().out
    assert status == 0 and out.is_file()
    assert f"wrote {out}" in printed
    difference_line = next(line for line in printed.splitlines() if line.startswith("max |onnx - torch|"))
    assert "37x63" in difference_line  # checked at another size than the traced 48x80
    assert float(difference_line.split(":")[-1].split()[0]) < ONNX_TOLERANCE_M


def test_export_command_names_a_missing_checkpoint(tmp_path, capsys):
    status = cli.main(["export", "--checkpoint", str(tmp_path / "absent.pt"), "--onnx", str(tmp_path / "x.onnx")])
    assert status == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_export_command_writes_onnx_files_beside_a_checkpoint_for_the_engine(checkpoint_path, tmp_path, capsys,
                                                                             monkeypatch):
    """`dcros export --beside` (how the shipped models/*.onnx are made): the whole graph and, for a CDSPN, the graph
    without the propagation, each recording the checkpoint's digest and metadata; backend auto runs them in the
    checkpoint's place, exporting nothing."""
    from depth_completion_ros.runtime.onnx_files import META_CHECKPOINT_SHA256, file_sha256, onnx_beside

    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint = tmp_path / "small.pt"
    checkpoint.write_bytes(checkpoint_path.read_bytes())
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--beside", "--height", "48", "--width", "80"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("max |onnx - torch|") == 2 and "propagation fused" in printed
    for refinement in ("graph", "fused"):
        meta = read_onnx_metadata(onnx_beside(checkpoint, refinement))
        assert meta[META_CHECKPOINT_SHA256] == file_sha256(checkpoint)
    engine = Engine.from_checkpoint(checkpoint, device="cpu", backend="auto")
    assert engine.onnx_path == onnx_beside(checkpoint, "fused") and engine.metadata == {"trained_on": "synthetic"}
    assert "small.fused.onnx, exported from the checkpoint" in engine.backend_reason
    assert not (tmp_path / "cache").exists()
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--beside", "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "give one of --onnx FILE and --beside" in capsys.readouterr().err


def test_device_is_a_string_with_the_type_and_index_of_a_torch_device():
    """`engine.device` needs no PyTorch (the ONNX Runtime engine runs without it) and serves where PyTorch takes a
    device."""
    from depth_completion_ros.inference import Device

    cpu, cuda = Device("cpu"), Device("cuda:1")
    assert (cpu.type, cpu.index, cuda.type, cuda.index) == ("cpu", None, "cuda", 1)
    assert cpu == "cpu" and cpu == torch.device("cpu") and torch.device("cpu") == cpu
    assert cuda != torch.device("cuda", 0) and cuda == torch.device("cuda", 1) and f"{cuda}" == "cuda:1"
    assert torch.zeros(1).to(cpu).device == cpu and len({cpu, Device("cpu")}) == 1
