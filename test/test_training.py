"""The trainer (`dcros train`): config schema, every model learning, resume, stages, distillation."""
from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
import yaml

from depth_completion_ros.cli import main as dcros
from depth_completion_ros.models import build_model, list_models
from depth_completion_ros.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from depth_completion_ros.training.config import ConfigError, TrainConfig, apply_overrides, load_config
from depth_completion_ros.training.losses import GroundTruthLoss
from depth_completion_ros.training.trainer import Trainer

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "train"
# Small versions of every registered model (the factories take these kwargs).
TINY_KWARGS = {
    "lspkd_teacher": {"width": 0.0625},
    "lspkd_student": {"width": 0.0625},
    "lspkd_student_nyu": {"width": 0.0625, "depth_scale": 80.0},
    "cdspn_x32": {"width": 8, "iterations": 2},
    "cdspn_x64": {"width": 8, "iterations": 2},
    "cdspn_x96": {"width": 12, "iterations": 2},
}


def tiny_config(root: Path | list, model: str = "cdspn_x32", **sections) -> dict:
    """A config dict for a few steps at 32x64 on the synthetic fixture (sections override by key)."""
    roots = [str(r) for r in root] if isinstance(root, list) else str(root)
    config = {
        "model": {"name": model, "kwargs": dict(TINY_KWARGS[model])},
        "data": {"root": roots, "crop": [32, 64], "augment": False, "batch_size": 1, "workers": 0},
        "schedule": {"epochs": 1},
        "loss": {"type": "l1"},
        "seed": 0,
        "device": "cpu",
        "progress": False,
        "tensorboard": False,
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(name), dict):
            config[name].update(value)
        else:
            config[name] = value
    return config


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def read_log(out_dir: Path) -> list[dict]:
    with open(out_dir / "log.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


# ------------------------------------------------------------------------------------------ configs
def test_every_config_in_config_train_validates():
    paths = sorted(CONFIG_DIR.glob("*.yaml"))
    assert paths, f"no training configs in {CONFIG_DIR}"
    configs = {path.stem: load_config(path) for path in paths}
    synthetic = {name: c for name, c in configs.items() if not name.startswith("kitti_")}
    # One synthetic-world config per registered model, training on the generated data set.
    assert {c.model.name for c in synthetic.values()} >= set(list_models())
    # The generated worlds of the README: one rig (dcros synth), or one per drive (dcros synth --variety).
    roots = {root for c in synthetic.values() for root in
             ([c.data.root] if isinstance(c.data.root, str) else c.data.root)}
    assert roots == {"data/synth", "data/synth_varied"}
    # CPU-feasible: the windows trained on are smaller than KITTI's full 352x1216 crop.
    windows = [c.data.random_crop or c.data.crop for c in synthetic.values()]
    assert all(w[0] < 352 and w[1] < 1216 for w in windows)
    assert all(c.data.crop == (352, 1216) for name, c in configs.items() if name.startswith("kitti_"))
    stages = [(s.train, s.refine) for s in configs["cdspn_x32"].stages]
    assert stages == [("backbone", False), ("refinement", True), ("all", True)]
    for method in ("lspkd", "att", "pkt"):
        distillation = configs[f"lspkd_student_{method}"].distillation
        assert distillation.type == "feature" and distillation.methods == (method,)
        assert distillation.layers == (("E2", "E2"), ("D2", "D2"))
    blackbox = configs["cdspn_x32_blackbox"].distillation
    assert (blackbox.type, blackbox.depth_weight, blackbox.gradient_weight) == ("blackbox", 0.1, 0.1)
    # The seeds' optimiser wherever training starts from scratch: Adam, lr 1e-3, default betas;
    # fine-tuning recipes (model.init) may start lower.
    assert all((c.optimizer.name, c.optimizer.lr, c.optimizer.betas) == ("adam", 1e-3, (0.9, 0.999))
               for c in configs.values() if c.model.init is None)
    # A config survives the round trip through a checkpoint's metadata.
    for config in configs.values():
        assert TrainConfig.from_dict(config.to_dict()) == config


BAD_CONFIGS = [
    (lambda c: c["data"].update(batch_sise=2), "data.batch_sise"),
    (lambda c: c.update(optimiser={}), "unknown key optimiser"),
    (lambda c: c["data"].update(batch_size="two"), "data.batch_size must be an integer"),
    (lambda c: c.update(optimizer={"lr": -1e-3}), "optimizer.lr must be > 0"),
    (lambda c: c.update(loss={"type": "huber"}), "loss.type must be one of"),
    (lambda c: c["model"].update(name="resnet9000"), "model.name 'resnet9000' is not a registered model"),
    (lambda c: c["data"].update(crop=[32, 64], random_crop=[64, 64], augment=True), "data.random_crop"),
    (lambda c: c.update(stages=[{"epochs": 1}, {"epochs": 1, "train": "head"}]), "stages[1].train"),
    (lambda c: c.update(stages=[{"epochs": 1, "refine": False}]), "stages[0].train must be 'backbone'"),
    (lambda c: c.update(distillation={"type": "none", "methods": ["att"]}), "distillation.methods does not apply"),
    (lambda c: c.update(distillation={"type": "feature"}), "distillation.teacher"),
    (lambda c: c.update(loss={"type": "l2"}, distillation={"type": "blackbox", "teacher": "t.pt"},
                        data={"augment": True}), "data.augment must be false"),
    (lambda c: c["schedule"].update(type="multistep"), "schedule.milestones"),
    (lambda c: c.update(best_metric="delta1"), "best_metric must be one of"),
    (lambda c: c["loss"].update(intermediate={"coarse_depth": 0.6, "rgb_branch_depth": 0.4}),
     "loss.intermediate: the weights sum to 1"),
    (lambda c: c["loss"].update(intermediate={"coarse_depth": 0}), "loss.intermediate.coarse_depth must be > 0"),
    (lambda c: c.update(loss={"type": "l2", "intermediate": {"coarse_depth": 0.2}},
                        distillation={"type": "blackbox", "teacher": "t.pt"}), "loss.intermediate supervises"),
    (lambda c: c["model"].update(new_layers=["prior_confidence"]), "model.new_layers needs model.init"),
    (lambda c: c["model"].update(init="a.pt", new_layers="prior_confidence"), "model.new_layers must be a list"),
    (lambda c: c["data"].update(root=[]), "data.root must be a folder or a non-empty list"),
    (lambda c: c["data"].update(root=["data/a", 3]), "data.root[1] must be a non-empty string"),
    (lambda c: c["data"].update(root=["data/a", "data/a"]), "data.root lists a folder more than once"),
]


@pytest.mark.parametrize("mutate, message", BAD_CONFIGS)
def test_config_errors_name_the_bad_key(mutate, message):
    config = tiny_config(Path("data/synth"))
    mutate(config)
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict(config)
    assert message in str(error.value)


def test_cli_reports_config_errors_and_overrides(tmp_path, capsys):
    path = write_yaml(tmp_path / "bad.yaml", tiny_config(tmp_path, data={"workers": -1}))
    assert dcros(["train", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "data.workers must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    good = write_yaml(tmp_path / "good.yaml", tiny_config(tmp_path, stages=[{"epochs": 1}, {"epochs": 2}],
                                                          schedule={"epochs": None}))
    assert dcros(["train", "--config", str(good), "--set", "stages.3.lr=1e-4"]) == 2
    assert "stages.3 must index an existing list item" in capsys.readouterr().err
    config = load_config(good, ["stages.1.lr=1e-4", "data.batch_size=3", "model.kwargs.width=16"])
    assert (config.stages[1].lr, config.data.batch_size, config.model.kwargs["width"]) == (1e-4, 3, 16)
    assert dcros(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "training config not found" in capsys.readouterr().err


def test_overrides_do_not_touch_the_original():
    original = {"data": {"batch_size": 1}}
    changed = apply_overrides(original, ["data.batch_size=4", "optimizer.betas=[0.8, 0.9]"])
    assert original == {"data": {"batch_size": 1}}
    assert changed == {"data": {"batch_size": 4}, "optimizer": {"betas": [0.8, 0.9]}}


def test_data_root_is_a_folder_or_a_list_of_them():
    assert TrainConfig.from_dict(tiny_config(Path("data/a"))).data.root == "data/a"
    assert TrainConfig.from_dict(tiny_config(["data/a"])).data.root == "data/a"  # one item: that folder
    config = TrainConfig.from_dict(tiny_config(["data/a", "data/b"]))
    assert config.data.root == ("data/a", "data/b")
    assert TrainConfig.from_dict(config.to_dict()) == config


# ---------------------------------------------------------------------------- every model learns
@pytest.mark.parametrize("model", list_models())
def test_every_registered_model_overfits_one_batch(model, synthetic_kitti, tmp_path):
    epochs = 6
    config = tiny_config(synthetic_kitti, model, data={"limit_train": 1, "val_split": None},
                         schedule={"epochs": epochs}, loss={"type": "l2" if model.startswith("cdspn") else "l1"})
    out = tmp_path / "run"
    assert dcros(["train", "--config", str(write_yaml(tmp_path / "c.yaml", config)), "--out", str(out)]) == 0
    rows = read_log(out)
    losses = [float(row["train_loss"]) for row in rows]
    assert [int(row["step"]) for row in rows] == list(range(1, epochs + 1))  # one fixed batch per epoch
    assert losses[-1] < 0.9 * losses[0], f"{model}: loss did not fall over one repeated batch: {losses}"
    network, checkpoint = load_model(out / "last.pt")
    assert checkpoint.architecture == model and checkpoint.kwargs == TINY_KWARGS[model]
    assert checkpoint.metadata["epoch"] == epochs and checkpoint.metadata["step"] == epochs
    assert checkpoint.metadata["training_data"]["train_frames"] == 1
    assert not (out / "best.pt").exists()  # no validation split, nothing to rank by


# -------------------------------------------------------------------------------------- resume
def resume_config(root: Path) -> dict:
    # Two frames, two steps per epoch, random windows and flips, a decaying learning rate, validation.
    return tiny_config(root, "lspkd_student",
                       data={"crop": [64, 128], "random_crop": [32, 64], "augment": True, "val_split": "val"},
                       schedule={"type": "step", "step_size": 1, "gamma": 0.5, "epochs": 2})


def test_resume_continues_with_identical_weights(synthetic_kitti, tmp_path):
    path = write_yaml(tmp_path / "c.yaml", resume_config(synthetic_kitti))
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert dcros(["train", "--config", str(path), "--out", str(straight)]) == 0
    assert dcros(["train", "--config", str(path), "--out", str(split), "--stop-after-epochs", "1"]) == 0
    halfway = load_checkpoint(split / "last.pt")
    assert (halfway.metadata["epoch"], halfway.metadata["step"]) == (1, 2)
    assert dcros(["train", "--config", str(path), "--out", str(split), "--resume", "auto"]) == 0

    first, second = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert (second.metadata["epoch"], second.metadata["step"]) == (2, 4)
    assert first.state_dict.keys() == second.state_dict.keys()
    for name in first.state_dict:
        torch.testing.assert_close(second.state_dict[name], first.state_dict[name], rtol=1e-6, atol=1e-7)
    # The weights moved from where the interrupted run stopped, and the logs agree row for row.
    assert any(not torch.equal(halfway.state_dict[k], second.state_dict[k]) for k in second.state_dict)
    drop_time = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert drop_time(read_log(split)) == drop_time(read_log(straight))
    assert [float(row["lr"]) for row in read_log(split)] == [1e-3, 5e-4]
    best = load_checkpoint(split / "best.pt")
    assert "training_state" not in best.metadata
    assert best.metadata["val"]["rmse_mm"] == min(float(row["val_rmse_mm"]) for row in read_log(split))
    # Everything, optimizer state and RNG states included, loads without unpickling code.
    torch.load(split / "last.pt", map_location="cpu", weights_only=True)


def test_resume_warns_of_a_changed_section_only(synthetic_kitti, tmp_path, caplog):
    """A default that another version wrote out (loss.intermediate: {}) is no change; a changed loss is."""
    path = write_yaml(tmp_path / "c.yaml", resume_config(synthetic_kitti))
    run = tmp_path / "run"
    assert dcros(["train", "--config", str(path), "--out", str(run), "--stop-after-epochs", "1"]) == 0
    checkpoint = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    checkpoint["metadata"]["config"]["loss"]["intermediate"] = {}
    torch.save(checkpoint, run / "last.pt")
    with caplog.at_level("WARNING", logger="depth_completion_ros.training.trainer"):
        assert dcros(["train", "--config", str(path), "--out", str(run), "--resume", "auto",
                      "--stop-after-epochs", "1"]) == 0
    assert not [r for r in caplog.records if "different" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("WARNING", logger="depth_completion_ros.training.trainer"):
        assert dcros(["train", "--config", str(path), "--out", str(run), "--resume", "auto",
                      "--set", "loss.type=l2"]) == 0
    assert [r.getMessage() for r in caplog.records if "different loss section" in r.getMessage()]


def test_best_checkpoint_follows_the_configured_metric(synthetic_kitti, tmp_path):
    """best_metric: mae_mm keeps the epoch of the lowest validation MAE, and a resume under another metric
    does not inherit the old best."""
    config = resume_config(synthetic_kitti)
    config["schedule"]["epochs"] = 3
    config["best_metric"] = "mae_mm"
    path = write_yaml(tmp_path / "c.yaml", config)
    assert dcros(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    rows = read_log(tmp_path / "run")
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best.metadata["best_metric"] == "mae_mm"
    assert best.metadata["val"]["mae_mm"] == min(float(row["val_mae_mm"]) for row in rows)
    assert best.metadata["best_val"] == best.metadata["val"]["mae_mm"]
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    config["best_metric"] = "irmse_1km"
    trainer = Trainer(TrainConfig.from_dict(config), out_dir=tmp_path / "run", resume=tmp_path / "run" / "last.pt",
                      progress=False)
    assert trainer.best_value == float("inf") and last.metadata["best_metric"] == "mae_mm"


def test_intermediate_supervision_weights_the_named_depths():
    """(1 - sum w) * loss(final) + sum w * loss(output), over ground-truth pixels only; names are checked."""
    gt = torch.tensor([[[[10.0, 0.0], [20.0, 40.0]]]])
    final = torch.tensor([[[[11.0, 99.0], [20.0, 37.0]]]])    # L1 over 3 gt pixels: (1 + 0 + 3) / 3
    coarse = torch.tensor([[[[16.0, -5.0], [14.0, 46.0]]]])   # (6 + 6 + 6) / 3
    criterion = GroundTruthLoss("l1", intermediate={"coarse_depth": 0.25})
    assert criterion.needs_features and not GroundTruthLoss("l1").needs_features
    total, terms = criterion(final, gt, student_features={"coarse_depth": coarse, "E0": torch.zeros(1, 8, 2, 2)})
    assert total.item() == pytest.approx(0.75 * 4 / 3 + 0.25 * 6)
    assert terms["gt_l1"].item() == pytest.approx(4 / 3) and terms["coarse_depth/gt_l1"].item() == pytest.approx(6)
    with pytest.raises(ValueError, match="no output 'coarse'.*depth-shaped outputs are coarse_depth"):
        GroundTruthLoss("l1", intermediate={"coarse": 0.25})(final, gt, student_features={"coarse_depth": coarse})
    with pytest.raises(ValueError, match="'E0' is .* not a depth map"):
        GroundTruthLoss("l1", intermediate={"E0": 0.25})(final, gt, student_features={"E0": torch.zeros(1, 8, 2, 2)})


def test_deep_supervision_trains_cdspn_coarse_depth(synthetic_kitti, tmp_path):
    """loss.intermediate names CDSPN's own outputs; their terms are logged and the supervised coarse depth
    approaches the ground truth on a repeated batch (the final output alone would leave it free)."""
    epochs = 6
    config = tiny_config(synthetic_kitti, "cdspn_x32", data={"limit_train": 1, "val_split": None},
                         schedule={"epochs": epochs},
                         loss={"type": "l1", "intermediate": {
                             "coarse_depth": 0.3, "rgb_branch_depth": 0.1, "depth_branch_depth": 0.1}})
    out = tmp_path / "run"
    assert dcros(["train", "--config", str(write_yaml(tmp_path / "c.yaml", config)), "--out", str(out)]) == 0
    rows = read_log(out)
    for name in ("gt_l1", "coarse_depth/gt_l1", "rgb_branch_depth/gt_l1", "depth_branch_depth/gt_l1"):
        assert all(float(row[f"train/{name}"]) > 0 for row in rows), name
    coarse = [float(row["train/coarse_depth/gt_l1"]) for row in rows]
    assert coarse[-1] < 0.9 * coarse[0], f"the supervised coarse depth did not improve: {coarse}"
    total = float(rows[-1]["train_loss"])
    names = ("gt_l1", "coarse_depth/gt_l1", "rgb_branch_depth/gt_l1", "depth_branch_depth/gt_l1")
    parts = {name: float(rows[-1][f"train/{name}"]) for name in names}
    assert total == pytest.approx(0.5 * parts["gt_l1"] + 0.3 * parts["coarse_depth/gt_l1"]
                                  + 0.1 * parts["rgb_branch_depth/gt_l1"] + 0.1 * parts["depth_branch_depth/gt_l1"],
                                  rel=1e-4)


class _Interrupted(Exception):
    pass


class _StopAtStep(Trainer):
    """Simulates a crash right after the mid-epoch checkpoint of step `stop_step`."""

    stop_step = 3

    def _save_last(self):
        super()._save_last()
        if self.step == self.stop_step:
            raise _Interrupted


def test_resume_inside_an_epoch(synthetic_kitti, tmp_path):
    config = TrainConfig.from_dict(tiny_config(synthetic_kitti, "cdspn_x32", loss={"type": "l2"},
                                               data={"batch_size": 1, "val_split": None},
                                               schedule={"epochs": 2}, save_every_steps=1))
    reference = Trainer(config, out_dir=tmp_path / "reference")
    reference.fit()
    with pytest.raises(_Interrupted):
        _StopAtStep(config, out_dir=tmp_path / "crashed").fit()
    resumed = Trainer(config, out_dir=tmp_path / "crashed", resume=tmp_path / "crashed" / "last.pt")
    assert (resumed.epoch, resumed.step, resumed.batches_done) == (1, 3, 1)
    resumed.fit()
    assert resumed.step == reference.step == 4
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=1e-6, atol=1e-7)
    assert [row["train_loss"] for row in read_log(tmp_path / "crashed")] == \
           [row["train_loss"] for row in read_log(tmp_path / "reference")]


def test_resume_at_a_stage_boundary_from_the_saved_config(synthetic_kitti, tmp_path):
    config = tiny_config(synthetic_kitti, "cdspn_x32", loss={"type": "l2"}, data={"val_split": None},
                         schedule={"epochs": None},
                         stages=[{"name": "backbone", "epochs": 1, "train": "backbone", "refine": False},
                                 {"name": "all", "epochs": 1, "lr": 2e-3}])
    path = write_yaml(tmp_path / "c.yaml", config)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert dcros(["train", "--config", str(path), "--out", str(straight)]) == 0
    assert dcros(["train", "--config", str(path), "--out", str(split), "--stop-after-epochs", "1"]) == 0
    # No --config: the checkpoint's own config; the next stage starts with a fresh optimizer at its lr.
    assert dcros(["train", "--resume", str(split / "last.pt")]) == 0  # continues in split/
    first, second = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert second.metadata["stage"] == "all" and second.metadata["step"] == first.metadata["step"] == 4
    for name in first.state_dict:
        torch.testing.assert_close(second.state_dict[name], first.state_dict[name], rtol=1e-6, atol=1e-7)
    assert [float(row["lr"]) for row in read_log(split)] == [1e-3, 2e-3]


def test_resume_rejects_a_checkpoint_without_training_state(synthetic_kitti, tmp_path, capsys):
    model = build_model("cdspn_x32", **TINY_KWARGS["cdspn_x32"])
    save_checkpoint(tmp_path / "exported.pt", model, {"note": "weights only"})
    path = write_yaml(tmp_path / "c.yaml", tiny_config(synthetic_kitti, loss={"type": "l2"}))
    assert dcros(["train", "--config", str(path), "--resume", str(tmp_path / "exported.pt")]) == 2
    assert "no training state" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ stages
def test_cdspn_stages_train_only_their_part(synthetic_kitti, tmp_path):
    config = TrainConfig.from_dict(tiny_config(
        synthetic_kitti, "cdspn_x32", loss={"type": "l2"}, data={"limit_train": 2, "val_split": "val"},
        schedule={"epochs": None},
        stages=[{"name": "backbone", "epochs": 1, "train": "backbone", "refine": False},
                {"name": "refinement", "epochs": 1, "train": "refinement", "lr": 5e-4},
                {"name": "all", "epochs": 1}]))
    trainer = Trainer(config, out_dir=tmp_path / "run")
    model = trainer.model
    is_refinement = lambda name: name.startswith("refinement.")  # noqa: E731
    initial = snapshot(model)

    trainer.fit(max_epochs=1)  # backbone stage: the refinement is neither run nor trained
    after_backbone = snapshot(model)
    changed = {name for name in initial if not torch.equal(initial[name], after_backbone[name])}
    assert changed and all(not is_refinement(name) for name in changed)
    assert any(name.endswith("pointwise.weight") for name in changed)

    trainer.fit(max_epochs=1)  # refinement stage: backbone frozen, BatchNorm statistics included
    after_refinement = snapshot(model)
    changed = {name for name in initial if not torch.equal(after_backbone[name], after_refinement[name])}
    assert changed and all(is_refinement(name) for name in changed)
    assert trainer.optimizer.param_groups[0]["lr"] == 5e-4

    trainer.fit()  # everything trains again
    final = snapshot(model)
    changed = {name for name in initial if not torch.equal(after_refinement[name], final[name])}
    assert any(is_refinement(name) for name in changed) and any(not is_refinement(name) for name in changed)
    rows = read_log(tmp_path / "run")
    assert [row["stage"] for row in rows] == ["backbone", "refinement", "all"]
    # best.pt only from stages that run the full network (the backbone stage scores its coarse output).
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best.metadata["stage"] in ("refinement", "all")


def test_stages_that_need_cdspn_are_rejected_for_other_models(synthetic_kitti, tmp_path):
    config = TrainConfig.from_dict(tiny_config(
        synthetic_kitti, "lspkd_student", schedule={"epochs": None},
        stages=[{"epochs": 1, "train": "backbone", "refine": False}]))
    with pytest.raises(ValueError, match=r"stages\[0\]\.refine"):
        Trainer(config, out_dir=tmp_path / "run")


# ------------------------------------------------------------------------------------ distillation
@pytest.mark.parametrize("methods", [["lspkd"], ["att", "pkt"]])
def test_feature_distillation_trains_student_and_adapters_never_the_teacher(methods, synthetic_kitti, tmp_path):
    teacher = build_model("lspkd_teacher", width=0.125)
    teacher_path = save_checkpoint(tmp_path / "teacher.pt", teacher)
    # The student's own adapters map its encoder features to this teacher's widths (phi for E2).
    student_kwargs = {"width": 0.0625, "adapter_width": 0.125}
    config = tiny_config(synthetic_kitti, "lspkd_student", data={"val_split": None}, schedule={"epochs": 1},
                         distillation={"type": "feature", "teacher": str(teacher_path), "methods": methods,
                                       "layers": ["E2", ["D2", "D2"]], "feature_weight": 0.1})
    config["model"]["kwargs"] = student_kwargs
    config = TrainConfig.from_dict(config)
    trainer = Trainer(config, out_dir=tmp_path / "run")
    teacher_before = snapshot(trainer.teacher)
    student_before = snapshot(trainer.model)
    criterion_before = snapshot(trainer.criterion)
    trainer.fit()

    teacher_after = snapshot(trainer.teacher)
    assert all(torch.equal(teacher_before[k], teacher_after[k]) for k in teacher_before)
    assert all(torch.equal(teacher_after[k], teacher.state_dict()[k]) for k in teacher_after)
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    student_after = snapshot(trainer.model)
    assert not torch.equal(student_before["head.weight"], student_after["head.weight"])
    if "lspkd" in methods:
        # E2 uses the student's own phi, D2 one owned by the distiller: both learn.
        assert not torch.equal(student_before["adapters.E2.weight"], student_after["adapters.E2.weight"])
        criterion_after = snapshot(trainer.criterion)
        adapter_keys = [k for k in criterion_after if "adapter" in k]
        assert adapter_keys and all(not torch.equal(criterion_before[k], criterion_after[k]) for k in adapter_keys)
    columns = read_log(tmp_path / "run")[0].keys()
    for method in methods:
        assert f"train/feat/{method}/E2-E2" in columns and f"train/feat/{method}/D2-D2" in columns
    assert "train/pred/teacher_l1" in columns


def test_blackbox_teacher_runs_once_per_sample(synthetic_kitti, tmp_path):
    teacher = build_model("cdspn_x32", width=4, iterations=1)
    teacher_path = save_checkpoint(tmp_path / "teacher.pt", teacher)
    config = TrainConfig.from_dict(tiny_config(
        synthetic_kitti, "cdspn_x32", loss={"type": "l2"}, data={"val_split": None}, schedule={"epochs": 2},
        distillation={"type": "blackbox", "teacher": str(teacher_path)}))
    trainer = Trainer(config, out_dir=tmp_path / "run")
    samples_seen = []
    trainer.teacher.register_forward_hook(lambda module, inputs, output: samples_seen.append(inputs[0].shape[0]))
    before = snapshot(trainer.model)
    trainer.fit()
    frames = len(trainer.train_indices)
    assert frames == 2
    assert sum(samples_seen) == frames  # epoch 1 computes, epoch 2 reads the cache
    assert (trainer.teacher_cache.misses, trainer.teacher_cache.hits) == (frames, frames)
    assert len(list((tmp_path / "run" / "teacher_cache").glob("*.npy"))) == frames
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    columns = read_log(tmp_path / "run")[0].keys()
    assert {"train/ground_truth_mse", "train/teacher_depth_mse", "train/teacher_gradient_mse"} <= set(columns)


def test_init_from_checkpoint_and_its_errors(synthetic_kitti, tmp_path):
    source = build_model("cdspn_x32", **TINY_KWARGS["cdspn_x32"])
    path = save_checkpoint(tmp_path / "base.pt", source)
    config = tiny_config(synthetic_kitti, "cdspn_x32", loss={"type": "l2"})
    config["model"]["init"] = str(path)
    trainer = Trainer(TrainConfig.from_dict(config), out_dir=tmp_path / "run")
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in trainer.model.state_dict().items())
    wrong = copy.deepcopy(config)
    wrong["model"]["kwargs"]["width"] = 16
    with pytest.raises(ValueError, match="model.init"):
        Trainer(TrainConfig.from_dict(wrong), out_dir=tmp_path / "run2")


def test_init_with_new_layers_takes_every_other_weight_from_the_checkpoint(synthetic_kitti, tmp_path):
    """A CDSPN with the in-network prior starts from a plain CDSPN's checkpoint; only the named new module
    keeps its own initialisation, and a missing weight that is not named is still an error."""
    source = build_model("cdspn_x32", **TINY_KWARGS["cdspn_x32"])
    path = save_checkpoint(tmp_path / "plain.pt", source)
    config = tiny_config(synthetic_kitti, "cdspn_x32", loss={"type": "l1"})
    config["model"]["kwargs"]["prior"] = "morphological"
    config["model"]["init"] = str(path)
    # Not named: missing weights are an error, which says how to name them.
    with pytest.raises(ValueError, match="(?s)model.init.*prior_confidence.*model.new_layers"):
        Trainer(TrainConfig.from_dict(config), out_dir=tmp_path / "strict")
    config["model"]["new_layers"] = ["prior_confidence"]
    trainer = Trainer(TrainConfig.from_dict(config), out_dir=tmp_path / "run")
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.state_dict().items())
    assert state["prior_confidence.bias"].item() == pytest.approx(3.0)  # its own initialisation
    config["model"]["new_layers"] = ["prior_head"]
    with pytest.raises(ValueError, match="model.new_layers: .* has no module prior_head"):
        Trainer(TrainConfig.from_dict(config), out_dir=tmp_path / "run2")
    config["model"]["kwargs"].pop("prior")  # nothing new to start: the plain checkpoint fits, but the name does not
    config["model"]["new_layers"] = ["prior_confidence"]
    with pytest.raises(ValueError, match="has no module prior_confidence"):
        Trainer(TrainConfig.from_dict(config), out_dir=tmp_path / "run3")
    # The key is written only when set, so configs saved before it existed compare equal on resume.
    assert "new_layers" not in TrainConfig.from_dict(tiny_config(synthetic_kitti, "cdspn_x32")).to_dict()["model"]


def test_init_with_fewer_refinement_kernel_sizes_keeps_the_kept_heads(synthetic_kitti, tmp_path):
    """A CDSPN whose DA-CSPN++ has a subset of the kernel sizes starts from a full one: every weight but
    the dropped affinity heads is taken, the confidence keeps its kept rows; sizes that are not a subset
    still fail to load."""
    source = build_model("cdspn_x32", **TINY_KWARGS["cdspn_x32"])
    path = save_checkpoint(tmp_path / "full.pt", source)
    config = tiny_config(synthetic_kitti, "cdspn_x32", loss={"type": "l1"})
    config["model"]["kwargs"].update(kernel_sizes=[3, 7], iterations=2)
    config["model"]["init"] = str(path)
    trainer = Trainer(TrainConfig.from_dict(config), out_dir=tmp_path / "run")
    state, full = trainer.model.state_dict(), source.state_dict()
    assert not any(".affinity.k5." in key for key in state)
    for key, value in state.items():
        expected = full[key]
        if ".confidence." in key and expected.dim() >= 1 and expected.shape[0] == 3:
            expected = expected[[0, 2]]
        assert torch.equal(value, expected), key
    config["model"]["kwargs"]["kernel_sizes"] = [3, 9]
    with pytest.raises(ValueError, match="(?s)model.init.*affinity.k9"):
        Trainer(TrainConfig.from_dict(config), out_dir=tmp_path / "run2")


# ------------------------------------------------------------------------------ several worlds
@pytest.fixture(scope="module")
def second_world(tmp_path_factory):
    """Another tiny synthetic world (seed 1): the generator names its drives as in synthetic_kitti."""
    from depth_completion_ros.data.synth import generate_dataset

    out_dir = tmp_path_factory.mktemp("second_world")
    generate_dataset(out_dir, drives=2, frames=2, seed=1, val_drives=1, progress=False)
    return out_dir


def test_several_roots_are_one_data_set_with_distinct_names(synthetic_kitti, second_world):
    from depth_completion_ros.data.kitti import KittiDepthCompletion, depth_completion_data

    kwargs = {"crop": (64, 128), "augment": True, "seed": 3}
    first, second = (KittiDepthCompletion(root, "train", **kwargs) for root in (synthetic_kitti, second_world))
    both = depth_completion_data([synthetic_kitti, second_world], "train", **kwargs)
    assert len(both) == len(first) + len(second)
    # The worlds reuse drive names: without the root in front, names would collide.
    assert {f.name for f in first.frames} == {f.name for f in second.frames}
    names = [both[i]["name"] for i in range(len(both))]
    assert len(set(names)) == len(names)
    assert names[len(first)] == f"{second_world}:{second.frames[0].name}"
    # Augmentation draws and random windows reach every root, as with one.
    both.set_epoch(2)
    second.set_epoch(2)
    both.random_crop = second.random_crop = (32, 64)
    item, expected = both[len(first) + 1], second[1]
    assert item["rgb"].shape[-2:] == (32, 64)
    assert all(torch.equal(item[key], expected[key]) for key in ("rgb", "sparse", "gt", "K"))
    with pytest.raises(ValueError, match="more than once"):
        depth_completion_data([synthetic_kitti, synthetic_kitti], "train")


def test_training_on_two_worlds_validates_on_both(synthetic_kitti, second_world, tmp_path):
    teacher = build_model("cdspn_x32", width=4, iterations=1)
    teacher_path = save_checkpoint(tmp_path / "teacher.pt", teacher)
    config = TrainConfig.from_dict(tiny_config(
        [synthetic_kitti, second_world], "cdspn_x32", loss={"type": "l2"}, schedule={"epochs": 2},
        distillation={"type": "blackbox", "teacher": str(teacher_path)}))
    trainer = Trainer(config, out_dir=tmp_path / "run")
    trainer.fit()
    assert len(trainer.train_indices) == 4 and len(trainer.val_indices) == 4  # two of each split per world
    # One cache entry per frame of either world: equal drive names do not share a teacher prediction.
    assert len(list((tmp_path / "run" / "teacher_cache").glob("*.npy"))) == 4
    assert (trainer.teacher_cache.misses, trainer.teacher_cache.hits) == (4, 4)
    metadata = load_checkpoint(tmp_path / "run" / "last.pt").metadata
    assert metadata["training_data"]["root"] == [str(synthetic_kitti), str(second_world)]
    assert metadata["training_data"]["val_frames"] == 4
