"""ONNX Runtime on a GPU without PyTorch: which execution providers an engine asks onnxruntime for (TensorRT, then
CUDA, then the CPU), in which precision, and when backend "auto" takes ONNX Runtime on CUDA; the session records
the providers it got and says which GPU provider it did not.

The provider choice is a pure function of onnxruntime's provider list (`spec.gpu_providers`, `spec.gpu_provider`,
`spec.choose_backend(..., providers=...)`), tested with given lists. This machine has no GPU: where a test needs
onnxruntime to list a GPU provider, or a GPU driver to be present, it says so and replaces that answer only. The
GPU is the boundary that cannot be reached here; nothing on the GPU side of it runs.
"""
from __future__ import annotations

import logging

import pytest

from depth_completion_ros.model_zoo import default_checkpoint_path
from depth_completion_ros.runtime import resolve, spec
from depth_completion_ros.runtime.onnx_files import onnx_beside
from depth_completion_ros.runtime.onnx_runtime import OnnxRuntime, open_session, tensorrt_cache_dir
from depth_completion_ros.runtime.spec import (
    ORT_CPU, ORT_CUDA, ORT_TENSORRT, Device, EngineSpec, choose_backend, gpu_provider, gpu_providers, provider_names,
    resolve_precision,
)

CPU_ONLY = (ORT_CPU,)  # the onnxruntime package
WITH_CUDA = (ORT_CUDA, ORT_CPU)  # onnxruntime-gpu without TensorRT
WITH_TENSORRT = (ORT_TENSORRT, ORT_CUDA, ORT_CPU)  # onnxruntime-gpu as built with TensorRT
SMALL_GRAPH = default_checkpoint_path().with_name("cdspn_x32_lite_synth.onnx")  # shipped, 1.6 MB


# ------------------------------------------------------------------------------------------- the provider list

def test_tensorrt_comes_first_then_cuda_then_the_cpu(tmp_path):
    providers = gpu_providers(WITH_TENSORRT, Device("cuda:1"), "fp16", tmp_path)
    assert providers == [
        (ORT_TENSORRT, {"device_id": 1, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(tmp_path)}),
        (ORT_CUDA, {"device_id": 1}),
        ORT_CPU,
    ]
    assert provider_names(providers) == WITH_TENSORRT


def test_tensorrt_builds_fp16_engines_only_for_fp16_and_caches_only_where_told():
    fp32 = dict(gpu_providers(WITH_TENSORRT, Device("cuda:0"), "fp32")[0][1])
    assert fp32 == {"device_id": 0, "trt_fp16_enable": False}
    int8 = dict(gpu_providers(WITH_TENSORRT, Device("cuda:0"), "int8")[0][1])
    assert int8["trt_fp16_enable"] is False


def test_without_tensorrt_cuda_then_the_cpu_and_cuda_means_device_0():
    assert gpu_providers(WITH_CUDA, Device("cuda"), "fp32") == [(ORT_CUDA, {"device_id": 0}), ORT_CPU]
    assert gpu_providers(WITH_CUDA, Device("cuda:2"), "fp16") == [(ORT_CUDA, {"device_id": 2}), ORT_CPU]


def test_the_cpu_alone_where_onnxruntime_has_no_gpu_provider_or_the_device_is_the_cpu():
    assert gpu_providers(CPU_ONLY, Device("cuda:0"), "fp32") == [ORT_CPU]
    assert gpu_providers(WITH_TENSORRT, Device("cpu"), "fp32") == [ORT_CPU]
    assert gpu_providers((), Device("cpu")) == [ORT_CPU]  # onnxruntime not installed: not asked on the CPU


def test_tensorrt_is_not_asked_for_without_the_cuda_provider_it_hands_the_rest_to():
    assert gpu_provider((ORT_TENSORRT, ORT_CPU)) is None
    assert gpu_providers((ORT_TENSORRT, ORT_CPU), Device("cuda:0"), "fp16") == [ORT_CPU]
    assert gpu_provider(WITH_TENSORRT) == ORT_TENSORRT and gpu_provider(WITH_CUDA) == ORT_CUDA
    assert gpu_provider(CPU_ONLY) is None


# ------------------------------------------------------------------------------------------- precision

def test_onnx_on_cuda_runs_fp16_through_tensorrt_and_fp32_through_cuda(caplog):
    cuda = Device("cuda:0")
    assert resolve_precision("auto", cuda, "onnx", WITH_TENSORRT) == "fp16"
    assert resolve_precision("fp16", cuda, "onnx", WITH_TENSORRT) == "fp16"
    assert resolve_precision("fp32", cuda, "onnx", WITH_TENSORRT) == "fp32"
    assert resolve_precision("auto", cuda, "onnx", WITH_CUDA) == "fp32"
    with caplog.at_level(logging.WARNING, logger="depth_completion_ros.inference"):
        assert resolve_precision("fp16", cuda, "onnx", WITH_CUDA) == "fp32"
    assert ORT_TENSORRT in caplog.text  # says what fp16 would need
    assert resolve_precision("auto", cuda, "onnx-int8", WITH_TENSORRT) == "int8"  # the graph's own


def test_onnx_on_the_cpu_stays_fp32_whatever_onnxruntime_lists():
    assert resolve_precision("auto", Device("cpu"), "onnx", WITH_TENSORRT) == "fp32"
    assert resolve_precision("auto", Device("cpu"), "torch") == "fp32"


# ------------------------------------------------------------------------------------------- backend "auto"

def test_auto_on_cuda_takes_onnx_runtime_where_onnxruntime_has_a_gpu_provider():
    backend, reason = choose_backend("cdspn_x32", Device("cuda:0"), providers=WITH_TENSORRT)
    assert backend == "onnx" and f"on cuda:0 via {ORT_TENSORRT}" in reason
    backend, reason = choose_backend("cdspn_x32", Device("cuda:0"), providers=WITH_CUDA)
    assert backend == "onnx" and f"via {ORT_CUDA}" in reason and "fp32" in reason


def test_auto_on_cuda_keeps_pytorch_without_a_gpu_provider_or_for_fp16_without_tensorrt():
    backend, reason = choose_backend("cdspn_x32", Device("cuda:0"), providers=CPU_ONLY)
    assert backend == "torch" and ORT_CUDA in reason
    backend, reason = choose_backend("cdspn_x32", Device("cuda:0"), providers=WITH_CUDA, precision="fp16")
    assert backend == "torch" and "fp16" in reason  # PyTorch's autocast runs it; ONNX Runtime would run fp32
    assert choose_backend("cdspn_x32", Device("cuda:0"), providers=WITH_TENSORRT, precision="fp16")[0] == "onnx"


def test_auto_on_cuda_without_pytorch_says_so(monkeypatch):
    monkeypatch.setattr(spec, "torch_installed", lambda: False)  # the installation boundary: no PyTorch
    backend, reason = choose_backend("cdspn_x32", Device("cuda:0"), providers=WITH_CUDA, precision="fp16")
    assert backend == "onnx" and reason.startswith("PyTorch is not installed: ONNX Runtime on cuda:0 via")


# ------------------------------------------------------------------------------------------- device "auto"

def test_device_auto_without_pytorch_is_cuda_where_onnxruntime_gpu_and_a_driver_are(monkeypatch):
    # Pretended: no PyTorch, a GPU driver, onnxruntime-gpu's list. The GPU itself is the boundary not reached.
    monkeypatch.setattr(spec, "torch_installed", lambda: False)
    monkeypatch.setattr(spec, "gpu_driver_present", lambda: True)
    monkeypatch.setattr(spec, "onnx_providers_available", lambda: WITH_CUDA)
    assert spec.resolve_device("auto") == "cuda:0"
    assert spec.resolve_device("cuda:1") == "cuda:1"  # onnxruntime does not count devices: taken as asked
    monkeypatch.setattr(spec, "onnx_providers_available", lambda: CPU_ONLY)
    assert spec.resolve_device("auto") == "cpu"


def test_device_auto_without_a_driver_asks_neither_pytorch_nor_onnxruntime(monkeypatch):
    monkeypatch.setattr(spec, "gpu_driver_present", lambda: False)

    def asked():
        raise AssertionError("onnxruntime was asked about CUDA on a machine without a GPU driver")

    monkeypatch.setattr(spec, "onnx_providers_available", asked)
    monkeypatch.setattr(spec, "require_torch", lambda what: asked())
    assert spec.resolve_device("auto") == "cpu"


# ------------------------------------------------------------------------------------------- resolve

def test_resolve_on_this_cpu_machine_keeps_the_cpu_path(monkeypatch):
    """Backend auto here: the shipped graph on the CPU, as before; onnxruntime is not asked for its providers."""
    def asked():
        raise AssertionError("onnxruntime's providers were asked for on the CPU")

    monkeypatch.setattr(spec, "onnx_providers_available", asked)
    monkeypatch.setattr(resolve, "onnx_providers_available", asked)
    described, _ = resolve.for_checkpoint(default_checkpoint_path(), device="cpu", backend="auto")
    assert (described.backend, described.device, described.precision) == ("onnx", "cpu", "fp32")
    assert described.providers == (ORT_CPU,) and described.summary == f"onnx on cpu via {ORT_CPU}"
    assert "measured" in described.backend_reason and "via" not in described.backend_reason
    on_torch, _ = resolve.for_checkpoint(default_checkpoint_path(), device="cpu", backend="torch")
    assert on_torch.providers == () and on_torch.summary == "torch on cpu"


def test_resolve_on_cuda_without_pytorch_runs_the_whole_graph_through_tensorrt_in_fp16(monkeypatch):
    # Pretended: no PyTorch, a GPU driver, and onnxruntime-gpu with TensorRT; the GPU is the boundary not reached
    # (nothing is built or run).
    for module in (spec, resolve):
        monkeypatch.setattr(module, "torch_installed", lambda: False)
        monkeypatch.setattr(module, "onnx_providers_available", lambda: WITH_TENSORRT)
    monkeypatch.setattr(spec, "gpu_driver_present", lambda: True)
    checkpoint = default_checkpoint_path()
    described, loaded = resolve.for_checkpoint(checkpoint, device="auto", backend="auto")
    assert loaded is None and described.device == "cuda:0" and described.backend == "onnx"
    assert described.onnx_path == onnx_beside(checkpoint)  # the whole graph, not the fused one
    assert described.refinement == "graph" and described.precision == "fp16" and not described.fallback
    assert described.providers == WITH_TENSORRT
    assert described.summary == f"onnx on cuda:0 via {ORT_TENSORRT}"
    assert f"via {ORT_TENSORRT}" in described.backend_reason


def test_resolve_on_cuda_with_pytorch_prefers_onnx_runtime_and_never_a_fused_graph(monkeypatch):
    # Pretended: PyTorch counts one CUDA device, onnxruntime-gpu lists the CUDA provider; no GPU is reached.
    monkeypatch.setattr(spec, "_cuda_devices", lambda: (1, "PyTorch"))
    for module in (spec, resolve):
        monkeypatch.setattr(module, "onnx_providers_available", lambda: WITH_CUDA)
    checkpoint = default_checkpoint_path()
    fused = onnx_beside(checkpoint, "fused")
    described, _ = resolve.for_checkpoint(checkpoint, device="cuda:0", backend="auto", onnx_path=fused)
    assert described.backend == "onnx" and described.fallback  # PyTorch takes over if the session fails
    assert described.onnx_path == onnx_beside(checkpoint) and described.refinement == "graph"
    assert described.precision == "fp32" and described.providers == WITH_CUDA
    asked, _ = resolve.for_checkpoint(checkpoint, device="cuda:0", backend="auto", onnx_path=fused, refinement="fused")
    assert asked.onnx_path == fused and asked.refinement == "fused"  # asked for by name: kept
    on_torch, _ = resolve.for_checkpoint(checkpoint, device="cuda:0", backend="auto", precision="fp16")
    assert on_torch.backend == "torch" and on_torch.precision == "fp16"


# ------------------------------------------------------------------------------------------- the session

def test_the_session_records_its_providers_on_the_cpu():
    runtime = OnnxRuntime(resolve.for_onnx(SMALL_GRAPH, device="cpu"))
    assert runtime.providers == (ORT_CPU,) and runtime.provider == ORT_CPU
    assert runtime.summary == f"onnx on cpu via {ORT_CPU}" and runtime.summary in repr(runtime)


@pytest.mark.filterwarnings("ignore:Specified provider")  # onnxruntime's own note of the provider it lacks
def test_a_gpu_provider_listed_but_not_loaded_is_named_in_a_warning(monkeypatch, tmp_path, caplog):
    # Pretended: onnxruntime lists TensorRT and CUDA (onnxruntime-gpu's list) but cannot load them, as where their
    # libraries or the GPU are missing: here the GPU is the boundary not reached, and the session is the CPU's.
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(WITH_TENSORRT))
    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path))
    described = EngineSpec(architecture="cdspn_x32", backend="onnx", device=Device("cuda:0"), precision="fp16",
                           onnx_path=SMALL_GRAPH, providers=WITH_TENSORRT)
    with caplog.at_level(logging.WARNING, logger="depth_completion_ros.inference"):
        runtime = OnnxRuntime(described)
    assert runtime.providers == (ORT_CPU,) and runtime.summary == f"onnx on cuda:0 via {ORT_CPU}"
    assert runtime.precision == "fp32"  # fp16 was TensorRT's
    warning = caplog.text
    assert ORT_TENSORRT in warning and ORT_CUDA in warning and "in fp32" in warning
    assert tensorrt_cache_dir(SMALL_GRAPH, "fp16").is_dir()  # where TensorRT's engines would have been kept
    assert tensorrt_cache_dir(SMALL_GRAPH, "fp16").parent == tmp_path / "tensorrt"


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_the_session_asks_only_for_the_providers_it_is_given(monkeypatch, caplog):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(WITH_TENSORRT))  # pretended, as above
    with caplog.at_level(logging.WARNING, logger="depth_completion_ros.inference"):
        session = open_session(SMALL_GRAPH, Device("cuda:0"), providers=WITH_CUDA)
    assert session.get_providers() == [ORT_CPU]
    assert ORT_CUDA in caplog.text and ORT_TENSORRT not in caplog.text  # TensorRT was not asked for


def test_tensorrt_engines_are_cached_by_the_graph_s_content_and_precision(tmp_path, monkeypatch):
    # ONNX Runtime names an engine by the file name and node names: two graphs of one name must not share one.
    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path / "cache"))
    first, second = tmp_path / "a" / "model.onnx", tmp_path / "b" / "model.onnx"
    for path, content in ((first, b"one"), (second, b"two")):
        path.parent.mkdir()
        path.write_bytes(content)
    assert tensorrt_cache_dir(first, "fp16") != tensorrt_cache_dir(second, "fp16")
    assert tensorrt_cache_dir(first, "fp16") != tensorrt_cache_dir(first, "fp32")
    assert tensorrt_cache_dir(first, "fp16").parent == tmp_path / "cache" / "tensorrt"
