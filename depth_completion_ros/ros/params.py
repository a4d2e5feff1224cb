"""The node's parameters: one table of specifications, and validation that needs no ROS.

`PARAMETERS` is the single source of truth: the node declares every entry (with a ParameterDescriptor
built from it), `config/depth_completion.yaml` lists every entry, and `validate_parameters` checks a
flat {name: value} mapping against it and returns typed `NodeSettings`, raising `ParameterError` that
names the bad parameter.

Types are checked strictly, as ROS 2 does: a double parameter given `1` (an integer) in a YAML file is
rejected by rclpy with "Wrong parameter type", so it is rejected here too, with a hint to write `1.0`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..geometry import make_transform, quaternion_to_rotation
from ..pipeline import INVALID_CHOICES, ROI_CHOICES
from ..self_check import MAX_FRACTION

NODE_NAME = "depth_completion"

MODEL_DEFAULT = "default"
DEVICE_CHOICES = ("auto", "cuda", "cpu")
PRECISION_CHOICES = ("auto", "fp32", "fp16")
BACKEND_CHOICES = ("auto", "torch", "onnx")
OUTPUT_QOS_CHOICES = ("reliable", "sensor_data")
# lidar_to_camera holds 16 values (row-major 4x4) or 7 (tx ty tz qx qy qz qw); all zeros means "not set"
# (ROS 2 parameter files cannot hold an empty array, and an all-zero matrix is no transform).
TRANSFORM_LENGTHS = (16, 7)
UNSET_TRANSFORM = (0.0,) * 16
_ROTATION_TOLERANCE = 1e-3
# Parameters that rclpy or its helpers declare themselves; a parameter file may set them beside ours.
ROS_MANAGED_PARAMETERS = ("use_sim_time",)
ROS_MANAGED_PREFIXES = ("qos_overrides.", "diagnostic_updater.")


class ParameterError(ValueError):
    """A node parameter has the wrong type, is out of range, or is not one of its choices."""


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: name (dots for nesting), default (its type is the parameter's type),
    description, whether it may change at runtime, and its allowed choices or inclusive range."""

    name: str
    default: Any
    description: str
    read_only: bool = True
    choices: tuple[str, ...] | None = None
    minimum: float | int | None = None
    maximum: float | int | None = None

    @property
    def kind(self) -> str:
        """'bool', 'int', 'double', 'string' or 'double_array' (the ROS parameter type)."""
        return _kind_of(self.default)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, float) for v in value):
        return "double_array"
    raise TypeError(f"unsupported parameter default {value!r}")


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("model", MODEL_DEFAULT,
                  "'default' (the package's default shipped checkpoint), a shipped model name (models/*.pt, run "
                  "through their models/*.onnx without PyTorch), a checkpoint path, or a registered architecture "
                  "(untrained weights: timing and tests only; needs PyTorch)"),
    ParameterSpec("device", "auto", "where inference runs; 'cuda' without CUDA falls back to the CPU with a "
                  "warning", choices=DEVICE_CHOICES),
    ParameterSpec("precision", "auto", "'auto' = fp16 autocast on CUDA, fp32 on the CPU",
                  choices=PRECISION_CHOICES),
    ParameterSpec("backend", "auto", "inference runtime; 'auto': ONNX Runtime on the CPU for the models "
                  "measured faster with it, else PyTorch (PyTorch on CUDA; an export failure falls back to "
                  "PyTorch; ONNX Runtime wherever PyTorch is not installed), the choice and its reason logged; "
                  "'onnx' runs onnxruntime (the checkpoint's ONNX file beside it, as the shipped models have, else "
                  "its export to a cache, unless onnx_path is given); 'torch' runs PyTorch", choices=BACKEND_CHOICES),
    ParameterSpec("onnx_path", "", "ONNX file for backend 'onnx' or 'auto' on the CPU (empty: the checkpoint's "
                  "ONNX file beside it, else its export to a cache)"),
    ParameterSpec("refinement", "auto", "where a CDSPN's DA-CSPN++ propagation runs: 'fused' loops on the CPU "
                  "(numba; same depth, faster), 'graph' inside the network's runtime; 'auto': fused on the CPU "
                  "when numba compiles and runs (checked at start-up), else the graph, the reason logged",
                  choices=("auto", "graph", "fused")),
    ParameterSpec("threads", 0, "CPU threads of the network (PyTorch or ONNX Runtime intra-op; one inter-op "
                  "thread); 0 = the cores this process may run on", minimum=0, maximum=1024),
    ParameterSpec("sync.queue_size", 10, "messages per input kept by the approximate-time synchronizer",
                  minimum=1, maximum=1000),
    ParameterSpec("sync.slop", 0.05, "largest stamp spread (s) of a synchronized image/camera_info/points "
                  "triple", minimum=0.001, maximum=10.0),
    ParameterSpec("min_depth", 0.1, "LiDAR points nearer than this (m, along the optical axis) are ignored",
                  minimum=0.0, maximum=1000.0),
    ParameterSpec("max_depth", 120.0, "LiDAR points farther than this (m) are ignored; predictions are "
                  "clipped to it", minimum=0.1, maximum=1000.0),
    ParameterSpec("roi", "full", "'full' runs the network on the whole image, 'bottom' on the bottom "
                  "roi_height rows (KITTI-style LiDAR coverage), 'auto' per frame from roi_margin rows above "
                  "the top-most projected LiDAR return down to the bottom (rounded to the network's stride); "
                  "other rows are invalid", choices=ROI_CHOICES),
    ParameterSpec("roi_height", 352, "rows of the bottom region of interest (roi 'bottom')",
                  minimum=1, maximum=16384),
    ParameterSpec("roi_margin", 16, "rows above the top-most LiDAR return that the network still sees "
                  "(roi 'auto')", minimum=0, maximum=16384),
    ParameterSpec("rectify", "auto", "images of a raw camera (CameraInfo with lens distortion d, models plumb_bob, "
                  "rational_polynomial, equidistant, or a rectification rotation r): 'auto' rectifies them as "
                  "image_proc does and publishes depth in the rectified camera with its CameraInfo (d zero), except "
                  "where P carries a stereo translation (KITTI converters' bags: rectified images beside raw camera "
                  "02's k and d); 'true' rectifies those too; 'false' never (the node warns once: depth then does not "
                  "line up with a distorted image)", choices=("auto", "true", "false")),
    ParameterSpec("invalid_value", "nan", "value of pixels without depth in depth/image: 'nan' (REP 118) "
                  "or 'zero'", choices=INVALID_CHOICES),
    ParameterSpec("publish_colorized", False, "also publish depth/image_colorized (bgr8, turbo colormap, "
                  "near = red, far = blue, no depth = black)", read_only=False),
    ParameterSpec("publish_sparse", False, "also publish sparse_depth (32FC1 metres, the projected LiDAR "
                  "input)", read_only=False),
    ParameterSpec("use_tf", True, "take the LiDAR->camera transform from tf (camera image frame_id <- "
                  "cloud frame_id; tf2_ros, or the node's own /tf and /tf_static listener where only tf2_msgs is "
                  "installed); false: use lidar_to_camera or calibration_file only"),
    ParameterSpec("tf_wait", 5.0, "seconds (wall clock) from the first frame of a camera/LiDAR frame pair "
                  "to wait for tf before falling back to lidar_to_camera (when set); tf wins whenever it has "
                  "the transform",
                  minimum=0.0, maximum=3600.0),
    ParameterSpec("lidar_to_camera", UNSET_TRANSFORM, "LiDAR->camera transform (maps LiDAR points into the "
                  "camera optical frame): 16 values (row-major 4x4) or 7 (tx ty tz qx qy qz qw); all "
                  "zeros = not set"),
    ParameterSpec("calibration_file", "", "LiDAR->camera transform read from a file instead of lidar_to_camera: "
                  "a KITTI calibration (a date folder holding calib_velo_to_cam.txt and calib_cam_to_cam.txt, or "
                  "either file; camera 02, its rectification and baseline included) or a YAML file whose key "
                  "lidar_to_camera holds 16 values (row-major 4x4, or 4 rows of 4) or 7 (tx ty tz qx qy qz qw); "
                  "empty = not set"),
    ParameterSpec("output_qos", "reliable", "QoS of the outputs: 'reliable' (keep last 5; matches both "
                  "reliable subscribers such as depth_image_proc and best-effort ones such as RViz) or "
                  "'sensor_data' (best effort; reliable subscribers receive nothing)",
                  choices=OUTPUT_QOS_CHOICES),
    ParameterSpec("warmup", True, "run the network on dummy input of KITTI's 352 x 1216 (roi_height rows "
                  "with roi 'bottom') at start-up, on the worker thread, so the first frames are not slow"),
    ParameterSpec("self_check.fraction", 0.05, "LiDAR hold-out self-check: share of the projected LiDAR pixels "
                  "held out of the network's input on a self-check frame and scored against its prediction "
                  "(RMSE/MAE on /diagnostics); 0 = off", read_only=False, minimum=0.0, maximum=MAX_FRACTION),
    ParameterSpec("self_check.every_n_frames", 10, "every n-th processed frame is a self-check frame",
                  read_only=False, minimum=1, maximum=100000),
    ParameterSpec("self_check.second_run", False, "on a self-check frame, run the network again on the full "
                  "input and publish that (twice the inference time on those frames); false: publish the "
                  "prediction made without the held-out pixels", read_only=False),
    ParameterSpec("self_check.window", 10, "self-check frames pooled for the RMSE/MAE on /diagnostics",
                  minimum=1, maximum=10000),
    ParameterSpec("self_check.warn_rmse_mm", 5000.0, "self-check RMSE (mm, pooled over the window) at or above "
                  "which the self-check diagnostic is WARN (the shipped default model: about 2400 mm on the "
                  "synthetic world)", read_only=False, minimum=1.0, maximum=1e6),
    ParameterSpec("self_check.error_rmse_mm", 10000.0, "self-check RMSE (mm) at or above which the self-check "
                  "diagnostic is ERROR; greater than self_check.warn_rmse_mm", read_only=False,
                  minimum=1.0, maximum=1e6),
    ParameterSpec("self_check.warn_edge_agreement", 0.0, "image/LiDAR edge agreement (mean over the window) "
                  "below which the self-check diagnostic is WARN (a LiDAR->camera mis-calibration lowers it; "
                  "scene-dependent: set it from a calibrated run); 0 = off", read_only=False,
                  minimum=0.0, maximum=100.0),
)

PARAMETER_SPECS: dict[str, ParameterSpec] = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeSettings:
    """Validated node parameters. `lidar_to_camera` is a 4x4 float64 matrix or None (not set): the parameter's,
    or the one read from `calibration_file`."""

    model: str
    device: str
    precision: str
    backend: str
    onnx_path: str
    refinement: str
    threads: int
    sync_queue_size: int
    sync_slop: float
    min_depth: float
    max_depth: float
    roi: str
    roi_height: int
    roi_margin: int
    invalid_value: str
    rectify: str
    publish_colorized: bool
    publish_sparse: bool
    use_tf: bool
    tf_wait: float
    lidar_to_camera: np.ndarray | None
    calibration_file: str
    output_qos: str
    warmup: bool
    self_check_fraction: float
    self_check_every_n_frames: int
    self_check_second_run: bool
    self_check_window: int
    self_check_warn_rmse_mm: float
    self_check_error_rmse_mm: float
    self_check_warn_edge_agreement: float


def default_values() -> dict[str, Any]:
    """{name: default} for every parameter (arrays as lists)."""
    return {spec.name: list(spec.default) if isinstance(spec.default, tuple) else spec.default
            for spec in PARAMETERS}


def check_value(spec: ParameterSpec, value: Any) -> Any:
    """Check one value against its spec (type, choices, range); return it normalised (arrays as lists)."""
    kind = spec.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParameterError(f"parameter {spec.name!r} must be true or false, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(f"parameter {spec.name!r} must be an integer, got {value!r}")
    elif kind == "double":
        if isinstance(value, bool) or not isinstance(value, float):
            hint = f" (write {float(value)!r}: ROS 2 parameters are typed)" if isinstance(value, int) else ""
            raise ParameterError(f"parameter {spec.name!r} must be a floating-point number, got {value!r}{hint}")
        if not math.isfinite(value):
            raise ParameterError(f"parameter {spec.name!r} must be finite, got {value!r}")
    elif kind == "string":
        if not isinstance(value, str):
            raise ParameterError(f"parameter {spec.name!r} must be a string, got {value!r}")
    elif kind == "double_array":
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, float) and not isinstance(v, bool) for v in value):
            raise ParameterError(f"parameter {spec.name!r} must be a list of floating-point numbers "
                                 f"(write 1.0, not 1), got {value!r}")
        value = list(value)
    if spec.choices is not None and value not in spec.choices:
        raise ParameterError(f"parameter {spec.name!r} must be one of {', '.join(spec.choices)}, got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise ParameterError(f"parameter {spec.name!r} must be >= {spec.minimum}, got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise ParameterError(f"parameter {spec.name!r} must be <= {spec.maximum}, got {value!r}")
    return value


def parse_lidar_to_camera(values: Iterable[float], name: str = "lidar_to_camera") -> np.ndarray | None:
    """16 values (row-major 4x4) or 7 (tx ty tz qx qy qz qw) -> 4x4 rigid transform; all zeros -> None."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size not in TRANSFORM_LENGTHS:
        raise ParameterError(f"parameter {name!r} needs 16 values (row-major 4x4) or 7 (tx ty tz qx qy qz qw), "
                             f"got {values.size}")
    if not np.isfinite(values).all():
        raise ParameterError(f"parameter {name!r} holds non-finite values")
    if not values.any():
        return None
    if values.size == 7:
        try:
            rotation = quaternion_to_rotation(*values[3:])
        except ValueError as error:
            raise ParameterError(f"parameter {name!r}: {error}") from error
        return make_transform(rotation, values[:3])
    transform = values.reshape(4, 4)
    if not np.allclose(transform[3], [0.0, 0.0, 0.0, 1.0]):
        raise ParameterError(f"parameter {name!r}: the last row of a rigid transform is 0 0 0 1, "
                             f"got {transform[3].tolist()}")
    rotation = transform[:3, :3]
    if (not np.allclose(rotation @ rotation.T, np.eye(3), atol=_ROTATION_TOLERANCE)
            or np.linalg.det(rotation) <= 0):
        raise ParameterError(f"parameter {name!r}: the upper-left 3x3 block is not a rotation matrix")
    return transform


KITTI_CALIBRATION_FILES = ("calib_velo_to_cam.txt", "calib_cam_to_cam.txt")
YAML_SUFFIXES = (".yaml", ".yml")


def read_calibration_file(path: str, name: str = "calibration_file") -> np.ndarray:
    """The LiDAR->camera transform of a `calibration_file` (see its ParameterSpec); ParameterError naming the
    parameter and the file when it cannot be read."""
    import yaml

    from ..geometry import load_kitti_calibration

    location = Path(path).expanduser()
    if not location.exists():
        raise ParameterError(f"parameter {name!r}: no such file or folder {path!r}")
    if location.is_dir() or location.name in KITTI_CALIBRATION_FILES:
        folder = location if location.is_dir() else location.parent
        missing = [file for file in KITTI_CALIBRATION_FILES if not (folder / file).is_file()]
        if missing:
            raise ParameterError(f"parameter {name!r}: a KITTI calibration needs "
                                 f"{' and '.join(KITTI_CALIBRATION_FILES)} in {folder}; missing {', '.join(missing)}")
        try:
            return load_kitti_calibration(folder).lidar_to_camera
        except (OSError, ValueError) as error:
            raise ParameterError(f"parameter {name!r}: {error}") from error
    if location.suffix.lower() not in YAML_SUFFIXES:
        raise ParameterError(f"parameter {name!r}: {path!r} is neither a KITTI calibration "
                             f"({' or '.join(KITTI_CALIBRATION_FILES)}, or their folder) nor a YAML file (.yaml)")
    try:
        document = yaml.safe_load(location.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ParameterError(f"parameter {name!r}: cannot read {path}: {error}") from error
    if not isinstance(document, dict) or "lidar_to_camera" not in document:
        raise ParameterError(f"parameter {name!r}: {path} has no top-level key 'lidar_to_camera'")
    values = document["lidar_to_camera"]
    if isinstance(values, list) and values and all(isinstance(row, list) for row in values):
        values = [value for row in values for value in row]  # 4 rows of 4
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values):
        raise ParameterError(f"parameter {name!r}: 'lidar_to_camera' in {path} must be a list of numbers")
    transform = parse_lidar_to_camera([float(v) for v in values], name=f"{name} ({path}: lidar_to_camera)")
    if transform is None:
        raise ParameterError(f"parameter {name!r}: 'lidar_to_camera' in {path} is all zeros")
    return transform


def validate_parameters(values: Mapping[str, Any], model_names: Iterable[str] | None = None) -> NodeSettings:
    """Check a flat {parameter name: value} mapping (missing names take their defaults) and return settings.

    model_names: the model names on offer (see `accepted_model_names`); when given, `model` must be
    "default", one of them or an existing file (a checkpoint path). Raises ParameterError naming the parameter.
    """
    values = {name: value for name, value in values.items()
              if name not in ROS_MANAGED_PARAMETERS and not name.startswith(ROS_MANAGED_PREFIXES)}
    unknown = sorted(set(values) - set(PARAMETER_SPECS))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMETER_SPECS)}")
    merged = default_values()
    merged.update(values)
    checked = {spec.name: check_value(spec, merged[spec.name]) for spec in PARAMETERS}

    model = checked["model"].strip()
    if not model:
        raise ParameterError("parameter 'model' is empty; use 'default', a registered model name or a "
                             "checkpoint path")
    if model_names is not None:
        # A file or a name without PyTorch first: looking among the registered architectures imports it.
        if model != MODEL_DEFAULT and not Path(model).is_file() and model not in model_names:
            names = sorted(model_names)
            raise ParameterError(f"parameter 'model': {model!r} is neither 'default', a shipped or registered "
                                 f"model ({', '.join(names) or 'none'}) nor an existing checkpoint file")
    if checked["onnx_path"] and checked["backend"] == "torch":
        raise ParameterError("parameter 'onnx_path' is set but backend is 'torch' (use 'onnx' or 'auto')")
    if checked["onnx_path"] and not Path(checked["onnx_path"]).is_file():
        raise ParameterError(f"parameter 'onnx_path': no such file {checked['onnx_path']!r}")
    if checked["max_depth"] <= checked["min_depth"]:
        raise ParameterError(f"parameter 'max_depth' ({checked['max_depth']}) must be greater than "
                             f"min_depth ({checked['min_depth']})")
    check_self_check_thresholds(checked["self_check.warn_rmse_mm"], checked["self_check.error_rmse_mm"])
    transform = parse_lidar_to_camera(checked["lidar_to_camera"])
    if checked["calibration_file"]:
        if transform is not None:
            raise ParameterError("parameters 'lidar_to_camera' and 'calibration_file' are both set; set one of them")
        transform = read_calibration_file(checked["calibration_file"])
    if not checked["use_tf"] and transform is None:
        raise ParameterError("parameter 'lidar_to_camera' (16 or 7 values) or 'calibration_file' must be set when "
                             "use_tf is false")

    return NodeSettings(
        model=model,
        device=checked["device"],
        precision=checked["precision"],
        backend=checked["backend"],
        onnx_path=checked["onnx_path"],
        refinement=checked["refinement"],
        threads=checked["threads"],
        sync_queue_size=checked["sync.queue_size"],
        sync_slop=checked["sync.slop"],
        min_depth=checked["min_depth"],
        max_depth=checked["max_depth"],
        roi=checked["roi"],
        roi_height=checked["roi_height"],
        roi_margin=checked["roi_margin"],
        invalid_value=checked["invalid_value"],
        rectify=checked["rectify"],
        publish_colorized=checked["publish_colorized"],
        publish_sparse=checked["publish_sparse"],
        use_tf=checked["use_tf"],
        tf_wait=checked["tf_wait"],
        lidar_to_camera=transform,
        calibration_file=checked["calibration_file"],
        output_qos=checked["output_qos"],
        warmup=checked["warmup"],
        self_check_fraction=checked["self_check.fraction"],
        self_check_every_n_frames=checked["self_check.every_n_frames"],
        self_check_second_run=checked["self_check.second_run"],
        self_check_window=checked["self_check.window"],
        self_check_warn_rmse_mm=checked["self_check.warn_rmse_mm"],
        self_check_error_rmse_mm=checked["self_check.error_rmse_mm"],
        self_check_warn_edge_agreement=checked["self_check.warn_edge_agreement"],
    )


def check_self_check_thresholds(warn_rmse_mm: float, error_rmse_mm: float) -> None:
    """The WARN threshold must lie below the ERROR one (at start-up and on every runtime change)."""
    if not warn_rmse_mm < error_rmse_mm:
        raise ParameterError(f"parameter 'self_check.warn_rmse_mm' ({warn_rmse_mm}) must be less than "
                             f"self_check.error_rmse_mm ({error_rmse_mm})")


def flatten_parameters(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML mappings -> dotted parameter names, as ROS 2 reads a parameter file."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_parameters(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def parameters_from_yaml(document: Mapping[str, Any], node_name: str = NODE_NAME) -> dict[str, Any]:
    """The flat parameters of `node_name` from a loaded ROS 2 parameter file
    (`<node_name>: ros__parameters: ...`, or the `/**` wildcard section; the node's own section wins)."""
    if not isinstance(document, Mapping):
        raise ParameterError("a ROS 2 parameter file is a mapping of node names to {ros__parameters: ...}")
    merged: dict[str, Any] = {}
    found = False
    for section in ("/**", node_name, f"/{node_name}"):
        if section in document:
            body = document[section]
            if not isinstance(body, Mapping) or "ros__parameters" not in body:
                raise ParameterError(f"section {section!r} of the parameter file has no 'ros__parameters' key")
            merged.update(flatten_parameters(body["ros__parameters"] or {}))
            found = True
    if not found:
        raise ParameterError(f"the parameter file has no section for node {node_name!r} (nor '/**')")
    return merged


class ModelNames:
    """The names the `model` parameter accepts besides "default" and checkpoint paths: the shipped checkpoints
    and the classical baselines, and where PyTorch is installed the registered architectures (untrained), which
    are looked up only when a name is none of the others (listing them imports PyTorch)."""

    def __init__(self):
        from ..baselines import BASELINES
        from ..model_zoo import shipped_checkpoints

        self.without_torch = frozenset(shipped_checkpoints()) | {f"baseline:{name}" for name in BASELINES}
        self._registered: frozenset | None = None

    @property
    def registered(self) -> frozenset:
        """The registered architectures; none where PyTorch is not installed."""
        if self._registered is None:
            from ..runtime.spec import torch_installed

            names: list[str] = []
            if torch_installed():
                try:
                    from ..models import list_models

                    names = list_models()
                except ImportError:  # an installation of PyTorch that does not import: none
                    pass
            self._registered = frozenset(names)
        return self._registered

    def __contains__(self, name) -> bool:
        return name in self.without_torch or name in self.registered

    def __iter__(self):
        return iter(sorted(self.without_torch | self.registered))

    def __len__(self) -> int:
        return len(self.without_torch | self.registered)


def accepted_model_names() -> ModelNames:
    """Names the `model` parameter accepts besides "default" and checkpoint paths (`ModelNames`)."""
    return ModelNames()


def build_engine(settings: NodeSettings):
    """The inference Engine the settings ask for, through `model_zoo.resolve_engine` (call it once at start-up;
    PyTorch is imported only where the settings need it). Errors name the `model` or `backend` parameter."""
    from ..model_zoo import resolve_engine
    from ..models.checkpoint import CheckpointError
    from ..runtime.spec import PyTorchRequired

    try:
        engine = resolve_engine(settings.model, device=settings.device, precision=settings.precision,
                                backend=settings.backend, onnx_path=settings.onnx_path or None,
                                threads=settings.threads, refinement=settings.refinement)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"parameter 'model': {error}") from error
    except PyTorchRequired as error:
        raise ParameterError(f"parameter '{'backend' if settings.backend == 'torch' else 'model'}': {error}") \
            from error
    except CheckpointError as error:
        raise ParameterError(f"parameter 'model': {error}") from error
    if settings.backend != "auto" and engine.backend not in (settings.backend, "numpy"):
        raise ParameterError(f"parameter 'backend': {settings.backend!r} needs a checkpoint, but model "
                             f"{settings.model!r} is an untrained registered architecture (torch only)")
    return engine
