"""`dcros train` under torchrun: two CPU processes with Gloo, DistributedDataParallel, gathered validation."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import yaml

from depth_completion_ros.models import build_model
from depth_completion_ros.models.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with Gloo is not available")


def test_two_gloo_processes_end_with_identical_weights(synthetic_kitti, tmp_path):
    config = {
        "model": {"name": "lspkd_student", "kwargs": {"width": 0.0625}},
        # Two training frames: one per rank and step; random windows so that the ranks see different inputs.
        "data": {"root": str(synthetic_kitti), "crop": [64, 128], "random_crop": [32, 64], "augment": True,
                 "batch_size": 1, "workers": 0},
        "schedule": {"epochs": 2},
        "loss": {"type": "l1"},
        "seed": 0,
        "device": "cpu",
        "progress": False,
        "tensorboard": False,
    }
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "depth_completion_ros.cli", "train", "--config", str(config_path), "--out", str(out),
               "--save-rank-weights", "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "on 2 process(es)" in result.stdout

    rank0 = torch.load(out / "rank_weights" / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank_weights" / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    differing = [name for name in rank0 if not torch.equal(rank0[name], rank1[name])]
    assert not differing, f"replicas differ in {differing[:5]}"

    # Rank 0 wrote the checkpoint, with the weights every replica holds.
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint.metadata["world_size"] == 2
    assert (checkpoint.metadata["epoch"], checkpoint.metadata["step"]) == (2, 2)  # 2 frames / 2 ranks per epoch
    assert len(checkpoint.metadata["training_state"]["rng"]) == 2
    for name, value in rank0.items():
        assert torch.equal(checkpoint.state_dict[name], value)
    # The replicas agree on trained weights, not on an untouched initialisation (same seed, same init).
    torch.manual_seed(0)
    initial = build_model("lspkd_student", width=0.0625).state_dict()
    assert not torch.equal(initial["head.weight"], rank0["head.weight"])
    # Validation was split over the ranks (one val frame each) and gathered: both frames are scored.
    assert checkpoint.metadata["val"]["images"] == 2
    with open(out / "log.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["step"]) for row in rows] == [1, 2]
    assert (out / "best.pt").is_file()
