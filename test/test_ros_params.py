"""The ROS-free parts of the node: parameters and their YAML, the newest-frame-wins worker and its drop
counts, transform choice, monitoring, colourising, the per-frame handler, and the launch/RViz files.
Everything here runs without ROS 2."""
from __future__ import annotations

import ast
import importlib.util
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rosbags.typesys import Stores, get_typestore
from torch import nn

from depth_completion_ros.data import messages
from depth_completion_ros.geometry import invert_transform, make_transform, quaternion_to_rotation
from depth_completion_ros.models import build_model
from depth_completion_ros.models.checkpoint import save_checkpoint
from depth_completion_ros.pipeline import FrameProcessor, PipelineOptions
from depth_completion_ros.ros import latest_frame
from depth_completion_ros.ros.colorize import colorize_depth, turbo_lut
from depth_completion_ros.ros.frame_handler import FrameHandler
from depth_completion_ros.ros.latest_frame import (
    DropCounter, FrameDropped, FrameWorker, LatestFrameMailbox,
)
from depth_completion_ros.ros.monitoring import (
    LEVEL_ERROR, LEVEL_OK, LEVEL_WARN, LatencyWindow, LogThrottle, RateMeter, describe_roi, summarize,
)
from depth_completion_ros.ros.params import (
    PARAMETER_SPECS, PARAMETERS, ParameterError, accepted_model_names, build_engine, default_values,
    parameters_from_yaml, parse_lidar_to_camera, read_calibration_file, validate_parameters,
)
from depth_completion_ros.ros.synthetic import wall_frame
from depth_completion_ros.ros.transforms import FROM_PARAMETER, FROM_TF, LatestTransforms, TransformResolver

ROOT = Path(__file__).resolve().parents[1]
PARAMS_YAML = ROOT / "config" / "depth_completion.yaml"
RVIZ_CONFIG = ROOT / "config" / "depth_completion.rviz"
LAUNCH_FILES = {name: ROOT / "launch" / name for name in ("depth_completion.launch.py", "bag_replay.launch.py")}
TYPES = get_typestore(Stores.ROS2_HUMBLE).types
SMALL_MODEL = "cdspn_x32"  # the smallest registered network


class DilateSparse(nn.Module):
    """A deterministic stand-in network: each pixel takes the largest sparse depth within `radius`
    pixels, times a learnable scale (1.0), so a test knows the exact output."""

    def __init__(self, radius: int = 1):
        super().__init__()
        self.radius = radius
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, rgb, sparse_depth):
        size = 2 * self.radius + 1
        return nn.functional.max_pool2d(sparse_depth, size, stride=1, padding=self.radius) * self.scale


# ----------------------------------------------------------------------------------------- parameters
def yaml_parameters() -> dict:
    return parameters_from_yaml(yaml.safe_load(PARAMS_YAML.read_text()))


def test_yaml_lists_exactly_the_declared_parameters_and_validates():
    from_yaml = yaml_parameters()
    assert set(from_yaml) == set(PARAMETER_SPECS)
    settings = validate_parameters(from_yaml, model_names=accepted_model_names())
    assert settings.sync_queue_size == from_yaml["sync.queue_size"]
    assert settings.sync_slop == from_yaml["sync.slop"]
    assert settings.lidar_to_camera is None  # all zeros = not set


def test_yaml_values_are_the_declared_defaults():
    assert yaml_parameters() == default_values()


def test_yaml_quotes_every_string_so_ros_reads_it_as_a_string():
    # ROS 2's parameter parser types plain scalars itself: an unquoted `nan` would become a double.
    root = yaml.compose(PARAMS_YAML.read_text())
    string_names = {spec.name.split(".")[-1] for spec in PARAMETERS if spec.kind == "string"}
    unquoted = []
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value in string_names and isinstance(value, yaml.ScalarNode) and value.style not in "\"'":
                    unquoted.append(key.value)
                stack.append(value)
    assert not unquoted


def test_every_spec_has_a_description_and_consistent_range():
    for spec in PARAMETERS:
        assert spec.description, spec.name
        if spec.minimum is not None:
            assert spec.minimum <= spec.default <= spec.maximum, spec.name
        if spec.choices is not None:
            assert spec.default in spec.choices, spec.name
    assert {spec.name for spec in PARAMETERS if not spec.read_only} == {
        "publish_colorized", "publish_sparse", "self_check.fraction", "self_check.every_n_frames",
        "self_check.second_run", "self_check.warn_rmse_mm", "self_check.error_rmse_mm",
        "self_check.warn_edge_agreement"}


@pytest.mark.parametrize("name, value, words", [
    ("sync.slop", 1, ["sync.slop", "1.0"]),                 # an int where ROS wants a double
    ("sync.slop", 0.0, ["sync.slop", ">="]),
    ("sync.queue_size", 0, ["sync.queue_size", ">= 1"]),
    ("sync.queue_size", 2.5, ["sync.queue_size", "integer"]),
    ("device", "gpu", ["device", "auto, cuda, cpu"]),
    ("precision", "int8", ["precision"]),
    ("backend", "tensorrt", ["backend"]),
    ("roi", "top", ["roi", "full, bottom, auto"]),
    ("backend", "fastest", ["backend", "auto, torch, onnx"]),
    ("roi_margin", -1, ["roi_margin", ">= 0"]),
    ("roi_margin", 4.0, ["roi_margin", "integer"]),
    ("threads", -2, ["threads", ">= 0"]),
    ("threads", 1.5, ["threads", "integer"]),
    ("invalid_value", float("nan"), ["invalid_value", "string"]),
    ("output_qos", "best_effort", ["output_qos"]),
    ("publish_colorized", "true", ["publish_colorized", "true or false"]),
    ("roi_height", True, ["roi_height", "integer"]),
    ("min_depth", float("inf"), ["min_depth", "finite"]),
    ("lidar_to_camera", [1, 0, 0], ["lidar_to_camera", "1.0"]),
    ("lidar_to_camera", [0.5] * 5, ["lidar_to_camera", "16", "7"]),
    ("model", "  ", ["model", "empty"]),
])
def test_bad_values_are_rejected_naming_the_parameter(name, value, words):
    with pytest.raises(ParameterError) as raised:
        validate_parameters({name: value})
    for word in words:
        assert word in str(raised.value)


def test_new_backend_roi_and_thread_choices_are_accepted():
    defaults = validate_parameters({})
    assert (defaults.backend, defaults.roi, defaults.roi_margin, defaults.threads) == ("auto", "full", 16, 0)
    settings = validate_parameters({"backend": "auto", "roi": "auto", "roi_margin": 0, "threads": 3})
    assert (settings.backend, settings.roi, settings.roi_margin, settings.threads) == ("auto", "auto", 0, 3)
    for backend in ("torch", "onnx"):
        assert validate_parameters({"backend": backend}).backend == backend


def test_cross_parameter_rules():
    with pytest.raises(ParameterError, match="max_depth"):
        validate_parameters({"min_depth": 50.0, "max_depth": 20.0})
    with pytest.raises(ParameterError, match="lidar_to_camera.*use_tf"):
        validate_parameters({"use_tf": False})
    with pytest.raises(ParameterError, match="onnx_path.*backend is 'torch'"):
        validate_parameters({"backend": "torch", "onnx_path": "/tmp/model.onnx"})
    with pytest.raises(ParameterError, match="onnx_path.*no such file"):
        validate_parameters({"backend": "onnx", "onnx_path": "/nonexistent/model.onnx"})
    with pytest.raises(ParameterError, match="unknown parameter.*sync.slp"):
        validate_parameters({"sync.slp": 0.1})


def test_model_must_be_default_registered_or_an_existing_file(tmp_path):
    names = ["cdspn_x32"]
    assert validate_parameters({"model": "default"}, model_names=names).model == "default"
    assert validate_parameters({"model": "cdspn_x32"}, model_names=names).model == "cdspn_x32"
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"")
    assert validate_parameters({"model": str(checkpoint)}, model_names=names).model == str(checkpoint)
    with pytest.raises(ParameterError, match="'model'.*cdspn_x33.*cdspn_x32"):
        validate_parameters({"model": "cdspn_x33"}, model_names=names)


def test_ros_managed_parameters_may_sit_beside_ours():
    settings = validate_parameters({"use_sim_time": True, "diagnostic_updater.period": 1.0,
                                    "qos_overrides./tf.subscription.depth": 10})
    assert settings.model == "default"


def test_lidar_to_camera_accepts_a_matrix_or_translation_and_quaternion():
    half = math.sqrt(0.5)
    # 90 degrees about z: x -> y. Translation (1, 2, 3).
    from_quaternion = parse_lidar_to_camera([1.0, 2.0, 3.0, 0.0, 0.0, half, half])
    assert np.allclose(from_quaternion @ [1.0, 0.0, 0.0, 1.0], [1.0, 3.0, 3.0, 1.0])
    from_matrix = parse_lidar_to_camera([float(v) for v in from_quaternion.reshape(-1)])
    assert np.allclose(from_matrix, from_quaternion)
    assert parse_lidar_to_camera([0.0] * 16) is None
    assert parse_lidar_to_camera([0.0] * 7) is None
    settings = validate_parameters({"use_tf": False, "lidar_to_camera": [float(v) for v in np.eye(4).reshape(-1)]})
    assert np.array_equal(settings.lidar_to_camera, np.eye(4))


@pytest.mark.parametrize("values, problem", [
    (np.diag([2.0, 1.0, 1.0, 1.0]), "rotation"),
    (np.diag([-1.0, 1.0, 1.0, 1.0]), "rotation"),   # a reflection is not a rotation
    (np.vstack([np.eye(4)[:3], [[0.0, 0.0, 1.0, 1.0]]]), "last row"),
])
def test_lidar_to_camera_must_be_rigid(values, problem):
    with pytest.raises(ParameterError, match=f"lidar_to_camera.*{problem}"):
        parse_lidar_to_camera([float(v) for v in np.asarray(values).reshape(-1)])


def test_parameter_file_sections_and_nesting():
    document = {"/**": {"ros__parameters": {"use_sim_time": True, "device": "cpu"}},
                "depth_completion": {"ros__parameters": {"sync": {"slop": 0.1}, "device": "cuda"}}}
    assert parameters_from_yaml(document) == {"use_sim_time": True, "device": "cuda", "sync.slop": 0.1}
    with pytest.raises(ParameterError, match="no section for node 'depth_completion'"):
        parameters_from_yaml({"other_node": {"ros__parameters": {}}})
    with pytest.raises(ParameterError, match="ros__parameters"):
        parameters_from_yaml({"depth_completion": {"device": "cpu"}})


def test_build_engine_from_a_registered_name_and_from_a_checkpoint(tmp_path):
    engine = build_engine(validate_parameters({"model": SMALL_MODEL, "device": "cpu"}, accepted_model_names()))
    assert engine.architecture == SMALL_MODEL and engine.device.type == "cpu" and engine.backend == "torch"
    assert "untrained" in engine.backend_reason  # backend auto: nothing to export
    path = save_checkpoint(tmp_path / "small.pt", build_model(SMALL_MODEL), metadata={"note": "test"})
    from_file = build_engine(validate_parameters({"model": str(path), "device": "cpu", "backend": "torch"},
                                                 accepted_model_names()))
    assert from_file.architecture == SMALL_MODEL and from_file.metadata == {"note": "test"}
    # refinement: a CDSPN on the CPU fuses its propagation unless the parameter says "graph".
    assert from_file.refinement == "fused"
    in_graph = build_engine(validate_parameters({"model": str(path), "device": "cpu", "backend": "torch",
                                                 "refinement": "graph"}, accepted_model_names()))
    assert in_graph.refinement == "graph"
    with pytest.raises(ParameterError, match="refinement"):
        validate_parameters({"refinement": "numba"})
    with pytest.raises(ParameterError, match="backend.*untrained registered architecture"):
        build_engine(validate_parameters({"model": SMALL_MODEL, "backend": "onnx"}, accepted_model_names()))
    path.unlink()
    with pytest.raises(FileNotFoundError, match="model.*small.pt"):
        build_engine(validate_parameters({"model": str(path)}))


# ------------------------------------------------------------------------------ newest frame wins
def test_mailbox_keeps_the_newest_frame_and_counts_each_replaced_one():
    mailbox = LatestFrameMailbox()
    assert mailbox.take(timeout=0.0) == (False, None)
    assert mailbox.put(1) is False
    assert mailbox.put(2) is True                      # 1 was never taken
    assert mailbox.take(timeout=0.0) == (True, 2)
    assert mailbox.take(timeout=0.01) == (False, None)
    mailbox.put(3)
    assert mailbox.take(timeout=0.0) == (True, 3)
    for frame in (4, 5, 6):
        mailbox.put(frame)                             # 4 and 5 are replaced
    assert mailbox.take(timeout=0.0) == (True, 6)
    drops = mailbox.drops.snapshot()
    assert drops[latest_frame.REPLACED_BY_NEWER] == 3
    assert sum(drops.values()) == 3 and mailbox.received == 6
    mailbox.close()
    assert mailbox.put(7) is False and mailbox.take(timeout=1.0) == (False, None)


def test_worker_skips_frames_that_arrive_while_it_is_busy():
    mailbox = LatestFrameMailbox()
    first_started, release = threading.Event(), threading.Event()
    processed = []

    def handler(frame):
        if frame == 1:
            first_started.set()
            assert release.wait(5.0)
        processed.append(frame)

    worker = FrameWorker(mailbox, handler, poll_interval=0.01)
    worker.start()
    try:
        mailbox.put(1)
        assert first_started.wait(5.0)
        for frame in (2, 3, 4, 5):                     # arrive during the slow first frame
            mailbox.put(frame)
        release.set()
        deadline = time.monotonic() + 5.0
        while len(processed) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        assert worker.stop(timeout=5.0)
    assert processed == [1, 5]
    assert mailbox.drops.snapshot()[latest_frame.REPLACED_BY_NEWER] == 3
    assert worker.processed == 2


def test_worker_counts_failures_by_reason_and_keeps_going():
    mailbox = LatestFrameMailbox()
    errors, processed, calls = [], [], []
    done = threading.Event()

    def handler(frame):
        calls.append(frame)
        if frame == "small":
            raise FrameDropped(latest_frame.SIZE_MISMATCH, "image is 10x10 but CameraInfo says 20x20")
        if frame == "crash":
            raise RuntimeError("CUDA out of memory")
        processed.append(frame)
        if frame == "last":
            done.set()

    worker = FrameWorker(mailbox, handler, on_error=lambda reason, error: errors.append((reason, str(error))),
                         poll_interval=0.01)
    worker.start()
    try:
        for count, frame in enumerate(("small", "crash", "good", "last"), start=1):
            mailbox.put(frame)
            deadline = time.monotonic() + 5.0
            while len(calls) < count and time.monotonic() < deadline:  # one at a time: none is replaced
                time.sleep(0.002)
        assert done.wait(5.0)
    finally:
        assert worker.stop(timeout=5.0)
    assert processed == ["good", "last"]
    drops = mailbox.drops.snapshot()
    assert drops[latest_frame.SIZE_MISMATCH] == 1 and drops[latest_frame.INFERENCE_ERROR] == 1
    assert drops[latest_frame.REPLACED_BY_NEWER] == 0
    assert errors == [(latest_frame.SIZE_MISMATCH, "image is 10x10 but CameraInfo says 20x20"),
                      (latest_frame.INFERENCE_ERROR, "CUDA out of memory")]


def test_worker_stops_promptly_and_runs_on_start_first():
    calls = []
    worker = FrameWorker(LatestFrameMailbox(), calls.append, on_start=lambda: calls.append("start"),
                         poll_interval=0.5)
    worker.start()
    deadline = time.monotonic() + 5.0
    while not calls and time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.monotonic()
    assert worker.stop(timeout=5.0)
    # close() wakes the waiting take at once: no need to sit out the poll interval.
    assert time.monotonic() - started < 0.4
    assert calls == ["start"] and not worker.running


def test_a_failing_warm_up_does_not_stop_the_worker():
    mailbox = LatestFrameMailbox()
    processed, errors = threading.Event(), []

    def failing_start():
        raise RuntimeError("warm-up failed")

    worker = FrameWorker(mailbox, lambda frame: processed.set(), on_start=failing_start,
                         on_error=lambda reason, error: errors.append(reason), poll_interval=0.01)
    worker.start()
    mailbox.put("frame")
    try:
        assert processed.wait(5.0)
    finally:
        worker.stop()
    assert errors == ["start"] and mailbox.drops.total == 0


def test_drop_counter_is_exact_under_concurrent_adds():
    counter = DropCounter()
    threads = [threading.Thread(target=lambda: [counter.add(latest_frame.NO_TRANSFORM) for _ in range(1000)])
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.snapshot()[latest_frame.NO_TRANSFORM] == 4000 and counter.total == 4000


# ------------------------------------------------------------------------------------- transforms
class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_tf_wins_and_the_parameter_is_the_fallback_after_the_wait():
    clock, answers, calls = FakeClock(), {"tf": None}, []
    from_tf = make_transform(np.eye(3), [0.0, 0.0, 1.0])
    fallback = make_transform(np.eye(3), [0.0, 0.0, 2.0])

    def lookup(camera_frame, lidar_frame):
        calls.append((camera_frame, lidar_frame))
        return answers["tf"]

    resolver = TransformResolver(lookup, fallback, wait_s=2.0, clock=clock)
    first = resolver.resolve("camera", "lidar")
    assert first.transform is None and first.source is None and not first.changed
    clock.now += 1.9
    assert resolver.resolve("camera", "lidar").transform is None
    clock.now += 0.2
    late = resolver.resolve("camera", "lidar")
    assert late.source == FROM_PARAMETER and late.changed and np.array_equal(late.transform, fallback)
    assert not resolver.resolve("camera", "lidar").changed
    answers["tf"] = from_tf
    found = resolver.resolve("camera", "lidar")
    assert found.source == FROM_TF and found.changed and np.array_equal(found.transform, from_tf)
    lookups = len(calls)
    answers["tf"] = None                                # cached: tf is not asked again
    assert resolver.resolve("camera", "lidar").source == FROM_TF and len(calls) == lookups
    # Another frame pair has its own wait.
    assert resolver.resolve("camera", "other_lidar").transform is None


def test_without_tf_the_parameter_is_used_at_once_and_without_either_nothing():
    fallback = make_transform(np.eye(3), [1.0, 0.0, 0.0])
    resolution = TransformResolver(None, fallback, wait_s=10.0).resolve("camera", "lidar")
    assert resolution.source == FROM_PARAMETER and np.array_equal(resolution.transform, fallback)
    calls = []
    only_tf = TransformResolver(lambda *frames: calls.append(frames), None, wait_s=0.0)
    assert only_tf.resolve("camera", "lidar").transform is None
    assert only_tf.resolve("", "lidar").transform is None       # no frame_id: tf is not asked
    assert calls == [("camera", "lidar")]
    with pytest.raises(ValueError, match="lookup.*fallback"):
        TransformResolver(None, None, wait_s=1.0)


def stamped(parent: str, child: str, transform) -> object:
    """A rosbags geometry_msgs/TransformStamped (the same fields as rclpy's) of `transform` (child -> parent)."""
    return messages.build_transform_stamped(TYPES, messages.build_header(TYPES, 0, parent), child, transform)


def test_own_tf_listener_chains_static_and_dynamic_edges_like_tf2():
    """camera <- base_link (/tf_static) and base_link <- lidar (/tf): the lookup chains them through base_link,
    and the newest message of an edge replaces it."""
    rotation = quaternion_to_rotation(0.1, -0.2, 0.3, 0.9)
    base_from_camera = make_transform(rotation, [0.3, -0.1, 1.6])
    lidar_in_camera = wall_frame(TYPES, 0).lidar_to_camera
    base_from_lidar = base_from_camera @ lidar_in_camera
    latest = LatestTransforms()
    assert latest.lookup("camera", "lidar") is None                         # nothing yet
    assert latest.add([stamped("base_link", "camera", base_from_camera)]) == 0
    assert latest.lookup("camera", "lidar") is None                         # lidar unknown
    latest.add([stamped("/base_link", "lidar", base_from_lidar)])            # tf1-style leading slash
    assert np.allclose(latest.lookup("camera", "lidar"), lidar_in_camera, atol=1e-9)
    assert np.allclose(latest.lookup("lidar", "camera"), invert_transform(lidar_in_camera), atol=1e-9)
    moved = base_from_camera @ make_transform(np.eye(3), [0.0, 0.0, 0.5])
    latest.add([stamped("base_link", "lidar", moved)])                       # newer message, same edge
    assert np.allclose(latest.lookup("camera", "lidar")[:3, 3], [0.0, 0.0, 0.5], atol=1e-9)
    latest.add([stamped("odom", "lidar", np.eye(4))])                        # re-parented: not connected now
    assert latest.lookup("camera", "lidar") is None


def test_own_tf_listener_rejects_what_tf2_rejects_and_bounds_its_frames():
    latest = LatestTransforms()
    bad_quaternion = stamped("base_link", "lidar", np.eye(4))
    bad_quaternion.transform.rotation.w = 0.0                                # no direction
    not_finite = stamped("base_link", "camera", np.eye(4))
    not_finite.transform.translation.x = float("nan")
    assert latest.add([bad_quaternion, not_finite, stamped("camera", "camera", np.eye(4)),
                       stamped("", "lidar", np.eye(4)), stamped("base_link", "ok", np.eye(4))]) == 4
    assert latest.rejected == 4 and latest.lookup("base_link", "ok") is not None
    assert latest.lookup("base_link", "lidar") is None
    latest.add([stamped("a", "b", np.eye(4)), stamped("b", "a", np.eye(4))])   # a cycle: no answer, no hang
    assert latest.lookup("a", "ok") is None
    latest.MAX_FRAMES = 5
    latest.add([stamped("base_link", f"frame_{index}", np.eye(4)) for index in range(20)])
    assert latest.lookup("base_link", "frame_19") is not None and latest.lookup("base_link", "frame_0") is None


# --------------------------------------------------------------------------------- calibration_file
def test_calibration_file_reads_kitti_folders_either_file_and_yaml(synthetic_kitti, tmp_path):
    from depth_completion_ros.data.kitti import KittiRawDrive

    drive = sorted((synthetic_kitti / "kitti_raw").glob("*/*_sync"))[0]
    expected = KittiRawDrive(synthetic_kitti / "kitti_raw", drive.name).calibration.lidar_to_camera
    date_folder = drive.parent
    for path in (date_folder, date_folder / "calib_velo_to_cam.txt", date_folder / "calib_cam_to_cam.txt"):
        assert np.allclose(read_calibration_file(str(path)), expected), path
    as_rows = tmp_path / "rows.yaml"
    as_rows.write_text(yaml.safe_dump({"lidar_to_camera": expected.tolist()}))
    as_quaternion = tmp_path / "quaternion.yml"
    x, y, z, w = messages.transform_to_fields(expected)["rotation"].values()
    as_quaternion.write_text(yaml.safe_dump({"lidar_to_camera": [*expected[:3, 3].tolist(), x, y, z, w]}))
    for path in (as_rows, as_quaternion):
        assert np.allclose(read_calibration_file(str(path)), expected, atol=1e-9), path
    settings = validate_parameters({"use_tf": False, "calibration_file": str(date_folder)})
    assert np.allclose(settings.lidar_to_camera, expected) and settings.calibration_file == str(date_folder)


def test_calibration_file_errors_name_the_parameter_and_the_problem(synthetic_kitti, tmp_path):
    def rejected(path, words):
        with pytest.raises(ParameterError, match="calibration_file") as caught:
            validate_parameters({"calibration_file": str(path)})
        assert words in str(caught.value), str(caught.value)

    rejected(tmp_path / "missing.yaml", "no such file")
    half = tmp_path / "half"
    half.mkdir()
    (half / "calib_velo_to_cam.txt").write_text("R: 1 0 0 0 1 0 0 0 1\nT: 0 0 0\n")
    rejected(half, "missing calib_cam_to_cam.txt")
    other = tmp_path / "calibration.json"
    other.write_text("{}")
    rejected(other, "neither a KITTI calibration")
    for name, text, words in (("no_key.yaml", "transform: [1, 2]", "no top-level key"),
                              ("words.yaml", "lidar_to_camera: [a, b]", "list of numbers"),
                              ("zeros.yaml", f"lidar_to_camera: {[0] * 16}", "all zeros"),
                              ("short.yaml", "lidar_to_camera: [1, 2, 3]", "needs 16 values"),
                              ("broken.yaml", "lidar_to_camera: [1, 2", "cannot read")):
        (tmp_path / name).write_text(text)
        rejected(tmp_path / name, words)
    matrix = [float(v) for v in np.eye(4).reshape(-1)]
    with pytest.raises(ParameterError, match="both set"):
        validate_parameters({"lidar_to_camera": matrix, "calibration_file": str(tmp_path / "rows.yaml")})
    with pytest.raises(ParameterError, match="calibration_file' must be set when use_tf is false"):
        validate_parameters({"use_tf": False})


# ------------------------------------------------------------------------------------- monitoring
def test_rate_meter_counts_events_in_its_window():
    clock = FakeClock()
    meter = RateMeter(window_s=5.0, clock=clock)
    for _ in range(100):                                  # 10 Hz for 10 s
        clock.now += 0.1
        meter.tick()
    assert meter.rate() == pytest.approx(10.0, rel=0.03)
    clock.now += 6.0
    assert meter.rate() == 0.0


def test_latency_window_mean_and_p90():
    window = LatencyWindow(size=101)
    assert math.isnan(window.summary()[0]) and window.summary()[2] == 0
    for value in range(101):
        window.add(value)
    assert window.summary() == (50.0, 90.0, 101)
    small = LatencyWindow(size=10)
    for value in range(20):
        small.add(value)
    assert small.summary()[0] == 14.5 and small.summary()[2] == 10


def test_log_throttle_allows_one_message_per_period_per_key():
    clock = FakeClock()
    throttle = LogThrottle(period_s=5.0, clock=clock)
    assert throttle.allow("size_mismatch") == (True, 0)
    clock.now += 1.0
    assert throttle.allow("size_mismatch") == (False, 0)
    assert throttle.allow("no_transform") == (True, 0)
    clock.now += 1.0
    assert throttle.allow("size_mismatch") == (False, 0)
    clock.now += 4.0
    assert throttle.allow("size_mismatch") == (True, 2)


def test_diagnostic_levels():
    latency = (20.0, 30.0, 10)
    zero = dict.fromkeys(latest_frame.DROP_REASONS, 0)
    busy = dict(zero, replaced_by_newer=7)
    ok = summarize(10.0, 5.0, latency, latency, busy, busy)
    assert ok.level == LEVEL_OK and ok.values["dropped: replaced_by_newer"] == "7"
    assert ok.values["output rate (Hz)"] == "5.00" and ok.values["pipeline latency p90 (ms)"] == "30.0"
    failing = summarize(10.0, 0.0, latency, latency, zero, zero)
    assert failing.level == LEVEL_ERROR
    assert summarize(0.0, 0.0, latency, latency, zero, zero).level == LEVEL_WARN
    recent = dict(zero, size_mismatch=3)
    warned = summarize(10.0, 5.0, latency, latency, recent, recent)
    assert warned.level == LEVEL_WARN and "size_mismatch" in warned.message
    # Old failures no longer raise the level once they stop.
    assert summarize(10.0, 5.0, latency, latency, recent, zero).level == LEVEL_OK


def test_diagnostics_report_the_backend_choice_and_the_roi_rows():
    latency = (20.0, 30.0, 10)
    zero = dict.fromkeys(latest_frame.DROP_REASONS, 0)
    values = summarize(10.0, 5.0, latency, latency, zero, zero, backend="Engine(backend='onnx')",
                       backend_reason="measured faster", roi=describe_roi("auto", (135, 375, 375))).values
    assert values["backend choice"] == "measured faster"
    assert values["roi"] == "auto: rows 135-375 (240 of 375)"
    assert describe_roi("auto", None) == "auto"
    assert "roi" not in summarize(10.0, 5.0, latency, latency, zero, zero).values


# -------------------------------------------------------------------------------------- colourise
def test_turbo_lut_runs_from_dark_blue_through_green_to_dark_red():
    lut = turbo_lut().astype(int)
    assert lut.shape == (256, 3)
    low = lut[:26].mean(axis=0)                                   # first tenth: dark blue/violet
    assert low[2] > low[0] and lut[0].max() < 100
    assert lut[128, 1] == lut[128].max()                         # green in the middle
    assert lut[255, 0] > lut[255, 2] and lut[255, 0] < 200       # dark red


def test_colorize_depth_near_red_far_blue_invalid_black():
    depth = np.array([[1.0, 80.0, np.nan, 0.0, -3.0, np.inf, 500.0]], dtype=np.float32)
    colour = colorize_depth(depth, min_depth=1.0, max_depth=80.0)
    assert colour.shape == (1, 7, 3) and colour.dtype == np.uint8
    blue, red = 0, 2                                              # BGR order
    assert colour[0, 0, red] > colour[0, 0, blue]
    assert colour[0, 1, blue] > colour[0, 1, red]
    assert not colour[0, 2:6].any()
    assert np.array_equal(colour[0, 6], colour[0, 1])             # beyond max_depth: clipped
    with pytest.raises(ValueError, match="max_depth"):
        colorize_depth(depth, 5.0, 5.0)


# ---------------------------------------------------------------------------------- frame handler
def make_handler(published, resolver=None):
    from depth_completion_ros.inference import Engine

    frame = wall_frame(TYPES, stamp_ns=1_000_000_000)
    processor = FrameProcessor(Engine.from_model(DilateSparse(), device="cpu"), options=PipelineOptions())
    resolver = resolver or TransformResolver(None, frame.lidar_to_camera, wait_s=0.0)
    return FrameHandler(processor, resolver, lambda *args: published.append(args)), frame


def test_frame_handler_turns_the_wall_into_its_exact_depth():
    published = []
    handler, frame = make_handler(published)
    result = handler((frame.image, frame.camera_info, frame.cloud))
    (published_result, image, info), = published
    assert published_result is result and image is frame.image and info is frame.camera_info
    rows, cols = frame.lidar_pixels
    assert result.dense.shape == (frame.camera.height, frame.camera.width)
    assert np.allclose(result.sparse[rows, cols], frame.wall_depth, atol=1e-4)
    assert np.count_nonzero(result.sparse) == rows.size
    # Returns on every 3rd row and column (0, 3, ..., 21 of 24 rows; 0, ..., 30 of 32 columns), dilated by
    # one pixel, cover every pixel but the last row, which keeps no depth.
    assert np.allclose(result.dense[:23], frame.wall_depth, atol=1e-4)
    assert not np.any(result.dense[23] > 0)
    assert result.stamp_ns == 1_000_000_000


def test_frame_handler_classifies_bad_frames():
    published = []
    handler, frame = make_handler(published)
    mismatched = wall_frame(TYPES, stamp_ns=1, camera_info_size=(40, 30))
    with pytest.raises(FrameDropped) as dropped:
        handler((mismatched.image, mismatched.camera_info, mismatched.cloud))
    assert dropped.value.reason == latest_frame.SIZE_MISMATCH and "40x30" in str(dropped.value)

    uncalibrated = wall_frame(TYPES, stamp_ns=1)
    uncalibrated.camera_info.k[:] = 0.0
    uncalibrated.camera_info.p[:] = 0.0
    with pytest.raises(FrameDropped) as dropped:
        handler((uncalibrated.image, uncalibrated.camera_info, uncalibrated.cloud))
    assert dropped.value.reason == latest_frame.CONVERSION_ERROR and "camera_info" in str(dropped.value)

    no_xyz = wall_frame(TYPES, stamp_ns=1)
    for field in no_xyz.cloud.fields:
        field.name = field.name.upper()                         # X, Y, Z: not a usable cloud
    with pytest.raises(FrameDropped) as dropped:
        handler((no_xyz.image, no_xyz.camera_info, no_xyz.cloud))
    assert dropped.value.reason == latest_frame.CONVERSION_ERROR

    odd_encoding = wall_frame(TYPES, stamp_ns=1)
    odd_encoding.image.encoding = "yuv422"
    with pytest.raises(FrameDropped) as dropped:
        handler((odd_encoding.image, odd_encoding.camera_info, odd_encoding.cloud))
    assert dropped.value.reason == latest_frame.CONVERSION_ERROR and "yuv422" in str(dropped.value)

    tf_only, _ = make_handler(published, TransformResolver(lambda *frames: None, None, wait_s=0.0))
    with pytest.raises(FrameDropped) as dropped:
        tf_only((frame.image, frame.camera_info, frame.cloud))
    assert dropped.value.reason == latest_frame.NO_TRANSFORM and "'camera' <- 'lidar'" in str(dropped.value)
    assert published == []


def test_synthetic_frame_stamps_and_sizes():
    frame = wall_frame(TYPES, stamp_ns=5_000_000_123, stamp_offsets_ns=(0, 20_000_000), width=20, height=10)
    assert messages.stamp_to_ns(frame.image.header.stamp) == 5_000_000_123
    assert messages.stamp_to_ns(frame.cloud.header.stamp) == 5_020_000_123
    assert (frame.image.width, frame.image.height) == (20, 10)
    points, _ = messages.pointcloud2_to_xyz(frame.cloud)
    # The LiDAR frame is x forward: every wall point lies ahead of it.
    assert points.shape[0] == frame.lidar_pixels[0].size and (points[:, 0] > 0).all()


# ---------------------------------------------------------------------------------- launch / RViz
def launch_arguments(tree: ast.AST) -> set[str]:
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument"
            and node.args and isinstance(node.args[0], ast.Constant)}


@pytest.mark.parametrize("name", sorted(LAUNCH_FILES))
def test_launch_files_are_python_defining_generate_launch_description(name):
    source = LAUNCH_FILES[name].read_text()
    tree = ast.parse(compile(source, str(LAUNCH_FILES[name]), "exec", ast.PyCF_ONLY_AST))
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions


def test_launch_files_declare_their_arguments_and_kitti_topics():
    main = ast.parse(LAUNCH_FILES["depth_completion.launch.py"].read_text())
    assert launch_arguments(main) == {"model", "device", "params_file", "use_sim_time", "rviz", "image",
                                      "camera_info", "points"}
    replay_source = LAUNCH_FILES["bag_replay.launch.py"].read_text()
    assert {"bag", "rate"} <= launch_arguments(ast.parse(replay_source))
    strings = {node.value for node in ast.walk(main) if isinstance(node, ast.Constant)}
    assert {"/kitti/camera_color_left/image_raw", "/kitti/camera_color_left/camera_info",
            "/kitti/velo/pointcloud", "depth_completion_node"} <= strings
    replay_strings = {node.value for node in ast.walk(ast.parse(replay_source)) if isinstance(node, ast.Constant)}
    assert {"--clock", "--rate", "depth_image_proc::PointCloudXyzNode", "image_rect", "depth/image",
            "depth/camera_info", "depth/points"} <= replay_strings


@pytest.mark.ros_distribution
@pytest.mark.parametrize("name", sorted(LAUNCH_FILES))
def test_launch_files_build_a_launch_description_where_launch_is_installed(name):
    # "launch" alone would import this repository's launch/ folder as a namespace package: ask for a module.
    pytest.importorskip("launch.actions", reason="ROS 2 launch is not installed")
    pytest.importorskip("launch_ros", reason="ROS 2 launch_ros is not installed")
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), LAUNCH_FILES[name])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = {entity.name for entity in description.entities if isinstance(entity, DeclareLaunchArgument)}
    assert declared == launch_arguments(ast.parse(LAUNCH_FILES[name].read_text()))


def test_rviz_config_shows_every_stream_best_effort():
    config = yaml.safe_load(RVIZ_CONFIG.read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] in ("base_link", "camera_color_left")
    displays = manager["Displays"]
    topics = {}
    for display in displays:
        if "Topic" in display:
            topics.setdefault(display["Class"], set()).add(display["Topic"]["Value"])
            assert display["Topic"]["Reliability Policy"] == "Best Effort", display["Name"]
    assert topics["rviz_default_plugins/Image"] == {
        "/kitti/camera_color_left/image_raw", "/depth/image", "/sparse_depth", "/depth/image_colorized"}
    assert topics["rviz_default_plugins/PointCloud2"] == {"/kitti/velo/pointcloud", "/depth/points"}
    assert any(display["Class"] == "rviz_default_plugins/TF" for display in displays)
    names = [display["Name"] for display in displays]
    assert len(names) == len(set(names))                         # RViz keys panels by display name
