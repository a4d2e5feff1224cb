"""The runtime without PyTorch: the node's pipeline, `dcros eval-bag`, `eval-kitti` and `demo` run the shipped default
model through its ONNX files in a process where PyTorch cannot be imported, with the depth PyTorch gives from the
checkpoint (1e-4 m); the shipped ONNX files equal their checkpoints; where PyTorch is needed and missing, the error
says so and how to install it.

"PyTorch is not installed" is a test double at the installation boundary: the child process starts with
sys.modules["torch"] = None, so that every `import torch` (and of torch.*) raises ImportError, and importlib finds
no torch, as on a machine without it. The child reports which torch modules it loaded.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from depth_completion_ros.cli import main as dcros
from depth_completion_ros.geometry import PinholeCamera
from depth_completion_ros.inference import Engine, example_inputs
from depth_completion_ros.model_zoo import DEFAULT_MODEL, default_checkpoint_path, shipped_checkpoints
from depth_completion_ros.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from depth_completion_ros.pipeline import FrameProcessor, PipelineOptions
from depth_completion_ros.runtime import resolve
from depth_completion_ros.runtime.onnx_files import (
    META_CHECKPOINT_SHA256, architecture_of, checkpoint_metadata_of, file_sha256, onnx_beside, read_onnx_metadata,
)

TOLERANCE_M = 1e-4
SHIPPED = ("cdspn_x32_synth", "cdspn_x32_lite_synth", "lspkd_student_synth")
WITHOUT_TORCH = "import sys\nsys.modules['torch'] = None  # test double: PyTorch is not installed\n"
# Printed by the child last: the torch modules it loaded (the double itself, None, does not count).
TORCH_REPORT = """
import json as _json
print("TORCH_LOADED", _json.dumps(sorted(name for name, module in sys.modules.items()
                                         if module is not None and name.split(".")[0] == "torch")))
sys.exit(status)
"""
# The command lines below run the network on the bottom rows only: the same path, a fraction of the time.
ROI = ["--roi", "bottom", "--roi-height", "96"]


def run_python(body: str, *args: str, block_torch: bool = True) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `body` (which sets `status`) in a child Python, PyTorch blocked or not; (the process, torch modules it
    loaded)."""
    code = (WITHOUT_TORCH if block_torch else "import sys\n") + textwrap.dedent(body) + TORCH_REPORT
    process = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    lines = [line for line in process.stdout.splitlines() if line.startswith("TORCH_LOADED ")]
    assert lines, f"the child did not finish (exit {process.returncode}):\n{process.stdout}\n{process.stderr}"
    return process, json.loads(lines[-1].split(" ", 1)[1])


def dcros_without_torch(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    return run_python("from depth_completion_ros.cli import main\nstatus = main(sys.argv[1:])\n", *args)


# ------------------------------------------------------------------------------------------- the node's frame

FRAME_CHILD = """
import numpy as np
from depth_completion_ros.geometry import PinholeCamera
from depth_completion_ros.pipeline import FrameProcessor, PipelineOptions
from depth_completion_ros.runtime import resolve
from depth_completion_ros.ros.params import accepted_model_names, build_engine, validate_parameters

inputs = np.load(sys.argv[1])
settings = validate_parameters({}, model_names=accepted_model_names())  # the node's defaults
engine = build_engine(settings)
width, height, *intrinsics = inputs["camera"].tolist()
processor = FrameProcessor(engine, PinholeCamera(int(width), int(height), *intrinsics), inputs["lidar_to_camera"],
                           PipelineOptions(min_depth=settings.min_depth, max_depth=settings.max_depth))
result = processor.process(inputs["rgb"], inputs["points"])
np.save(sys.argv[2], result.dense)
print("ENGINE", repr(engine), engine.backend, engine.onnx_path.name, f"{engine.backend}:{engine.device}")
print("REASON", engine.backend_reason)
status = 0
"""


def _frame(path: Path) -> dict:
    """A 240x100 camera looking at a LiDAR cloud (lidar = camera frame), saved for the child."""
    rng = np.random.default_rng(7)
    points = np.stack([rng.uniform(-12, 12, 4000), rng.uniform(-2, 3, 4000), rng.uniform(2, 45, 4000)], 1)
    frame = {"camera": np.array([240, 100, 120.0, 120.0, 119.5, 49.5]), "lidar_to_camera": np.eye(4),
             "rgb": rng.integers(0, 256, (100, 240, 3), dtype=np.uint8), "points": points.astype(np.float32)}
    np.savez(path, **frame)
    return frame


def _pytorch_pipeline(frame: dict) -> np.ndarray:
    """The same frame through PyTorch: the default checkpoint, the whole network, the same pipeline."""
    engine = Engine.from_checkpoint(default_checkpoint_path(), device="cpu", backend="torch", refinement="graph")
    camera = PinholeCamera(240, 100, 120.0, 120.0, 119.5, 49.5)
    return FrameProcessor(engine, camera, frame["lidar_to_camera"], PipelineOptions()).process(
        frame["rgb"], frame["points"]).dense


def _assert_same_depth(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    assert np.nanmax(np.abs(actual - expected)) < TOLERANCE_M


def test_the_node_pipeline_runs_the_default_model_without_pytorch(tmp_path):
    frame = _frame(tmp_path / "frame.npz")
    process, loaded = run_python(FRAME_CHILD, str(tmp_path / "frame.npz"), str(tmp_path / "dense.npy"))
    assert process.returncode == 0, process.stderr
    assert loaded == []
    engine_line = next(line for line in process.stdout.splitlines() if line.startswith("ENGINE"))
    assert f" onnx {DEFAULT_MODEL}.fused.onnx onnx:cpu" in engine_line  # numba here: the fused graph
    dense = np.load(tmp_path / "dense.npy")
    assert np.isfinite(dense).mean() > 0.9
    _assert_same_depth(dense, _pytorch_pipeline(frame))


def test_with_pytorch_installed_the_default_engine_still_leaves_it_unimported(tmp_path):
    """Backend auto on the CPU runs the shipped ONNX file (its checkpoint digest matches): no export, no PyTorch."""
    _frame(tmp_path / "frame.npz")
    process, loaded = run_python(FRAME_CHILD, str(tmp_path / "frame.npz"), str(tmp_path / "dense.npy"),
                                 block_torch=False)
    assert process.returncode == 0, process.stderr
    assert loaded == []
    reason = next(line for line in process.stdout.splitlines() if line.startswith("REASON"))
    assert "measured" in reason and f"runs {DEFAULT_MODEL}.fused.onnx, exported from the checkpoint" in reason


# ------------------------------------------------------------------------------------------- the commands

@pytest.fixture(scope="module")
def tiny_drive(tmp_path_factory):
    """A one-frame synthetic drive (KITTI layout) and its rosbag2."""
    from depth_completion_ros.data.kitti import KittiRawDrive
    from depth_completion_ros.data.rosbag import write_kitti_drive_bag
    from depth_completion_ros.data.synth import drive_name, generate_dataset

    root = tmp_path_factory.mktemp("tiny_drive")
    generate_dataset(root / "kitti", drives=1, frames=1, seed=3, val_drives=1, progress=False)
    write_kitti_drive_bag(KittiRawDrive(root / "kitti" / "kitti_raw", drive_name(1)), root / "bag",
                          depth_root=root / "kitti")
    return root


def _scores(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def _assert_same_scores(without_torch: dict, with_torch: dict) -> None:
    """|RMSE(a) - RMSE(b)| and |MAE(a) - MAE(b)| are at most max |a - b|: within 1e-4 m = 0.1 mm."""
    assert without_torch["frames_scored"] == with_torch["frames_scored"] >= 1
    assert without_torch["engine"]["backend"] == "onnx" and with_torch["engine"]["backend"] == "torch"
    for key in ("rmse_mm", "mae_mm"):
        assert without_torch[key] == pytest.approx(with_torch[key], abs=TOLERANCE_M * 1000), key


def test_eval_bag_runs_the_default_model_without_pytorch(tiny_drive, tmp_path):
    arguments = ["eval-bag", str(tiny_drive / "bag"), "--model", "default", "--panels", "0", *ROI]
    process, loaded = dcros_without_torch(*arguments, "--out", str(tmp_path / "onnx"))
    assert process.returncode == 0, process.stderr
    assert loaded == []
    assert dcros([*arguments, "--out", str(tmp_path / "torch"), "--backend", "torch", "--refinement", "graph"]) == 0
    _assert_same_scores(_scores(tmp_path / "onnx"), _scores(tmp_path / "torch"))


def test_eval_kitti_runs_the_default_model_without_pytorch(tiny_drive, tmp_path):
    arguments = ["eval-kitti", "--data", str(tiny_drive / "kitti"), "--split", "val", "--limit", "1",
                 "--panels", "0", *ROI]
    process, loaded = dcros_without_torch(*arguments, "--out", str(tmp_path / "onnx"))
    assert process.returncode == 0, process.stderr
    assert loaded == []
    assert dcros([*arguments, "--out", str(tmp_path / "torch"), "--backend", "torch", "--refinement", "graph"]) == 0
    _assert_same_scores(_scores(tmp_path / "onnx"), _scores(tmp_path / "torch"))


def test_demo_runs_without_pytorch(tmp_path):
    process, loaded = dcros_without_torch("demo", "--out", str(tmp_path / "demo"), "--frames", "1", "--baseline",
                                          "none", *ROI)
    assert process.returncode == 0, process.stderr
    assert loaded == []
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["model"]["frames_scored"] == 1 and "backend='onnx'" in summary["model"]["engine"]


# ------------------------------------------------------------------------------------------- what needs PyTorch

ERRORS_CHILD = """
import contextlib, io, json
from depth_completion_ros.cli import main
from depth_completion_ros.inference import Engine, PyTorchRequired
from depth_completion_ros.model_zoo import default_checkpoint_path, resolve_engine
from depth_completion_ros.ros.params import ParameterError, accepted_model_names, build_engine, validate_parameters

said = {}
def attempt(name, call):
    try:
        call()
        said[name] = "no error"
    except (PyTorchRequired, ParameterError, ValueError) as error:
        said[name] = f"{type(error).__name__}: {error}"

attempt("from_name", lambda: Engine.from_name("cdspn_x32", device="cpu"))
attempt("registered", lambda: resolve_engine("cdspn_x32", device="cpu"))
attempt("backend_torch", lambda: Engine.from_checkpoint(default_checkpoint_path(), device="cpu", backend="torch"))
attempt("bare_checkpoint", lambda: Engine.from_checkpoint(sys.argv[1], device="cpu", backend="auto"))
attempt("node_backend_torch", lambda: build_engine(validate_parameters({"backend": "torch"}, accepted_model_names())))
stderr = io.StringIO()
with contextlib.redirect_stderr(stderr):
    said["train_status"] = main(["train", "--config", "config/none.yaml"])
said["train"] = stderr.getvalue()
said["names"] = list(accepted_model_names())
print("SAID", json.dumps(said))
status = 0
"""


def test_what_needs_pytorch_says_so_where_it_is_missing(tmp_path):
    bare = shutil.copy(default_checkpoint_path(), tmp_path / "copy.pt")  # no ONNX file beside it
    process, loaded = run_python(ERRORS_CHILD, str(bare))
    assert process.returncode == 0, process.stderr
    said = json.loads(next(line for line in process.stdout.splitlines() if line.startswith("SAID"))[5:])
    hint = "pip install 'depth_completion_ros[train]'"
    for name in ("from_name", "backend_torch", "bare_checkpoint"):
        assert said[name].startswith("PyTorchRequired") and "needs PyTorch" in said[name] and hint in said[name], name
    assert "no ONNX file exported from it" in said["bare_checkpoint"]
    assert said["registered"].startswith("ValueError: unknown model 'cdspn_x32'")
    assert "need PyTorch" in said["registered"]
    assert said["node_backend_torch"].startswith("ParameterError: parameter 'backend'")
    assert hint in said["node_backend_torch"]
    assert said["train_status"] == 2 and "dcros train needs PyTorch" in said["train"]
    # The node's model names: the shipped models and the baselines, no registered architecture (they need PyTorch).
    assert set(SHIPPED) | {"baseline:nearest", "baseline:morphological"} <= set(said["names"])
    assert "cdspn_x32" not in said["names"]
    assert loaded == []


# ------------------------------------------------------------------------------------------- the shipped files

@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_onnx_files_are_their_checkpoints(name):
    """Each shipped checkpoint has its ONNX files (the whole graph; for a CDSPN also the one that stops before the
    propagation), recording its digest, architecture, kwargs and metadata, and giving its depth to 1e-4 m at two
    sizes that are no multiple of the networks' strides."""
    checkpoint_path = shipped_checkpoints()[name]
    checkpoint = load_checkpoint(checkpoint_path)
    reference = Engine.from_checkpoint(checkpoint_path, device="cpu", backend="torch", refinement="graph", threads=1)
    refinements = ("graph", "fused") if checkpoint.architecture.startswith("cdspn_") else ("graph",)
    for refinement in refinements:
        path = onnx_beside(checkpoint_path, refinement)
        meta = read_onnx_metadata(path)
        assert meta[META_CHECKPOINT_SHA256] == file_sha256(checkpoint_path), path
        assert architecture_of(meta) == (checkpoint.architecture, json.loads(json.dumps(checkpoint.kwargs)))
        assert checkpoint_metadata_of(meta) == json.loads(json.dumps(checkpoint.metadata, default=str))
        engine = Engine.from_onnx(path, device="cpu", threads=1)
        assert engine.refinement == refinement and engine.precision == "fp32"
        for seed, (height, width) in enumerate(((45, 150), (101, 333))):
            rgb, sparse = example_inputs(height, width, seed=seed)
            difference = (engine.predict(rgb, sparse) - reference.predict(rgb, sparse)).abs().max().item()
            assert difference < TOLERANCE_M, (path.name, height, width, difference)


def test_backend_auto_runs_the_shipped_file_beside_the_checkpoint_not_an_export(tmp_path, monkeypatch):
    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path / "cache"))
    engine = Engine.from_checkpoint(default_checkpoint_path(), device="cpu", backend="auto", refinement="graph")
    assert engine.onnx_path == onnx_beside(default_checkpoint_path()) and engine.backend == "onnx"
    assert engine.metadata == load_checkpoint(default_checkpoint_path()).metadata
    assert not (tmp_path / "cache").exists()
    # A changed checkpoint is not described by the old files: it is to be exported to the cache, as before.
    model, checkpoint = load_model(default_checkpoint_path())
    changed = save_checkpoint(tmp_path / f"{DEFAULT_MODEL}.pt", model, metadata={**checkpoint.metadata, "changed": 1})
    shutil.copy(onnx_beside(default_checkpoint_path()), onnx_beside(changed))
    spec, _ = resolve.for_checkpoint(changed, device="cpu", backend="onnx", refinement="graph")
    assert spec.export and spec.onnx_path.parent == tmp_path / "cache" / "onnx" and spec.metadata["changed"] == 1


def test_without_numba_refinement_auto_runs_the_shipped_whole_graph(tmp_path, monkeypatch):
    """refinement "auto" keeps working without numba: the whole graph beside the checkpoint, still no export."""
    from depth_completion_ros.models import dacspn_cpu

    monkeypatch.setenv("DCROS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(dacspn_cpu, "_IMPORT_ERROR", ImportError("No module named 'numba'"))  # numba missing
    engine = Engine.from_checkpoint(default_checkpoint_path(), device="cpu", backend="auto")
    assert engine.onnx_path == onnx_beside(default_checkpoint_path(), "graph") and engine.refinement == "graph"
    assert not (tmp_path / "cache").exists()


def test_onnx_metadata_is_read_without_the_onnx_package_as_onnx_reads_it():
    import onnx

    for name in SHIPPED:
        path = onnx_beside(shipped_checkpoints()[name])
        expected = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
        assert read_onnx_metadata(path) == expected
