#!/usr/bin/env python3
"""Peak extra memory per image of LSPKD versus global SPKD (loss forward + backward).

For teacher/student feature maps with the channels and resolution of the registered LSPKD
networks' low-level (E1, D3: half resolution) and mid-level (E2, D2: quarter resolution) layers at
a KITTI-sized input (1216x352 by default), each loss is run on one image (batch 1, float32) and the
memory it needs on top of the feature maps already held is measured:

* CPU: every measurement runs in a fresh process with one thread and glibc's mmap threshold
  pinned at 64 KiB, so every tensor buffer is mapped on allocation and unmapped on free; the
  kernel's resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs just before
  the loss) minus the resident set before it is the peak extra memory. A warm-up run at the
  same size comes first, so one-time allocations are not counted.
* CUDA (when available): torch.cuda.max_memory_allocated minus the memory allocated before.

Global SPKD needs B * (H*W)^2 values per similarity matrix (45.8 GB for one 608x176 map), so it is
measured at reduced feature sizes and extrapolated with a least-squares fit
extra = a*(H*W)^2 + b*(H*W) + c; a / 4 bytes is the number of float32 H*W x H*W matrices alive at
the peak. LSPKD is measured at full size directly. `lspkd_unfold` is a reference 8-neighbour loss
built with F.unfold (9*C-channel patches), to show what the sliced implementation saves.

    python benchmarks/distill_memory.py --json distill_memory.json
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import proc_status  # noqa: E402

# Layers measured by default: low level (E1, D3: half resolution) and mid level (E2, D2: quarter
# resolution, the pair the LSPKD paper distils). Channels and resolutions come from the networks.
DEFAULT_LAYERS = ("E1", "D3", "E2", "D2")
PROBE_SIZE = (64, 128)
METHODS = ("lspkd", "lspkd_unfold", "spkd")
# Reduced sizes for SPKD: input down-scaled by these extra factors (kept while H*W <= max positions).
SPKD_REDUCTIONS = (16, 12, 8, 6, 5, 4, 3, 2)
PAPER_REFERENCE = {"spkd_training_gb_per_image": 7.2, "lspkd_training_gb_per_image": 1.70,
                   "note": "LSPKD paper sec. 3.4.3, whole training step on GPU, batch 12"}


def layer_specs(layers, teacher_name: str, student_name: str) -> list[tuple[str, int, int, int]]:
    """(layer, input downsampling factor, teacher channels, student channels) from the registered networks."""
    import torch

    from depth_completion_ros.models import build_model

    shapes = {}
    for side, name in (("teacher", teacher_name), ("student", student_name)):
        model = build_model(name).eval()
        with torch.no_grad():
            _, features = model(torch.zeros(1, 3, *PROBE_SIZE), torch.zeros(1, 1, *PROBE_SIZE), return_features=True)
        shapes[side] = {layer: tuple(tensor.shape[1:]) for layer, tensor in features.items()}
    specs = []
    for layer in layers:
        for side in ("teacher", "student"):
            if layer not in shapes[side]:
                raise ValueError(f"{side} network has no feature layer {layer!r}; it has {sorted(shapes[side])}")
        (teacher_channels, height, _), (student_channels, student_height, _) = shapes["teacher"][layer], \
            shapes["student"][layer]
        if height != student_height:
            raise ValueError(f"layer {layer!r} has different resolutions in teacher and student")
        specs.append((layer, PROBE_SIZE[0] // height, teacher_channels, student_channels))
    return specs


def _build_loss(method: str, teacher_channels: int, student_channels: int):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from depth_completion_ros.distill import GlobalSimilarityLoss, LSPKDLoss

    if method == "lspkd":
        return LSPKDLoss(teacher_channels, student_channels)
    if method == "spkd":
        return GlobalSimilarityLoss(teacher_channels, student_channels)

    class UnfoldLSPKD(nn.Module):
        """Reference LSPKD built on F.unfold: same value, 9*C-channel patch tensors."""

        def __init__(self):
            super().__init__()
            self.adapter = nn.Conv2d(student_channels, teacher_channels, 1)

        @staticmethod
        def similarity(features):
            batch, channels, height, width = features.shape
            unit = F.normalize(features, dim=1)
            patches = F.unfold(unit, 3, padding=1).view(batch, channels, 9, height * width)
            return (patches * unit.flatten(2).unsqueeze(2)).sum(1)

        def forward(self, teacher, student):
            height, width = teacher.shape[-2:]
            valid = F.unfold(teacher.new_ones(1, 1, height, width), 3, padding=1) > 0
            valid[:, 4] = False  # the centre is the pixel itself
            with torch.no_grad():
                teacher_similarity = self.similarity(teacher)
            squared = (teacher_similarity - self.similarity(student)).square() * valid
            similarity_term = squared.sum() / (valid.sum() * teacher.shape[0])
            return F.mse_loss(self.adapter(student), teacher) + similarity_term

    return UnfoldLSPKD()


def _run_once(loss_module, teacher, student) -> None:
    """Loss forward and backward, the step whose memory is measured."""
    loss_module(teacher, student).backward()


def _calibrate(spec: dict) -> dict:
    """Measure a known allocation (a float32 tensor of spec["bytes"], filled) the way losses are measured."""
    import torch

    torch.ones(1024).sum()  # warm-up
    gc.collect()
    baseline_kib = proc_status()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    block = torch.ones(spec["bytes"] // 4)
    del block
    peak_kib = proc_status()["VmHWM"]
    return {**spec, "device": "cpu", "extra_bytes": (peak_kib - baseline_kib) * 1024, "seconds": 0.0}


def worker(spec: dict) -> dict:
    """One CPU measurement in this (fresh) process; returns the record."""
    import torch

    torch.set_num_threads(1)
    if spec["method"] == "calibration":
        return _calibrate(spec)
    torch.manual_seed(0)
    batch, height, width = spec["batch"], spec["height"], spec["width"]
    teacher = torch.randn(batch, spec["teacher_channels"], height, width)
    student = torch.randn(batch, spec["student_channels"], height, width, requires_grad=True)
    loss_module = _build_loss(spec["method"], spec["teacher_channels"], spec["student_channels"])
    _run_once(loss_module, teacher, student)  # warm-up at the measured size
    student.grad = None
    loss_module.zero_grad(set_to_none=True)
    gc.collect()
    baseline_kib = proc_status()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current resident set
    start = time.perf_counter()
    _run_once(loss_module, teacher, student)
    seconds = time.perf_counter() - start
    peak_kib = proc_status()["VmHWM"]
    return {**spec, "device": "cpu", "extra_bytes": (peak_kib - baseline_kib) * 1024, "seconds": seconds}


def measure_cpu(spec: dict) -> dict:
    """Run `worker` in a fresh process with a pinned mmap threshold and one thread."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                            capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"worker failed for {spec}:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_cuda(spec: dict) -> dict | None:
    """One CUDA measurement in this process, or None when it does not fit in GPU memory."""
    import torch

    device = torch.device("cuda")
    torch.manual_seed(0)
    teacher = torch.randn(spec["batch"], spec["teacher_channels"], spec["height"], spec["width"], device=device)
    student = torch.randn(spec["batch"], spec["student_channels"], spec["height"], spec["width"],
                          device=device, requires_grad=True)
    loss_module = _build_loss(spec["method"], spec["teacher_channels"], spec["student_channels"]).to(device)
    try:
        _run_once(loss_module, teacher, student)
        student.grad = None
        loss_module.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        _run_once(loss_module, teacher, student)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        extra = torch.cuda.max_memory_allocated() - baseline
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        del teacher, student, loss_module
        torch.cuda.empty_cache()
    return {**spec, "device": "cuda", "extra_bytes": int(extra), "seconds": seconds}


def fit_quadratic(records: list[dict]) -> dict:
    """Least-squares extra = a*n^2 + b*n + c over n = H*W (per image)."""
    positions = np.array([r["height"] * r["width"] for r in records], dtype=np.float64)
    extra = np.array([r["extra_bytes"] / r["batch"] for r in records], dtype=np.float64)
    design = np.stack([positions**2, positions, np.ones_like(positions)], axis=1)
    (a, b, c), *_ = np.linalg.lstsq(design, extra, rcond=None)
    return {"a": float(a), "b": float(b), "c": float(c), "float32_hw2_matrices_at_peak": float(a / 4.0)}


def spkd_sizes(full_height: int, full_width: int, max_positions: int) -> list[tuple[int, int]]:
    """Reduced feature sizes (H, W) for SPKD, full size divided by SPKD_REDUCTIONS, H*W <= max_positions."""
    sizes = []
    for reduction in SPKD_REDUCTIONS:
        height, width = max(2, full_height // reduction), max(2, full_width // reduction)
        if height * width <= max_positions and (height, width) not in sizes:
            sizes.append((height, width))
    return sizes


def run_benchmark(args) -> dict:
    """All measurements for the chosen layers: {"records", "summary", "paper_reference", "method"}."""
    import torch

    calibration = measure_cpu({"method": "calibration", "bytes": 64 * 2**20})
    print(f"  cpu  calibration: a 64.0 MiB tensor measures {calibration['extra_bytes'] / 2**20:.1f} MiB", flush=True)
    records = [calibration]
    summary = []
    use_cuda = torch.cuda.is_available() and not args.no_cuda
    for layer, factor, teacher_channels, student_channels in layer_specs(args.layers, args.teacher, args.student):
        full_height, full_width = args.height // factor, args.width // factor
        base = {"layer": layer, "downsampling": factor, "teacher_channels": teacher_channels,
                "student_channels": student_channels, "batch": 1, "input": f"{args.width}x{args.height}"}
        reduced = spkd_sizes(full_height, full_width, args.spkd_max_positions)
        if len(reduced) < 3:
            raise ValueError(f"--spkd-max-positions {args.spkd_max_positions} leaves fewer than 3 SPKD sizes "
                             f"for {layer}; raise it")
        layer_records = {"lspkd": [], "lspkd_unfold": [], "spkd": []}
        for method in METHODS:
            sizes = [(full_height, full_width)] if method != "spkd" else []
            sizes += reduced if method == "spkd" or args.lspkd_at_reduced_sizes else []
            for height, width in sizes:
                spec = {**base, "method": method, "height": height, "width": width}
                record = measure_cpu(spec)
                records.append(record)
                layer_records[method].append(record)
                print(f"  cpu  {layer:10s} {method:13s} {width:4d}x{height:<4d} "
                      f"extra {record['extra_bytes'] / 2**20:10.1f} MiB  {record['seconds']:.2f} s", flush=True)
        fit = fit_quadratic(layer_records["spkd"])
        positions = full_height * full_width
        spkd_full = fit["a"] * positions**2 + fit["b"] * positions + fit["c"]
        lspkd_full = next(r for r in layer_records["lspkd"]
                          if (r["height"], r["width"]) == (full_height, full_width))["extra_bytes"]
        unfold_full = next(r for r in layer_records["lspkd_unfold"]
                           if (r["height"], r["width"]) == (full_height, full_width))["extra_bytes"]
        by_size = sorted(layer_records["spkd"], key=lambda r: r["height"] * r["width"])
        largest_spkd = by_size[-1]
        # Check the extrapolation: fit without the largest point and predict it.
        holdout_fit = fit_quadratic(by_size[:-1])
        largest_positions = largest_spkd["height"] * largest_spkd["width"]
        holdout_prediction = (holdout_fit["a"] * largest_positions**2 + holdout_fit["b"] * largest_positions
                              + holdout_fit["c"])
        summary.append({
            "layer": layer, "device": "cpu", "feature_size": f"{full_width}x{full_height}",
            "teacher_channels": teacher_channels, "student_channels": student_channels,
            "lspkd_extra_bytes": lspkd_full, "lspkd_unfold_extra_bytes": unfold_full,
            "spkd_extra_bytes_extrapolated": spkd_full, "spkd_fit": fit,
            "spkd_largest_measured": {"size": f"{largest_spkd['width']}x{largest_spkd['height']}",
                                      "extra_bytes": largest_spkd["extra_bytes"],
                                      "predicted_without_it_bytes": holdout_prediction},
            "lspkd_over_spkd": lspkd_full / spkd_full,
        })
        if use_cuda:
            for method in METHODS:
                sizes = [(full_height, full_width)] + (reduced if method == "spkd" else [])
                for height, width in sizes:
                    record = measure_cuda({**base, "method": method, "height": height, "width": width})
                    if record is None:
                        print(f"  cuda {layer:10s} {method:13s} {width:4d}x{height:<4d} out of memory", flush=True)
                        continue
                    records.append(record)
                    print(f"  cuda {layer:10s} {method:13s} {width:4d}x{height:<4d} "
                          f"extra {record['extra_bytes'] / 2**20:10.1f} MiB", flush=True)
    return {"records": records, "summary": summary, "paper_reference": PAPER_REFERENCE,
            "method": {"cpu": "fresh process per point, 1 thread, MALLOC_MMAP_THRESHOLD_=65536, "
                              "VmHWM after clear_refs minus VmRSS before; warm-up run first",
                       "cuda": "torch.cuda.max_memory_allocated minus memory_allocated before"}}


def print_summary(result: dict) -> None:
    """Print one table row per layer: LSPKD, unfold reference and extrapolated SPKD extra memory."""
    print()
    print(f"{'layer':10s} {'features':>9s} {'Ct/Cs':>7s} {'LSPKD':>10s} {'unfold':>10s} "
          f"{'SPKD (extrap.)':>15s} {'SPKD measured at':>22s} {'LSPKD/SPKD':>11s}")
    for row in result["summary"]:
        largest = row["spkd_largest_measured"]
        print(f"{row['layer']:10s} {row['feature_size']:>9s} "
              f"{row['teacher_channels']:>3d}/{row['student_channels']:<3d} "
              f"{row['lspkd_extra_bytes'] / 2**20:8.1f}MiB {row['lspkd_unfold_extra_bytes'] / 2**20:8.1f}MiB "
              f"{row['spkd_extra_bytes_extrapolated'] / 2**30:12.2f}GiB "
              f"{largest['extra_bytes'] / 2**20:8.1f}MiB@{largest['size']:>9s} "
              f"{row['lspkd_over_spkd']:11.5f}")
        print(f"{'':10s} SPKD fit: {row['spkd_fit']['float32_hw2_matrices_at_peak']:.2f} float32 HW x HW "
              f"matrices alive at the peak; the largest point predicted from the others: "
              f"{largest['predicted_without_it_bytes'] / 2**20:.1f} MiB")
    reference = result["paper_reference"]
    print(f"LSPKD paper (whole training step per image): LSPKD {reference['lspkd_training_gb_per_image']} GB, "
          f"SPKD {reference['spkd_training_gb_per_image']} GB")


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1216, help="input width (KITTI crop 1216; LSPKD paper FLOPs 912)")
    parser.add_argument("--height", type=int, default=352, help="input height (KITTI crop 352; LSPKD paper FLOPs 220)")
    parser.add_argument("--layers", type=lambda text: tuple(text.split(",")), default=DEFAULT_LAYERS,
                        help="comma-separated feature layers (default E1,D3,E2,D2)")
    parser.add_argument("--teacher", default="lspkd_teacher", help="registered teacher network")
    parser.add_argument("--student", default="lspkd_student", help="registered student network")
    parser.add_argument("--spkd-max-positions", type=int, default=6000,
                        help="largest H*W measured for SPKD (one float32 matrix = 4*(H*W)^2 bytes)")
    parser.add_argument("--lspkd-at-reduced-sizes", action="store_true",
                        help="also measure LSPKD at SPKD's reduced sizes")
    parser.add_argument("--no-cuda", action="store_true", help="skip the CUDA measurements")
    parser.add_argument("--json", help="write records and summary to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.width < 16 or args.height < 16:
        raise ValueError(f"input size {args.width}x{args.height} is too small")
    if not os.path.exists("/proc/self/clear_refs"):
        raise RuntimeError("CPU measurement needs Linux /proc/self/clear_refs")
    result = run_benchmark(args)
    print_summary(result)
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(result, stream, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
