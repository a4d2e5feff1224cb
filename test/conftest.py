"""Shared fixtures."""
from __future__ import annotations

import pytest


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
