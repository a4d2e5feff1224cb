"""The checkpoint format: exact round trip, plain-data storage, and clear errors for bad files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_completion_ros.models import build_model
from depth_completion_ros.models.checkpoint import (
    FORMAT_NAME, CheckpointError, load_checkpoint, load_model, save_checkpoint,
)

SMALL_MODEL = "cdspn_x32"   # the smallest registered network
OTHER_MODEL = "cdspn_x64"   # same family, different widths: its weights do not fit SMALL_MODEL
HEIGHT, WIDTH = 37, 50      # not a multiple of any stride: exercises the models' internal padding
SMALL_KWARGS = {"iterations": 1}  # a non-default argument, so the round trip must carry kwargs


def _seeded_model(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, **kwargs).eval()


def _inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.rand(1, 3, HEIGHT, WIDTH, generator=generator)
    depth = 1.0 + 60.0 * torch.rand(1, 1, HEIGHT, WIDTH, generator=generator)
    sparse = torch.where(torch.rand(1, 1, HEIGHT, WIDTH, generator=generator) < 0.1, depth, torch.zeros(()))
    return rgb, sparse


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved SMALL_MODEL checkpoint with metadata, and the model it came from."""
    model = _seeded_model(SMALL_MODEL, **SMALL_KWARGS)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt", model,
                           metadata={"dataset": "synthetic", "epoch": 3, "val_rmse_mm": [812.5, 790.0]})
    return path, model


def test_round_trip_is_bitwise_identical_on_cpu(saved):
    path, original = saved
    loaded, checkpoint = load_model(path)
    loaded.eval()
    rgb, sparse = _inputs()
    with torch.inference_mode():
        expected = original(rgb, sparse)
        actual = loaded(rgb, sparse)
    assert actual.shape == (1, 1, HEIGHT, WIDTH)
    assert torch.equal(actual, expected)
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert checkpoint.architecture == SMALL_MODEL and checkpoint.kwargs == SMALL_KWARGS
    assert checkpoint.metadata == {"dataset": "synthetic", "epoch": 3, "val_rmse_mm": [812.5, 790.0]}


def test_different_weights_give_different_outputs(saved):
    # Guards the round-trip test: equality must come from the loaded weights, not from a constant output.
    _, original = saved
    other = _seeded_model(SMALL_MODEL, seed=7, **SMALL_KWARGS)
    rgb, sparse = _inputs()
    with torch.inference_mode():
        assert not torch.equal(original(rgb, sparse), other(rgb, sparse))


def test_file_holds_plain_data_only(saved):
    path, original = saved
    payload = torch.load(path, map_location="cpu", weights_only=True)  # refuses pickled code
    assert payload["format"] == FORMAT_NAME
    assert payload["architecture"] == SMALL_MODEL
    assert payload["kwargs"] == SMALL_KWARGS
    assert set(payload["state_dict"]) == set(original.state_dict())
    assert all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in payload["state_dict"].values())


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_truncated_file(saved, tmp_path):
    data = saved[0].read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as error:
        load_checkpoint(truncated)
    assert str(truncated) in str(error.value)


def test_random_bytes_file(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(garbage)


def test_any_random_bytes_file(tmp_path):
    garbage = tmp_path / "garbage.pt"
    for seed in range(64):
        garbage.write_bytes(np.random.default_rng(seed).bytes(64))
        with pytest.raises(CheckpointError):
            load_checkpoint(garbage)


def test_bare_state_dict(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save(_seeded_model(SMALL_MODEL).state_dict(), bare)
    with pytest.raises(CheckpointError, match="bare state_dict"):
        load_checkpoint(bare)


def test_weights_of_another_architecture(tmp_path):
    # A file that claims OTHER_MODEL but holds SMALL_MODEL's weights.
    mislabeled = save_checkpoint(tmp_path / "mislabeled.pt", _seeded_model(SMALL_MODEL),
                                 architecture=OTHER_MODEL, kwargs={})
    assert load_checkpoint(mislabeled).architecture == OTHER_MODEL  # the container itself is fine
    with pytest.raises(CheckpointError, match=f"weights do not fit '{OTHER_MODEL}'"):
        load_model(mislabeled)


def test_unknown_architecture(tmp_path):
    path = save_checkpoint(tmp_path / "unknown.pt", _seeded_model(SMALL_MODEL), architecture="no_such_net")
    with pytest.raises(CheckpointError, match="cannot build 'no_such_net'"):
        load_model(path)


def test_unsupported_format_version(saved, tmp_path):
    payload = torch.load(saved[0], map_location="cpu", weights_only=True)
    payload["version"] = 999
    future = tmp_path / "future.pt"
    torch.save(payload, future)
    with pytest.raises(CheckpointError, match="format version 999 is not supported"):
        load_checkpoint(future)


def test_model_without_architecture_name_cannot_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="no registered architecture name"):
        save_checkpoint(tmp_path / "plain.pt", torch.nn.Conv2d(4, 1, 3))


def test_every_shipped_checkpoint_loads_has_a_card_and_predicts_depth():
    """The files under models/ load with weights_only, sit beside their model card, and give finite,
    non-negative depth that keeps the LiDAR values (a lighter variant must still be a working model)."""
    from depth_completion_ros.model_zoo import DEFAULT_MODEL, shipped_checkpoints

    shipped = shipped_checkpoints()
    assert DEFAULT_MODEL in shipped and "cdspn_x32_lite_synth" in shipped
    rgb, sparse = _inputs(seed=5)
    for name, path in shipped.items():
        assert path.with_suffix(".md").is_file(), f"{name} has no model card"
        model, checkpoint = load_model(path)
        with torch.no_grad():
            depth = model.eval()(rgb, sparse)
        assert depth.shape == sparse.shape and torch.isfinite(depth).all() and (depth >= 0).all(), name
        valid = sparse > 0
        torch.testing.assert_close(depth[valid], sparse[valid], rtol=0.05, atol=0.05, msg=name)
    lite = load_checkpoint(shipped["cdspn_x32_lite_synth"]).kwargs
    assert (tuple(lite["kernel_sizes"]), lite["iterations"], lite["guidance"]) == ((3, 5), 4, "separable")
