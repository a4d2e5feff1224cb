"""Random layer pruning stability test: verdict rule, filter masking, reproducibility, report files, CLI."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import yaml

from depth_completion_ros.cli import main
from depth_completion_ros.data.kitti import KittiDepthCompletion
from depth_completion_ros.models import build_model
from depth_completion_ros.models.cdspn import LAYER_NAMES
from depth_completion_ros.models.checkpoint import save_checkpoint
from depth_completion_ros.training.pruning import (
    PruneThresholds,
    choose_pruned_channels,
    decide_verdict,
    masked_channels,
    propose_channels,
    prunable_units,
    prune_test,
    pruned_channel_count,
)

CROP = (64, 128)
SUBSET = ["rgb_init", "rgb_e3", "depth_e4", "depth_d4"]


def _small_cdspn(seed: int = 0):
    """A small CDSPN whose BatchNorms carry non-trivial statistics and affine terms, as after training
    (fresh ones are identities, which would hide the per-channel shift that masking must remove)."""
    torch.manual_seed(seed)
    model = build_model("cdspn_x32", width=8, iterations=2)
    generator = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.5)
    return model.eval()


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def validation(synthetic_kitti):
    return KittiDepthCompletion(synthetic_kitti, "val_selection_cropped", crop=CROP)


@pytest.fixture(scope="module")
def subset_report(validation):
    """One test over a few layers, shared by the reproducibility and CLI tests."""
    return prune_test(_small_cdspn(), validation, fraction=0.75, seed=3, layers=SUBSET, limit=2)


# ------------------------------------------------------------------------------------ rule and sizes
@pytest.mark.parametrize("relative_delta, expected", [
    (-0.30, "prune"),   # pruning helped: over-parameterised
    (0.0, "prune"),
    (0.0099, "prune"),
    (0.01, "shrink"),   # eps_1 is strict: Acc_new + eps_1 > Acc
    (0.049, "shrink"),
    (0.05, "keep"),     # eps_2 is strict too
    (0.7, "keep"),
    (1.0, "keep"),      # eps_3 is strict: Acc_new + eps_3 < Acc
    (1.0001, "grow"),
    (float("inf"), "grow"),
    (float("nan"), "grow"),
])
def test_verdict_rule_on_hand_made_deltas(relative_delta, expected):
    assert decide_verdict(relative_delta, (0.01, 0.05, 1.0)) == expected


def test_verdict_thresholds_are_configurable_and_checked():
    assert decide_verdict(0.03, PruneThresholds(0.05, 0.1, 0.2)) == "prune"
    assert decide_verdict(0.03, (0.0, 0.02)) == "keep"  # two values: eps_grow keeps its default (1.0)
    assert decide_verdict(0.3, PruneThresholds(0.0, 0.1, 0.2)) == "grow"
    with pytest.raises(ValueError, match="eps_prune <= eps_keep <= eps_grow"):
        PruneThresholds(0.1, 0.05, 1.0)
    with pytest.raises(ValueError, match="eps_grow"):
        PruneThresholds(0.01, 0.05, float("nan"))
    with pytest.raises(ValueError, match="thresholds"):
        decide_verdict(0.0, (0.1,))


def test_channel_counts_and_proposals():
    assert [pruned_channel_count(c, 0.75) for c in (2, 8, 32, 1)] == [2, 6, 24, 1]
    assert pruned_channel_count(8, 0.0) == 0
    assert pruned_channel_count(8, 0.01) == 1  # any positive fraction tests at least one filter
    assert pruned_channel_count(8, 1.0) == 8
    # fraction 0.75: prune keeps the 25 % the test left, shrink halves, grow x1.5 (rounded up).
    assert propose_channels(32, "prune", 0.75) == 8
    assert propose_channels(32, "shrink", 0.75) == 16
    assert propose_channels(32, "keep", 0.75) == 32
    assert propose_channels(32, "grow", 0.75) == 48
    assert propose_channels(9, "grow", 0.75, grow_factor=2.0) == 18
    # A small pruned fraction never makes "prune" propose more than "shrink"; never below one filter.
    assert propose_channels(32, "prune", 0.25) == 16
    assert propose_channels(1, "prune", 0.75) == 1
    with pytest.raises(ValueError, match="verdict"):
        propose_channels(8, "remove", 0.75)
    with pytest.raises(ValueError, match="fraction"):
        pruned_channel_count(8, 1.5)


def test_channel_choice_is_seeded_per_layer():
    first = choose_pruned_channels(64, 0.75, seed=0, layer="rgb_e8")
    assert first == choose_pruned_channels(64, 0.75, seed=0, layer="rgb_e8")
    assert len(first) == 48 and len(set(first)) == 48 and first == sorted(first)
    assert 0 <= first[0] and first[-1] < 64
    assert first != choose_pruned_channels(64, 0.75, seed=1, layer="rgb_e8")
    assert first != choose_pruned_channels(64, 0.75, seed=0, layer="depth_e6")


# ------------------------------------------------------------------------------------------ masking
def test_masking_removes_filters_after_normalisation_and_is_undone(validation):
    model = _small_cdspn()
    sample = validation[0]
    rgb, sparse = sample["rgb"][None], sample["sparse"][None]
    units = prunable_units(model)
    assert list(units) == list(LAYER_NAMES)
    assert [name for name, unit in units.items() if unit.fixed] == ["rgb_d5", "depth_d4"]
    with torch.no_grad():
        before, features = model(rgb, sparse, return_features=True)

        # rgb_e3 (stride 2, no residual): removed filters give exact zeros, including their BatchNorm shift,
        # and the other channels are untouched.
        channels = [1, 4, 5, 9]
        with masked_channels(units["rgb_e3"], channels):
            masked, masked_features = model(rgb, sparse, return_features=True)
        kept = [c for c in range(16) if c not in channels]
        assert torch.count_nonzero(masked_features["rgb_e3"][:, channels]) == 0
        assert torch.equal(masked_features["rgb_e3"][:, kept], features["rgb_e3"][:, kept])
        assert not torch.equal(masked, before), "disabling a quarter of rgb_e3's filters changes the depth"
        # Zeroing the point-wise conv output instead would have left ReLU(BatchNorm shift) in those channels.
        handle = units["rgb_e3"].conv.register_forward_hook(
            lambda m, i, o: o.index_fill(1, torch.tensor(channels), 0.0))
        try:
            _, conv_masked = model(rgb, sparse, return_features=True)
        finally:
            handle.remove()
        assert torch.count_nonzero(conv_masked["rgb_e3"][:, channels]) > 0

        # rgb_e4 (residual): a removed filter leaves the identity skip, i.e. the input channel passes through.
        with masked_channels(units["rgb_e4"], [0, 7]):
            _, residual_features = model(rgb, sparse, return_features=True)
        assert torch.equal(residual_features["rgb_e4"][:, [0, 7]], features["rgb_e3"][:, [0, 7]])

        after = model(rgb, sparse)
    assert torch.equal(after, before), "the hook is gone once the block exits"
    assert not units["rgb_e3"].target._forward_hooks


def test_mask_rejects_channels_out_of_range():
    units = prunable_units(_small_cdspn())
    with pytest.raises(ValueError, match="rgb_e1"):
        with masked_channels(units["rgb_e1"], [8]):
            pass


# ------------------------------------------------------------------------------------- the test itself
def test_fraction_zero_gives_the_baseline_exactly(validation):
    model = _small_cdspn()
    report = prune_test(model, validation, fraction=0.0, layers=SUBSET, limit=2)
    assert [r.layer for r in report.layers] == SUBSET
    assert report.images == 2 and math.isfinite(report.baseline_rmse_mm)
    for row in report.layers:
        assert row.pruned == 0
        assert row.rmse_mm == report.baseline_rmse_mm  # exact: later passes read the cached frames
        assert row.mae_mm == report.baseline_mae_mm
        assert row.delta_rmse_mm == 0.0 and row.verdict == "prune"


def test_same_seed_same_table_and_weights_untouched(validation, subset_report):
    model = _small_cdspn()
    state = _state(model)
    sample = validation[1]
    with torch.no_grad():
        before = model(sample["rgb"][None], sample["sparse"][None])
    model.train()
    again = prune_test(model, validation, fraction=0.75, seed=3, layers=SUBSET, limit=2)
    assert model.training, "the caller's train/eval mode is restored"
    assert again.to_dict() == subset_report.to_dict()
    assert again.to_csv() == subset_report.to_csv()
    after_state = model.state_dict()
    assert all(torch.equal(after_state[k], v) for k, v in state.items())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(sample["rgb"][None], sample["sparse"][None]), before)
    # The input layer matters: pruning 6 of its 8 filters moves the RMSE.
    assert subset_report.row("rgb_init").delta_rmse_mm != 0.0
    other_seed = prune_test(model, validation, fraction=0.75, seed=4, layers=["rgb_e3"], limit=2)
    assert other_seed.row("rgb_e3").pruned_channels != subset_report.row("rgb_e3").pruned_channels


def test_bad_arguments_name_the_problem(validation):
    model = _small_cdspn()
    with pytest.raises(ValueError, match="fraction"):
        prune_test(model, validation, fraction=1.5)
    with pytest.raises(ValueError, match="rgb_e99"):
        prune_test(model, validation, layers=["rgb_e1", "rgb_e99"])
    with pytest.raises(ValueError, match="eps_prune <= eps_keep"):
        prune_test(model, validation, thresholds=(0.2, 0.1, 1.0))


def test_models_without_prunable_layers_use_their_convolutions(validation):
    torch.manual_seed(0)
    model = build_model("lspkd_student_nyu")
    report = prune_test(model, validation, fraction=0.5, limit=1)
    names = [r.layer for r in report.layers]
    all_convs = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert names == [n for n in all_convs if not n.startswith("adapters.")], "modules that never run are left out"
    head = report.row("head")
    assert head.fixed and head.proposed_channels == head.out_channels == 1
    assert report.row("rgb_encoder.stem.0").masked_module == "rgb_encoder.stem.1"  # its BatchNorm
    assert report.row("rgb_encoder.stages.0.0.conv1").masked_module == "rgb_encoder.stages.0.0.bn1"


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_writes_one_row_per_layer(tmp_path, synthetic_kitti, subset_report, capsys):
    model = _small_cdspn()
    checkpoint = save_checkpoint(tmp_path / "small.pt", model)
    out = tmp_path / "report"
    rc = main(["prune-test", "--checkpoint", str(checkpoint), "--data", str(synthetic_kitti), "--crop", "64x128",
               "--limit", "2", "--seed", "3", "--out", str(out), "--device", "cpu", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| baseline |" in printed and "| depth_d4 |" in printed

    with open(out / "prune_test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["layer"] for row in rows] == list(LAYER_NAMES) and len(rows) == 28
    table = json.loads((out / "prune_test.json").read_text())
    assert len(table["layers"]) == 28
    thresholds = PruneThresholds(**table["thresholds"])
    for row in table["layers"]:
        assert row["verdict"] == decide_verdict(row["relative_delta"], thresholds)
        expected = row["out_channels"] if row["fixed"] else propose_channels(
            row["out_channels"], row["verdict"], table["fraction"])
        assert row["proposed_channels"] == expected
    # The checkpoint round trip and the full run give the same rows as the in-memory subset run.
    by_layer = {row["layer"]: row for row in table["layers"]}
    assert table["baseline"]["rmse_mm"] == subset_report.baseline_rmse_mm
    for result in subset_report.layers:
        assert by_layer[result.layer]["rmse_mm"] == result.rmse_mm
        assert tuple(by_layer[result.layer]["pruned_channels"]) == result.pruned_channels

    proposal = yaml.safe_load((out / "proposed_channels.yaml").read_text())
    assert list(proposal["per_layer_proposals"]) == list(LAYER_NAMES)
    assert proposal["current_channels"]["rgb_e8"] == 64 and proposal["per_layer_proposals"]["rgb_d5"] == 2
    # `channels` is the architecture's keyword: heads left out, the terms of every sum equal (the largest
    # proposal of the pair), every other layer its own proposal; the proposed network builds and runs.
    channels = proposal["channels"]
    assert "rgb_d5" not in channels and "depth_d4" not in channels
    for first, second in model.tied_channel_groups():
        assert channels[first] == channels[second] == max(proposal["per_layer_proposals"][first],
                                                          proposal["per_layer_proposals"][second])
    tied = {layer for group in model.tied_channel_groups() for layer in group}
    for layer in set(channels) - tied:
        assert channels[layer] == proposal["per_layer_proposals"][layer]
    proposed = build_model("cdspn_x32", **{**proposal["arch_kwargs"], "channels": channels})
    assert proposed(torch.rand(1, 3, 32, 48), torch.zeros(1, 1, 32, 48)).shape == (1, 1, 32, 48)
    markdown = (out / "prune_test.md").read_text()
    assert sum(line.startswith("| ") for line in markdown.splitlines()) == 1 + 1 + 28  # header, baseline, layers


def test_cli_reports_bad_input(tmp_path, synthetic_kitti, capsys):
    rc = main(["prune-test", "--checkpoint", str(tmp_path / "missing.pt"), "--data", str(synthetic_kitti),
               "--out", str(tmp_path / "out")])
    assert rc == 2 and "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prune-test", "--checkpoint", "x.pt", "--data", str(synthetic_kitti), "--crop", "64by128"])
