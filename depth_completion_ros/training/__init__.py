"""Training: trainer, configs, multi-stage schedules, pruning stability test.

- `config`: the YAML schema of `dcros train` (`load_config`, `TrainConfig`, `ConfigError` naming the bad key).
- `losses`: masked ground-truth losses (L1 / L2 / both on pixels with ground truth > 0) and the LSPKD feature
  and CDSPN black-box distillation objectives behind one criterion interface.
- `trainer`: `Trainer` — stages (CDSPN backbone -> refinement -> all), validation with the KITTI metrics,
  `best.pt` / `last.pt` in the project's checkpoint format, `log.csv`, exact resume.
- `distributed`: torchrun / DistributedDataParallel helpers (NCCL on CUDA, Gloo on CPU).
- `pruning`: the random layer pruning stability test (`dcros prune-test`).

`Trainer` and `find_resume_checkpoint` are imported on first use, so that reading a config stays light.
"""
from .config import ConfigError, TrainConfig, load_config

__all__ = ["ConfigError", "TrainConfig", "load_config", "Trainer", "find_resume_checkpoint"]


def __getattr__(name: str):
    if name in ("Trainer", "find_resume_checkpoint"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
