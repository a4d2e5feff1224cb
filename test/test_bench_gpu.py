"""The GPU benchmark (benchmarks/bench_gpu.py) end to end on the CPU at a tiny size: what its JSON holds
where there is no GPU, and its choice of what runs where. Its ONNX Runtime rows need onnxruntime-gpu and a GPU,
which this machine may lack: their call is run here through the CPU's provider instead, so that it cannot rot."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from depth_completion_ros.runtime.spec import ORT_CPU, ORT_CUDA, ORT_TENSORRT, onnx_providers_available

MODELS = ("cdspn_x32", "lspkd_student_synth")  # a registered CDSPN (with DA-CSPN++) and a shipped checkpoint
TORCH_VARIANTS = {"engine", "eager", "cuda_graph", "compiled", "compiled+cuda_graph"}
ONNX_VARIANTS = {"onnx_cuda", "onnx_tensorrt"}


@pytest.fixture(scope="module")
def bench_gpu(load_benchmark):
    return load_benchmark("bench_gpu")


@pytest.fixture(scope="module")
def report(bench_gpu, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_gpu") / "gpu.json"
    argv = ["--device", "cpu", "--height", "32", "--width", "64", "--runs", "2", "--warmup", "1",
            "--models", *MODELS, "--no-compile", "--points", "20000", "--json", str(out)]
    assert bench_gpu.main(argv) == 0
    return json.loads(out.read_text())


def _rows(report, **match):
    return [row for row in report["results"] if all(row[key] == value for key, value in match.items())]


def test_every_model_is_timed_in_fp32_and_the_rest_is_skipped_with_a_reason(report):
    assert list(report["models"]) == list(MODELS)
    assert report["models"]["cdspn_x32"]["dacspn_refinement"] is True
    assert report["models"]["lspkd_student_synth"]["source"] == "shipped"
    for model in MODELS:
        for variant in ("engine", "eager"):
            (row,) = _rows(report, model=model, precision="fp32", variant=variant)
            assert row["status"] == "ok", row
            assert row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"] and row["runs"] == 2
            assert row["max_abs_diff_m"] == 0.0  # the same forward as the reference
        fp16 = _rows(report, model=model, precision="fp16")
        assert {row["variant"] for row in fp16} == TORCH_VARIANTS | ONNX_VARIANTS
        off_cpu = _rows(report, model=model, variant="cuda_graph") + _rows(report, model=model, variant="compiled")
        for row in fp16 + off_cpu:
            assert row["status"] == "skipped" and row["reason"], row
        assert "CUDA" in _rows(report, model=model, precision="fp32", variant="cuda_graph")[0]["reason"]
        assert "--no-compile" in _rows(report, model=model, precision="fp32", variant="compiled")[0]["reason"]
    assert report["settings"]["device"] == "cpu" and report["gpu"] is None


def test_onnx_runtime_rows_are_skipped_with_the_provider_that_is_missing(report):
    """On the CPU the ONNX rows never run: the reason names onnxruntime's missing provider (the CPU package has
    no CUDAExecutionProvider), or with onnxruntime-gpu installed, the CUDA device that --device cpu is not."""
    expected = (f"onnxruntime has no {ORT_CUDA}" if ORT_CUDA not in onnx_providers_available()
                else "needs a CUDA device")
    for model in MODELS:
        for precision in ("fp32", "fp16"):
            rows = [row for row in _rows(report, model=model, precision=precision) if row["variant"] in ONNX_VARIANTS]
            assert {row["variant"] for row in rows} == ONNX_VARIANTS
            for row in rows:
                assert row["status"] == "skipped" and expected in row["reason"], row


def test_onnx_skip_reasons_follow_the_providers_onnxruntime_lists(bench_gpu):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    cpu_only = (ORT_CPU,)
    gpu = (ORT_CUDA, ORT_CPU)
    tensorrt = (ORT_TENSORRT, ORT_CUDA, ORT_CPU)
    assert bench_gpu.onnx_skip_reasons(cuda, "fp32", cpu_only) == {
        "onnx_cuda": f"onnxruntime has no {ORT_CUDA}", "onnx_tensorrt": f"onnxruntime has no {ORT_CUDA}"}
    assert bench_gpu.onnx_skip_reasons(cuda, "fp32", gpu) == {"onnx_tensorrt": f"onnxruntime has no {ORT_TENSORRT}"}
    assert bench_gpu.onnx_skip_reasons(cuda, "fp32", tensorrt) == {}
    assert set(bench_gpu.onnx_skip_reasons(cuda, "fp16", tensorrt)) == {"onnx_cuda"}  # fp16 through TensorRT only
    assert all("CUDA device" in reason for reason in bench_gpu.onnx_skip_reasons(cpu, "fp32", tensorrt).values())


def test_the_onnx_rows_call_runs_the_exported_graph(bench_gpu, tmp_path):
    """The export and the timed call of an ONNX row, through the CPU's provider: the provider is a parameter, and
    the GPU ones cannot be reached here. The depth matches eager PyTorch's."""
    from depth_completion_ros.inference import Engine, example_inputs

    model = Engine.from_name("cdspn_x32", device="cpu", precision="fp32", seed=0, width=8, iterations=1).model
    rgb, sparse = example_inputs(32, 64, seed=0)
    graph = bench_gpu.OnnxGraph(model, tmp_path / "small.onnx")
    call, output = bench_gpu.onnx_setup(graph, "cdspn_x32", torch.device("cpu"), "fp32", ORT_CPU,
                                        rgb.contiguous(memory_format=torch.channels_last), sparse)
    assert graph.path() == tmp_path / "small.onnx"
    call()
    with torch.inference_mode():
        expected = model(rgb, sparse)
    expected = expected[0] if isinstance(expected, (tuple, list)) else expected
    np.testing.assert_allclose(output().numpy(), expected.numpy(), atol=1e-3)
    with pytest.raises(RuntimeError, match=f"did not load {ORT_CUDA}"):  # no CPU timing passes for a GPU one
        bench_gpu.onnx_call(graph.path(), "cdspn_x32", torch.device("cpu"), "fp32", ORT_CUDA, rgb, sparse)


def test_pipeline_stages_and_goals_are_reported(report):
    pipeline = report["pipeline"]
    assert pipeline["image"] == [1242, 375] and pipeline["points"] == 20000 and pipeline["points_in_image"] > 0
    for path, stages in (("shipped_path", ("conversion", "projection", "postprocess")),
                         ("device_path", ("conversion", "upload", "projection", "postprocess"))):
        for stage in stages:
            assert pipeline[path]["stages"][stage]["median_ms"] > 0, (path, stage)
        assert pipeline[path]["non_network"]["median_ms"] > 0
    assert pipeline["projection_pixels_differing"] == 0  # torch and numpy projections agree

    goals = {goal["goal"]: goal for goal in report["goals"]}
    assert set(goals) == {"CDSPN x32 fp16 < 3 ms", "LSPKD student < 6 ms"}
    cdspn, lspkd = goals["CDSPN x32 fp16 < 3 ms"], goals["LSPKD student < 6 ms"]
    assert cdspn["target_ms"] == 3.0 and lspkd["target_ms"] == 6.0
    assert cdspn["verdict"] == "not measured" and "fp16" in cdspn["reason"]  # fp16 does not run on the CPU
    assert lspkd["model"] == "lspkd_student_synth" and lspkd["measured_ms"] > 0
    assert lspkd["verdict"] == "n/a" and "cpu" in lspkd["reason"]  # never a pass or fail off CUDA


def test_compile_is_skipped_for_models_without_dacspn_and_graphs_off_cuda(bench_gpu):
    args = argparse.Namespace(no_compile=False, compile_mode="max-autotune-no-cudagraphs")
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert set(bench_gpu.skip_reasons(cpu, "fp32", True, args)) == {"cuda_graph", "compiled+cuda_graph"}
    assert bench_gpu.skip_reasons(cuda, "fp32", True, args) == {}
    assert "DA-CSPN++" in bench_gpu.skip_reasons(cuda, "fp16", False, args)["compiled"]
    args.compile_mode = "reduce-overhead"  # its own CUDA graphs cannot be captured in another
    assert set(bench_gpu.skip_reasons(cuda, "fp16", True, args)) == {"compiled+cuda_graph"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where CUDA is absent")
def test_cuda_requested_without_cuda_is_a_usage_error(bench_gpu, capsys):
    with pytest.raises(SystemExit):
        bench_gpu.main(["--device", "cuda"])
    assert "--device cpu" in capsys.readouterr().err
