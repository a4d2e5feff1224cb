"""The adaptation data set: recordings turned into KITTI depth-completion folders, without ground truth.

Each recording is split by time: its first frames train, its last `val_fraction` validate (a split
inside one drive, so that validation sees the same rig and streets, but later). For every frame a share
`hold_out` of its projected sweep is held out of the network's input (`self_check.choose_hold_out`, the
node's self-check draw, seeded by the frame's stamp):

- train:  velodyne_raw = the sweep without the held-out returns; groundtruth = the accumulated target
          (`targets.accumulate`: the sweep, held-out returns included, with the confirmed returns of its
          train neighbours). Validation sweeps never enter a training target;
- val:    velodyne_raw = the same; groundtruth = every return the network did not see: the held-out returns
          and the confirmed returns of its val neighbours (accumulated as for training, from val sweeps only).
          The trainer's validation figures are this hold-out error. Held-out returns alone lie on the
          sweep's own beams, where the input is dense: a model can improve there and get worse between the
          beams, which the neighbours' returns (shifted by the motion) also score.

The folders are the real KITTI ones (16-bit PNGs), so `dcros train` and `dcros eval-kitti` read them too.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_completion_ros import self_check
from depth_completion_ros.data.image_io import read_depth_png, write_depth_png
from depth_completion_ros.geometry import project

from .recordings import Recording
from .targets import DEFAULT_NEIGHBOURS, accumulate, frame_neighbours

MANIFEST = "adaptation_data.json"


@dataclass(frozen=True)
class DatasetOptions:
    neighbours: int = DEFAULT_NEIGHBOURS  # sweeps accumulated on each side of a frame
    val_fraction: float = 0.2  # the last share of each recording's frames, for validation
    hold_out: float = 0.1  # share of each sweep's returns held out of the input

    def __post_init__(self):
        if int(self.neighbours) != self.neighbours or self.neighbours < 0:
            raise ValueError(f"neighbours must be a non-negative integer, got {self.neighbours!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        self_check.check_fraction(self.hold_out)
        if self.hold_out <= 0:
            raise ValueError("hold_out must be > 0: validation scores the network on held-out returns")


def split_by_time(frame_ids: list[int], val_fraction: float) -> tuple[list[int], list[int]]:
    """(train, val) frame ids: the last round(val_fraction * n) frames validate (at least one when the
    fraction is > 0 and there are two frames or more)."""
    frame_ids = sorted(frame_ids)
    count = int(round(val_fraction * len(frame_ids)))
    if val_fraction > 0 and len(frame_ids) >= 2:
        count = max(count, 1)
    count = min(count, len(frame_ids) - 1) if frame_ids else 0
    return frame_ids[:len(frame_ids) - count], frame_ids[len(frame_ids) - count:]


class _Scans:
    """The recording's sweeps, the few last read kept (a frame's neighbours overlap the next frame's)."""

    def __init__(self, recording: Recording, keep: int):
        self.recording, self.keep, self._cache = recording, max(keep, 1), OrderedDict()

    def __getitem__(self, frame_id: int) -> np.ndarray:
        if frame_id not in self._cache:
            self._cache[frame_id] = self.recording.drive.read_velodyne(frame_id)
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        return self._cache[frame_id]


def _png_path(root: Path, top: str, split: str, drive: str, kind: str, frame_id: int) -> Path:
    return root / top / split / drive / "proj_depth" / kind / "image_02" / f"{frame_id:010d}.png"


def build_dataset(recordings: list[Recording], root: Path, options: DatasetOptions, progress: bool = False,
                  ground_truth=None) -> dict:
    """Write the data set under `root` (whose kitti_raw/ holds the recordings' drives); returns and writes
    its manifest. `ground_truth(recording, frame_id)`, where given, returns a depth image (m, 0 = none) or
    None, against which the targets' own accuracy is reported."""
    from tqdm import tqdm

    total = sum(len(r.frame_ids) for r in recordings)
    bar = tqdm(total=total, desc="targets", unit="frame", disable=not progress)
    records = []
    target_errors: list[np.ndarray] = []
    for recording in recordings:
        drive = recording.drive
        calibration = drive.calibration
        camera, lidar_to_camera = calibration.camera, calibration.lidar_to_camera
        frame_ids = recording.frame_ids
        train, val = split_by_time(frame_ids, options.val_fraction)
        position = {frame: index for index, frame in enumerate(frame_ids)}
        positions = {"train": {position[f] for f in train}, "val": {position[f] for f in val}}
        stamps = drive.image_timestamps_ns
        scans = _Scans(recording, 2 * options.neighbours + 2)
        densities, own_densities, held_out, unconfirmed, neighbour_points = [], [], [], 0, 0
        for frame_id in frame_ids:
            index = position[frame_id]
            split = "train" if index in positions["train"] else "val"
            sparse = project(scans[frame_id][:, :3], camera, lidar_to_camera)
            seed = self_check.frame_seed(int(stamps[frame_id]) if frame_id < len(stamps) else None, sparse)
            rows, cols, _ = self_check.choose_hold_out(sparse, options.hold_out, seed)
            network_input = self_check.without(sparse, rows, cols)
            neighbours = [(j - index, scans[frame_ids[j]], recording.poses[frame_ids[j]])
                          for j in frame_neighbours(index, len(frame_ids), options.neighbours, positions[split])]
            target, stats = accumulate(sparse, recording.poses[frame_id], neighbours, camera, lidar_to_camera)
            if split == "train":
                densities.append(stats.target_pixels / sparse.size)
                own_densities.append(stats.own_pixels / sparse.size)
                unconfirmed += stats.unconfirmed
                neighbour_points += stats.neighbour_points
                if ground_truth is not None:
                    truth = ground_truth(recording, frame_id)
                    if truth is not None:
                        both = (truth > 0) & (target > 0)
                        target_errors.append((target[both] - truth[both]).astype(np.float64))
            else:
                target = np.where(network_input > 0, 0.0, target).astype(np.float32)  # what the input lacks
                held_out.append(int(np.count_nonzero(target)))
            write_depth_png(_png_path(root, "data_depth_velodyne", split, drive.name, "velodyne_raw", frame_id),
                            network_input)
            write_depth_png(_png_path(root, "data_depth_annotated", split, drive.name, "groundtruth", frame_id),
                            target)
            bar.update(1)
        records.append({
            **recording.as_dict(), "train_frames": len(train), "val_frames": len(val),
            "target_density": float(np.mean(densities)) if densities else None,
            "sweep_density": float(np.mean(own_densities)) if own_densities else None,
            "neighbour_points_unconfirmed": (unconfirmed / neighbour_points) if neighbour_points else None,
            "val_unseen_returns_per_frame": float(np.mean(held_out)) if held_out else None,
        })
    bar.close()
    manifest = {"options": {"neighbours": options.neighbours, "val_fraction": options.val_fraction,
                            "hold_out": options.hold_out},
                "recordings": records,
                "train_frames": sum(r["train_frames"] for r in records),
                "val_frames": sum(r["val_frames"] for r in records),
                "target_vs_ground_truth": _error_summary(target_errors)}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _error_summary(errors: list[np.ndarray]) -> dict | None:
    """RMSE / MAE (mm) of the targets on the pixels that ground truth also has, over all frames' pixels."""
    if not errors:
        return None
    error = np.concatenate(errors)
    if not error.size:
        return None
    return {"pixels": int(error.size), "rmse_mm": float(1000 * np.sqrt(np.mean(error ** 2))),
            "mae_mm": float(1000 * np.mean(np.abs(error))),
            "share_off_by_more_than_1m": float(np.mean(np.abs(error) > 1.0)), "frames": len(errors)}


def kitti_ground_truth(kitti_root: Path):
    """`ground_truth` for build_dataset: the annotated PNG (data_depth_annotated/) of the KITTI raw frame under
    `kitti_root` whose camera stamp equals the frame's (a bag written by `dcros kitti2bag` keeps the drive's
    stamps), else of the same drive and frame number; None where there is none."""
    from depth_completion_ros.data.kitti import KittiRawDrive, list_raw_drives

    kitti_root = Path(kitti_root)
    by_stamp = {}
    for name in list_raw_drives(kitti_root / "kitti_raw"):
        drive = KittiRawDrive(kitti_root / "kitti_raw", name)
        for frame_id, stamp in enumerate(drive.image_timestamps_ns):
            by_stamp[int(stamp)] = (drive, frame_id)

    def lookup(recording: Recording, frame_id: int):
        stamps = recording.drive.image_timestamps_ns
        drive, source_frame = by_stamp.get(int(stamps[frame_id]) if frame_id < len(stamps) else -1,
                                           (recording.drive, frame_id))
        path = drive.annotation_path(kitti_root, source_frame)
        return None if path is None else read_depth_png(path)
    return lookup
