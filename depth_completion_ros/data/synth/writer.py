"""Generate the synthetic drives and write them in the real KITTI layouts (raw + depth completion).

OUT/
  kitti_raw/2000_01_01/calib_{cam_to_cam,velo_to_cam,imu_to_velo}.txt
  kitti_raw/2000_01_01/2000_01_01_drive_NNNN_sync/image_0{0,1,2,3}/{data/%010d.png,timestamps.txt}
  kitti_raw/2000_01_01/2000_01_01_drive_NNNN_sync/oxts/{data/%010d.txt,timestamps.txt,dataformat.txt}
  kitti_raw/2000_01_01/2000_01_01_drive_NNNN_sync/velodyne_points/{data/%010d.bin,timestamps*.txt}
  data_depth_velodyne/{train,val}/<drive>/proj_depth/velodyne_raw/image_02/%010d.png
  data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_02/%010d.png
  data_depth_selection/val_selection_cropped/{image,velodyne_raw,groundtruth_depth,intrinsics}/...
  synth_manifest.json

The raw drives are complete KITTI raw drives (as pykitti.raw reads them): each of the four
rectified cameras is ray cast from its own pose (image_00/01 8-bit grey, image_02/03 colour; 0.54 m stereo
baselines), and the OXTS packets follow the IMU through calib_imu_to_velo (see `oxts`). The four cameras
share the trigger time of image_02's timestamps; the OXTS packets (100 Hz, synced) lie on the frame
instants that the world is frozen at.

A raw-camera drive (`raw_camera=`, see `rawcam`) has image_02 and its depth PNGs in a lens-distorted raw
camera's grid (rendered exactly through it), that camera in calib_cam_to_cam.txt (S_02, K_02, D_02, R_02, T_02,
R_rect_02) and in synth_manifest.json ("raw_camera"), and no data_depth_selection crops.

Unlike KITTI (whose depth folders skip the first and last 5 frames of a drive, which lack neighbours for
the accumulated ground truth), every raw frame gets depth files: the synthetic world can be scanned before
the first and after the last frame.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from depth_completion_ros import geometry
from depth_completion_ros.data import image_io
from depth_completion_ros.data.synth import oxts, rawcam, sensors
from depth_completion_ros.data.synth.scene import FRAME_PERIOD, VARIETY_BEAMS, Scene, build_scene

# 1.1: image_00, image_01, image_03 and oxts in the raw drives; 1.2: variety (per-drive rig and light);
# 1.3: drives sharing a rig (drives_per_rig, rig_beams) and each rig record's rig_id
GENERATOR_VERSION = "1.3"
DATE = "2000_01_01"  # cannot be mistaken for a KITTI recording (2011)
CROP_HEIGHT, CROP_WIDTH = 352, 1216  # val_selection_cropped
LOWER_FRACTION = 0.6  # "lower image" = the bottom 60 % of the rows, where the LiDAR lands
GT_NEIGHBOURS = 2  # sweeps before and after a frame accumulated for its ground truth (~16 % of pixels, as KITTI)
GT_SECTOR_DEG = 60.0  # azimuths within +-60 deg of forward cover the camera's +-41 deg from every neighbour
_START = _dt.datetime(2000, 1, 1, 12, 0, 0)
# Random stream per purpose: 1-3 are image_02, the sweep and the timestamps (unchanged since 1.0, so
# image_02 and the scans keep their bytes), 4 the OXTS sensor noise, 5-7 the other cameras' sensor noise.
_CAMERA_PURPOSE = {"00": 5, "01": 6, "02": 1, "03": 7}
_OXTS_PURPOSE = 4


def drive_name(index: int) -> str:
    """KITTI's drive folder name, e.g. 2000_01_01_drive_0001_sync."""
    return f"{DATE}_drive_{index:04d}_sync"


def format_timestamp(nanoseconds: int) -> str:
    """KITTI's timestamp format `YYYY-MM-DD HH:MM:SS.fffffffff` of `nanoseconds` after 2000-01-01 12:00."""
    seconds, fraction = divmod(int(nanoseconds), 1_000_000_000)
    moment = _START + _dt.timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{fraction:09d}"


def _frame_rng(seed: int, drive: int, frame: int, purpose: int) -> np.random.Generator:
    # SeedSequence entropy must be non-negative: neighbour frames before the first one are offset.
    return np.random.default_rng([int(seed), int(drive), int(frame) + 1_000_000, int(purpose)])


class _NeighbourScans:
    """Noise-free world points of the forward sector of sweeps, by frame index, kept for reuse by the
    neighbouring frames' ground truth."""

    def __init__(self, scene: Scene, model: sensors.VelodyneModel, keep: int, sector_deg: float = GT_SECTOR_DEG):
        self.scene, self.model, self.keep, self.sector_deg = scene, model, keep, sector_deg
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __call__(self, frame: int) -> np.ndarray:
        if frame not in self.cache:
            grid, hits = sensors.scan_exact(self.scene, frame * FRAME_PERIOD, self.model, sector_deg=self.sector_deg)
            self.cache[frame] = sensors.exact_world_points(grid, hits)
            while len(self.cache) > self.keep:
                self.cache.popitem(last=False)
        return self.cache[frame]


def ground_truth(camera_depth: np.ndarray, camera: geometry.PinholeCamera, world_to_camera: np.ndarray,
                 accumulated_world_points: np.ndarray) -> np.ndarray:
    """Semi-dense ground truth in KITTI's spirit: the camera's exact depth at the pixels where accumulated,
    ego-motion compensated LiDAR sweeps land, kept only where the nearest accumulated point agrees with
    the camera (removes points seen through foreground edges and the smear of moving objects). `camera` may
    be any model `geometry.project` takes (a raw camera's `rawcam.RawProjection`)."""
    accumulated = geometry.project(accumulated_world_points, camera, world_to_camera)
    tolerance = 0.05 + 0.03 * camera_depth
    agree = (accumulated > 0) & (camera_depth > 0) & (np.abs(accumulated - camera_depth) <= tolerance)
    return np.where(agree, camera_depth, 0.0).astype(np.float32)


def _density(depth: np.ndarray) -> tuple[float, float]:
    lower = depth[int(round(depth.shape[0] * (1 - LOWER_FRACTION))):]
    return float(np.count_nonzero(depth)) / depth.size, float(np.count_nonzero(lower)) / lower.size


def _write_timestamps(path: Path, nanoseconds: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(format_timestamp(ns) + "\n" for ns in nanoseconds))


def _write_camera_png(path: Path, image: np.ndarray) -> None:
    """An 8-bit grey (H, W) or RGB (H, W, 3) PNG. zlib level 4: on these noisy renders it writes files a
    little smaller than the default level 6, three times faster. (image_02 keeps image_io's writer, so its
    bytes stay those of generator 1.0.)"""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(path, format="PNG", compress_level=4)


def _selection_paths(out_dir: Path, drive: str, frame: int) -> dict[str, Path]:
    base = out_dir / "data_depth_selection" / "val_selection_cropped"
    return {
        "image": base / "image" / f"{drive}_image_{frame:010d}_image_02.png",
        "velodyne_raw": base / "velodyne_raw" / f"{drive}_velodyne_raw_{frame:010d}_image_02.png",
        "groundtruth_depth": base / "groundtruth_depth" / f"{drive}_groundtruth_depth_{frame:010d}_image_02.png",
        "intrinsics": base / "intrinsics" / f"{drive}_image_{frame:010d}_image_02.txt",
    }


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def generate_dataset(out_dir: str | Path, drives: int = 1, frames: int = 10, seed: int = 0,
                     val_drives: int | None = None, progress: bool | Callable = True,
                     lidar: sensors.VelodyneModel | None = None, gt_neighbours: int = GT_NEIGHBOURS,
                     variety: bool = False, raw_camera=None, drives_per_rig: int = 1,
                     rig_beams: int | None = None) -> dict:
    """Generate `drives` drives of `frames` frames (10 Hz) of the synthetic street world under `out_dir`:
    complete KITTI raw drives (four cameras, Velodyne, OXTS) and the depth-completion folders of image_02.

    The last `val_drives` drives form the validation split (default: one when there are >= 2 drives, else
    none) and fill `data_depth_selection/val_selection_cropped`. `lidar` overrides the Velodyne model
    (default: the HDL-64E at 10 Hz); `gt_neighbours` is the number of sweeps accumulated on each side of a
    frame for its ground truth. `progress` shows a tqdm bar (True), nothing (False), or is called with
    (drive name, frame index) after each frame. Returns the manifest (also written to synth_manifest.json).
    The same arguments give the same bytes in every file.

    `variety` gives every drive its own rig and light (`scene.build_scene`): a 32-, 64- or 128-beam LiDAR
    for the sparse input, mount height and pitch (the cameras move with the LiDAR, so the calibration files
    stay KITTI's), sun elevation, ambient light, exposure and image noise; the manifest records each
    drive's under "rig". The ground truth is still accumulated from `lidar` (the 64-beam model by default)
    on the drive's rig, so its density does not follow the input's beams.

    `drives_per_rig` (with `variety`) makes consecutive groups of that many drives share one rig: drives
    1..N have rig 1's LiDAR beams, mount height and pitch (those drawn for drive 1), N+1..2N rig 2's, and
    so on, while every drive keeps its own street and light. A model can then be adapted on some drives of
    a rig and scored on others. `rig_beams` (with `variety`; one of `scene.VARIETY_BEAMS`) gives every rig
    that many beams. Each drive's "rig" record carries its `rig_id` (1-based group number), and the
    manifest `drives_per_rig` (and `rig_beams` when given). The defaults write what 1.2 wrote (the
    manifest aside).

    `raw_camera` makes raw-camera drives (see `rawcam`): "MODEL[:c1,c2,...]" (e.g. "plumb_bob:-0.3,0.1,0,0,0";
    without coefficients the model's `rawcam.DEFAULT_DISTORTION`), a dict(model=, D=, R=) or a
    `rawcam.RawCameraSpec` (R: the rectification rotation, rectified <- raw; default the identity). Camera 02's
    images (image_02/data) are then rendered exactly through that raw camera, whose rectified camera is the
    usual P_rect_02, and its velodyne_raw and groundtruth PNGs are in the raw grid (the LiDAR projected through
    the distortion, depth along the raw camera's axis). calib_cam_to_cam.txt describes the raw camera as
    KITTI's unrectified camera 02 (S_02, K_02, D_02, R_02, T_02, R_rect_02), the manifest records it under
    "raw_camera" (`data.kitti.raw_camera_of_drive` reads it back), and data_depth_selection gets no crop of
    such drives (a crop of a distorted image has no pinhole intrinsics). Cameras 00, 01 and 03 stay
    rectified. Without it, nothing changes.
    """
    if int(drives) != drives or drives < 1:
        raise ValueError(f"drives must be a positive integer, got {drives!r}")
    if int(frames) != frames or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if val_drives is None:
        val_drives = 1 if drives >= 2 else 0
    if int(val_drives) != val_drives or not 0 <= val_drives <= drives:
        raise ValueError(f"val_drives must be an integer in 0..{drives} (the number of drives), got {val_drives!r}")
    if int(gt_neighbours) != gt_neighbours or gt_neighbours < 0:
        raise ValueError(f"gt_neighbours must be a non-negative integer, got {gt_neighbours!r}")
    if int(drives_per_rig) != drives_per_rig or drives_per_rig < 1:
        raise ValueError(f"drives_per_rig (--drives-per-rig) must be a positive integer, got {drives_per_rig!r}")
    if rig_beams is not None and rig_beams not in VARIETY_BEAMS:
        raise ValueError(f"rig_beams (--rig-beams) must be one of {list(VARIETY_BEAMS)}, got {rig_beams!r}")
    if not variety and (drives_per_rig != 1 or rig_beams is not None):
        option = "drives_per_rig (--drives-per-rig)" if drives_per_rig != 1 else "rig_beams (--rig-beams)"
        raise ValueError(f"{option} needs variety (--variety): without it every drive has the default rig")
    raw_spec = rawcam.as_spec(raw_camera)
    lidar = sensors.VelodyneModel() if lidar is None else lidar
    out_dir = Path(out_dir)
    date_dir = out_dir / "kitti_raw" / DATE
    calibration = sensors.write_calibration(date_dir)
    camera, lidar_to_camera = calibration.camera, calibration.lidar_to_camera
    calibrations = sensors.camera_calibrations(date_dir)
    # What camera 02's files show: the rectified camera, or a raw camera (read back from the calibration file,
    # so that the rendering uses exactly what the files say).
    image_camera, projection_camera, lidar_to_image = camera, camera, lidar_to_camera
    gt_sector_deg = GT_SECTOR_DEG
    if raw_spec is not None:
        from depth_completion_ros.data.kitti import load_raw_camera

        chosen = rawcam.make_raw_camera(camera, raw_spec)
        rawcam.write_calibration_lines(date_dir, chosen, raw_spec, calibration.R_rect_00, calibration.P_rect)
        image_camera = load_raw_camera(date_dir, "02", model=raw_spec.model)
        rawcam.check(image_camera)
        projection_camera = rawcam.RawProjection(image_camera)
        lidar_to_image = rawcam.lidar_to_raw(image_camera, lidar_to_camera)
        gt_sector_deg = max(GT_SECTOR_DEG, rawcam.horizontal_half_fov_deg(image_camera) + 15.0)
    crop_top, crop_left = geometry.bottom_crop_offsets(camera.height, camera.width, CROP_HEIGHT, CROP_WIDTH)
    crop_camera = camera.bottom_crop(CROP_HEIGHT, CROP_WIDTH)

    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=drives * frames, desc="synth", unit="frame")
    drive_records = []
    for drive_index in range(1, drives + 1):
        name = drive_name(drive_index)
        split = "val" if drive_index > drives - val_drives else "train"
        scene = build_scene(seed, drive_index, (frames - 1) * FRAME_PERIOD, variety=variety,
                            drives_per_rig=drives_per_rig, rig_beams=rig_beams)
        drive_lidar = lidar if scene.lidar_beams is None else dataclasses.replace(lidar, beams=scene.lidar_beams)
        texture_seed = int(np.random.default_rng([seed, drive_index, 7]).integers(2 ** 31))
        geo = oxts.draw_reference(np.random.default_rng([seed, drive_index, 8]))
        neighbour_scans = _NeighbourScans(scene, lidar, keep=2 * gt_neighbours + 2, sector_deg=gt_sector_deg)
        drive_dir = date_dir / name
        sparse_dir = out_dir / "data_depth_velodyne" / split / name / "proj_depth" / "velodyne_raw" / "image_02"
        gt_dir = out_dir / "data_depth_annotated" / split / name / "proj_depth" / "groundtruth" / "image_02"
        start_ns = (drive_index - 1) * 3_600_000_000_000  # one drive per hour of the fictitious day
        stamps_camera, stamps_velo, stamps_start, stamps_end = [], [], [], []
        per_frame = []
        for frame in range(frames):
            time = frame * FRAME_PERIOD
            for code in sensors.RAW_CAMERAS:
                calib = calibrations[code]
                shown_camera, shown_pose = calib.camera, calib.lidar_to_camera
                if code == "02":
                    shown_camera, shown_pose = image_camera, lidar_to_image
                image, depth = sensors.render_camera(
                    scene, time, shown_camera, shown_pose,
                    _frame_rng(seed, drive_index, frame, _CAMERA_PURPOSE[code]), texture_seed,
                    grey=code in sensors.GREY_CAMERAS)
                path = drive_dir / f"image_{code}" / "data" / f"{frame:010d}.png"
                if code == "02":
                    rgb, camera_depth = image, depth
                    image_io.write_rgb_png(path, image)
                else:
                    _write_camera_png(path, image)
            velo = sensors.scan_velodyne(scene, time, drive_lidar, _frame_rng(seed, drive_index, frame, 2),
                                         texture_seed)
            sparse = geometry.project(velo, projection_camera, lidar_to_image)
            world_to_camera = geometry.invert_transform(sensors.camera_pose(scene, time, lidar_to_image))
            neighbours = [neighbour_scans(j) for j in range(frame - gt_neighbours, frame + gt_neighbours + 1)]
            gt = ground_truth(camera_depth, projection_camera, world_to_camera, np.concatenate(neighbours))

            velo_path = drive_dir / "velodyne_points" / "data" / f"{frame:010d}.bin"
            velo_path.parent.mkdir(parents=True, exist_ok=True)
            velo.astype("<f4").tofile(velo_path)
            image_io.write_depth_png(sparse_dir / f"{frame:010d}.png", sparse)
            image_io.write_depth_png(gt_dir / f"{frame:010d}.png", gt)
            if split == "val" and raw_spec is None:
                paths = _selection_paths(out_dir, name, frame)
                rows, cols = slice(crop_top, crop_top + CROP_HEIGHT), slice(crop_left, crop_left + CROP_WIDTH)
                image_io.write_rgb_png(paths["image"], np.ascontiguousarray(rgb[rows, cols]))
                image_io.write_depth_png(paths["velodyne_raw"], sparse[rows, cols])
                image_io.write_depth_png(paths["groundtruth_depth"], gt[rows, cols])
                geometry.write_intrinsics_txt(paths["intrinsics"], crop_camera)

            # Timestamps: camera triggered every 0.1 s with sub-millisecond jitter; the sweep is centred on it.
            jitter = _frame_rng(seed, drive_index, frame, 3).normal(0.0, 2e5, 2).clip(-6e5, 6e5).astype(np.int64)
            camera_ns = start_ns + frame * 100_000_000 + int(jitter[0])
            velo_ns = start_ns + frame * 100_000_000 + int(jitter[1])
            stamps_camera.append(camera_ns)
            stamps_velo.append(velo_ns)
            stamps_start.append(velo_ns - 50_000_000)
            stamps_end.append(velo_ns + 50_000_000)

            sparse_density, sparse_lower = _density(sparse)
            gt_density, gt_lower = _density(gt)
            per_frame.append((sparse_density, sparse_lower, gt_density, gt_lower, len(velo),
                              float(sparse.max()), float(gt[gt > 0].min()) if gt.any() else 0.0, float(gt.max())))
            if bar is not None:
                bar.update(1)
            elif callable(progress):
                progress(name, frame)
        for code in sensors.RAW_CAMERAS:  # the cameras are triggered together
            _write_timestamps(drive_dir / f"image_{code}" / "timestamps.txt", stamps_camera)
        _write_oxts(drive_dir / "oxts", scene, geo, start_ns, frames,
                    [_frame_rng(seed, drive_index, frame, _OXTS_PURPOSE) for frame in range(frames)])
        _write_timestamps(drive_dir / "velodyne_points" / "timestamps.txt", stamps_velo)
        _write_timestamps(drive_dir / "velodyne_points" / "timestamps_start.txt", stamps_start)
        _write_timestamps(drive_dir / "velodyne_points" / "timestamps_end.txt", stamps_end)
        table = np.array(per_frame)
        drive_records.append({
            "name": name,
            "split": split,
            "frames": frames,
            "ego_speed_mps": _round(scene.ego.speed),
            "geo": {"first_lat_deg": geo.lat, "first_lon_deg": geo.lon, "ground_alt_m": geo.ground_alt,
                    "street_heading_rad": _round(geo.heading)},
            "objects": dict(scene.stats),
            **({"rig": scene.rig()} if variety else {}),
            "stats": {
                "sparse_density": _round(table[:, 0].mean()),
                "sparse_density_lower": _round(table[:, 1].mean()),
                "gt_density": _round(table[:, 2].mean()),
                "gt_density_lower": _round(table[:, 3].mean()),
                "lidar_points_mean": _round(table[:, 4].mean()),
                "sparse_depth_max_m": _round(table[:, 5].max()),
                "gt_depth_min_m": _round(table[:, 6].min()),
                "gt_depth_max_m": _round(table[:, 7].max()),
            },
        })
    if bar is not None:
        bar.close()

    manifest = {
        "generator": "depth_completion_ros.data.synth",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "variety": bool(variety),
        **({"drives_per_rig": int(drives_per_rig)} if variety else {}),
        **({"rig_beams": int(rig_beams)} if rig_beams is not None else {}),
        "date": DATE,
        "drives": drive_records,
        "frames_per_drive": int(frames),
        "splits": {"train": [d["name"] for d in drive_records if d["split"] == "train"],
                   "val": [d["name"] for d in drive_records if d["split"] == "val"]},
        "camera": {"name": "image_02", "width": camera.width, "height": camera.height,
                   "P_rect_02": calibration.P_rect.reshape(-1).tolist()},
        "raw_cameras": [f"image_{code}" for code in sensors.RAW_CAMERAS],
        "lidar": {"beams": len(lidar.elevations), "columns": lidar.columns, "max_range_m": lidar.max_range,
                  "range_noise_m": lidar.range_noise, "dropout": lidar.dropout,
                  "height_m": sensors.LIDAR_HEIGHT},
        "ground_truth": {"neighbour_sweeps_each_side": int(gt_neighbours),
                         "agreement_tolerance": "0.05 m + 3 % of the depth"},
        "lower_image_fraction": LOWER_FRACTION,
        "selection_crop": {"width": CROP_WIDTH, "height": CROP_HEIGHT},
    }
    if raw_spec is not None:
        manifest["raw_camera"] = rawcam.manifest_record(image_camera, raw_spec, calibration.camera)
    (out_dir / "synth_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_oxts(oxts_dir: Path, scene: Scene, geo: oxts.GeoReference, start_ns: int, frames: int,
                rngs: list[np.random.Generator]) -> None:
    """oxts/: one packet per frame at the frame's instant, its timestamps and dataformat.txt."""
    times = [frame * FRAME_PERIOD for frame in range(frames)]
    table = oxts.packets(lambda t: sensors.imu_pose(scene, t), times, geo, rngs)
    data_dir = oxts_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for frame, packet in enumerate(table):
        (data_dir / f"{frame:010d}.txt").write_text(oxts.format_packet(packet) + "\n")
    _write_timestamps(oxts_dir / "timestamps.txt", [start_ns + frame * 100_000_000 for frame in range(frames)])
    (oxts_dir / "dataformat.txt").write_text(oxts.DATAFORMAT)


def summarize_dataset(out_dir: str | Path) -> dict:
    """Statistics read back from the files of a dataset in this layout (synthetic or KITTI's own):
    per drive the number of frames, sparse and ground-truth densities (whole image and lower 60 %), depth
    ranges and LiDAR points per sweep, plus totals over all drives."""
    out_dir = Path(out_dir)
    velodyne_root = out_dir / "data_depth_velodyne"
    if not velodyne_root.is_dir():
        raise FileNotFoundError(f"no KITTI depth-completion data under {out_dir} (missing {velodyne_root})")
    drives = {}
    for split_dir in sorted(p for p in velodyne_root.iterdir() if p.is_dir()):
        for drive_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            sparse_paths = sorted((drive_dir / "proj_depth" / "velodyne_raw" / "image_02").glob("*.png"))
            gt_dir = (out_dir / "data_depth_annotated" / split_dir.name / drive_dir.name / "proj_depth"
                      / "groundtruth" / "image_02")
            date = drive_dir.name[:10]
            bin_dir = out_dir / "kitti_raw" / date / drive_dir.name / "velodyne_points" / "data"
            rows = []
            for sparse_path in sparse_paths:
                sparse = image_io.read_depth_png(sparse_path)
                gt_path = gt_dir / sparse_path.name
                gt = image_io.read_depth_png(gt_path) if gt_path.is_file() else np.zeros_like(sparse)
                bin_path = bin_dir / (sparse_path.stem + ".bin")
                points = bin_path.stat().st_size // 16 if bin_path.is_file() else 0
                rows.append((*_density(sparse), *_density(gt), points,
                             float(sparse[sparse > 0].min()) if sparse.any() else 0.0, float(sparse.max()),
                             float(gt[gt > 0].min()) if gt.any() else 0.0, float(gt.max())))
            if not rows:
                continue
            table = np.array(rows)
            drives[drive_dir.name] = {
                "split": split_dir.name,
                "frames": len(rows),
                "sparse_density": float(table[:, 0].mean()),
                "sparse_density_lower": float(table[:, 1].mean()),
                "gt_density": float(table[:, 2].mean()),
                "gt_density_lower": float(table[:, 3].mean()),
                "lidar_points_mean": float(table[:, 4].mean()),
                "sparse_depth_range_m": [float(table[:, 5].min()), float(table[:, 6].max())],
                "gt_depth_range_m": [float(table[:, 7].min()), float(table[:, 8].max())],
            }
    if not drives:
        raise ValueError(f"no depth PNGs found under {velodyne_root}")
    frames = sum(d["frames"] for d in drives.values())

    def weighted(key):
        return sum(d[key] * d["frames"] for d in drives.values()) / frames

    total = {
        "drives": len(drives),
        "frames": frames,
        "frames_per_split": {split: sum(d["frames"] for d in drives.values() if d["split"] == split)
                             for split in sorted({d["split"] for d in drives.values()})},
        **{key: weighted(key) for key in ("sparse_density", "sparse_density_lower", "gt_density",
                                          "gt_density_lower", "lidar_points_mean")},
        "sparse_depth_range_m": [min(d["sparse_depth_range_m"][0] for d in drives.values()),
                                 max(d["sparse_depth_range_m"][1] for d in drives.values())],
        "gt_depth_range_m": [min(d["gt_depth_range_m"][0] for d in drives.values()),
                             max(d["gt_depth_range_m"][1] for d in drives.values())],
    }
    selection = out_dir / "data_depth_selection" / "val_selection_cropped" / "image"
    total["selection_frames"] = len(list(selection.glob("*.png"))) if selection.is_dir() else 0
    return {"drives": drives, "total": total}


def format_summary(summary: dict) -> str:
    """A plain-text table of `summarize_dataset`'s figures (densities in %)."""
    header = (f"{'drive':<28} {'split':<5} {'frames':>6} {'sparse%':>8} {'sparse% low':>11} {'gt%':>6} "
              f"{'gt% low':>8} {'points':>8} {'gt depth m':>13}")
    lines = [header, "-" * len(header)]

    def row(name, split, d):
        low, high = d["gt_depth_range_m"]
        return (f"{name:<28} {split:<5} {d['frames']:>6} {100 * d['sparse_density']:>8.2f} "
                f"{100 * d['sparse_density_lower']:>11.2f} {100 * d['gt_density']:>6.2f} "
                f"{100 * d['gt_density_lower']:>8.2f} {d['lidar_points_mean']:>8.0f} {low:>6.1f}-{high:<6.1f}")

    for name, d in summary["drives"].items():
        lines.append(row(name, d["split"], d))
    lines.append("-" * len(header))
    lines.append(row("all", "", summary["total"]))
    return "\n".join(lines)
