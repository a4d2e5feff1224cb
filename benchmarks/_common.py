"""Shared helpers of the benchmark scripts: machine description, timing, JSON output."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def describe_machine() -> dict:
    """CPU model, core count, library versions and GPU name (if any), for reproducible reports."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from depth_completion_ros.inference import available_cores

    info = {"cpu": cpu, "cores_available": available_cores(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform()}
    import numpy
    import torch

    info.update(numpy=numpy.__version__, torch=torch.__version__, torch_threads=torch.get_num_threads(),
                cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                cuda_version=torch.version.cuda)
    try:
        import onnxruntime

        info.update(onnxruntime=onnxruntime.__version__, onnxruntime_providers=onnxruntime.get_available_providers())
    except ImportError:
        info["onnxruntime"] = None
    return info


def time_call(function, runs: int = 20, warmup: int = 2, synchronize=None) -> dict:
    """Median/p90/min wall time of `function()` in milliseconds (synchronize() before each clock read)."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(runs):
        if synchronize:
            synchronize()
        start = time.perf_counter()
        function()
        if synchronize:
            synchronize()
        samples.append((time.perf_counter() - start) * 1000.0)
    samples.sort()
    return {"median_ms": samples[len(samples) // 2], "p90_ms": samples[min(len(samples) - 1, int(0.9 * len(samples)))],
            "min_ms": samples[0], "runs": runs}


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """The numeric fields of /proc/<pid>/status (Linux): memory in KiB, e.g. VmRSS (resident now) and VmHWM (its
    peak so far), and counts such as Threads."""
    fields = (line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(value.split()[0]) for name, value in fields if value.split() and value.split()[0].isdigit()}


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")


REPO = Path(__file__).resolve().parents[1]


def baseline_checkout(revision: str, folder: Path) -> dict[str, str]:
    """A git worktree of this repository at `revision` in `folder` (the old path of a side-by-side benchmark), and
    the environment that makes a child process import that revision's package first (PYTHONPATH). Remove it with
    `remove_baseline_checkout`."""
    import subprocess

    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(folder), revision], check=True,
                   capture_output=True)
    return {"PYTHONPATH": os.pathsep.join(filter(None, (str(folder), os.environ.get("PYTHONPATH"))))}


def remove_baseline_checkout(folder: Path) -> None:
    import subprocess

    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], capture_output=True)
