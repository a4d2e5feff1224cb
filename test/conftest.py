"""Shared fixtures, and the guard that keeps ROS tests from skipping where ROS 2 is installed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from depth_completion_ros.ros.interfaces import ros_environment

# Set by .ci/run, whose ./run installs ROS 2 (from the Python package registry where no distribution is
# sourced): from then on a ROS test that skips (a broken import, a missing package, tf2_msgs not built) is a
# failure, so that it can never pass unnoticed as a skip. The one exception is the full-distribution tier
# (tests marked ros_distribution: colcon, `ros2 launch`, `ros2 bag play`), which skips with its reason where
# no ROS 2 distribution is sourced.
REQUIRE_ROS = os.environ.get("DCROS_REQUIRE_ROS", "") not in ("", "0")
ROS_TEST_DIR = Path(__file__).parent / "ros"
ROS = ros_environment()
DISTRIBUTION_TIER_REASON = (f"needs a sourced ROS 2 distribution (colcon, ros2 launch, ros2 bag); this is the "
                            f"{ROS.tier} tier")


def _is_ros_test(path, keywords=()) -> bool:
    return "ros" in keywords or "ros_distribution" in keywords or ROS_TEST_DIR in Path(str(path)).parents


def pytest_report_header(config):
    tiers = {"distribution": "every ROS test runs, the full-distribution tier included",
             "registry": "the node's ROS tests run over DDS; the full-distribution tier skips",
             "none": "every ROS test skips"}
    return [ROS.describe(), f"ROS 2 tests: {tiers[ROS.tier]}"
            + (" (DCROS_REQUIRE_ROS: a ROS test that skips fails)" if REQUIRE_ROS else "")]


def pytest_runtest_setup(item):
    if "ros_distribution" in item.keywords and ROS.tier != "distribution":
        pytest.skip(DISTRIBUTION_TIER_REASON)


_ROS_OUTCOMES: dict[str, dict[str, int]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    counted = report.when == "call" or report.skipped or report.failed  # once per test, as pytest counts
    if not counted or not _is_ros_test(item.path, item.keywords):
        return
    tier = "full-distribution tests" if "ros_distribution" in item.keywords else "ROS tests"
    if REQUIRE_ROS and report.skipped and not (tier == "full-distribution tests" and ROS.tier != "distribution"):
        report.outcome = "failed"
        report.longrepr = f"ROS test skipped although DCROS_REQUIRE_ROS is set: {report.longrepr}"
    counts = _ROS_OUTCOMES.setdefault(tier, {})
    counts[report.outcome] = counts.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if _ROS_OUTCOMES:
        line = "; ".join(f"{tier}: " + ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
                         for tier, counts in sorted(_ROS_OUTCOMES.items()))
        terminalreporter.write_line(f"ROS 2 tests ({ROS.tier} tier ran): {line}")


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


@pytest.fixture(scope="session")
def synthetic_drive(tmp_path_factory):
    """One synthetic drive of 6 frames (seed 11, train split) with a coarse LiDAR (512 columns) and ground truth
    accumulated from one sweep on each side: rendered images, OXTS poses, full KITTI geometry. Generated once per
    test session for the tests of adaptation and of the photometric loss; they must not write into it. Returns
    the output folder (a Path)."""
    from depth_completion_ros.data.synth import generate_dataset, sensors

    out_dir = tmp_path_factory.mktemp("synthetic_drive")
    generate_dataset(out_dir, drives=1, frames=6, seed=11, progress=False, lidar=sensors.VelodyneModel(columns=512),
                     gt_neighbours=1)
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
