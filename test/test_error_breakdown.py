"""benchmarks/error_breakdown.py: the bands partition the ground truth and the pooled figures are exact."""
from __future__ import annotations

import numpy as np
import pytest

from depth_completion_ros.baselines import nearest_fill
from depth_completion_ros.data.kitti import KittiDepthCompletion


def test_bands_partition_the_ground_truth_and_pool_pixels(synthetic_kitti, load_benchmark, tmp_path):
    breakdown = load_benchmark("error_breakdown")
    tables = breakdown.breakdown(synthetic_kitti, "val", ["baseline:nearest", "baseline:morphological"])
    dataset = KittiDepthCompletion(synthetic_kitti, split="val", crop=None)
    errors = []
    for index in range(len(dataset)):
        _, sparse, gt, _ = dataset.load(index)
        errors.append((nearest_fill(sparse).astype(np.float64) - gt)[gt > 0])
    errors = np.concatenate(errors)
    table = tables["baseline:nearest"]
    assert table["all"]["pixels"] == errors.size
    assert table["all"]["mae_mm"] == pytest.approx(1000 * np.abs(errors).mean(), rel=1e-9)
    assert table["all"]["rmse_mm"] == pytest.approx(1000 * np.sqrt(np.square(errors).mean()), rel=1e-9)
    for family in ("return ", "depth "):
        bands = [name for name in table if name.startswith(family)]
        assert sum(table[name]["pixels"] for name in bands) == errors.size, family
        assert sum(table[name].get("inverse_error_share", 0) for name in bands) == pytest.approx(1.0)
    assert table["sides (40 px)"]["pixels"] + table["middle"]["pixels"] == errors.size
    assert tables["baseline:morphological"]["all"]["mae_mm"] != table["all"]["mae_mm"]
    assert breakdown.main(["--data", str(synthetic_kitti), "--models", "baseline:nearest", "--limit", "1",
                           "--json", str(tmp_path / "b.json")]) == 0
    assert (tmp_path / "b.json").is_file()


def test_intermediate_outputs_of_a_checkpoint_get_their_own_rows(synthetic_kitti, load_benchmark, tmp_path):
    """--outputs breaks down a network's intermediate depth beside its output; a name it lacks is an error."""
    import torch

    from depth_completion_ros.models import build_model
    from depth_completion_ros.models.checkpoint import save_checkpoint

    breakdown = load_benchmark("error_breakdown")
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, build_model("cdspn_x32", width=8, iterations=2))
    tables = breakdown.breakdown(synthetic_kitti, "val", [str(path)], limit=1, outputs=["coarse_depth"])
    assert set(tables) == {str(path), f"{path}:coarse_depth"}
    output, coarse = tables[str(path)]["all"], tables[f"{path}:coarse_depth"]["all"]
    assert output["pixels"] == coarse["pixels"] > 0
    assert output["mae_mm"] != coarse["mae_mm"]  # the refinement re-injects the returns the coarse depth lacks
    with pytest.raises(ValueError, match="has no output E9; it has .*coarse_depth"):
        breakdown.breakdown(synthetic_kitti, "val", [str(path)], limit=1, outputs=["E9"])
