"""CDSPN black-box distillation (CDSPN thesis, sec. 4.2) and an on-disk cache of teacher predictions.

Only the teacher's predicted depth is used, never its features, so the teacher can be any
function from inputs to depth ("a black box, or only accessible via API"):

    L_dd = MSE(D_t, D_s)                        (4.1)
    L_gd = MSE(g(D_t), g(D_s))                  (4.2)
    L_GT = MSE over pixels with D_gt > 0 of (D_gt, D_s)   (4.4)
    L    = (1 - l1 - l2) * L_GT + l1 * L_dd + l2 * L_gd,   l1 = l2 = 0.1   (4.3, 4.5)

The thesis says only that "g(x) calculates the gradient of x"; we use forward finite differences,
g_x = D[:, :, y, x+1] - D[:, :, y, x] and g_y = D[:, :, y+1, x] - D[:, :, y, x], without padding.
The thesis recommends caching the teacher's predictions; `TeacherCache` does that.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._common import check_depth_pair, masked_mean


def depth_gradients(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of a [B, 1, H, W] depth map: (g_x [B, 1, H, W-1], g_y [B, 1, H-1, W])."""
    if not isinstance(depth, torch.Tensor) or depth.dim() != 4:
        raise ValueError(f"depth must be a tensor [B, 1, H, W], got {getattr(depth, 'shape', type(depth))}")
    return depth[..., :, 1:] - depth[..., :, :-1], depth[..., 1:, :] - depth[..., :-1, :]


def gradient_mse(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """MSE between the forward-difference gradients of two depth maps, pooled over both directions:
    (sum (dg_x)^2 + sum (dg_y)^2) / (number of g_x + number of g_y entries)."""
    first_x, first_y = depth_gradients(first)
    second_x, second_y = depth_gradients(second)
    squared = (first_x - second_x).square().sum() + (first_y - second_y).square().sum()
    count = first_x.numel() + first_y.numel()
    return squared / max(count, 1)


class BlackBoxDistillationLoss(nn.Module):
    """CDSPN loss L = (1 - l1 - l2) * MSE_mask(D_s, D_gt) + l1 * MSE(D_t, D_s) + l2 * MSE(g(D_t), g(D_s)).

    MSE_mask averages over pixels with D_gt > 0 only (0 when a batch has none); MSE(D_t, D_s)
    over all pixels; g = `depth_gradients` (forward differences), pooled as in `gradient_mse`.
    Depths are [B, 1, H, W] in metres; the teacher depth is detached. Defaults l1 = l2 = 0.1 (thesis).
    """

    def __init__(self, depth_weight: float = 0.1, gradient_weight: float = 0.1):
        super().__init__()
        if depth_weight < 0 or gradient_weight < 0 or depth_weight + gradient_weight > 1:
            raise ValueError(
                "depth_weight and gradient_weight must be >= 0 with a sum <= 1, "
                f"got {depth_weight} and {gradient_weight}"
            )
        self.depth_weight = float(depth_weight)
        self.gradient_weight = float(gradient_weight)

    def forward_with_terms(
        self, student_depth: torch.Tensor, teacher_depth: torch.Tensor, ground_truth: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(L, {"ground_truth_mse", "teacher_depth_mse", "teacher_gradient_mse": unweighted terms})."""
        check_depth_pair(student_depth, teacher_depth, "student depth", "teacher depth")
        check_depth_pair(student_depth, ground_truth, "student depth", "ground truth")
        teacher = teacher_depth.detach()
        ground_truth_term = masked_mean((student_depth - ground_truth).square(), ground_truth > 0)
        depth_term = (student_depth - teacher).square().mean()
        gradient_term = gradient_mse(teacher, student_depth)
        total = ((1.0 - self.depth_weight - self.gradient_weight) * ground_truth_term
                 + self.depth_weight * depth_term + self.gradient_weight * gradient_term)
        return total, {"ground_truth_mse": ground_truth_term, "teacher_depth_mse": depth_term,
                       "teacher_gradient_mse": gradient_term}

    def forward(self, student_depth: torch.Tensor, teacher_depth: torch.Tensor,
                ground_truth: torch.Tensor) -> torch.Tensor:
        """L (scalar)."""
        return self.forward_with_terms(student_depth, teacher_depth, ground_truth)[0]


class TeacherCacheError(ValueError):
    """A cache directory that cannot be used: made for another teacher or storage, or unreadable."""


# Storage formats. "uint16" is the KITTI convention (depth * 256, 0 = none; 1/256 m steps up to
# 256 m, half the bytes of float32); "float32" keeps the prediction exactly. float16 is not offered:
# its steps reach 6 cm beyond 64 m, coarser than the KITTI quantisation.
STORAGE_FORMATS = ("uint16", "float32")
_META_FILE = "teacher.json"
_META_VERSION = 1
_UINT16_SCALE = 256.0


class TeacherCache:
    """Runs a teacher once per sample name and keeps its predictions on disk for later epochs.

    `teacher(*inputs)` takes batched inputs (e.g. rgb [B,3,H,W], sparse [B,1,H,W]) and returns depth
    [B, 1, H, W] (or a tuple whose first item is that). `get(names, *inputs)` returns the teacher
    depth [B, 1, H, W] float32 for the batch, running the teacher (under no_grad) only on the samples
    whose entry is missing, unreadable or of another size, and storing those as one .npy per name
    under `cache_dir` (written to a temporary file and renamed, so an interrupted run leaves no
    half-written entry). What `get` returns is always what the file holds, so the first epoch and
    later ones see identical values. `cache_dir/teacher.json` records `teacher_id` and the storage
    format; opening the directory with another id or format raises TeacherCacheError.
    """

    def __init__(self, cache_dir: str | os.PathLike, teacher: Callable[..., torch.Tensor], teacher_id: str,
                 storage: str = "uint16"):
        if not callable(teacher):
            raise ValueError("teacher must be callable: inputs -> depth [B, 1, H, W]")
        if not isinstance(teacher_id, str) or not teacher_id:
            raise ValueError(f"teacher_id must be a non-empty string, got {teacher_id!r}")
        if storage not in STORAGE_FORMATS:
            raise ValueError(f"storage must be one of {STORAGE_FORMATS}, got {storage!r}")
        self.cache_dir = Path(cache_dir)
        self.teacher = teacher
        self.teacher_id = teacher_id
        self.storage = storage
        self.hits = 0
        self.misses = 0
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._claim_directory()

    def _claim_directory(self) -> None:
        meta_path = self.cache_dir / _META_FILE
        wanted = {"teacher_id": self.teacher_id, "storage": self.storage, "version": _META_VERSION}
        if not meta_path.exists():
            if any(self.cache_dir.glob("*.npy")):
                raise TeacherCacheError(f"{self.cache_dir} holds .npy files but no {_META_FILE}: "
                                        "refusing to mix them with this teacher's predictions")
            _atomic_write_bytes(meta_path, json.dumps(wanted, indent=2).encode())
        try:
            found = json.loads(meta_path.read_text())
        except (OSError, ValueError) as error:
            raise TeacherCacheError(f"cannot read {meta_path}: {error}") from error
        if not isinstance(found, dict):
            raise TeacherCacheError(f"{meta_path} is not a JSON object")
        if found.get("teacher_id") != self.teacher_id:
            raise TeacherCacheError(
                f"{self.cache_dir} caches teacher {found.get('teacher_id')!r}, not {self.teacher_id!r}: "
                "use another cache directory")
        if found.get("storage") != self.storage or found.get("version") != _META_VERSION:
            raise TeacherCacheError(
                f"{self.cache_dir} stores {found.get('storage')!r} (version {found.get('version')}), "
                f"not {self.storage!r} (version {_META_VERSION})")

    def path_for(self, name: str) -> Path:
        """File of one sample: a readable form of its name plus a hash, so distinct names never collide."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"sample name must be a non-empty string, got {name!r}")
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "sample"
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:12]
        return self.cache_dir / f"{readable}-{digest}.npy"

    def _encode(self, depth: np.ndarray) -> np.ndarray:
        if self.storage == "float32":
            return depth.astype(np.float32)
        scaled = np.rint(np.clip(np.nan_to_num(depth, nan=0.0), 0.0, 65535 / _UINT16_SCALE) * _UINT16_SCALE)
        return scaled.astype(np.uint16)

    def _decode(self, stored: np.ndarray) -> np.ndarray:
        if self.storage == "float32":
            return stored.astype(np.float32)
        return stored.astype(np.float32) / _UINT16_SCALE

    def _load(self, name: str, size: tuple[int, int]) -> np.ndarray | None:
        """Cached depth [H, W] float32, or None when missing, unreadable, of another dtype or size."""
        path = self.path_for(name)
        expected_dtype = np.uint16 if self.storage == "uint16" else np.float32
        try:
            stored = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if stored.dtype != expected_dtype or stored.shape != size:
            return None
        return self._decode(stored)

    def get(self, names: Sequence[str], *inputs: torch.Tensor) -> torch.Tensor:
        """Teacher depth [B, 1, H, W] float32 for the samples `names` (len B) of the batched `inputs`.

        The result lies on the first input's device and carries no gradient.
        """
        if isinstance(names, str):
            raise ValueError("names must be a sequence of sample names, not one string")
        names = list(names)
        if not inputs:
            raise ValueError("get() needs the batched teacher inputs after the names")
        for index, tensor in enumerate(inputs):
            if not isinstance(tensor, torch.Tensor) or tensor.dim() < 3 or tensor.shape[0] != len(names):
                raise ValueError(f"input {index} must be a batched tensor with {len(names)} samples "
                                 f"(one per name), got {getattr(tensor, 'shape', type(tensor))}")
        size = tuple(int(v) for v in inputs[0].shape[-2:])
        depths: list[np.ndarray | None] = [self._load(name, size) for name in names]
        missing = [index for index, depth in enumerate(depths) if depth is None]
        self.hits += len(names) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = self._run_teacher(missing, inputs, size)
            for index, depth in zip(missing, computed):
                encoded = self._encode(depth)
                _atomic_save_npy(self.path_for(names[index]), encoded)
                depths[index] = self._decode(encoded)
        batch = torch.from_numpy(np.stack(depths)[:, None])
        return batch.to(inputs[0].device)

    def _run_teacher(self, indices: list[int], inputs: Sequence[torch.Tensor], size: tuple[int, int]) -> np.ndarray:
        selector = torch.as_tensor(indices, device=inputs[0].device)
        with torch.no_grad():
            output = self.teacher(*(tensor.index_select(0, selector.to(tensor.device)) for tensor in inputs))
        if isinstance(output, (tuple, list)):
            output = output[0]
        expected = (len(indices), 1, *size)
        if not isinstance(output, torch.Tensor) or tuple(output.shape) != expected:
            raise ValueError(f"teacher must return depth of shape {expected}, "
                             f"got {getattr(output, 'shape', type(output))}")
        return output.detach().to("cpu", torch.float32).numpy()[:, 0]


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` through a temporary file in the same directory and a rename."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """np.save through a temporary file and a rename, so readers never see a partial file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, array, allow_pickle=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
