"""Inference speed of the registered models: median and p90 ms/frame at KITTI size (1216x352).

Each configuration runs end to end as the pipeline does — numpy RGB (uint8) and sparse depth in, numpy
dense depth out — through `inference.Engine`, which synchronises CUDA before returning, so the clock
reads finished work. Warm-up runs are excluded. Configurations: PyTorch on the CPU (fp32) and
onnxruntime on the CPU (every model by default), both with `--threads` intra-op threads (0: the cores
available, as the node and the command line choose) and timed in turns, run by run, so that a change in
the machine's load touches both alike; and PyTorch on CUDA in fp32 and fp16 autocast when a GPU is
present. Models are untrained (seeded): speed does not depend on the weights. The torch / ONNX Runtime
ratio per model is what `inference.ONNX_FASTER_ON_CPU` (backend "auto") is taken from.

    python benchmarks/bench_inference.py                       # all registered models, 5 timed runs
    python benchmarks/bench_inference.py --models cdspn_x32 --runs 20 --json out/bench_inference.json
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from depth_completion_ros.inference import CACHE_EXPORT_SIZE, Engine, available_cores, export_onnx
from depth_completion_ros.models import list_models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine  # noqa: E402

LOGGER = logging.getLogger("bench_inference")


def kitti_like_frame(height: int, width: int, density: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 RGB image and a sparse depth map with `density` of pixels holding 1..80 m."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 80.0, size=(height, width)).astype(np.float32)
    sparse = np.where(rng.random((height, width)) < density, depth, np.float32(0.0)).astype(np.float32)
    return rgb, sparse


def time_engine(engine: Engine, rgb: np.ndarray, sparse: np.ndarray, runs: int, warmup: int) -> dict:
    """Per-frame wall times (ms) of `runs` predictions after `warmup` untimed ones."""
    return time_in_turns([engine], rgb, sparse, runs, warmup)[0]


def parameter_count(engine: Engine) -> int | None:
    """Number of weights of the engine's torch model (None for ONNX)."""
    return None if engine.model is None else sum(p.numel() for p in engine.model.parameters())


def benchmark(models: list[str], height: int, width: int, runs: int, warmup: int, onnx_models: list[str],
              density: float, seed: int, skip_cpu: bool, threads: int = 0) -> list[dict]:
    """Time every (model, backend, device, precision) configuration; one result row each."""
    rgb, sparse = kitti_like_frame(height, width, density, seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as scratch:
        for name in models:
            if not skip_cpu:
                engines = [Engine.from_name(name, device="cpu", precision="fp32", seed=seed, threads=threads)]
                if name in onnx_models:
                    onnx_path = export_onnx(engines[0].model, Path(scratch) / f"{name}.onnx",
                                            example_size=CACHE_EXPORT_SIZE)
                    engines.append(Engine.from_onnx(onnx_path, device="cpu", threads=threads))
                timings = time_in_turns(engines, rgb, sparse, runs, warmup)
                for engine, timing in zip(engines, timings):
                    row = _describe(name, engine, rgb)
                    row["parameters"] = parameter_count(engines[0])
                    row.update(timing)
                    rows.append(row)
                    print(_format_row(row), flush=True)
                if len(engines) == 2:
                    ratio = timings[0]["median_ms"] / timings[1]["median_ms"]
                    print(f"{'':<20} torch / ONNX Runtime on the CPU: {ratio:.2f}x", flush=True)
                    rows[-1]["torch_over_onnx"] = ratio
                del engines
            if torch.cuda.is_available():
                for precision in ("fp32", "fp16"):
                    engine = Engine.from_name(name, device="cuda", precision=precision, seed=seed)
                    rows.append(_row(name, engine, rgb, sparse, runs, warmup))
                    print(_format_row(rows[-1]), flush=True)
                    del engine
                    torch.cuda.empty_cache()
    return rows


def time_in_turns(engines: list[Engine], rgb: np.ndarray, sparse: np.ndarray, runs: int, warmup: int) -> list[dict]:
    """Per-frame wall times (ms) of several engines, one run of each in turn on the same input (a change in
    the machine's load touches them alike), after `warmup` untimed rounds."""
    for _ in range(warmup):
        for engine in engines:
            engine.predict(rgb, sparse)
    times = [[] for _ in engines]
    outputs = [None] * len(engines)
    for _ in range(runs):
        for index, (engine, samples) in enumerate(zip(engines, times)):
            start = time.perf_counter()
            outputs[index] = engine.predict(rgb, sparse)  # returns host numpy: the device work has finished
            samples.append((time.perf_counter() - start) * 1e3)
    for engine, output in zip(engines, outputs):
        if not np.isfinite(output).all():
            LOGGER.warning("%s produced non-finite depth", engine)
    return [{"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "min_ms": float(min(t)),
             "runs": runs, "warmup": warmup, "times_ms": t} for t in times]


def _describe(name: str, engine: Engine, rgb: np.ndarray) -> dict:
    return {"model": name, "backend": engine.backend, "device": str(engine.device), "precision": engine.precision,
            "threads": engine.threads, "parameters": parameter_count(engine), "height": rgb.shape[0],
            "width": rgb.shape[1]}


def _row(name: str, engine: Engine, rgb: np.ndarray, sparse: np.ndarray, runs: int, warmup: int) -> dict:
    row = _describe(name, engine, rgb)
    row.update(time_engine(engine, rgb, sparse, runs, warmup))
    return row


def _format_row(row: dict) -> str:
    params = f"{row['parameters'] / 1e6:7.2f}M" if row["parameters"] else "       -"
    return (f"{row['model']:<20} {row['backend']:<6} {row['device']:<7} {row['precision']:<5} {params} "
            f"{row['median_ms']:10.1f} {row['p90_ms']:10.1f} {1e3 / row['median_ms']:8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="registered model names (default: all)")
    parser.add_argument("--height", type=int, default=352)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per configuration (default: 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before timing (default: 2)")
    parser.add_argument("--onnx-models", nargs="*", default=None,
                        help="models also timed with onnxruntime on the CPU (default: all of --models)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU intra-op threads of both runtimes (default: 0 = the cores available)")
    parser.add_argument("--density", type=float, default=0.05, help="fraction of pixels with LiDAR depth")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cpu", action="store_true", help="time CUDA only")
    parser.add_argument("--json", type=Path, default=None, help="write machine description and rows here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    registered = list_models()
    models = args.models or registered
    unknown = [name for name in models if name not in registered]
    if unknown or not models:
        parser.error(f"unknown model(s) {', '.join(unknown) or '(none registered)'}; "
                     f"registered: {', '.join(registered)}")
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    onnx_models = models if args.onnx_models is None else args.onnx_models
    if args.threads < 0:
        parser.error("--threads must be >= 0")

    machine = describe_machine()
    machine["threads"] = args.threads or available_cores()
    print(f"CPU: {machine['cpu']} ({machine['cores_available']} of {machine['cpu_count']} cores available, "
          f"{machine['threads']} threads per runtime); torch {machine['torch']}; "
          f"onnxruntime {machine['onnxruntime']}; GPU: {machine['cuda'] or 'none'}")
    print(f"input {args.width}x{args.height}, batch 1, {args.density:.0%} of pixels with depth; "
          f"{args.warmup} warm-up + {args.runs} timed runs; numpy in -> numpy out")
    print(f"{'model':<20} {'back':<6} {'device':<7} {'prec':<5} {'params':>8} {'median ms':>10} "
          f"{'p90 ms':>10} {'fps':>8}")
    load_before = os.getloadavg()[0]
    rows = benchmark(models, args.height, args.width, args.runs, args.warmup, onnx_models,
                     args.density, args.seed, args.no_cpu, args.threads)
    # Other processes on the cores slow PyTorch's spinning OpenMP pool far more than ONNX Runtime's.
    machine["load_average_before_after"] = [load_before, os.getloadavg()[0]]
    print(f"load average {load_before:.2f} -> {machine['load_average_before_after'][1]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"machine": machine, "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                   for k, v in vars(args).items()}, "results": rows}
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
