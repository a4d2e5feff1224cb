"""benchmarks/heldout_by_rig.py: per-drive, per-rig accuracy from `dcros eval-kitti` on a varied world."""
from __future__ import annotations

import json

import pytest

from depth_completion_ros.data.synth import generate_dataset


@pytest.fixture(scope="module")
def varied_world(tmp_path_factory):
    """Two validation drives with their own rigs (`dcros synth --variety`), one frame each."""
    out = tmp_path_factory.mktemp("varied")
    generate_dataset(out, drives=2, frames=1, seed=5, val_drives=2, progress=False, variety=True)
    return out


def test_per_drive_means_agree_with_the_split_mean_and_carry_each_rig(varied_world, load_benchmark, tmp_path,
                                                                      capsys):
    bench = load_benchmark("heldout_by_rig")
    out = tmp_path / "by_rig.json"
    assert bench.main(["--data", str(varied_world), "--split", "val", "--models", "baseline:nearest",
                       "baseline:morphological", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    manifest = json.loads((varied_world / "synth_manifest.json").read_text())
    assert report["rigs"] == {drive["name"]: drive["rig"] for drive in manifest["drives"]}
    for model in ("baseline:nearest", "baseline:morphological"):
        result = report["models"][model]
        drives = result["drives"]
        assert set(drives) == set(report["rigs"])
        frames = sum(d["frames"] for d in drives.values())
        assert frames == result["all"]["frames"] == 2
        for metric in ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km"):
            # eval-kitti's split mean is a mean over frames: the frame-weighted mean of the drives' means.
            pooled = sum(d[metric] * d["frames"] for d in drives.values()) / frames
            assert pooled == pytest.approx(result["all"][metric], rel=1e-4)
    table = capsys.readouterr().out
    assert " beams, " in table and "| all |" in table


def test_a_world_without_a_manifest_is_refused_by_name(tmp_path, load_benchmark):
    bench = load_benchmark("heldout_by_rig")
    with pytest.raises(FileNotFoundError, match="synth_manifest.json"):
        bench.main(["--data", str(tmp_path), "--models", "baseline:nearest"])
