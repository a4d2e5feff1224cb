"""GPU speed of the networks (eager, CUDA graphs, torch.compile, ONNX Runtime's CUDA and TensorRT providers) and
of the frame's other stages on the GPU.

    python benchmarks/bench_gpu.py --json benchmarks/results/gpu.json          # on a CUDA machine, a few minutes
    python benchmarks/bench_gpu.py --device cpu --height 32 --width 64 --runs 2 --models cdspn_x32 --no-compile

Networks: every shipped checkpoint and the registered CDSPN widths (or `--models`: shipped names, registered
names, checkpoint paths) at `--width`x`--height` (KITTI's 1216x352 crop), batch 1, in fp32 and in fp16
autocast, each as

- engine: `Engine.predict` on tensors already on the device, the call the pipeline makes (input checks,
  dtype and layout conversion, synchronisation included);
- eager: the model's forward alone (inference mode, channels-last, as the engine runs it);
- cuda_graph: the whole forward captured once into a CUDA graph at the static input size and replayed
  (copying the frame into the graph's input buffers is timed with it). A node sees one size, so one
  capture serves every frame; the replay removes the CPU's cost of launching the forward's ~1,000 kernels,
  most of them DA-CSPN++'s one-tap multiply-adds;
- compiled: the DA-CSPN++ iterations through `torch.compile` (`--compile-target`, default `tap_sum`: the
  per-iteration weighted sum of the k*k-1 shifted depth maps, one fused kernel instead of k*k-1; the
  rest of the network stays eager);
- compiled+cuda_graph: both, the compiled kernels captured with the rest of the forward;
- onnx_cuda, onnx_tensorrt: the model exported to ONNX (the whole graph, once per model) and run by the ONNX
  engine (`runtime.onnx_runtime.OnnxRuntime.run`, as `Engine.predict` runs it on numpy frames: host arrays in,
  the depth back on the host, so the copies to and from the GPU are timed with it) through onnxruntime-gpu's
  CUDAExecutionProvider (fp32: it runs the graph as exported) or TensorrtExecutionProvider (fp32, and fp16
  engines). TensorRT builds its engine at the first call (setup_s) and caches it under the user's cache
  (`onnx_runtime.tensorrt_cache_dir`): a second run of the script loads it. A provider that onnxruntime lacks
  is skipped with the reason; one that fails to load is a failed row, not a CPU timing.

Every configuration is warmed up (`--warmup`), then timed `--runs` times, one frame at a time from an idle
GPU: CUDA events around each call give the figures (median, p90, min), the wall clock is kept beside them.
Peak memory is `torch.cuda.max_memory_allocated` over the configuration (weights included). Each variant's
output is compared with eager's at the same precision (`max_abs_diff_m`). A variant that fails is
recorded with its error and the run goes on; a variant that cannot run here is recorded as skipped, with
the reason. The ONNX rows are timed by the host clock (onnxruntime returns when the depth is on the host) and
have no peak memory (onnxruntime's allocations are its own); they count for the goals below as they are, copies
included.

Pipeline at KITTI size (1242x375 image, ~120k-point Velodyne-like cloud, messages in): the frame's stages
other than the network, (a) as shipped (`FrameProcessor` with a stand-in engine that returns its sparse
input: numpy projection on the CPU, post-processing on the host; its conversion includes the engine's moving
the image and the sparse map to the device and the depth back) and (b) on the device: message conversion
(CPU), upload of the image and the points, projection with the torch path on the device, post-processing on
the device with one copy back to the host. Both are timed frame by frame, stage after stage, with the device
synchronised after each.

Goals (printed with pass/fail, judged only for CUDA at 1216x352): CDSPN x32 in fp16 under 3 ms and the
LSPKD student under 6 ms per frame, best variant, network alone.

`--compile-target propagate` or `refine` compiles whole propagation loops (fusing the padding and the
re-injection too), but took about 5 minutes to compile on a 2-core CPU where `tap_sum` took 25 s.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402
from bench_message_conversion import build_messages, kitti_rgb  # noqa: E402
from bench_projection import CAMERA, VELO_TO_CAM, velodyne_like_cloud  # noqa: E402

from depth_completion_ros.data import messages  # noqa: E402
from depth_completion_ros.geometry import project  # noqa: E402
from depth_completion_ros.inference import Engine, example_inputs  # noqa: E402
from depth_completion_ros.model_zoo import shipped_checkpoints  # noqa: E402
from depth_completion_ros.models import dacspn, list_models  # noqa: E402
from depth_completion_ros.pipeline import FrameProcessor, PipelineOptions  # noqa: E402
from depth_completion_ros.runtime.spec import (  # noqa: E402
    ORT_CPU, ORT_CUDA, ORT_TENSORRT, Device, EngineSpec, onnx_providers_available,
)

PRECISIONS = ("fp32", "fp16")
VARIANTS = ("engine", "eager", "cuda_graph", "compiled", "compiled+cuda_graph")
# ONNX Runtime's variants and the execution provider each asks for (the CPU's takes what it cannot run).
ONNX_VARIANTS = {"onnx_cuda": ORT_CUDA, "onnx_tensorrt": ORT_TENSORRT}
# What --compile-target compiles: a function of the dacspn module (looked up there at every call) or
# the refinement's `refine` method (patched on the instance).
COMPILE_TARGETS = {"tap_sum": "_weighted_tap_sum", "propagate": "propagate", "refine": "refine"}
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
GOAL_SIZE = (352, 1216)  # (height, width) the goals are stated for
GOALS = (
    {"goal": "CDSPN x32 fp16 < 3 ms", "architecture": "cdspn_x32", "precision": "fp16", "target_ms": 3.0},
    {"goal": "LSPKD student < 6 ms", "architecture": "lspkd_student", "precision": None, "target_ms": 6.0},
)
PIPELINE_STAGES = {"shipped_path": ("conversion", "projection", "postprocess"),
                   "device_path": ("conversion", "upload", "projection", "postprocess")}


# ------------------------------------------------------------------------------------------------ timing

def summarize(samples: list[float]) -> dict:
    values = np.asarray(samples, dtype=np.float64)
    return {"median_ms": float(np.median(values)), "p90_ms": float(np.percentile(values, 90)),
            "min_ms": float(values.min()), "runs": int(values.size)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_on(device: torch.device, function, runs: int, warmup: int, host_clock: bool = False) -> dict:
    """Figures of `function()` in ms. Each run starts from an idle device, as a frame of the node does; on
    CUDA the figures come from events around the call (launch gaps included), `wall_median_ms` from the
    host clock. `host_clock`: the host clock only, for work on streams other than PyTorch's (onnxruntime)
    that is finished when the call returns."""
    for _ in range(warmup):
        function()
    synchronize(device)
    wall, events = [], []
    for _ in range(runs):
        synchronize(device)
        start = time.perf_counter()
        if device.type == "cuda" and not host_clock:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            function()
            end.record()
            end.synchronize()
            events.append(begin.elapsed_time(end))
        else:
            function()
        wall.append((time.perf_counter() - start) * 1000.0)
    figures = summarize(events or wall)
    figures.update(clock="cuda_event" if events else "perf_counter", wall_median_ms=float(np.median(wall)),
                   warmup=warmup)
    return figures


# ------------------------------------------------------------------------------------------------ networks

def default_models() -> list[str]:
    """Every shipped checkpoint, then the registered CDSPN widths."""
    return sorted(shipped_checkpoints()) + [name for name in list_models() if name.startswith("cdspn_")]


def model_source(name: str) -> str:
    if name in shipped_checkpoints():
        return "shipped"
    return "registered" if name in list_models() else "file"


def make_forward(model, rgb: torch.Tensor, sparse: torch.Tensor, precision: str):
    """The network's forward on these input tensors, as the engine runs it (inference mode, autocast for
    fp16). Autocast's weight cache is off: CUDA graph capture requires it, and one forward uses each
    weight once, so it saves nothing."""
    def forward():
        with torch.inference_mode(), torch.autocast(device_type=rgb.device.type, dtype=torch.float16,
                                                    enabled=precision == "fp16", cache_enabled=False):
            output = model(rgb, sparse)
        return output[0] if isinstance(output, (tuple, list)) else output
    return forward


def capture_graph(model, rgb: torch.Tensor, sparse: torch.Tensor, precision: str, warmup: int = 3):
    """(call, last output): the forward captured in a CUDA graph on static copies of the inputs; `call`
    copies the frame into them and replays."""
    static_rgb, static_sparse = rgb.clone(), sparse.clone()
    forward = make_forward(model, static_rgb, static_sparse, precision)
    device = rgb.device
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
        for _ in range(warmup):
            forward()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = forward()

    def call():
        static_rgb.copy_(rgb)
        static_sparse.copy_(sparse)
        graph.replay()

    call.graph = graph  # keeps the graph (and its memory pool) alive as long as the call
    return call, lambda: output


@contextlib.contextmanager
def compiled_iterations(model, target: str, mode: str):
    """Inside the block, the DA-CSPN++ iterations of `model` run through torch.compile (static shapes)."""
    refinement = getattr(model, "refinement", None)
    torch._dynamo.reset()  # fresh guards per model and precision; inductor's disk cache keeps this cheap
    name = COMPILE_TARGETS[target]
    owner = refinement if target == "refine" else dacspn
    original = getattr(owner, name, None)
    if original is None:
        raise RuntimeError(f"{type(owner).__name__} has no {name!r}: --compile-target {target} needs updating")
    compiled = torch.compile(original, mode=mode, dynamic=False)
    setattr(owner, name, compiled)
    try:
        yield
    finally:
        if target == "refine":
            delattr(refinement, name)  # the instance attribute hid the class's method
        else:
            setattr(owner, name, original)
        torch._dynamo.reset()


def skip_reasons(device: torch.device, precision: str, has_refinement: bool, args) -> dict[str, str]:
    """{variant: why it does not run here} for one precision."""
    reasons = {}
    if precision == "fp16" and device.type != "cuda":
        return {variant: "fp16 autocast runs on CUDA only (the engine uses fp32 on the CPU)" for variant in VARIANTS}
    if device.type != "cuda":
        reasons["cuda_graph"] = reasons["compiled+cuda_graph"] = "CUDA graphs need a CUDA device"
    compile_reason = None
    if args.no_compile:
        compile_reason = "--no-compile"
    elif not has_refinement:
        compile_reason = "no DA-CSPN++ refinement: torch.compile is applied to its iterations only"
    if compile_reason:
        reasons["compiled"] = compile_reason
        reasons.setdefault("compiled+cuda_graph", compile_reason)
    elif args.compile_mode in ("reduce-overhead", "max-autotune"):
        reasons.setdefault("compiled+cuda_graph", f"compile mode {args.compile_mode} replays CUDA graphs itself")
    return reasons


def onnx_skip_reasons(device: torch.device, precision: str, available) -> dict[str, str]:
    """{ONNX variant: why it does not run here} for one precision, given onnxruntime's providers `available`."""
    reasons = {}
    for variant, provider in ONNX_VARIANTS.items():
        if ORT_CUDA not in available:  # TensorRT's provider needs CUDA's too
            reasons[variant] = f"onnxruntime has no {ORT_CUDA}"
        elif provider not in available:
            reasons[variant] = f"onnxruntime has no {provider}"
        elif device.type != "cuda":
            reasons[variant] = f"{provider} needs a CUDA device"
        elif precision == "fp16" and provider == ORT_CUDA:
            # Converting the graph to fp16 is not done: the CUDA provider runs it as exported.
            reasons[variant] = f"{ORT_CUDA} runs the fp32 graph; fp16 runs through {ORT_TENSORRT}"
    return reasons


def run_variant(row: dict, device: torch.device, setup, runs: int, warmup: int, reference,
                pytorch: bool = True) -> dict:
    """Fill `row` with the figures of the call that `setup()` returns, or with the error. `pytorch=False`: a
    call outside PyTorch (onnxruntime), timed by the host clock, with no peak memory of PyTorch's."""
    try:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        call, output = setup()
        call()  # the first call compiles, captures or builds an engine where a variant does: part of its setup
        synchronize(device)
        row["setup_s"] = time.perf_counter() - start
        row.update(time_on(device, call, runs, warmup, host_clock=not pytorch))
        result = output()
        row["max_abs_diff_m"] = None if reference is None else float((result.float() - reference).abs().max())
        row["peak_allocated_mib"] = (torch.cuda.max_memory_allocated(device) / 2**20
                                     if device.type == "cuda" and pytorch else None)
        row["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - a failing variant is a finding; the others still run
        message = str(error).strip().splitlines()
        row.update(status="failed", reason=f"{type(error).__name__}: {message[0][:300] if message else ''}")
    return row


def benchmark_model(name: str, device: torch.device, args) -> tuple[dict, list[dict]]:
    """(model description, one row per precision and variant)."""
    # PyTorch engines whatever backend the node would choose: the variants below need the module itself.
    if model_source(name) == "registered":  # untrained, seeded: speed does not depend on the weights
        engine = Engine.from_name(name, device=device, precision="fp32", seed=args.seed)
    else:
        path = shipped_checkpoints().get(name, name)
        engine = Engine.from_checkpoint(path, device=device, precision="fp32", backend="torch")
    model = engine.model
    if model is None:
        raise ValueError(f"{name}: not a torch model")
    has_refinement = isinstance(getattr(model, "refinement", None), dacspn.DACSPN)
    info = {"architecture": engine.architecture, "source": model_source(name),
            "parameters": sum(p.numel() for p in model.parameters()), "dacspn_refinement": has_refinement}
    rgb, sparse = example_inputs(args.height, args.width, seed=args.seed, device=device)
    rgb = rgb.contiguous(memory_format=torch.channels_last)
    sparse = sparse.contiguous(memory_format=torch.channels_last)
    available = onnx_providers_available()
    graph = OnnxGraph(model, Path(args.onnx_dir) / f"{Path(name).stem}.onnx")
    rows = []
    for precision in PRECISIONS:
        reasons = {**skip_reasons(device, precision, has_refinement, args),
                   **onnx_skip_reasons(device, precision, available)}
        base = {"model": name, "architecture": engine.architecture, "precision": precision,
                "height": args.height, "width": args.width}
        reference = None
        eager = make_forward(model, rgb, sparse, precision)
        if "eager" not in reasons:
            with contextlib.suppress(Exception):  # eager's own row records a failure
                reference = eager().float().clone()

        def report(row):
            rows.append(row)
            print(format_row(row), flush=True)

        def setups():
            yield "engine", lambda: _engine_call(model, device, precision, rgb, sparse)
            yield "eager", lambda: (eager, eager)
            yield "cuda_graph", lambda: capture_graph(model, rgb, sparse, precision)
            for variant, provider in ONNX_VARIANTS.items():
                yield variant, functools.partial(onnx_setup, graph, engine.architecture, device, precision, provider,
                                                 rgb, sparse)

        for variant, setup in setups():
            row = {**base, "variant": variant}
            if variant in reasons:
                report({**row, "status": "skipped", "reason": reasons[variant]})
            else:
                report(run_variant(row, device, setup, args.runs, args.warmup, reference,
                                   pytorch=variant not in ONNX_VARIANTS))
        compiled_variants = ("compiled", "compiled+cuda_graph")
        if "compiled" in reasons:
            for variant in compiled_variants:
                report({**base, "variant": variant, "status": "skipped", "reason": reasons[variant]})
            continue
        try:
            with compiled_iterations(model, args.compile_target, args.compile_mode):
                for variant, setup in (("compiled", lambda: (eager, eager)),
                                       ("compiled+cuda_graph", lambda: capture_graph(model, rgb, sparse, precision))):
                    row = {**base, "variant": variant, "compile_target": args.compile_target,
                           "compile_mode": args.compile_mode}
                    if variant in reasons:
                        report({**row, "status": "skipped", "reason": reasons[variant]})
                    else:
                        report(run_variant(row, device, setup, args.runs, args.warmup, reference))
        except Exception as error:  # noqa: BLE001 - e.g. the compile target is gone
            for variant in compiled_variants:
                if not any(r["variant"] == variant and r["precision"] == precision for r in rows):
                    report({**base, "variant": variant, "status": "failed", "reason": f"{type(error).__name__}: "
                            f"{str(error).strip()[:300]}"})
    return info, rows


def _engine_call(model, device: torch.device, precision: str, rgb: torch.Tensor, sparse: torch.Tensor):
    engine = Engine.from_model(model, device=device, precision=precision)

    def call():
        return engine.predict(rgb, sparse)
    return call, call


class OnnxGraph:
    """The model exported to ONNX file `out` once (the whole graph, dynamic H/W), at the first ONNX row that runs:
    a model whose rows are all skipped costs no export. A failed export fails every ONNX row of the model."""

    def __init__(self, model, out: Path):
        self.model = model
        self.out = out
        self._path = self._error = None

    def path(self) -> Path:
        if self._error is not None:
            raise self._error
        if self._path is None:
            from depth_completion_ros.runtime.export import CACHE_EXPORT_SIZE, export_onnx

            self.out.parent.mkdir(parents=True, exist_ok=True)
            try:
                # The export traces on the CPU from a copy of the model; the small trace serves every size.
                self._path = export_onnx(self.model, self.out, example_size=CACHE_EXPORT_SIZE)
            except Exception as error:  # noqa: BLE001 - recorded by the rows that needed it
                self._error = error
                raise
        return self._path


def onnx_setup(graph: OnnxGraph, architecture: str, device: torch.device, precision: str, provider: str,
               rgb: torch.Tensor, sparse: torch.Tensor):
    """The setup of an ONNX row: the export (at the first row that runs), then `onnx_call`."""
    return onnx_call(graph.path(), architecture, device, precision, provider, rgb, sparse)


def onnx_call(onnx_path: Path, architecture: str, device: torch.device, precision: str, provider: str,
              rgb: torch.Tensor, sparse: torch.Tensor):
    """(call, last output) of the ONNX engine's run of `onnx_path` on host copies of the inputs through
    `provider` (and the CPU's for what it cannot run; TensorRT with CUDA's). Raises where onnxruntime did not
    load `provider`: a timing of its CPU fallback would pass for the provider's."""
    from depth_completion_ros.runtime.onnx_runtime import OnnxRuntime

    providers = tuple(dict.fromkeys((provider, ORT_CUDA if provider == ORT_TENSORRT else provider, ORT_CPU)))
    spec = EngineSpec(architecture=architecture, backend="onnx", device=Device(str(device)), precision=precision,
                      onnx_path=Path(onnx_path), providers=providers)
    runtime = OnnxRuntime(spec)
    if runtime.provider != provider:
        raise RuntimeError(f"onnxruntime did not load {provider} (the session has {', '.join(runtime.providers)})")
    rgb_host = np.ascontiguousarray(rgb.detach().float().cpu().numpy())
    sparse_host = np.ascontiguousarray(sparse.detach().float().cpu().numpy())
    last = {}

    def call():
        last["depth"] = runtime.run(rgb_host, sparse_host)

    return call, lambda: torch.from_numpy(last["depth"]).to(device)


def format_row(row: dict) -> str:
    head = f"  {row['model']:<22} {row['precision']:<5} {row['variant']:<20}"
    if row["status"] != "ok":
        return f"{head} {row['status']}: {row['reason']}"
    peak = "" if row.get("peak_allocated_mib") is None else f"{row['peak_allocated_mib']:9.0f} MiB"
    diff = "" if row.get("max_abs_diff_m") is None else f"   diff {row['max_abs_diff_m']:.1e} m"
    return (f"{head} {row['median_ms']:9.3f} {row['p90_ms']:9.3f} {row['min_ms']:9.3f}   setup "
            f"{row['setup_s']:6.1f} s{peak}{diff}")


# ------------------------------------------------------------------------------------------------ pipeline

class PassThroughEngine:
    """Stands in for the network in `FrameProcessor`: returns its sparse input, so that the shipped code path
    times its other stages without a network's cost. Called as the pipeline calls an engine, numpy in and out,
    it moves the frame as a PyTorch engine does (the uint8 image and the sparse map up, converted on the device,
    the depth back); that transfer, `transfer_ms`, is the shipped path's share of the conversion."""

    def __init__(self, device: torch.device):
        self.device = device
        self.transfer_ms = 0.0

    def predict(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        rgb_device = torch.from_numpy(_writable(rgb)).to(self.device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        output = torch.from_numpy(_writable(sparse)).to(self.device).float()
        synchronize(self.device)
        depth = output.cpu().numpy()
        del rgb_device
        self.transfer_ms = (time.perf_counter() - start) * 1000.0
        return depth


def message_types():
    """(message classes, their origin): rclpy's where ROS 2 is sourced (what the node receives), else the
    rosbags typestore's."""
    try:
        from depth_completion_ros.ros.synthetic import rclpy_types

        return rclpy_types(), "rclpy"
    except ImportError:
        from depth_completion_ros.data.rosbag import typestore_for

        return typestore_for("jazzy").types, "rosbags"


def _writable(array: np.ndarray) -> np.ndarray:
    # torch wraps only writable, contiguous host memory; message buffers may be neither.
    array = np.ascontiguousarray(array)
    return array if array.flags.writeable else array.copy()


def postprocess_on_device(prediction: torch.Tensor, height: int, width: int, options: PipelineOptions,
                          roi_top: int = 0) -> np.ndarray:
    """The pipeline's post-processing (clip to [0, max_depth], invalid fill, paste below roi_top) done on
    the prediction's device, then one copy of the finished (H, W) image to the host."""
    prediction = prediction.detach().float().clamp(0.0, options.max_depth)[0, 0]
    dense = torch.full((height, width), options.fill_value, dtype=torch.float32, device=prediction.device)
    dense[roi_top:] = torch.where(torch.isfinite(prediction), prediction, options.fill_value)
    return dense.cpu().numpy()


def benchmark_pipeline(device: torch.device, points: int, runs: int, warmup: int, seed: int) -> dict:
    """Per-stage figures of the frame's non-network stages at KITTI size, shipped path and device path."""
    options = PipelineOptions()
    rgb = kitti_rgb(CAMERA.height, CAMERA.width, seed=seed)
    cloud = velodyne_like_cloud(points, seed=seed)
    types, origin = message_types()
    image_msg, cloud_msg = build_messages(types, rgb, cloud)

    engine = PassThroughEngine(device)
    processor = FrameProcessor(engine, camera=CAMERA, lidar_to_camera=VELO_TO_CAM, options=options)
    shipped = {stage: [] for stage in PIPELINE_STAGES["shipped_path"]}
    shipped_total = []
    for index in range(warmup + runs):
        result = processor.process_messages(image_msg, cloud_msg)
        if index >= warmup:
            # The engine's transfer to and from the device (inside `predict`) counts with the conversion.
            result.timings_ms["conversion"] += engine.transfer_ms
            for stage in shipped:
                shipped[stage].append(result.timings_ms[stage])
            shipped_total.append(result.timings_ms["total"] - result.timings_ms["inference"] + engine.transfer_ms)

    def frame() -> tuple[dict, torch.Tensor]:
        times = {}
        start = time.perf_counter()
        messages.check_image_matches_camera(image_msg, CAMERA)
        rgb_host = _writable(messages.rgb_from_image(image_msg))
        points_host = _writable(messages.pointcloud2_to_xyz(cloud_msg)[0])
        times["conversion"] = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        points_device = torch.from_numpy(points_host).to(device)
        rgb_device = torch.from_numpy(rgb_host).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        synchronize(device)
        times["upload"] = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        sparse, _ = project(points_device, CAMERA, VELO_TO_CAM, min_depth=options.min_depth,
                            max_depth=options.max_depth, return_stats=True)
        sparse = sparse[None, None]
        synchronize(device)
        times["projection"] = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        postprocess_on_device(sparse, CAMERA.height, CAMERA.width, options)  # the sparse map stands in
        times["postprocess"] = (time.perf_counter() - start) * 1000.0
        del rgb_device
        return times, sparse

    on_device = {stage: [] for stage in PIPELINE_STAGES["device_path"]}
    device_total = []
    for index in range(warmup + runs):
        times, sparse = frame()
        if index >= warmup:
            for stage, value in times.items():
                on_device[stage].append(value)
            device_total.append(sum(times.values()))
    reference, stats = project(cloud, CAMERA, VELO_TO_CAM, min_depth=options.min_depth,
                               max_depth=options.max_depth, return_stats=True)
    differing = int(np.count_nonzero(np.abs(sparse[0, 0].cpu().numpy() - reference) > 1e-4))
    return {
        "image": [CAMERA.width, CAMERA.height], "points": points, "points_in_image": stats.projected,
        "pixels_filled": stats.pixels, "messages": origin, "device": str(device),
        "shipped_path": {"stages": {stage: summarize(values) for stage, values in shipped.items()},
                         "non_network": summarize(shipped_total)},
        "device_path": {"stages": {stage: summarize(values) for stage, values in on_device.items()},
                        "non_network": summarize(device_total)},
        "projection_pixels_differing": differing,
    }


# ------------------------------------------------------------------------------------------------ goals

def evaluate_goals(rows: list[dict], models: dict, device: torch.device, height: int, width: int) -> list[dict]:
    """One entry per goal: the best network-alone figure of the first matching model (shipped first)."""
    not_comparable = None
    if device.type != "cuda":
        not_comparable = f"measured on {device.type}: the goals are for CUDA"
    elif (height, width) != GOAL_SIZE:
        not_comparable = f"measured at {width}x{height}: the goals are for {GOAL_SIZE[1]}x{GOAL_SIZE[0]}"
    goals = []
    for goal in GOALS:
        entry = dict(goal)
        matching = sorted((name for name, info in models.items() if info["architecture"] == goal["architecture"]),
                          key=lambda name: models[name]["source"] != "shipped")
        candidates = [row for row in rows if matching and row["model"] == matching[0] and row["status"] == "ok"
                      and row["variant"] != "engine" and goal["precision"] in (None, row["precision"])]
        entry["model"] = matching[0] if matching else None
        if not candidates:
            precision = goal["precision"] or "any precision"
            entry.update(verdict="not measured", reason=f"no {goal['architecture']} model was requested"
                         if not matching else f"{matching[0]} was not timed in {precision}")
            goals.append(entry)
            continue
        best = min(candidates, key=lambda row: row["median_ms"])
        eager = [row["median_ms"] for row in candidates if row["variant"] == "eager"
                 and row["precision"] == best["precision"]]
        entry.update(measured_ms=best["median_ms"], p90_ms=best["p90_ms"], best_variant=best["variant"],
                     best_precision=best["precision"], eager_ms=eager[0] if eager else None)
        if not_comparable:
            entry.update(verdict="n/a", reason=not_comparable)
        else:
            entry["verdict"] = "pass" if best["median_ms"] < goal["target_ms"] else "fail"
        goals.append(entry)
    return goals


def format_goal(goal: dict) -> str:
    head = f"  {goal['goal']:<24}"
    if goal.get("measured_ms") is None:
        return f"{head} {goal['verdict'].upper()}: {goal['reason']}"
    eager = "" if goal["eager_ms"] is None else f"; eager {goal['eager_ms']:.3f} ms"
    verdict = goal["verdict"].upper() + (f" ({goal['reason']})" if goal.get("reason") else "")
    return (f"{head} {goal['model']}: {goal['measured_ms']:.3f} ms ({goal['best_precision']} "
            f"{goal['best_variant']}{eager}) -> {verdict}")


def describe_device(device: torch.device) -> dict | None:
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"name": props.name, "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "triton": triton_version,
            "cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}


# ------------------------------------------------------------------------------------------------ main

def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: a dry run at a small size)")
    parser.add_argument("--height", type=int, default=GOAL_SIZE[0])
    parser.add_argument("--width", type=int, default=GOAL_SIZE[1])
    parser.add_argument("--runs", type=int, default=50, help="timed runs per configuration (default: 50)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (default: 10)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="shipped or registered names or checkpoint paths (default: the shipped checkpoints "
                             "and the registered CDSPN widths)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variants")
    parser.add_argument("--compile-target", choices=sorted(COMPILE_TARGETS), default="tap_sum",
                        help="what of DA-CSPN++ torch.compile gets (default: tap_sum)")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, default="max-autotune-no-cudagraphs")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN pick its algorithms by timing (the engine leaves this off)")
    parser.add_argument("--onnx-dir", default=None,
                        help="where the ONNX rows' exports are written and kept (default: a temporary folder, "
                             "removed at the end)")
    parser.add_argument("--points", type=int, default=120_000, help="points of the pipeline's LiDAR cloud")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.height < 1 or args.width < 1 or args.points < 1:
        parser.error("--runs, --height, --width and --points must be >= 1, --warmup >= 0")
    try:
        args.device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device: {error}")
    if args.device.type not in ("cuda", "cpu"):
        parser.error(f"--device must be cuda, cuda:N or cpu, got {args.device}")
    if args.device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error("CUDA is not available here; --device cpu runs the script at a small size for testing")
        if args.device.index is None:
            args.device = torch.device("cuda", torch.cuda.current_device())
    args.models = args.models or default_models()
    known = set(shipped_checkpoints()) | set(list_models())
    unknown = [name for name in args.models if name not in known and not Path(name).is_file()]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: not a shipped model "
                     f"({', '.join(sorted(shipped_checkpoints()))}), a registered one ({', '.join(list_models())}) "
                     "or a checkpoint file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    machine = describe_machine()
    gpu = describe_device(device)
    print(f"device {device}{' (' + gpu['name'] + ')' if gpu else ''}; torch {torch.__version__}; "
          f"onnxruntime {machine.get('onnxruntime') or 'not installed'} "
          f"({', '.join(onnx_providers_available()) or 'no providers'}); "
          f"{args.width}x{args.height}, batch 1; {args.warmup} warm-up + {args.runs} timed runs")
    print(f"  {'model':<22} {'prec':<5} {'variant':<20} {'median ms':>9} {'p90 ms':>9} {'min ms':>9}")
    models, rows = {}, []
    onnx_dir = args.onnx_dir  # as given: the temporary folder is gone when the settings are written
    with contextlib.ExitStack() as stack:
        if args.onnx_dir is None:
            args.onnx_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_gpu_onnx_"))
        for name in args.models:
            info, model_rows = benchmark_model(name, device, args)
            models[name] = info
            rows += model_rows
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the model is gone: hand its memory back before the next one

    pipeline = benchmark_pipeline(device, args.points, args.runs, min(args.warmup, 3), args.seed)
    print(f"non-network stages at {pipeline['image'][0]}x{pipeline['image'][1]}, {pipeline['points']} points "
          f"({pipeline['points_in_image']} land in the image), {pipeline['messages']} messages, median ms:")
    for path, stages in PIPELINE_STAGES.items():
        figures = pipeline[path]
        parts = ", ".join(f"{stage} {figures['stages'][stage]['median_ms']:.2f}" for stage in stages)
        print(f"  {path:<13} {parts}; all {figures['non_network']['median_ms']:.2f}")
    if pipeline["projection_pixels_differing"]:
        print(f"  note: the device projection differs from numpy's in {pipeline['projection_pixels_differing']} "
              "pixels")

    goals = evaluate_goals(rows, models, device, args.height, args.width)
    print("goals (network alone, best variant):")
    for goal in goals:
        print(format_goal(goal))
    network = goals[0].get("measured_ms")
    if network:
        pipeline["device_path_fraction_of_cdspn_x32"] = pipeline["device_path"]["non_network"]["median_ms"] / network
        print(f"  device-path non-network stages = {100 * pipeline['device_path_fraction_of_cdspn_x32']:.0f} % of "
              f"{goals[0]['model']}'s network time (pipeline goal: under 10 %)")

    settings = {key: (str(value) if isinstance(value, torch.device) else value) for key, value in vars(args).items()}
    settings["onnx_dir"] = onnx_dir
    write_json(args.json, {"benchmark": "gpu", "settings": settings, "machine": machine, "gpu": gpu,
                           "models": models, "results": rows, "pipeline": pipeline, "goals": goals})
    return 0


if __name__ == "__main__":
    sys.exit(main())
