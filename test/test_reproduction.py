"""The seeds' reproduction script (benchmarks/reproduce_seeds.py): its run configurations, and one whole
smoke-sized reproduction (every training, the scoring, the report, resuming)."""
from __future__ import annotations

import json
import math
import shutil

import pytest

from depth_completion_ros.training.config import TrainConfig


@pytest.fixture(scope="module")
def reproduction(load_benchmark):
    return load_benchmark("reproduce_seeds")


@pytest.mark.parametrize("preset", ["cpu", "smoke"])
def test_every_run_config_validates_and_changes_only_data_size_and_length(reproduction, preset, tmp_path):
    settings = reproduction.PRESETS[preset]
    runs = tmp_path / "runs"
    configs = {e.name: reproduction.experiment_config(e, settings, tmp_path / "world", runs, seed=3)
               for e in reproduction.EXPERIMENTS}
    for experiment in reproduction.EXPERIMENTS:
        config = configs[experiment.name]
        parsed = TrainConfig.from_dict(config, source=experiment.name)
        assert parsed.data.root == str(tmp_path / "world")
        assert parsed.data.crop == tuple(settings.crop)
        assert parsed.data.random_crop == tuple(settings.window)
        assert parsed.output == str(runs / experiment.name)
        assert parsed.seed == 3
        if experiment.uses_teacher:
            assert parsed.distillation.teacher == str(runs / "teacher" / "best.pt")
    # The distilled students keep their recipe's method; the plain student has none.
    assert configs["student_lspkd"]["distillation"]["methods"] == ["lspkd"]
    assert configs["student_att"]["distillation"]["methods"] == ["att"]
    assert configs["student_pkt"]["distillation"]["methods"] == ["pkt"]
    assert "distillation" not in configs["student"]
    # The two CDSPN runs differ in the distillation section only, so the table compares like with like.
    plain, distilled = dict(configs["cdspn_x32"]), dict(configs["cdspn_x32_blackbox"])
    assert "distillation" not in plain and distilled.pop("distillation")["type"] == "blackbox"
    plain.pop("output"), distilled.pop("output")
    assert plain == distilled
    assert [s["epochs"] for s in configs["cdspn_x32"]["stages"]] == list(settings.cdspn_stages)


def test_smoke_reproduction_trains_scores_reports_and_resumes(reproduction, synthetic_kitti, tmp_path):
    # The smoke preset's training world is the session fixture's (2 drives x 2 frames, seed 0).
    shutil.copytree(synthetic_kitti, tmp_path / "synth_train")
    report, figures = tmp_path / "table.md", tmp_path / "figures.json"
    args = ["--preset", "smoke", "--work", str(tmp_path), "--threads", "1", "--report", str(report),
            "--json", str(figures)]
    assert reproduction.main(args) == 0

    payload = json.loads(figures.read_text())
    names = [e.name for e in reproduction.EXPERIMENTS]
    assert list(payload["scores"]) == names + ["nearest fill", "morphological fill"]
    for name in names:
        assert (tmp_path / "runs" / name / "best.pt").is_file()
        assert payload["training"][name]["epochs_this_run"] >= 1
    for row in payload["scores"].values():
        assert all(math.isfinite(row[key]) and row[key] > 0 for key in reproduction.METRIC_KEYS)
        assert row["images"] == payload["test_images"] >= 1
    params = {name: payload["scores"][name]["parameters"] for name in payload["scores"]}
    assert params["teacher"] > params["student"] > params["cdspn_x32"] > params["nearest fill"] == 0
    assert params["student"] == params["student_lspkd"] and params["cdspn_x32"] == params["cdspn_x32_blackbox"]
    assert len(payload["hypotheses"]) == 5 and all(isinstance(h[1], bool) for h in payload["hypotheses"])

    table = report.read_text()
    for name in payload["scores"]:
        rmse = payload["scores"][name]["rmse_mm"]
        assert f"| {name} | {rmse:.1f} |" in table
    assert "python benchmarks/reproduce_seeds.py --preset smoke" in table

    # A second invocation finds every run finished: nothing retrains, the figures are the same.
    assert reproduction.main(args + ["--only", "student_lspkd"]) == 0
    again = json.loads(figures.read_text())
    assert set(again["training"]) == {"teacher", "student_lspkd"}  # the teacher comes with its student
    assert all(run["epochs_this_run"] == 0 for run in again["training"].values())
    assert again["scores"]["student_lspkd"] == payload["scores"]["student_lspkd"]
    assert not again["complete_in_one_run"]
