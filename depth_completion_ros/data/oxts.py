"""KITTI's OXTS RT3003 GPS/IMU packets and the ego motion they give, as the KITTI devkit and pykitti read them.

A raw drive's oxts/ folder holds one 30-value packet per frame (oxts/data/%010d.txt, fields `FIELDS`) and
their timestamps (oxts/timestamps.txt). A packet's pose (`pose_from_packet`) is KITTI's IMU -> world
transform: the spherical Mercator projection of latitude/longitude (scale = cos(latitude of the drive's
first packet), earth radius 6378137 m) plus the altitude, and the rotation R = Rz(yaw) Ry(pitch) Rx(roll)
of the IMU frame (x forward, y left, z up) in east-north-up. `imu_poses` puts the first packet's position
at the origin, as pykitti's `load_oxts_packets_and_poses` does. The arithmetic follows the devkit's
(`latlonToMercator`) operation for operation, so the poses are pykitti's to the last bits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

EARTH_RADIUS = 6378137.0  # m: the radius of the devkit's and pykitti's Mercator projection
FIELDS = ("lat", "lon", "alt", "roll", "pitch", "yaw", "vn", "ve", "vf", "vl", "vu", "ax", "ay", "az", "af",
          "al", "au", "wx", "wy", "wz", "wf", "wl", "wu", "pos_accuracy", "vel_accuracy", "navstat", "numsats",
          "posmode", "velmode", "orimode")


def rotx(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def roty(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotz(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def mercator(lat: float, lon: float, scale: float) -> tuple[float, float]:
    """(x east, y north) in metres of a latitude/longitude (deg), as pykitti's pose_from_oxts_packet."""
    # The devkit's order of operations: at y ~ 4e6 m one ulp is 5e-10 m, and a reordered formula drifts by
    # several of them.
    x = scale * lon * np.pi * EARTH_RADIUS / 180.0
    y = scale * EARTH_RADIUS * np.log(np.tan((90.0 + lat) * np.pi / 360.0))
    return float(x), float(y)


def parse_packet(line: str) -> np.ndarray:
    """The 30 values of one oxts/data/*.txt line."""
    values = np.array(line.split(), dtype=np.float64)
    if values.size != len(FIELDS):
        raise ValueError(f"an OXTS packet has {len(FIELDS)} values, got {values.size}: {line.strip()!r}")
    return values


def pose_from_packet(packet: np.ndarray, scale: float) -> np.ndarray:
    """4x4 IMU -> Mercator/ENU pose of a packet (KITTI devkit / pykitti), before subtracting an origin."""
    lat, lon, alt, roll, pitch, yaw = np.asarray(packet, dtype=np.float64)[:6]
    pose = np.eye(4)
    pose[:3, :3] = rotz(yaw) @ (roty(pitch) @ rotx(roll))  # pykitti's Rz.dot(Ry.dot(Rx)), bit for bit
    pose[:3, 3] = (*mercator(lat, lon, scale), alt)
    return pose


def mercator_scale(lat: float) -> float:
    """The Mercator scale of a drive whose first packet lies at latitude `lat` (deg)."""
    return float(np.cos(lat * np.pi / 180.0))


def imu_poses(packets: np.ndarray) -> np.ndarray:
    """(N, 4, 4) IMU -> world poses of a drive's packets (N, 30), as pykitti's load_oxts_packets_and_poses:
    the scale is the first packet's, and the world's origin is the first packet's position (so the first
    pose has zero translation; its rotation is the IMU's attitude in east-north-up)."""
    packets = np.asarray(packets, dtype=np.float64)
    if packets.ndim != 2 or packets.shape[1] != len(FIELDS):
        raise ValueError(f"OXTS packets must be an (N, {len(FIELDS)}) array, got shape {packets.shape}")
    if not len(packets):
        return np.zeros((0, 4, 4))
    scale = mercator_scale(packets[0, 0])
    poses = np.stack([pose_from_packet(packet, scale) for packet in packets])
    poses[:, :3, 3] -= poses[0, :3, 3].copy()
    return poses


def read_oxts(drive_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps (N,) int64 ns, packets (N, 30) float64) of a raw drive folder's oxts/: one packet per
    line of oxts/timestamps.txt, packet k from oxts/data/%010d.txt of k (the frame's number, as every
    other sensor's files of a synced drive). A missing folder or file: FileNotFoundError naming it; a
    packet without 30 values, an empty drive or data files beyond the timestamps: ValueError naming the file."""
    from depth_completion_ros.data.kitti import read_timestamps  # kitti.py reads its drives' poses from here

    oxts_dir = Path(drive_dir) / "oxts"
    if not oxts_dir.is_dir():
        raise FileNotFoundError(f"OXTS folder not found: {oxts_dir}")
    timestamps_path, data_dir = oxts_dir / "timestamps.txt", oxts_dir / "data"
    stamps = read_timestamps(timestamps_path)
    if not stamps.size:
        raise ValueError(f"{timestamps_path} holds no timestamps")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"OXTS data folder not found: {data_dir}")
    packets = np.empty((len(stamps), len(FIELDS)))
    for frame in range(len(stamps)):
        path = data_dir / f"{frame:010d}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"OXTS packet not found: {path} ({len(stamps)} lines in {timestamps_path})")
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if len(lines) != 1:
            raise ValueError(f"{path}: an OXTS file holds one packet (one line), got {len(lines)} lines")
        try:
            packets[frame] = parse_packet(lines[0])
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    extra = sorted(p.name for p in data_dir.glob("*.txt") if p.stem.isdigit() and int(p.stem) >= len(stamps))
    if extra:
        raise ValueError(f"{data_dir} holds packets beyond the {len(stamps)} lines of {timestamps_path} "
                         f"(e.g. {extra[0]})")
    return stamps, packets
