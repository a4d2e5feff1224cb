"""Peak memory of the CPU engine (ONNX Runtime + the fused propagation) by ONNX Runtime memory option, side by side.

    python benchmarks/onnx_memory.py                                   # default and lite, all configurations
    python benchmarks/onnx_memory.py --models default --configs previous open_session --frames 5
    python benchmarks/onnx_memory.py --repeat 2 --json benchmarks/results/onnx_memory.json --markdown
    python benchmarks/onnx_memory.py --configs previous open_session --size 1216x352 1242x256 640x480
    python benchmarks/onnx_memory.py --where default lite              # which tensors make the peak

Each (model, configuration) runs in a fresh Python process, which builds the engine as the node does
(`model_zoo.resolve_engine(model, device="cpu")`: backend auto, the fused graph + numba propagation, threads =
the cores available) and runs `--frames` frames of each `--size` (WxH, default KITTI's raw 1242x375, the
node's frame with roi "full"; `lidar_frame`: a synthetic image and a 64-line LiDAR pattern). A configuration
rewrites the memory options of the sessions that process opens (wrapping `onnxruntime.InferenceSession`), except
"open_session", which runs `open_session` as it is:

- previous: the options `open_session` had before this benchmark (session arena, onnxruntime's default growth
  kNextPowerOfTwo from 1 MiB regions; memory pattern off).
- open_session: as `open_session` opens them now (`onnx_runtime.CPU_ARENA`: one arena in onnxruntime's environment
  whose first region, 1 GiB of address space, holds a whole frame).
- same_as_requested: an arena registered in onnxruntime's environment with arena_extend_strategy kSameAsRequested
  (`onnxruntime.create_and_register_allocator` + session config "session.use_env_allocators" = "1");
  same_as_requested_dead_1mib: with max_dead_bytes_per_chunk 1 MiB (default 128 MiB).
- one_region_768mib: as open_session with a 768 MiB first region.
- one_region_mem_pattern, one_region_no_nchwc, one_region_no_prepacking: as open_session, with the memory pattern
  on; with graph optimisation level "extended" (no NCHWc layout); with "session.disable_prepacking" = "1".
- no_arena: enable_cpu_mem_arena False (every tensor from malloc); no_arena_all_mapped: with glibc mapping every
  block of 64 KiB or more on its own and unmapping it when freed, so that the peak RSS is what is alive at once (the
  floor of any allocator, plus the process).

Reported per process: RSS at start, after the engine is built (before the first frame), between frames (after
each frame; the median of frames 2..N), the peak (getrusage ru_maxrss and /proc/self/status VmHWM), median ms
per frame (frames 2..N; the first is reported apart), the fused propagation's workspace in MiB, whether PyTorch
was loaded, and the max abs difference of the first frame's depth to the "previous" configuration's (saved to
a temporary file by that child). Timings on a shared machine drift: `--repeat` runs the configurations again in
reversed order and reports per configuration the median over the repeats.

`--where MODEL` profiles one frame with onnxruntime's profiler and replays the node order to list the tensors
alive at the peak of the session's own activations (a lower bound of what any allocator needs).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, proc_status, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MODELS = {"default": "default", "lite": "cdspn_x32_lite_synth"}

# name -> how the sessions of the process are opened. "arena": "session" (onnxruntime's per-session arena), "env"
# (an arena registered in onnxruntime's environment with `arena_cfg`, shared by the sessions), "none" (malloc).
# None: open_session's own options.
ONE_REGION = {"arena_extend_strategy": 0, "initial_chunk_size_bytes": 1 << 30}
CONFIGS: dict[str, dict | None] = {
    "previous": {"arena": "session", "mem_pattern": False},
    "open_session": None,
    "same_as_requested": {"arena": "env", "arena_cfg": {"arena_extend_strategy": 1}, "mem_pattern": False},
    "same_as_requested_dead_1mib": {"arena": "env", "mem_pattern": False,
                                    "arena_cfg": {"arena_extend_strategy": 1, "max_dead_bytes_per_chunk": 1 << 20}},
    "one_region_768mib": {"arena": "env", "mem_pattern": False,
                          "arena_cfg": {"arena_extend_strategy": 0, "initial_chunk_size_bytes": 768 << 20}},
    "one_region_mem_pattern": {"arena": "env", "arena_cfg": ONE_REGION, "mem_pattern": True},
    "one_region_no_nchwc": {"arena": "env", "arena_cfg": ONE_REGION, "mem_pattern": False, "level": "extended"},
    "one_region_no_prepacking": {"arena": "env", "arena_cfg": ONE_REGION, "mem_pattern": False,
                                 "entries": {"session.disable_prepacking": "1"}},
    "no_arena": {"arena": "none", "mem_pattern": False},
    # The floor: every allocation of 64 KiB or more mapped and unmapped at once (glibc), so that the peak is what is
    # alive at once; slow.
    "no_arena_all_mapped": {"arena": "none", "mem_pattern": False,
                            "env": {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}},
}
REFERENCE = "previous"


def _mib(kib: float) -> float:
    return round(kib / 1024.0, 1)


def lidar_frame(width: int, height: int, seed: int = 0):
    """A (H,W,3) uint8 image and an (H,W) sparse depth in metres laid out like a projected 64-line LiDAR: returns
    on rows from ~40 % of the height down (the sensor sees nothing above the horizon), 64 scan lines closer
    together near the horizon, a return every ~2 pixels along a line with gaps, depth falling towards the bottom
    (ground) with objects nearer than the ground in a few columns. About 4-5 % of the pixels hold a return."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = (127 + 60 * np.sin(xx[..., None] / 37.0 + np.arange(3)) * np.cos(yy[..., None] / 23.0)
           + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)
    sparse = np.zeros((height, width), np.float32)
    horizon = int(0.4 * height)
    rows = horizon + ((height - 1 - horizon) * np.linspace(0.0, 1.0, 64) ** 1.4).astype(int)
    for line, row in enumerate(rows):
        columns = np.arange(line % 2, width, 2)
        columns = columns[rng.random(columns.size) > 0.1]  # dropped returns (sky, glass, black paint)
        ground = 80.0 / (1.0 + 30.0 * (row - horizon) / max(height - horizon, 1))
        depth = ground * (1.0 + 0.05 * rng.standard_normal(columns.size))
        objects = (np.sin(columns / 90.0 + line / 20.0) > 0.7)
        depth[objects] = np.minimum(depth[objects], 8.0 + 4.0 * np.sin(columns[objects] / 50.0))
        sparse[row, columns] = np.clip(depth, 1.0, 80.0)
    return rgb, sparse


def _patch_sessions(config: dict) -> None:
    """Make every onnxruntime session of this process open with `config`'s memory options."""
    import onnxruntime as ort

    from depth_completion_ros.runtime import onnx_runtime

    # open_session registers its own arena once per process (a registration replaces the one before): mark it done.
    onnx_runtime._cpu_arena = config["arena"] == "env"
    if config["arena"] == "env":
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(config["arena_cfg"]))
    original = ort.InferenceSession

    class Session(original):
        def __init__(self, path, sess_options=None, *args, **kwargs):
            options = sess_options or ort.SessionOptions()
            options.enable_mem_pattern = config["mem_pattern"]
            options.enable_cpu_mem_arena = config["arena"] != "none"
            options.add_session_config_entry("session.use_env_allocators",
                                             "1" if config["arena"] == "env" else "0")
            if config.get("level") == "extended":
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            for key, value in config.get("entries", {}).items():
                options.add_session_config_entry(key, value)
            super().__init__(path, options, *args, **kwargs)

    ort.InferenceSession = Session


def _entries(options, keys) -> dict[str, str]:
    """The session config entries among `keys` that `options` sets."""
    found = {}
    for key in keys if options is not None else ():
        try:
            found[key] = options.get_session_config_entry(key)
        except RuntimeError:  # not set
            pass
    return found


def run_child(model: str, config_name: str, frames: int, width: int, height: int, reference: str | None) -> dict:
    """One configuration in this (fresh) process."""
    start = proc_status()
    import numpy as np

    config = CONFIGS[config_name]
    if config is not None:
        _patch_sessions(config)
    from depth_completion_ros.model_zoo import resolve_engine
    from depth_completion_ros.runtime.inputs import numpy_batch

    engine = resolve_engine(MODELS.get(model, model), device="cpu")
    runtime = engine._runtime
    session = getattr(runtime, "session", None)
    options = session.get_session_options() if session is not None else None
    rgb, sparse = numpy_batch(*lidar_frame(width, height))
    built = proc_status()
    times, between = [], []
    first_depth = None
    for index in range(frames):
        began = time.perf_counter()
        depth = runtime.run(rgb, sparse)
        times.append((time.perf_counter() - began) * 1000.0)
        if index == 0:
            first_depth = np.array(depth, copy=True)
        del depth
        between.append(proc_status()["VmRSS"])
    end = proc_status()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    workspace = getattr(runtime, "workspace", None)
    result = {
        "model": model, "config": config_name, "options": config if config is not None else "open_session",
        "engine": repr(engine), "frames": frames, "size_wh": [width, height],
        "threads": engine.spec.threads if hasattr(engine, "spec") else None,
        "rss_start_mib": _mib(start["VmRSS"]), "rss_before_first_frame_mib": _mib(built["VmRSS"]),
        "rss_after_each_frame_mib": [_mib(value) for value in between],
        "rss_steady_mib": _mib(float(np.median(between[1:] if len(between) > 1 else between))),
        "peak_vmhwm_mib": _mib(end["VmHWM"]), "peak_ru_maxrss_mib": _mib(usage.ru_maxrss),
        "first_frame_ms": round(times[0], 1),
        "median_ms": round(float(np.median(times[1:] if len(times) > 1 else times)), 1),
        "frame_ms": [round(value, 1) for value in times],
        "workspace_mib": round(workspace.nbytes / 2**20, 1) if workspace else 0.0,
        "torch_loaded": "torch" in sys.modules,
        "session_entries": _entries(options, ("session.use_env_allocators", "session.disable_prepacking")),
        "enable_cpu_mem_arena": options.enable_cpu_mem_arena if options else None,
        "enable_mem_pattern": options.enable_mem_pattern if options else None,
    }
    if reference:
        path = Path(reference)
        if config_name == REFERENCE:
            np.save(path, first_depth)
        elif path.exists():
            result["max_abs_diff_to_previous"] = float(np.max(np.abs(np.load(path) - first_depth)))
    return result


def spawn(model: str, config: str, frames: int, width: int, height: int, reference: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", model, config, "--frames", str(frames),
               "--size", f"{width}x{height}", "--reference", reference]
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": path, **((CONFIGS[config] or {}).get("env", {}))}
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{model}/{config} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def where(model: str, width: int, height: int, top: int = 12) -> dict:
    """Replay one profiled frame of `model`'s session (as open_session opens it, optimised graph) and list the
    tensors alive when the sum of live activations peaks; also the nodes with the largest outputs."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from depth_completion_ros.model_zoo import resolve_engine
    from depth_completion_ros.runtime.inputs import numpy_batch
    from depth_completion_ros.runtime.onnx_files import INPUT_NAMES

    engine = resolve_engine(MODELS.get(model, model), device="cpu")
    path = engine.spec.onnx_path
    folder = Path(tempfile.mkdtemp(prefix="onnx_memory_"))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(folder / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # Profile the saved optimised graph as it is, so that profiled node names are the saved graph's.
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_mem_pattern = False
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "profile")
    session = ort.InferenceSession(str(folder / "optimized.onnx"), options, providers=["CPUExecutionProvider"])
    rgb, sparse = numpy_batch(*lidar_frame(width, height))
    session.run(None, dict(zip(INPUT_NAMES, (rgb, sparse))))
    events = json.loads(Path(session.end_profiling()).read_text())
    graph = onnx.load(str(folder / "optimized.onnx")).graph
    nodes = {node.name: node for node in graph.node}
    order = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    last_use = {}
    for index, event in enumerate(order):
        for name in nodes[event["name"][:-len("_kernel_time")]].input:
            last_use[name] = index
    outputs = {o.name for o in graph.output}
    live, peak, peak_set, peak_node, largest = {}, 0, {}, None, []
    for index, event in enumerate(order):
        node = nodes[event["name"][:-len("_kernel_time")]]
        shapes = event["args"].get("output_type_shape", [])
        for name, typed in zip(node.output, shapes):
            (_, shape), = typed.items()
            size = int(np.prod(shape)) * 4
            largest.append((size, node.op_type, node.name, shape, event["dur"] / 1000.0))
            if node.op_type not in ("Reshape", "Squeeze", "Unsqueeze", "Flatten"):  # views of their input
                live[name] = (size, node.op_type, shape)
        total = sum(value[0] for value in live.values())
        if total > peak:
            peak, peak_set, peak_node = total, dict(live), node.name
        for name in node.input:
            if last_use.get(name) == index and name in live and name not in outputs:
                del live[name]
    largest.sort(key=lambda row: -row[0])
    return {
        "model": model, "size_wh": [width, height], "onnx": path.name,
        "peak_live_activations_mib": round(peak / 2**20, 1), "at_node": peak_node,
        "graph_outputs_mib": round(sum(v[0] for k, v in peak_set.items() if k in outputs) / 2**20, 1),
        "alive_at_peak": [{"tensor": name, "op": value[1], "shape": value[2], "mib": round(value[0] / 2**20, 1)}
                          for name, value in sorted(peak_set.items(), key=lambda kv: -kv[1][0])[:top]],
        "largest_outputs": [{"node": row[2], "op": row[1], "shape": row[3], "mib": round(row[0] / 2**20, 1),
                             "ms": round(row[4], 1)} for row in largest[:top]],
        "session_ms": round(sum(e["dur"] for e in order) / 1000.0, 1),
    }


def markdown(payload: dict) -> str:
    sizes = ", ".join(f"{w}x{h}" for w, h in payload.get("sizes_wh", [payload["size_wh"]]))
    machine = (f"({payload['machine']['cpu']}, {payload['machine']['cores_available']} cores, "
               f"onnxruntime {payload['machine']['onnxruntime']})")
    if "where" in payload:
        lines = [f"# Where the ONNX Runtime sessions' memory goes, {sizes}", "", f"`{payload['command']}` {machine}."]
    else:
        lines = [f"# ONNX Runtime memory options, {sizes}, {payload['frames']} frames, threads {payload['threads']}",
                 "", f"`{payload['command']}` {machine}. Medians over {payload['repeat']} repeat(s); MiB.", ""]
        lines += ["| model | WxH | configuration | RSS before 1st frame | steady RSS | peak (VmHWM) | peak vs previous "
                  "| peak (ru_maxrss) | median ms/frame | vs previous | max abs diff |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in payload.get("summary", []):
        diff = row.get("max_abs_diff_to_previous")
        lines.append(f"| {row['model']} | {row['size_wh'][0]}x{row['size_wh'][1]} | {row['config']} | "
                     f"{row['rss_before_first_frame_mib']} | {row['rss_steady_mib']} | {row['peak_vmhwm_mib']} | "
                     f"{row.get('peak_vs_previous_mib', '')} | {row['peak_ru_maxrss_mib']} | {row['median_ms']} | "
                     f"{row.get('ms_vs_previous', '')} | {'' if diff is None else f'{diff:.2g}'} |")
    for found in payload.get("where", []):
        lines += ["", f"## Where {found['model']}'s session peaks ({found['onnx']})", "",
                  f"Live activations peak at {found['peak_live_activations_mib']} MiB (at node `{found['at_node']}`; "
                  f"of which graph outputs {found['graph_outputs_mib']} MiB); session time {found['session_ms']} ms.",
                  "", "| tensor alive at the peak | op | shape | MiB |", "|---|---|---|---|"]
        lines += [f"| `{t['tensor']}` | {t['op']} | {t['shape']} | {t['mib']} |" for t in found["alive_at_peak"]]
        lines += ["", "| largest node outputs | op | shape | MiB | ms |", "|---|---|---|---|---|"]
        lines += [f"| `{t['node']}` | {t['op']} | {t['shape']} | {t['mib']} | {t['ms']} |"
                  for t in found["largest_outputs"]]
    return "\n".join(lines) + "\n"


def summarize(results: list[dict]) -> list[dict]:
    """Per (model, size, configuration): the medians over the repeats, and the time against "previous"'s."""
    import numpy as np

    rows = []
    keys = ("rss_start_mib", "rss_before_first_frame_mib", "rss_steady_mib", "peak_vmhwm_mib", "peak_ru_maxrss_mib",
            "median_ms", "first_frame_ms", "workspace_mib")
    groups = dict.fromkeys((r["model"], tuple(r["size_wh"])) for r in results)
    for model, size in groups:
        group = [r for r in results if r["model"] == model and tuple(r["size_wh"]) == size]
        first = len(rows)
        for config in dict.fromkeys(r["config"] for r in group):
            runs = [r for r in group if r["config"] == config]
            row = {"model": model, "size_wh": list(size), "config": config, "runs": len(runs),
                   **{key: round(float(np.median([r[key] for r in runs])), 1) for key in keys},
                   "torch_loaded": any(r["torch_loaded"] for r in runs)}
            diffs = [r["max_abs_diff_to_previous"] for r in runs if "max_abs_diff_to_previous" in r]
            if diffs:
                row["max_abs_diff_to_previous"] = max(diffs)
            rows.append(row)
        base = next((r for r in rows[first:] if r["config"] == REFERENCE), None)
        for row in rows[first:] if base else ():
            row["ms_vs_previous"] = f"{100.0 * (row['median_ms'] / base['median_ms'] - 1.0):+.1f} %"
            row["peak_vs_previous_mib"] = round(row["peak_vmhwm_mib"] - base["peak_vmhwm_mib"], 1)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["default", "lite"], help="default, lite or model names")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--size", nargs="+", default=["1242x375"], help="frame WxH (several: each in turn)")
    parser.add_argument("--repeat", type=int, default=1, help="run the configurations this many times "
                        "(alternating order) and report medians")
    parser.add_argument("--where", nargs="*", metavar="MODEL", help="profile these models' sessions instead")
    parser.add_argument("--json", nargs="?", const=str(RESULTS / "onnx_memory.json"),
                        help="write the results (default path benchmarks/results/onnx_memory.json)")
    parser.add_argument("--markdown", action="store_true", help="also write the table beside the JSON (.md)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "CONFIG"), help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.size]
    width, height = sizes[0]
    if args.child:
        print(json.dumps(run_child(*args.child, args.frames, width, height, args.reference)), flush=True)
        return 0
    payload = {"command": "python " + " ".join([os.path.relpath(__file__, REPO), *sys.argv[1:]]),
               "machine": describe_machine(), "frames": args.frames, "size_wh": [width, height],
               "sizes_wh": [list(size) for size in sizes], "repeat": args.repeat}
    if args.where is not None:
        payload["where"] = [where(model, width, height) for model in (args.where or args.models)]
        for found in payload["where"]:
            print(json.dumps(found, indent=1))
    else:
        results = []
        configs = list(args.configs)
        if REFERENCE in configs:  # the reference first, so that the others compare their output with it
            configs.remove(REFERENCE)
        for repeat in range(args.repeat):
            order = configs if repeat % 2 == 0 else configs[::-1]
            for (width, height), model in ((size, model) for size in sizes for model in args.models):
                with tempfile.TemporaryDirectory() as folder:
                    reference = str(Path(folder) / "previous.npy")
                    ordered = ([REFERENCE] if REFERENCE in args.configs else []) + order
                    for config in ordered:
                        result = spawn(model, config, args.frames, width, height, reference)
                        results.append(result)
                        print(f"{model:8s} {width}x{height} {config:28s} before "
                              f"{result['rss_before_first_frame_mib']:7.1f}  "
                              f"steady {result['rss_steady_mib']:7.1f}  peak {result['peak_vmhwm_mib']:7.1f} MiB  "
                              f"{result['median_ms']:7.1f} ms/frame  diff "
                              f"{result.get('max_abs_diff_to_previous', '-')}", flush=True)
        payload["threads"] = results[0]["threads"] if results else None
        payload["summary"] = summarize(results)
        payload["runs"] = results
    payload.setdefault("threads", None)
    write_json(args.json, payload)
    if args.json:
        path = Path(args.json)
        if args.markdown:
            path.with_suffix(".md").write_text(markdown(payload))
            print(f"wrote {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
