"""int8 export (quantization.py, `dcros export --int8`): a real ONNX Runtime static quantization of a tiny CDSPN,
calibrated on frames of the synthetic KITTI-layout world."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from depth_completion_ros.cli import main as dcros  # noqa: E402
from depth_completion_ros.inference import Engine, export_onnx, read_onnx_architecture  # noqa: E402
from depth_completion_ros.models import build_model  # noqa: E402
from depth_completion_ros.models.checkpoint import save_checkpoint  # noqa: E402
from depth_completion_ros.quantization import (CalibrationFrames, default_int8_nodes, int8_record,  # noqa: E402
                                               quantize_onnx)

CROP = (64, 96)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tiny_cdspn_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("cdspn_x32", width=8, iterations=1, prior="morphological").eval()
    folder = tmp_path_factory.mktemp("int8")
    return model, export_onnx(model, folder / "fp32.onnx", example_size=CROP)


def test_quantize_onnx_quantizes_the_chosen_convolutions_only(synthetic_kitti, tiny_cdspn_onnx, tmp_path):
    import onnx

    model, fp32 = tiny_cdspn_onnx
    calibration = CalibrationFrames(synthetic_kitti, "train", count=2, crop=CROP)
    assert calibration.description.startswith("2 frames of")
    written, nodes = quantize_onnx(fp32, tmp_path / "int8.onnx", calibration)
    assert nodes and all("/refinement/" in name for name in nodes)
    graph = onnx.load(str(written))
    quantized_inputs = {node.output[0] for node in graph.graph.node if node.op_type == "DequantizeLinear"}
    for node in graph.graph.node:
        if node.op_type == "Conv":  # a quantized Conv reads dequantized inputs; the others read fp32 ones
            assert (node.input[0] in quantized_inputs) == (node.name in nodes), node.name
    assert read_onnx_architecture(written) == read_onnx_architecture(fp32)
    assert int8_record(written)["nodes"] == default_int8_nodes("cdspn_x32") and int8_record(fp32) == {}

    engine = Engine.from_onnx(written, device="cpu", threads=1)
    assert engine.precision == "int8" and Engine.from_onnx(fp32, device="cpu", threads=1).precision == "fp32"
    calibration.rewind()
    feed = calibration.get_next()
    rgb, sparse = torch.from_numpy(feed["rgb"]), torch.from_numpy(feed["sparse_depth"])
    with torch.no_grad():
        reference = model(rgb, sparse)
    depth = engine.predict(rgb, sparse)
    assert depth.shape == reference.shape and torch.isfinite(depth).all()
    assert not torch.equal(depth, reference)  # quantized: close, not equal
    valid = sparse > 0
    assert torch.equal(depth[valid], sparse[valid])  # re-injected returns stay exact after int8 guidance
    assert (depth - reference).abs().mean() < 0.05 * reference.abs().mean()


def test_quantize_onnx_errors_name_the_problem(synthetic_kitti, tiny_cdspn_onnx, tmp_path):
    _, fp32 = tiny_cdspn_onnx
    calibration = CalibrationFrames(synthetic_kitti, "train", count=1, crop=CROP)
    with pytest.raises(ValueError, match="matches none of the graph's .* convolutions"):
        quantize_onnx(fp32, tmp_path / "none.onnx", calibration, nodes="/no_such_layer/")
    with pytest.raises(ValueError, match="not a regular expression"):
        quantize_onnx(fp32, tmp_path / "bad.onnx", calibration, nodes="(")
    with pytest.raises(ValueError, match="no measured int8 node choice for architecture 'lspkd_student'"):
        default_int8_nodes("lspkd_student")
    with pytest.raises(ValueError, match="calibration frame count"):
        CalibrationFrames(synthetic_kitti, "train", count=0, crop=CROP)


def test_export_command_int8(synthetic_kitti, tmp_path, capsys):
    model = build_model("cdspn_x32", width=8, iterations=1)
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", model)
    out = tmp_path / "tiny_int8.onnx"
    assert dcros(["export", "--checkpoint", str(checkpoint), "--onnx", str(out), "--int8"]) != 0
    assert "--int8 needs --calibration" in capsys.readouterr().err
    code = dcros(["export", "--checkpoint", str(checkpoint), "--onnx", str(out), "--int8", "--calibration",
                  str(synthetic_kitti), "--calibration-frames", "1", "--height", str(CROP[0]), "--width", str(CROP[1])])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "int8 QDQ" in printed and "|int8 - fp32| on one calibration frame" in printed
    engine = Engine.from_checkpoint(checkpoint, device="cpu", backend="onnx", onnx_path=out, threads=1)
    assert engine.precision == "int8" and engine.backend == "onnx"
    depth = engine.predict(np.zeros((CROP[0], CROP[1], 3), np.uint8), np.zeros(CROP, np.float32))
    assert depth.shape == CROP and np.isfinite(depth).all()


def test_bench_int8_scores_and_times_every_graph_on_the_same_frames(synthetic_kitti, load_benchmark, tmp_path):
    bench = load_benchmark("bench_int8")
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", build_model("cdspn_x32", width=8, iterations=1))
    out = tmp_path / "int8.json"
    assert bench.main(["--checkpoint", str(checkpoint), "--calibration", str(synthetic_kitti), "--calibration-frames",
                       "1", "--data", str(synthetic_kitti), "--split", "val", "--limit", "1", "--crop", *map(str, CROP),
                       "--threads", "1", "--variants", "default", r"guidance_and_rgb=/refinement/|/rgb_e\d",
                       "--json", str(out)]) == 0
    import json

    report = json.loads(out.read_text())
    results = report["results"]
    assert list(results) == ["fp32", "default", "guidance_and_rgb"] and report["frames"] == 1
    assert results["fp32"]["rmse_change"] == 0 and results["fp32"]["speed_vs_fp32"] == 1
    assert 0 < results["default"]["convolutions"] < results["guidance_and_rgb"]["convolutions"]
    for name in ("default", "guidance_and_rgb"):
        assert results[name]["rmse_mm"] > 0 and isinstance(results[name]["worth_shipping"], bool)
    with pytest.raises(ValueError, match="NAME=REGEX"):
        bench.parse_variant("refinement")


def test_export_command_int8_with_the_propagation_fused(synthetic_kitti, tmp_path, capsys):
    """`--refinement fused` with `--int8`: the quantized graph keeps the refinement layout, so the engine runs
    it in int8 with the propagation outside, close to the fused fp32 graph."""
    from depth_completion_ros.inference import read_onnx_refinement

    torch.manual_seed(0)
    model = build_model("cdspn_x32", width=8, iterations=1, prior="morphological")
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", model)
    fp32, int8 = tmp_path / "fused.onnx", tmp_path / "fused_int8.onnx"
    size = ["--height", str(CROP[0]), "--width", str(CROP[1])]
    assert dcros(["export", "--checkpoint", str(checkpoint), "--onnx", str(fp32), "--refinement", "fused", *size]) == 0
    assert "the inputs of DA-CSPN++s propagation" in capsys.readouterr().out
    assert dcros(["export", "--checkpoint", str(checkpoint), "--onnx", str(int8), "--refinement", "fused", "--int8",
                  "--calibration", str(synthetic_kitti), "--calibration-frames", "1", *size]) == 0
    assert read_onnx_refinement(int8) == read_onnx_refinement(fp32) is not None
    engines = [Engine.from_checkpoint(checkpoint, device="cpu", backend="onnx", onnx_path=path, threads=1)
               for path in (fp32, int8)]
    assert [(e.precision, e.refinement) for e in engines] == [("fp32", "fused"), ("int8", "fused")]
    rgb = np.random.default_rng(0).integers(0, 256, (CROP[0], CROP[1], 3), dtype=np.uint8)
    sparse = np.where(np.random.default_rng(1).random(CROP) < 0.1, np.float32(20), np.float32(0)).astype(np.float32)
    depths = [engine.predict(rgb, sparse) for engine in engines]
    assert np.isfinite(depths[1]).all() and np.abs(depths[1] - depths[0]).mean() < 1.0
