"""KITTI readers on a small KITTI-layout tree written here and on the synthetic world (`synthetic_kitti`)."""
import calendar
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from depth_completion_ros import geometry
from depth_completion_ros.data.image_io import read_depth_png, write_depth_png, write_rgb_png
from depth_completion_ros.data.kitti import (
    KittiDepthCompletion,
    KittiRawDrive,
    list_raw_drives,
    parse_kitti_timestamp,
    read_timestamps,
)

DATE = "2011_09_26"
TRAIN_DRIVE, VAL_DRIVE = f"{DATE}_drive_0001_sync", f"{DATE}_drive_0002_sync"
WIDTH, HEIGHT = 1242, 375  # KITTI's rectified size on this date
RAW_FRAMES, ANNOTATED_FRAMES = (0, 1, 2), (1, 2)  # like KITTI, the first raw frame has no annotation

# Published KITTI raw calibration of 2011_09_26 (rectified cameras 02 and 03, Velodyne).
P_RECT = {
    "00": [[721.5377, 0, 609.5593, 0], [0, 721.5377, 172.854, 0], [0, 0, 1, 0]],
    "01": [[721.5377, 0, 609.5593, -387.5744], [0, 721.5377, 172.854, 0], [0, 0, 1, 0]],
    "02": [[721.5377, 0, 609.5593, 44.85728], [0, 721.5377, 172.854, 0.2163791], [0, 0, 1, 0.002745884]],
    "03": [[721.5377, 0, 609.5593, -339.5242], [0, 721.5377, 172.854, 2.199936], [0, 0, 1, 0.002729905]],
}
R_RECT_00 = np.array([[0.9999239, 0.00983776, -0.007445048], [-0.009869795, 0.9999421, -0.004278459],
                      [0.007402527, 0.004351614, 0.9999631]])
VELO_TO_CAM0 = geometry.make_transform(
    [[0.007533745, -0.9999714, -0.000616602], [0.01480249, 0.0007280733, -0.9998902],
     [0.9998621, 0.00752379, 0.01480755]],
    [-0.004069766, -0.07631618, -0.2717806],
)


def _write_timestamps(path, count, start_second):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"2011-09-26 13:02:{start_second + i // 10:02d}.{(i % 10) * 103456789:09d}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")


def _write_kitti_tree(root):
    """A KITTI-layout tree: 2 drives x 3 raw frames (2 annotated), a train and a val drive, selection crops."""
    rng = np.random.default_rng(0)
    raw_root = root / "kitti_raw"
    cameras = {
        code: dict(S=(1392, 512), K=np.array(P)[:, :3], D=np.zeros(5), R=np.eye(3), T=np.zeros(3),
                   S_rect=(WIDTH, HEIGHT), R_rect=np.eye(3), P_rect=np.array(P))
        for code, P in P_RECT.items()
    }
    geometry.write_kitti_calibration(raw_root / DATE, cameras, R_RECT_00, VELO_TO_CAM0)
    calibration = geometry.load_kitti_calibration(raw_root / DATE, camera="02")
    for split, drive in (("train", TRAIN_DRIVE), ("val", VAL_DRIVE)):
        drive_dir = raw_root / DATE / drive
        for camera in ("image_02", "image_03"):
            _write_timestamps(drive_dir / camera / "timestamps.txt", len(RAW_FRAMES), 25)
        _write_timestamps(drive_dir / "velodyne_points" / "timestamps.txt", len(RAW_FRAMES), 25)
        for frame in RAW_FRAMES:
            name = f"{frame:010d}"
            for offset, camera in enumerate(("image_02", "image_03")):
                # A smooth pattern (quick to write) that differs per frame and camera and is not mirror-symmetric.
                rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
                rgb = np.stack([cols * 255 // WIDTH, rows * 255 // HEIGHT,
                                (cols + rows + 40 * frame + offset) % 256], -1)
                write_rgb_png(drive_dir / camera / "data" / f"{name}.png", rgb.astype(np.uint8))
            # Points in front of the car (Velodyne frame: x forward, y left, z up).
            points = np.column_stack([rng.uniform(4, 60, 3000), rng.uniform(-15, 15, 3000),
                                      rng.uniform(-1.7, 1.0, 3000), rng.uniform(0, 1, 3000)]).astype(np.float32)
            velodyne = drive_dir / "velodyne_points" / "data" / f"{name}.bin"
            velodyne.parent.mkdir(parents=True, exist_ok=True)
            points.tofile(velodyne)
            if frame not in ANNOTATED_FRAMES:
                continue
            sparse = geometry.project(points, calibration.camera, calibration.lidar_to_camera)
            rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
            gt = np.where((rows + 2 * cols + frame) % 3 == 0, 2 + (rows * 7 + cols * 3 + frame) % 780 / 10, 0)
            for camera in ("image_02", "image_03"):
                write_depth_png(root / "data_depth_velodyne" / split / drive / "proj_depth" / "velodyne_raw"
                                / camera / f"{name}.png", sparse)
                write_depth_png(root / "data_depth_annotated" / split / drive / "proj_depth" / "groundtruth"
                                / camera / f"{name}.png", gt)
            if split == "val":  # the selection crops of the val drive
                top, left = geometry.bottom_crop_offsets(HEIGHT, WIDTH, 352, 1216)
                crop = np.s_[top:top + 352, left:left + 1216]
                selection = root / "data_depth_selection" / "val_selection_cropped"
                rgb = np.asarray(Image.open(drive_dir / "image_02" / "data" / f"{name}.png"))[crop]
                write_rgb_png(selection / "image" / f"{drive}_image_{name}_image_02.png", rgb)
                write_depth_png(selection / "velodyne_raw" / f"{drive}_velodyne_raw_{name}_image_02.png", sparse[crop])
                write_depth_png(selection / "groundtruth_depth" / f"{drive}_groundtruth_depth_{name}_image_02.png",
                                gt[crop])
                geometry.write_intrinsics_txt(selection / "intrinsics" / f"{drive}_image_{name}_image_02.txt",
                                              calibration.camera.bottom_crop(352, 1216))
    return root


@pytest.fixture(scope="module")
def kitti_tree(tmp_path_factory):
    return _write_kitti_tree(tmp_path_factory.mktemp("kitti"))


@pytest.fixture(params=["written_here", "synthetic_world"])
def kitti_root(request):
    """The tree written above, then the project's synthetic world: every test below runs on both."""
    if request.param == "written_here":
        return request.getfixturevalue("kitti_tree")
    try:
        return request.getfixturevalue("synthetic_kitti")
    except pytest.FixtureLookupError:
        pytest.skip("the synthetic_kitti fixture (test/conftest.py) is not available")


def _count_pngs(folder):
    return len(list(folder.rglob("*.png"))) if folder.is_dir() else 0


# ------------------------------------------------------------------------------------------- timestamps
def test_parse_kitti_timestamp_keeps_nanoseconds():
    seconds = calendar.timegm((2011, 9, 26, 13, 2, 25, 0, 0, 0))
    assert parse_kitti_timestamp("2011-09-26 13:02:25.964389445") == seconds * 10**9 + 964389445
    assert parse_kitti_timestamp("2011-09-26 13:02:25.5\n") == seconds * 10**9 + 500_000_000
    assert parse_kitti_timestamp("2011-09-26 13:02:25") == seconds * 10**9
    with pytest.raises(ValueError, match="not a KITTI timestamp"):
        parse_kitti_timestamp("13:02:25.964389445")


# ------------------------------------------------------------------------------------------- raw drives
def test_raw_drives(kitti_root):
    raw_root = kitti_root / "kitti_raw"
    drives = list_raw_drives(raw_root)
    assert len(drives) >= 2
    for drive_name in drives:
        drive = KittiRawDrive(raw_root, drive_name)
        assert drive_name.startswith(drive.date) and drive.name == drive_name
        assert drive.frame_ids == sorted(drive.frame_ids) and len(drive.frame_ids) >= 2
        for stamps in (drive.image_timestamps_ns, drive.velodyne_timestamps_ns):
            assert stamps.dtype == np.int64 and len(stamps) >= len(drive.frame_ids)
            assert (np.diff(stamps) > 0).all(), "timestamps must increase"
        frame = drive.frame_ids[0]
        image = drive.read_image(frame)
        assert image.dtype == np.uint8 and image.shape == (drive.calibration.camera.height,
                                                           drive.calibration.camera.width, 3)
        points = drive.read_velodyne(frame)
        assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 4 and len(points) > 0
        right = drive.calibration_for("image_03")
        assert right.lidar_to_camera[0, 3] != pytest.approx(drive.calibration.lidar_to_camera[0, 3], abs=0.1)


def test_projected_velodyne_reproduces_velodyne_raw_png(kitti_root):
    """Reader, calibration and projection together: the scan projected with the drive calibration equals
    the velodyne_raw PNG up to its 1/256 m quantisation."""
    raw_root = kitti_root / "kitti_raw"
    checked = 0
    for drive_name in list_raw_drives(raw_root):
        drive = KittiRawDrive(raw_root, drive_name)
        for frame in drive.frame_ids:
            png = drive.annotation_path(kitti_root, frame, kind="velodyne_raw")
            if png is None:
                continue
            expected = read_depth_png(png)
            calibration = drive.calibration
            projected = geometry.project(drive.read_velodyne(frame), calibration.camera, calibration.lidar_to_camera)
            assert projected.shape == expected.shape
            np.testing.assert_array_equal(projected > 0, expected > 0)
            assert np.abs(projected - expected).max() <= 0.5 / 256 + 1e-6
            checked += 1
    assert checked >= 2


def test_annotation_path_pairs_by_name(kitti_tree):
    drive = KittiRawDrive(kitti_tree / "kitti_raw", TRAIN_DRIVE)
    assert drive.annotation_path(kitti_tree, 0) is None  # raw frame without annotation
    path = drive.annotation_path(kitti_tree, 2, kind="groundtruth", camera="image_03")
    assert path == (kitti_tree / "data_depth_annotated" / "train" / TRAIN_DRIVE / "proj_depth" / "groundtruth"
                    / "image_03" / "0000000002.png")
    val_drive = KittiRawDrive(kitti_tree / "kitti_raw", VAL_DRIVE)
    assert "/val/" in val_drive.annotation_path(kitti_tree, 1, kind="velodyne_raw").as_posix()
    with pytest.raises(ValueError, match="kind"):
        drive.annotation_path(kitti_tree, 1, kind="semantic")


# ------------------------------------------------------------------------------------- depth completion
@pytest.mark.parametrize("split", ["train", "val"])
def test_dataset_items_are_cropped_with_k_shifted(kitti_root, split):
    dataset = KittiDepthCompletion(kitti_root, split=split)
    annotated = (kitti_root / "data_depth_annotated" / split).glob("*/proj_depth/groundtruth/image_02/*.png")
    assert len(dataset) == len(list(annotated)) > 0
    item = dataset[0]
    assert item["rgb"].shape == (3, 352, 1216) and item["rgb"].dtype == torch.float32
    assert item["sparse"].shape == item["gt"].shape == (1, 352, 1216)
    assert item["sparse"].dtype == item["gt"].dtype == torch.float32 and item["K"].dtype == torch.float32
    assert 0.0 <= float(item["rgb"].min()) and float(item["rgb"].max()) <= 1.0
    drive_name, camera, frame = item["name"].split("/")
    assert camera == "image_02" and len(frame) == 10

    drive = KittiRawDrive(kitti_root / "kitti_raw", drive_name)
    full = drive.calibration.camera
    top, left = full.height - 352, (full.width - 1216) // 2
    assert float(item["K"][0, 2]) == pytest.approx(full.cx - left, abs=1e-3)
    assert float(item["K"][1, 2]) == pytest.approx(full.cy - top, abs=1e-3)
    assert float(item["K"][0, 0]) == pytest.approx(full.fx, rel=1e-6)

    # Depth values are the PNG's uint16 / 256, cropped; rgb is the raw image / 255, cropped.
    gt_png = drive.annotation_path(kitti_root, int(frame), kind="groundtruth")
    sparse_png = drive.annotation_path(kitti_root, int(frame), kind="velodyne_raw")
    for key, png in (("gt", gt_png), ("sparse", sparse_png)):
        raw = np.asarray(Image.open(png)).astype(np.float64)[top:, left:left + 1216]
        np.testing.assert_array_equal(item[key][0].numpy(), (raw / 256).astype(np.float32))
    rgb = drive.read_image(int(frame))[top:, left:left + 1216]
    np.testing.assert_allclose(item["rgb"].numpy().transpose(1, 2, 0), rgb / 255.0, atol=1e-6)


def test_dataset_lengths_and_cameras(kitti_tree):
    assert len(KittiDepthCompletion(kitti_tree, "train")) == len(ANNOTATED_FRAMES)
    both = KittiDepthCompletion(kitti_tree, "train", cameras=("image_02", "image_03"))
    assert len(both) == 2 * len(ANNOTATED_FRAMES)
    names = [frame.name for frame in both.frames]
    assert len(set(names)) == len(names)
    right = [i for i, frame in enumerate(both.frames) if frame.camera == "image_03"][0]
    full = geometry.load_kitti_calibration(kitti_tree / "kitti_raw" / DATE, camera="03").camera
    assert float(both[right]["K"][0, 2]) == pytest.approx(full.cx - (WIDTH - 1216) // 2, abs=1e-3)
    uncropped = KittiDepthCompletion(kitti_tree, "val", crop=None)[0]
    assert uncropped["rgb"].shape == (3, HEIGHT, WIDTH)


def test_val_selection_cropped_pairs_the_right_files(kitti_root):
    selection = kitti_root / "data_depth_selection" / "val_selection_cropped"
    if not selection.is_dir():
        pytest.skip(f"no val_selection_cropped in {kitti_root}")
    dataset = KittiDepthCompletion(kitti_root, split="val_selection_cropped")
    assert len(dataset) == _count_pngs(selection / "groundtruth_depth")
    for index in range(len(dataset)):
        item = dataset[index]
        drive, camera, frame = item["name"].split("/")
        assert item["rgb"].shape == (3, 352, 1216)
        sparse = read_depth_png(selection / "velodyne_raw" / f"{drive}_velodyne_raw_{frame}_{camera}.png")
        gt = read_depth_png(selection / "groundtruth_depth" / f"{drive}_groundtruth_depth_{frame}_{camera}.png")
        np.testing.assert_array_equal(item["sparse"][0].numpy(), sparse)
        np.testing.assert_array_equal(item["gt"][0].numpy(), gt)
        K = np.loadtxt(selection / "intrinsics" / f"{drive}_image_{frame}_{camera}.txt").reshape(3, 3)
        np.testing.assert_allclose(item["K"].numpy(), K, rtol=1e-6)


def test_selection_crop_matches_the_cropped_val_frame(kitti_tree):
    """The selection K and pixels equal the val frame's bottom crop: both paths agree."""
    val = KittiDepthCompletion(kitti_tree, "val")
    selection = KittiDepthCompletion(kitti_tree, "val_selection_cropped")
    by_name = {val.frames[i].name: val[i] for i in range(len(val))}
    for index in range(len(selection)):
        item = selection[index]
        twin = by_name[item["name"]]
        torch.testing.assert_close(item["K"], twin["K"], rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(item["sparse"], twin["sparse"])
        torch.testing.assert_close(item["rgb"], twin["rgb"])


def test_augmentation_flip_is_consistent_and_repeatable(kitti_root):
    plain = KittiDepthCompletion(kitti_root, "train")
    augmented = KittiDepthCompletion(kitti_root, "train", augment=True, seed=3, jitter=0.0)
    flips, base = 0, plain[0]
    for epoch in range(8):
        augmented.set_epoch(epoch)
        item = augmented[0]
        width = item["rgb"].shape[-1]
        flipped = not torch.equal(item["sparse"], base["sparse"])
        if flipped:
            flips += 1
            for key in ("rgb", "sparse", "gt"):
                torch.testing.assert_close(item[key], torch.flip(base[key], dims=[-1]))
            assert float(item["K"][0, 2]) == pytest.approx(width - 1 - float(base["K"][0, 2]), abs=1e-4)
        else:
            torch.testing.assert_close(item["rgb"], base["rgb"])
            torch.testing.assert_close(item["K"], base["K"])
        assert float(item["K"][1, 2]) == pytest.approx(float(base["K"][1, 2]))
    assert 0 < flips < 8, "a fair coin over 8 epochs should flip sometimes (true for seed 3)"

    jittered = KittiDepthCompletion(kitti_root, "train", augment=True, seed=5, random_crop=(128, 256))
    jittered.set_epoch(2)
    first, again = jittered[0], jittered[0]
    for key in ("rgb", "sparse", "gt", "K"):
        assert torch.equal(first[key], again[key]), key
    assert first["rgb"].shape == (3, 128, 256) and first["sparse"].shape == (1, 128, 256)
    jittered.set_epoch(3)
    assert not torch.equal(jittered[0]["rgb"], first["rgb"])


def test_flipped_sparse_still_matches_its_camera(kitti_tree):
    """Un-projecting the flipped sparse depth with the flipped K gives the mirrored points (x -> -x)."""
    plain = KittiDepthCompletion(kitti_tree, "train")
    augmented = KittiDepthCompletion(kitti_tree, "train", augment=True, seed=3, jitter=0.0)
    base = plain[0]
    for epoch in range(8):
        augmented.set_epoch(epoch)
        item = augmented[0]
        if float(item["K"][0, 2]) != pytest.approx(float(base["K"][0, 2])):
            break
    else:
        pytest.fail("no flipped sample in 8 epochs")
    size = dict(width=item["sparse"].shape[-1], height=item["sparse"].shape[-2])
    points, _ = geometry.unproject(base["sparse"][0].numpy(), geometry.PinholeCamera.from_K(base["K"].numpy(), **size))
    mirrored, _ = geometry.unproject(item["sparse"][0].numpy(),
                                     geometry.PinholeCamera.from_K(item["K"].numpy(), **size))

    def key(p):
        return np.lexsort((p[:, 0], p[:, 1], p[:, 2]))

    mirrored = mirrored * np.array([-1, 1, 1], dtype=np.float32)
    np.testing.assert_allclose(mirrored[key(mirrored)], points[key(points)], atol=1e-3)


# ------------------------------------------------------------------------------------------ bad input
def test_clear_errors(kitti_tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="not-there"):
        KittiDepthCompletion(tmp_path / "not-there")
    with pytest.raises(FileNotFoundError, match="data_depth_velodyne"):
        KittiDepthCompletion(tmp_path)
    with pytest.raises(ValueError, match="split"):
        KittiDepthCompletion(kitti_tree, split="test")
    with pytest.raises(ValueError, match="camera"):
        KittiDepthCompletion(kitti_tree, cameras=("image_00",))
    with pytest.raises(ValueError, match="drive name"):
        KittiRawDrive(kitti_tree / "kitti_raw", "drive_1")
    with pytest.raises(FileNotFoundError, match="drive_0099"):
        KittiRawDrive(kitti_tree / "kitti_raw", f"{DATE}_drive_0099_sync")

    broken = tmp_path / "broken"
    shutil.copytree(kitti_tree, broken)
    dataset = KittiDepthCompletion(broken, "train")
    dataset.frames[0].rgb_path.unlink()
    with pytest.raises(FileNotFoundError, match="RGB image missing"):
        dataset[0]
    write_depth_png(dataset.frames[1].sparse_path, np.ones((100, 200)))
    with pytest.raises(ValueError, match=r"sparse depth is 200x100"):
        dataset[1]
    (broken / "kitti_raw" / DATE / TRAIN_DRIVE / "image_02" / "timestamps.txt").write_text("yesterday\n")
    with pytest.raises(ValueError, match="timestamps.txt:1"):
        read_timestamps(broken / "kitti_raw" / DATE / TRAIN_DRIVE / "image_02" / "timestamps.txt")
