"""KITTI metrics: hand-computed values, the devkit fill, image-mean vs pooled, torch vs numpy, `dcros metrics`."""
import json
import math

import numpy as np
import pytest
import torch

from depth_completion_ros import cli
from depth_completion_ros.data.image_io import write_depth_png
from depth_completion_ros.evaluation.metrics import DepthMetrics, _devkit_fill_torch, devkit_fill, image_errors

# A 2x3 pair scored by hand: ground truth 0 = no value.
GT = np.array([[2.0, 4.0, 0.0], [5.0, 0.0, 10.0]])
PRED = np.array([[2.5, 4.0, 7.0], [4.0, 1.0, 7.0]])
# Valid pixels: (2 -> 2.5), (4 -> 4), (5 -> 4), (10 -> 7): errors 0.5, 0, 1, 3.
HAND = dict(
    mae=(0.5 + 0 + 1 + 3) / 4,
    rmse=math.sqrt((0.25 + 0 + 1 + 9) / 4),
    imae=(abs(1 / 2 - 1 / 2.5) + 0 + abs(1 / 5 - 1 / 4) + abs(1 / 10 - 1 / 7)) / 4,
    irmse=math.sqrt(((1 / 2 - 1 / 2.5) ** 2 + 0 + (1 / 5 - 1 / 4) ** 2 + (1 / 10 - 1 / 7) ** 2) / 4),
    rel=(0.5 / 2 + 0 + 1 / 5 + 3 / 10) / 4,
    delta1=1 / 4,  # ratios 1.25, 1, 1.25, 1.43: only the exact one is below 1.25
    delta2=4 / 4,
    delta3=4 / 4,
)


def test_image_errors_match_hand_values():
    errors = image_errors(PRED, GT)
    for key, value in HAND.items():
        assert errors[key] == pytest.approx(value, rel=1e-12), key
    assert errors["pixels"] == 4 and errors["missing"] == 0


def test_compute_reports_mm_and_per_km():
    metrics = DepthMetrics()
    metrics.update(PRED, GT)
    summary = metrics.compute()
    assert summary["rmse_mm"] == pytest.approx(HAND["rmse"] * 1000)
    assert summary["mae_mm"] == pytest.approx(HAND["mae"] * 1000)
    assert summary["irmse_1km"] == pytest.approx(HAND["irmse"] * 1000)
    assert summary["imae_1km"] == pytest.approx(HAND["imae"] * 1000)
    assert summary["delta1"] == pytest.approx(0.25)
    assert (summary["images"], summary["pixels"]) == (1, 4)


def _numbers(summary):
    return {k: v for k, v in summary.items() if not isinstance(v, str)}


def _two_image_case():
    # Image A: one pixel, error 1 m. Image B: three pixels, errors 0, 0, 2 m.
    gt_a, pred_a = np.array([[10.0, 0.0]]), np.array([[11.0, 11.0]])
    gt_b, pred_b = np.array([[5.0, 5.0, 5.0]]), np.array([[5.0, 5.0, 7.0]])
    return (pred_a, gt_a), (pred_b, gt_b)


def test_image_mean_differs_from_pooled():
    metrics = DepthMetrics()
    for pred, gt in _two_image_case():
        metrics.update(pred, gt)
    image_mean, pooled = metrics.compute("image_mean"), metrics.compute("pooled")
    assert image_mean["mae_mm"] == pytest.approx((1 + 2 / 3) / 2 * 1000)
    assert pooled["mae_mm"] == pytest.approx(3 / 4 * 1000)
    assert image_mean["rmse_mm"] == pytest.approx((1 + math.sqrt(4 / 3)) / 2 * 1000)
    assert pooled["rmse_mm"] == pytest.approx(math.sqrt(5 / 4) * 1000)
    assert image_mean["images"] == pooled["images"] == 2
    assert image_mean["pixels"] == pooled["pixels"] == 4


def test_merge_and_per_image_rows_rebuild_the_same_figures():
    (pred_a, gt_a), (pred_b, gt_b) = _two_image_case()
    first, second, both = DepthMetrics(), DepthMetrics(), DepthMetrics()
    first.update(pred_a, gt_a, names=["a"])
    second.update(pred_b, gt_b, names=["b"])
    both.update(pred_a, gt_a)
    both.update(pred_b, gt_b)
    rebuilt = DepthMetrics.from_per_image(first.per_image() + second.per_image())
    merged = first.merge(second)
    for candidate in (merged, rebuilt):
        assert _numbers(candidate.compute()) == pytest.approx(_numbers(both.compute()))
    assert [row["name"] for row in rebuilt.per_image()] == ["a", "b"]
    assert rebuilt.per_image()[1]["mae"] == pytest.approx(2 / 3)


def test_devkit_fill_row_gaps_take_smaller_neighbour_and_ends_copy():
    row = np.array([[0, 3, 0, 0, 5, 0, 2, 0]], dtype=np.float32)
    assert devkit_fill(row).tolist() == [[3, 3, 3, 3, 5, 2, 2, 2]]


def test_devkit_fill_empty_rows_top_bottom_and_middle():
    image = np.zeros((8, 4), dtype=np.float32)
    image[1] = [0, 4, 0, 6]
    image[4] = [1, 0, 0, 0]
    image[6] = [0, 0, 9, 0]
    filled = devkit_fill(image)
    expected = np.array([
        [4, 4, 4, 6],  # top: copies the first valid row
        [4, 4, 4, 6],
        [4, 4, 4, 6],  # middle, nearer to row 1
        [1, 1, 1, 1],  # middle, nearer to row 4
        [1, 1, 1, 1],
        [1, 1, 1, 1],  # middle, equally near rows 4 and 6: the smaller value
        [9, 9, 9, 9],
        [9, 9, 9, 9],  # bottom: copies the last valid row
    ], dtype=np.float32)
    np.testing.assert_array_equal(filled, expected)
    assert image[0].sum() == 0, "the input must not be modified"


def test_devkit_fill_treats_nan_and_negative_as_missing_and_keeps_empty_image():
    row = np.array([[np.nan, 2.0, -1.0, 3.0]])
    assert devkit_fill(row).tolist() == [[2.0, 2.0, 2.0, 3.0]]
    assert not devkit_fill(np.zeros((3, 4))).any()


def _devkit_reference(pred):
    """The devkit's interpolateBackground written as its loops (test reference, small images only)."""
    d = np.where(pred > 0, pred, -1.0).astype(np.float64)
    height, width = d.shape
    for v in range(height):
        count = 0
        for u in range(width):
            if d[v, u] >= 0:
                if count >= 1:
                    u1, u2 = u - count, u - 1
                    if u1 > 0 and u2 < width - 1:
                        d[v, u1:u2 + 1] = min(d[v, u1 - 1], d[v, u2 + 1])
                count = 0
            else:
                count += 1
        valid = np.nonzero(d[v] >= 0)[0]
        if valid.size:
            d[v, :valid[0]] = d[v, valid[0]]
            d[v, valid[-1] + 1:] = d[v, valid[-1]]
    for u in range(width):
        valid = np.nonzero(d[:, u] >= 0)[0]
        if valid.size:
            d[:valid[0], u] = d[valid[0], u]
            d[valid[-1] + 1:, u] = d[valid[-1], u]
    return np.where(d >= 0, d, 0.0)


def test_devkit_fill_agrees_with_the_devkit_loops():
    rng = np.random.default_rng(3)
    for trial in range(20):
        image = np.where(rng.random((9, 13)) < 0.2, rng.uniform(1, 80, (9, 13)), 0.0)
        image[: trial % 3] = 0  # empty top rows
        image[9 - trial % 2:] = 0  # empty bottom rows
        rows_with_values = np.nonzero(image.any(axis=1))[0]
        if rows_with_values.size:  # the devkit and this fill differ (on purpose) only for empty middle rows
            image[rows_with_values[0]: rows_with_values[-1] + 1, 0] = rng.uniform(1, 80)
        np.testing.assert_array_equal(devkit_fill(image), _devkit_reference(image))


def test_fill_changes_the_score_and_no_fill_counts_missing():
    gt, pred = np.array([[4.0, 4.0, 4.0]]), np.array([[3.0, 0.0, 6.0]])
    filled = image_errors(pred, gt, fill_missing=True)  # hole takes min(3, 6) = 3: errors 1, 1, 2
    assert filled["mae"] == pytest.approx(4 / 3)
    assert (filled["pixels"], filled["missing"]) == (3, 0)
    unfilled = image_errors(pred, gt, fill_missing=False)  # errors 1, 2; the hole is counted missing
    assert unfilled["mae"] == pytest.approx(3 / 2)
    assert (unfilled["pixels"], unfilled["missing"]) == (2, 1)
    metrics = DepthMetrics(fill_missing=False)
    metrics.update(pred, gt)
    assert metrics.compute()["coverage"] == pytest.approx(2 / 3)


def test_images_without_scored_pixels_are_skipped_and_counted():
    metrics = DepthMetrics()
    metrics.update(np.ones((2, 2)), np.zeros((2, 2)))  # no ground truth
    metrics.update(np.zeros((2, 2)), np.full((2, 2), 3.0))  # empty prediction: nothing to fill from
    metrics.update(PRED, GT)
    summary = metrics.compute()
    assert (summary["images"], summary["images_skipped"], summary["missing"]) == (1, 2, 4)
    assert summary["mae_mm"] == pytest.approx(HAND["mae"] * 1000)


def _random_batch(seed, batch=4, height=12, width=17):
    rng = np.random.default_rng(seed)
    gt = np.where(rng.random((batch, 1, height, width)) < 0.4, rng.uniform(1, 80, (batch, 1, height, width)), 0.0)
    pred = np.where(rng.random((batch, 1, height, width)) < 0.3, rng.uniform(1, 80, (batch, 1, height, width)), 0.0)
    pred[0, 0, 3:6] = 0  # empty middle rows
    pred[1, 0, :2] = 0  # empty top rows
    pred[2] = 0  # nothing predicted
    return pred.astype(np.float32), gt.astype(np.float32)


def test_torch_fill_agrees_with_numpy_fill():
    pred, _ = _random_batch(5)
    filled_torch = _devkit_fill_torch(torch.from_numpy(pred[:, 0])).numpy()
    for image, filled in zip(pred[:, 0], filled_torch):
        np.testing.assert_array_equal(filled, devkit_fill(image))


@pytest.mark.parametrize("fill_missing", [True, False])
def test_torch_and_numpy_paths_agree(fill_missing):
    pred, gt = _random_batch(7)
    from_torch, from_numpy = DepthMetrics(fill_missing), DepthMetrics(fill_missing)
    from_torch.update(torch.from_numpy(pred), torch.from_numpy(gt))  # [B, 1, H, W]
    from_torch.update(torch.from_numpy(pred[0, 0]), torch.from_numpy(gt[0, 0]))  # [H, W]
    for p, g in zip(pred[:, 0], gt[:, 0]):
        from_numpy.update(p, g)
    from_numpy.update(pred[0, 0], gt[0, 0])
    assert len(from_torch) == len(from_numpy) > 0
    for reduction in ("image_mean", "pooled"):
        assert _numbers(from_torch.compute(reduction)) == pytest.approx(_numbers(from_numpy.compute(reduction)),
                                                                        rel=1e-9)


def test_update_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in size"):
        DepthMetrics().update(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="differ in size"):
        DepthMetrics().update(torch.ones(1, 1, 2, 3), torch.ones(1, 1, 2, 4))
    with pytest.raises(ValueError, match="reduction"):
        DepthMetrics().compute("median")


# ---------------------------------------------------------------------------------------- dcros metrics
def _write_pairs(tmp_path):
    (pred_a, gt_a), (pred_b, gt_b) = _two_image_case()
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    write_depth_png(gt_dir / "0000000005.png", gt_a)
    write_depth_png(pred_dir / "0000000005.png", pred_a)
    write_depth_png(gt_dir / "0000000006.png", gt_b)
    write_depth_png(pred_dir / "0000000006.png", pred_b)
    return gt_dir, pred_dir


def test_cli_writes_hand_computed_figures(tmp_path, capsys):
    gt_dir, pred_dir = _write_pairs(tmp_path)
    out = tmp_path / "report" / "metrics.json"
    assert cli.main(["metrics", "--gt", str(gt_dir), "--pred", str(pred_dir), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mae_mm"] == pytest.approx((1 + 2 / 3) / 2 * 1000)
    assert report["rmse_mm"] == pytest.approx((1 + math.sqrt(4 / 3)) / 2 * 1000)
    assert report["imae_1km"] == pytest.approx((abs(1 / 10 - 1 / 11) + abs(1 / 5 - 1 / 7) / 3) / 2 * 1000)
    assert report["irmse_1km"] == pytest.approx(
        (abs(1 / 10 - 1 / 11) + math.sqrt((1 / 5 - 1 / 7) ** 2 / 3)) / 2 * 1000)
    assert report["images"] == 2
    assert [row["name"] for row in report["per_image"]] == ["0000000005.png", "0000000006.png"]
    assert "RMSE" in capsys.readouterr().out

    pooled = tmp_path / "pooled.json"
    assert cli.main(["metrics", "--gt", str(gt_dir), "--pred", str(pred_dir), "--pooled", "--json", str(pooled)]) == 0
    assert json.loads(pooled.read_text())["mae_mm"] == pytest.approx(3 / 4 * 1000)


def test_cli_refuses_mismatched_names(tmp_path, capsys):
    gt_dir, pred_dir = _write_pairs(tmp_path)
    (pred_dir / "0000000006.png").rename(pred_dir / "0000000007.png")
    assert cli.main(["metrics", "--gt", str(gt_dir), "--pred", str(pred_dir)]) == 2
    error = capsys.readouterr().err
    assert "0000000006.png" in error and "0000000007.png" in error


def test_cli_refuses_empty_folder_and_size_mismatch(tmp_path, capsys):
    gt_dir, pred_dir = _write_pairs(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["metrics", "--gt", str(gt_dir), "--pred", str(empty)]) == 2
    assert "no PNG" in capsys.readouterr().err
    write_depth_png(pred_dir / "0000000006.png", np.ones((2, 3)))
    assert cli.main(["metrics", "--gt", str(gt_dir), "--pred", str(pred_dir)]) == 2
    assert "0000000006.png" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_agrees_with_numpy():
    pred, gt = _random_batch(11)
    on_device, on_cpu = DepthMetrics(), DepthMetrics()
    on_device.update(torch.from_numpy(pred).cuda(), torch.from_numpy(gt).cuda())
    for p, g in zip(pred[:, 0], gt[:, 0]):
        on_cpu.update(p, g)
    assert _numbers(on_device.compute()) == pytest.approx(_numbers(on_cpu.compute()), rel=1e-9)
