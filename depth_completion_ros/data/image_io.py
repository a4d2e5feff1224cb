"""KITTI image files: 16-bit depth PNGs (depth = value / 256 m, 0 = no value) and 8-bit RGB PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

KITTI_DEPTH_SCALE = 256.0
_UINT16_MAX = np.iinfo(np.uint16).max


def depth_to_kitti_uint16(depth_m: np.ndarray) -> np.ndarray:
    """Metres -> KITTI uint16. Valid depths become at least 1 (as the devkit writes), so they stay valid."""
    depth_m = np.asarray(depth_m, dtype=np.float64)
    if depth_m.ndim != 2:
        raise ValueError(f"depth image must be 2-D (H, W), got shape {depth_m.shape}")
    valid = np.isfinite(depth_m) & (depth_m > 0)
    scaled = np.zeros(depth_m.shape, dtype=np.float64)
    scaled[valid] = np.clip(np.round(depth_m[valid] * KITTI_DEPTH_SCALE), 1, _UINT16_MAX)
    return scaled.astype(np.uint16)


def write_depth_png(path: str | Path, depth_m: np.ndarray) -> None:
    """Write a depth map in metres (0 or non-finite = invalid) as a KITTI 16-bit PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(depth_to_kitti_uint16(depth_m)).save(path, format="PNG")


def read_depth_png(path: str | Path) -> np.ndarray:
    """Read a KITTI 16-bit depth PNG as float32 metres (0 = no value). Rejects 8-bit or colour PNGs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth PNG not found: {path}")
    with Image.open(path) as image:
        if image.mode not in ("I;16", "I;16B", "I"):
            raise ValueError(f"{path}: not a 16-bit single-channel depth PNG (PIL mode {image.mode!r})")
        raw = np.array(image)
    if raw.dtype != np.uint16:
        if raw.min() < 0 or raw.max() > _UINT16_MAX:
            raise ValueError(f"{path}: values outside the uint16 range")
        raw = raw.astype(np.uint16)
    return raw.astype(np.float32) / np.float32(KITTI_DEPTH_SCALE)


def write_rgb_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image as PNG."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"RGB image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="PNG")


def read_rgb_png(path: str | Path) -> np.ndarray:
    """Read a colour (or grey) image as (H, W, 3) uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))
