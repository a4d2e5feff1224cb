"""int8 against fp32 through ONNX Runtime: held-out accuracy and CPU time of the same network, side by side.

The checkpoint is exported to fp32 ONNX, then quantized once per variant (`quantization.quantize_onnx`,
calibrated on frames of --calibration); every graph runs every held-out frame in turns (a change of the
machine's load touches all alike), with the cores of the affinity mask. Per graph: the KITTI metrics on the
frames' bottom crops, the change of RMSE against fp32, median and fastest ms per frame and the speed
ratio. A variant is worth shipping when its RMSE moves by less than 1 % and it is faster; the verdict is
printed and stored.

Variants are NAME=REGEX (the Conv node names quantized); "default" is the measured choice of
`quantization.INT8_NODES` for the architecture.

    python benchmarks/bench_int8.py --checkpoint models/cdspn_x32_synth.pt --calibration data/synth \\
        --data data/synth_test --split val --variants default refinement=/refinement/ "all=Conv" \\
        --json benchmarks/results/int8.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402

from depth_completion_ros.data.kitti import KittiDepthCompletion  # noqa: E402
from depth_completion_ros.evaluation.metrics import DepthMetrics  # noqa: E402
from depth_completion_ros.inference import Engine, export_onnx  # noqa: E402
from depth_completion_ros.quantization import CalibrationFrames, quantize_onnx  # noqa: E402

SHIP_RMSE_CHANGE = 0.01  # the largest relative change of held-out RMSE an int8 graph may cost


def parse_variant(text: str) -> tuple[str, str | None]:
    """"default" -> ("default", None); "NAME=REGEX" -> (NAME, REGEX)."""
    if text == "default":
        return "default", None
    name, sep, pattern = text.partition("=")
    if not sep or not name or not pattern:
        raise ValueError(f"a variant is 'default' or NAME=REGEX, got {text!r}")
    return name, pattern


def run(checkpoint: Path, calibration_root: Path, data: Path, split: str, variants: list[str],
        calibration_frames: int = 8, limit: int | None = None, crop: tuple[int, int] = (352, 1216),
        threads: int = 0, refinement: str = "graph") -> dict:
    parsed = [parse_variant(v) for v in variants]
    names = [name for name, _ in parsed]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must differ, got {names}")
    dataset = KittiDepthCompletion(data, split, crop=crop)
    indices = list(range(len(dataset)))[:limit] if limit else list(range(len(dataset)))
    calibration = CalibrationFrames(calibration_root, "train", calibration_frames, crop=crop)
    with tempfile.TemporaryDirectory(prefix="dcros-int8-bench-") as work:
        fp32 = export_onnx(checkpoint, Path(work) / "fp32.onnx", example_size=crop, refinement=refinement)
        graphs = {"fp32": fp32}
        quantized: dict[str, dict] = {}
        for name, pattern in parsed:
            start = time.perf_counter()
            path, nodes = quantize_onnx(fp32, Path(work) / f"{name}.onnx", calibration, pattern)
            graphs[name] = path
            quantized[name] = {"pattern": pattern or "default", "convolutions": len(nodes),
                               "quantize_s": round(time.perf_counter() - start, 1)}
            print(f"{name}: {len(nodes)} convolutions quantized in {quantized[name]['quantize_s']} s")
        engines = {name: Engine.from_onnx(path, device="cpu", threads=threads) for name, path in graphs.items()}
        metrics = {name: DepthMetrics() for name in engines}
        times: dict[str, list[float]] = {name: [] for name in engines}
        for engine in engines.values():  # one untimed run each: session start-up and allocations
            item = dataset[indices[0]]
            engine.predict(item["rgb"][None], item["sparse"][None])
        for index in indices:
            item = dataset[index]
            rgb, sparse, gt = item["rgb"][None], item["sparse"][None], item["gt"][None]
            for name, engine in engines.items():
                start = time.perf_counter()
                depth = engine.predict(rgb, sparse)
                times[name].append((time.perf_counter() - start) * 1000.0)
                metrics[name].update(depth, gt)
            print(f"frame {index}: " + ", ".join(f"{n} {times[n][-1]:.0f} ms" for n in engines), flush=True)

    results = {}
    reference = metrics["fp32"].compute()
    fp32_median = float(np.median(times["fp32"]))
    for name in engines:
        figures = metrics[name].compute()
        median = float(np.median(times[name]))
        rmse_change = figures["rmse_mm"] / reference["rmse_mm"] - 1.0
        results[name] = {
            **{k: figures[k] for k in ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km")},
            "rmse_change": rmse_change, "median_ms": median, "fastest_ms": float(np.min(times[name])),
            "speed_vs_fp32": fp32_median / median, **quantized.get(name, {}),
        }
        if name != "fp32":
            results[name]["worth_shipping"] = bool(abs(rmse_change) < SHIP_RMSE_CHANGE and median < fp32_median)
    return {"checkpoint": str(checkpoint), "calibration": calibration.description, "data": str(data),
            "split": split, "crop": list(crop), "frames": len(indices), "threads": engines["fp32"].threads,
            "refinement": refinement,
            "ship_rmse_change": SHIP_RMSE_CHANGE, "results": results}


def print_table(report: dict) -> None:
    crop = f"{report['crop'][0]}x{report['crop'][1]}"
    print(f"\n{report['frames']} frames of {report['data']} {report['split']}, {crop}, "
          f"calibrated on {report['calibration']}, {report['threads']} threads, refinement {report['refinement']}")
    print("| graph | convs int8 | RMSE mm | MAE mm | iRMSE | iMAE | RMSE change | median ms | fastest ms | x fp32 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in report["results"].items():
        print(f"| {name} | {r.get('convolutions', 0)} | {r['rmse_mm']:.1f} | {r['mae_mm']:.1f} | {r['irmse_1km']:.2f} "
              f"| {r['imae_1km']:.2f} | {100 * r['rmse_change']:+.2f} % | {r['median_ms']:.0f} | {r['fastest_ms']:.0f} "
              f"| {r['speed_vs_fp32']:.2f} |")
    for name, r in report["results"].items():
        if name != "fp32":
            accurate = abs(r["rmse_change"]) < report["ship_rmse_change"]
            faster = r["speed_vs_fp32"] > 1.0
            reasons = [f"RMSE {'within' if accurate else 'not within'} {100 * report['ship_rmse_change']:g} %",
                       f"{'faster' if faster else 'not faster'} than fp32 ({r['speed_vs_fp32']:.2f}x)"]
            print(f"{name}: {'worth shipping' if r['worth_shipping'] else 'not worth shipping'} ({', '.join(reasons)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("models/cdspn_x32_synth.pt"))
    parser.add_argument("--calibration", type=Path, default=Path("data/synth"),
                        help="KITTI-layout data set whose train split calibrates (not the held-out one)")
    parser.add_argument("--calibration-frames", type=int, default=8)
    parser.add_argument("--data", type=Path, default=Path("data/synth_test"), help="held-out KITTI-layout data set")
    parser.add_argument("--split", default="val")
    parser.add_argument("--variants", nargs="+", default=["default"], help="'default' or NAME=REGEX, several")
    parser.add_argument("--limit", type=int, default=None, help="first N frames only")
    parser.add_argument("--crop", type=int, nargs=2, default=(352, 1216), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: the cores available)")
    parser.add_argument("--refinement", choices=("graph", "fused"), default="graph",
                        help="export the whole network, or a CDSPN without its propagation, which then runs as "
                             "fused loops (models/dacspn_cpu.py), as the engine does on the CPU")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # data loading only; the graphs run in ONNX Runtime
    report = run(args.checkpoint, args.calibration, args.data, args.split, args.variants,
                 calibration_frames=args.calibration_frames, limit=args.limit, crop=tuple(args.crop),
                 threads=args.threads, refinement=args.refinement)
    report["machine"] = describe_machine()
    report["command"] = "python benchmarks/bench_int8.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print_table(report)
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
