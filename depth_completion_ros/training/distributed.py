"""Process-group helpers: one code path for a single process and for `torchrun --nproc_per_node=N`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (plus MASTER_ADDR / MASTER_PORT); when they are present
`init_distributed` joins the process group with NCCL on CUDA and Gloo on CPU, and pins each process to
GPU LOCAL_RANK. Without them everything below degrades to no-ops on one process.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistributedContext:
    """Where this process stands: rank, world size, local rank, its device and the backend (or None)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True when a process group with more than one member is running."""
        return self.backend is not None and self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows progress and writes checkpoints."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """auto -> cuda:LOCAL_RANK when CUDA is available, else cpu; cuda without CUDA is an error."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {preference!r}")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was requested but CUDA is not available")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(f"LOCAL_RANK {local_rank} has no GPU (this node has {count}); "
                         "start at most one process per GPU")
    return torch.device("cuda", local_rank)


def init_distributed(device_preference: str = "auto", timeout_minutes: float = 30.0) -> DistributedContext:
    """Join the torchrun process group if the environment names one; otherwise a one-process context."""
    world_size = _env_int("WORLD_SIZE")
    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK")
    if world_size is None or world_size <= 1 or rank is None:
        return DistributedContext(device=resolve_device(device_preference, local_rank or 0))
    local_rank = rank if local_rank is None else local_rank
    device = resolve_device(device_preference, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes), **kwargs)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                              device=device, backend=backend)


def cleanup(context: DistributedContext) -> None:
    """Leave the process group (if this context joined one)."""
    if context.backend is not None and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (no-op on one process)."""
    if context.enabled:
        if context.device.type == "cuda":
            dist.barrier(device_ids=[context.device.index])
        else:
            dist.barrier()


def all_gather_objects(context: DistributedContext, value: Any) -> list[Any]:
    """[value of rank 0, value of rank 1, ...] on every rank (pickled; for small Python objects)."""
    if not context.enabled:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(context: DistributedContext, value: Any, source: int = 0) -> Any:
    """Rank `source`'s value on every rank."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]


def all_reduce_mean(context: DistributedContext, values: dict[str, float]) -> dict[str, float]:
    """Average of each named float over the ranks (same keys on every rank)."""
    if not context.enabled or not values:
        return dict(values)
    names = sorted(values)
    tensor = torch.tensor([float(values[name]) for name in names], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= context.world_size
    return dict(zip(names, tensor.tolist()))


def broadcast_buffers(context: DistributedContext, module: torch.nn.Module, source: int = 0) -> None:
    """Copy rank `source`'s buffers (BatchNorm running statistics) to every rank. DDP broadcasts them only at
    the start of each forward pass, so after the last step of an epoch every replica holds the statistics
    of its own last batch; this makes validation and checkpoints use one set."""
    if not context.enabled:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=source)


def shard(count: int, context: DistributedContext) -> list[int]:
    """This rank's share of indices 0..count-1 (rank, rank + world, ...): no sample twice, none left out."""
    return list(range(context.rank, count, context.world_size))
