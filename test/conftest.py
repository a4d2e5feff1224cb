"""Shared fixtures, and the guard that keeps ROS tests from skipping where ROS 2 is installed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set by .ci/run once it has installed and sourced ROS 2: from then on a ROS test that skips (a broken
# import, a missing package, no ament index) is a failure, so that it can never pass unnoticed as a skip.
REQUIRE_ROS = os.environ.get("DCROS_REQUIRE_ROS", "") not in ("", "0")
ROS_TEST_DIR = Path(__file__).parent / "ros"


def _is_ros_test(path, keywords=()) -> bool:
    return "ros" in keywords or ROS_TEST_DIR in Path(str(path)).parents


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ROS and report.skipped and _is_ros_test(item.path, item.keywords):
        report.outcome = "failed"
        report.longrepr = f"ROS test skipped although DCROS_REQUIRE_ROS is set: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ROS and report.skipped and _is_ros_test(collector.path):
        report.outcome = "failed"
        report.longrepr = f"ROS test module skipped although DCROS_REQUIRE_ROS is set: {report.longrepr}"


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="session")
def load_benchmark():
    """load_benchmark("name") imports benchmarks/name.py as a module (registered in sys.modules first: the
    scripts' dataclasses look their module up there)."""
    import importlib.util
    import sys

    def load(name: str):
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def synthetic_kitti(tmp_path_factory):
    """A small synthetic KITTI dataset (2 drives x 2 frames, seed 0: drive 0001 train, drive 0002 val,
    full KITTI geometry), generated once per test session. Returns the output folder (a Path)."""
    from depth_completion_ros.data.synth import generate_dataset

    out_dir = tmp_path_factory.mktemp("synthetic_kitti")
    generate_dataset(out_dir, drives=2, frames=2, seed=0, val_drives=1, progress=False)
    return out_dir


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """The tests run tiny models on tiny inputs: threads gain nothing there, and on a busy machine their
    hand-offs dominate the time (measured 5-10x slower with 2 threads on 2 loaded cores)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
