"""Backend "auto" and the CPU thread choice: ONNX Runtime on the CPU where measured faster, PyTorch on CUDA,
PyTorch when the export fails or onnxruntime is missing, the reason logged; threads from the affinity."""
from __future__ import annotations

import argparse
import logging
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

from depth_completion_ros import inference
from depth_completion_ros.commands._common import add_engine_arguments
from depth_completion_ros.inference import ONNX_FASTER_ON_CPU, Engine, available_cores, choose_backend
from depth_completion_ros.model_zoo import resolve_engine
from depth_completion_ros.models import build_model, registry
from depth_completion_ros.models.checkpoint import save_checkpoint

SMALL_MODEL = "cdspn_x32"  # in ONNX_FASTER_ON_CPU: auto picks ONNX Runtime for it on the CPU
SMALL_KWARGS = {"width": 8, "iterations": 1}
UNEXPORTABLE = "test_unexportable"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
needs_onnxruntime = pytest.mark.skipif(inference.onnx_runtime_available() is not None,
                                       reason="needs onnxruntime and onnx")


class Unexportable(nn.Module):
    """A tiny depth network with an operator the ONNX exporter has no translation for (aten::histc)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, rgb, sparse_depth):
        spread = torch.histc(sparse_depth, bins=4).std()
        return sparse_depth * self.scale + 0.0 * spread


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test exports into its own cache, never the user's."""
    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def small_checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "small.pt", build_model(SMALL_MODEL, **SMALL_KWARGS))


@pytest.fixture
def unexportable_checkpoint(tmp_path, monkeypatch):
    # Registered only for this test (the registry is process-wide: a permanent entry would show in every
    # model listing), and listed as "faster with ONNX Runtime" so that auto tries to export it.
    monkeypatch.setitem(registry._FACTORIES, UNEXPORTABLE, Unexportable)
    monkeypatch.setitem(ONNX_FASTER_ON_CPU, UNEXPORTABLE, (2.0, 1.0))
    return save_checkpoint(tmp_path / "unexportable.pt", build_model(UNEXPORTABLE))


def _frame(height: int = 40, width: int = 56):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    sparse = np.where(rng.random((height, width)) < 0.1, rng.uniform(1, 50, (height, width)), 0).astype(np.float32)
    return rgb, sparse


@needs_onnxruntime
def test_auto_picks_onnx_runtime_on_the_cpu_and_says_why(small_checkpoint, cache_dir, caplog):
    with caplog.at_level(logging.INFO, logger="depth_completion_ros.inference"):
        engine = Engine.from_checkpoint(small_checkpoint, device="cpu", backend="auto")
    assert engine.backend == "onnx" and "backend='onnx'" in repr(engine)
    assert "ONNX Runtime" in engine.backend_reason and "faster" in engine.backend_reason
    assert any("backend auto: onnx" in record.getMessage() for record in caplog.records)
    assert engine.onnx_path.parent == cache_dir / "onnx" and engine.onnx_path.is_file()
    rgb, sparse = _frame()
    reference = Engine.from_checkpoint(small_checkpoint, device="cpu", backend="torch").predict(rgb, sparse)
    np.testing.assert_allclose(engine.predict(rgb, sparse), reference, atol=1e-3)
    # The node's and the command line's entry point defaults to auto.
    assert resolve_engine(str(small_checkpoint), device="cpu").backend == "onnx"


def test_auto_falls_back_to_torch_when_the_export_fails(unexportable_checkpoint, cache_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="depth_completion_ros.inference"):
        engine = Engine.from_checkpoint(unexportable_checkpoint, device="cpu", backend="auto")
    assert engine.backend == "torch" and "PyTorch instead" in engine.backend_reason
    assert "histc" in engine.backend_reason  # the exporter's own words reach the log
    assert any("backend auto" in record.getMessage() and "histc" in record.getMessage() for record in caplog.records)
    rgb, sparse = _frame()
    np.testing.assert_allclose(engine.predict(rgb, sparse), sparse, atol=1e-6)
    # The failure is remembered beside the cache: the next load skips the export and says so.
    assert list((cache_dir / "onnx").glob("*.failed"))
    again = Engine.from_checkpoint(unexportable_checkpoint, device="cpu", backend="auto")
    assert again.backend == "torch" and "earlier ONNX export failed" in again.backend_reason
    # An explicit request still fails loudly.
    with pytest.raises(Exception, match="histc"):
        Engine.from_checkpoint(unexportable_checkpoint, device="cpu", backend="onnx")


def test_auto_keeps_torch_where_onnx_runtime_is_missing_or_not_faster(small_checkpoint, monkeypatch):
    # Hide onnxruntime at the import boundary: the machine without it is the case under test.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    engine = Engine.from_checkpoint(small_checkpoint, device="cpu", backend="auto")
    assert engine.backend == "torch" and "onnxruntime is not installed" in engine.backend_reason
    monkeypatch.delitem(sys.modules, "onnxruntime")
    backend, reason = choose_backend("lspkd_teacher_not_measured", torch.device("cpu"))
    assert backend == "torch" and "not measured faster" in reason


def _onnxruntime_gpu() -> bool:
    from depth_completion_ros.runtime.spec import gpu_provider, onnx_providers_available

    return gpu_provider(onnx_providers_available()) is not None


@needs_cuda
def test_auto_on_cuda_runs_onnx_runtime_gpu_else_torch(small_checkpoint):
    engine = Engine.from_checkpoint(small_checkpoint, device="cuda", backend="auto")
    assert engine.device.type == "cuda" and "cuda" in engine.backend_reason
    if _onnxruntime_gpu():
        assert engine.backend == "onnx" and engine.providers[0] in ("TensorrtExecutionProvider",
                                                                    "CUDAExecutionProvider")
    else:
        assert engine.backend == "torch"


def test_auto_choice_on_cuda_needs_no_device():
    expected = "onnx" if _onnxruntime_gpu() else "torch"
    assert choose_backend(SMALL_MODEL, torch.device("cuda", 0))[0] == expected


@needs_onnxruntime
def test_explicit_backends_are_kept(small_checkpoint):
    assert Engine.from_checkpoint(small_checkpoint, device="cpu", backend="torch").backend == "torch"
    onnx_engine = Engine.from_checkpoint(small_checkpoint, device="cpu", backend="onnx")
    assert onnx_engine.backend == "onnx" and onnx_engine.backend_reason == "requested"
    with pytest.raises(ValueError, match="backend must be one of auto, torch, onnx"):
        Engine.from_checkpoint(small_checkpoint, device="cpu", backend="fastest")


def test_untrained_registered_architecture_runs_torch_under_auto():
    engine = resolve_engine(SMALL_MODEL, device="cpu")
    assert engine.backend == "torch" and "untrained" in engine.backend_reason


def test_threads_default_to_the_cores_of_the_affinity_mask():
    assert available_cores() == len(os.sched_getaffinity(0))
    assert inference.resolve_threads(0) == available_cores()
    assert inference.resolve_threads(3) == 3 and inference.resolve_threads(None) is None
    with pytest.raises(ValueError, match="threads"):
        inference.resolve_threads(-1)


def test_torch_threads_apply_to_the_engine_calls_only():
    engine = Engine.from_name(SMALL_MODEL, device="cpu", threads=1, **SMALL_KWARGS)
    assert engine.threads == 1 and "threads=1" in repr(engine)
    seen = []
    engine.model.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        engine.predict(*_frame())
        assert seen == [1] and torch.get_num_threads() == 2  # restored for the rest of the process
    finally:
        torch.set_num_threads(before)


@needs_onnxruntime
def test_onnx_runtime_threads_follow_the_setting(small_checkpoint):
    engine = Engine.from_checkpoint(small_checkpoint, device="cpu", backend="onnx", threads=0)
    options = engine.runtime.session.get_session_options()
    assert options.intra_op_num_threads == available_cores() and options.inter_op_num_threads == 1
    assert Engine.from_checkpoint(small_checkpoint, device="cpu", backend="onnx",
                                  threads=1).runtime.session.get_session_options().intra_op_num_threads == 1


def test_command_line_defaults_to_auto_and_the_available_cores():
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    args = parser.parse_args([])
    assert args.backend == "auto" and args.threads == 0
    assert parser.parse_args(["--backend", "torch", "--threads", "2"]).threads == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--backend", "tensorrt"])
