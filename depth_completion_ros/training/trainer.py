"""The offline trainer behind `dcros train`: stages, distillation, validation, checkpoints, resume, DDP.

One `Trainer` runs on one process or on each process of a `torchrun` group (DistributedDataParallel,
a DistributedSampler re-seeded every epoch, validation split across ranks and gathered on rank 0).

Output folder (written by rank 0):
    last.pt     the project's checkpoint format (`models.checkpoint`), saved at the end of every epoch and
                every `save_every_steps` steps; its metadata holds the config, epoch, step, stage, the last
                validation figures, the training data and `training_state` (optimizer, scheduler,
                criterion adapters, per-rank RNG states, position inside the epoch) for `--resume`. All of
                it is plain tensors and containers, so the file loads with `torch.load(weights_only=True)`.
    best.pt     the same format without `training_state`, whenever the validation figure `best_metric`
                (RMSE unless the config names another) improves (only in
                stages that run the model's full forward pass: a CDSPN backbone stage is validated on its
                coarse output and logged, but is not a deployable model).
    log.csv     one row per epoch: epoch, step, stage, lr, train loss and its terms, validation RMSE / MAE /
                iRMSE / iMAE (mm, 1/km), seconds.
    tensorboard/  the same figures, when the `tensorboard` package is installed (optional).
    teacher_cache/  cached black-box teacher predictions (default location).

Reproducibility: seeded model initialisation, sampler order from (seed, epoch), augmentation draws from
(seed, epoch, index) in the dataset, seeded loader workers, and `torch.use_deterministic_algorithms(True,
warn_only=True)`. A run resumed from `last.pt` continues at the same step with the same state, so on CPU it
ends with the weights of an uninterrupted run.
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from depth_completion_ros.data.kitti import depth_completion_data
from depth_completion_ros.distill import TeacherCache
from depth_completion_ros.evaluation.metrics import DepthMetrics
from depth_completion_ros.models import build_model
from depth_completion_ros.models.checkpoint import load_checkpoint, load_model, save_checkpoint

from .config import StageConfig, TrainConfig
from .distributed import (
    DistributedContext,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_buffers,
    broadcast_object,
    resolve_device,
    shard,
)
from .losses import build_criterion

LOGGER = logging.getLogger(__name__)
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
LOG_FILE = "log.csv"
VAL_COLUMNS = ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km")
CHECK_EVERY = 20  # steps between reading the loss back (finite check, progress bar)


# ------------------------------------------------------------------------------------ reproducibility
def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic kernels where PyTorch has them (a warning, not an error, where it does not)."""
    if deterministic and device.type == "cuda":
        # cuBLAS needs a fixed workspace for reproducible GEMMs; it must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker init: derive NumPy/Python seeds from the worker's torch seed (itself derived
    from the loader's seeded generator), so workers never share or vary their random streams."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def capture_rng_state() -> dict:
    """Python, NumPy, torch CPU and CUDA generator states as plain containers and tensors."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    """Inverse of `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _evenly_spaced(count: int, limit: int | None) -> list[int]:
    """All indices, or `limit` of them spread over the whole set (not just the first drive)."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, limit)})


def _file_digest(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class _StudentObjective(nn.Module):
    """Student forward + criterion in one module, so DistributedDataParallel synchronises the gradients of
    the student and of the criterion's adapters together. The teacher stays outside (never trained)."""

    def __init__(self, model: nn.Module, criterion: nn.Module, refine: bool = True):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.refine = refine

    def forward(self, rgb, sparse, gt, teacher_depth=None, teacher_features=None, views=None):
        """(loss, {term: detached tensor}); `views` for a criterion that needs_views."""
        kwargs = {} if self.refine else {"refine": False}
        if getattr(self.criterion, "needs_features", False):
            depth, features = self.model(rgb, sparse, return_features=True, **kwargs)
        else:
            depth, features = self.model(rgb, sparse, **kwargs), None
        if views is not None:
            return self.criterion(depth, gt, teacher_depth, teacher_features, features, views=views)
        return self.criterion(depth, gt, teacher_depth, teacher_features, features)


class _MissingTeacher:
    """Teacher stand-in for a cache-only black-box run: a missing entry is an error, not a silent zero."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = cache_dir

    def __call__(self, *inputs):
        raise ValueError(f"the teacher cache {self.cache_dir} lacks predictions for this batch and no "
                         "distillation.teacher checkpoint is configured to compute them")


# ---------------------------------------------------------------------------------------- trainer
class Trainer:
    """Trains `config.model` through `config.stages` on the KITTI-layout data of `config.data`.

    out_dir: output folder (default: config.output, else runs/<model name>).
    resume: a `last.pt` to continue from (model, optimizer, scheduler, stage, epoch, step, RNG states).
    context: the process group (`distributed.init_distributed()`); default one process on config.device.
    save_rank_weights: after `fit`, every rank writes its final state_dict to out_dir/rank_weights/rank<r>.pt
    (a check that the DDP replicas agree).
    """

    def __init__(self, config: TrainConfig, out_dir: str | Path | None = None, resume: str | Path | None = None,
                 context: DistributedContext | None = None, progress: bool | None = None,
                 save_rank_weights: bool = False):
        config.validate()
        self.config = config
        self.context = context or DistributedContext(device=resolve_device(config.device))
        self.device = self.context.device
        self.out_dir = Path(out_dir or config.output or Path("runs") / config.model.name)
        self.progress = config.progress if progress is None else progress
        self.save_rank_weights = save_rank_weights
        self.stages: list[StageConfig] = config.stage_list()
        configure_determinism(config.deterministic, self.device)
        seed_everything(config.seed)

        data = config.data
        views = config.loss.photometric_views if config.loss.photometric_weight > 0 else 0
        self.train_set = depth_completion_data(data.root, data.train_split, crop=data.crop, augment=data.augment,
                                               seed=config.seed, cameras=data.cameras, random_crop=data.random_crop,
                                               jitter=data.jitter, views=views)
        self.train_indices = _evenly_spaced(len(self.train_set), data.limit_train)
        self.val_set = None
        self.val_indices: list[int] = []
        if data.val_split is not None:
            self.val_set = depth_completion_data(data.root, data.val_split, crop=data.crop, augment=False,
                                                 seed=config.seed, cameras=data.cameras)
            self.val_indices = _evenly_spaced(len(self.val_set), data.limit_val)

        try:
            self.model = build_model(config.model.name, **config.model.kwargs)
        except TypeError as error:
            raise ValueError(f"model.kwargs do not fit {config.model.name!r}: {error}") from None
        if config.model.init is not None and resume is None:
            self._initialise_from(Path(config.model.init))
        self.model.to(self.device)
        self._check_stages_fit_model()

        self.teacher, self.teacher_cache = self._build_teacher()
        self.criterion = build_criterion(config.loss, config.distillation, self.model, self.teacher).to(self.device)

        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps taken
        self.batches_done = 0  # batches of the current epoch already trained (mid-epoch checkpoints)
        self.best_value = math.inf  # the best validation `config.best_metric` so far
        self.last_val: dict | None = None
        self.history: list[dict] = []
        self._epoch_sums: dict[str, float] = {}
        self._epoch_seconds = 0.0
        self._stage_index: int | None = None
        self.optimizer = None
        self.scheduler = None
        self._step_module: nn.Module | None = None
        self._frozen_norms: list[nn.Module] = []
        self._tensorboard = None
        self._pending_state: dict | None = None
        self._trainable: list[nn.Parameter] = []
        if resume is not None:
            self._load_resume(Path(resume))

    # ------------------------------------------------------------------------------------ set-up
    def _check_stages_fit_model(self) -> None:
        accepts_refine = "refine" in inspect.signature(self.model.forward).parameters
        for index, stage in enumerate(self.stages):
            if not stage.refine and not accepts_refine:
                raise ValueError(f"stages[{index}].refine: false needs a model whose forward takes `refine` "
                                 f"(CDSPN); {self.config.model.name!r} does not")
            if stage.train != "all" and not callable(getattr(self.model, f"{stage.train}_parameters", None)):
                raise ValueError(f"stages[{index}].train: {stage.train!r} needs a model with "
                                 f"{stage.train}_parameters() (CDSPN); {self.config.model.name!r} has none")

    def _initialise_from(self, path: Path) -> None:
        checkpoint = load_checkpoint(path)
        if checkpoint.architecture != self.config.model.name:
            raise ValueError(f"model.init: {path} holds a {checkpoint.architecture}, not a {self.config.model.name}")
        new_layers = self.config.model.new_layers
        modules = dict(self.model.named_modules())
        unknown = [name for name in new_layers if not name or name not in modules]
        if unknown:
            raise ValueError(f"model.new_layers: {self.config.model.name} {self.config.model.kwargs} has no "
                             f"module {', '.join(unknown)}")
        state_dict = checkpoint.state_dict
        adapt = getattr(self.model, "adapt_init_state_dict", None)
        if callable(adapt):
            state_dict = adapt(state_dict, checkpoint.kwargs)
            if state_dict.keys() != checkpoint.state_dict.keys():
                LOGGER.info("model.init: %s adapted to %s %s", path, self.config.model.name, self.config.model.kwargs)
        try:
            result = self.model.load_state_dict(state_dict, strict=not new_layers)
        except RuntimeError as error:
            hint = "" if new_layers else (" (modules that model.kwargs adds and the checkpoint lacks can start "
                                          "from their own initialisation: name them in model.new_layers)")
            raise ValueError(f"model.init: the weights of {path} do not fit {self.config.model.name} "
                             f"{self.config.model.kwargs}: {error}{hint}") from None
        if new_layers:  # only the named modules may be missing; nothing may be left over
            missing = [key for key in result.missing_keys
                       if not any(key == n or key.startswith(n + ".") for n in new_layers)]
            if missing or result.unexpected_keys:
                raise ValueError(f"model.init: the weights of {path} do not fit {self.config.model.name} "
                                 f"{self.config.model.kwargs} with new_layers {new_layers}: missing "
                                 f"{missing or 'none'}, unexpected {result.unexpected_keys or 'none'}")
            LOGGER.info("model.init: %s start from their own initialisation (not in %s)", ", ".join(new_layers), path)

    def _build_teacher(self):
        distillation = self.config.distillation
        if distillation.type == "none":
            return None, None
        teacher = None
        if distillation.teacher is not None:
            teacher, _ = load_model(distillation.teacher)
            teacher.to(self.device).eval()
            for parameter in teacher.parameters():
                parameter.requires_grad_(False)
        cache = None
        if distillation.type == "blackbox" and distillation.cache:
            cache_dir = Path(distillation.cache_dir) if distillation.cache_dir else self.out_dir / "teacher_cache"
            if distillation.teacher_id is not None:
                teacher_id = distillation.teacher_id
            else:  # the checkpoint's bytes and the input crop decide what a cached prediction means
                crop = self.config.data.crop
                crop_label = f"crop{crop[0]}x{crop[1]}" if crop else "full"
                teacher_id = (f"{teacher.architecture}-{_file_digest(Path(distillation.teacher))}-{crop_label}")
            cache = TeacherCache(cache_dir, teacher if teacher is not None else _MissingTeacher(cache_dir),
                                 teacher_id=teacher_id, storage=distillation.storage)
        return teacher, cache

    def stage_of_epoch(self, epoch: int) -> tuple[int, int]:
        """(stage index, first epoch of that stage) for a 0-based global epoch."""
        start = 0
        for index, stage in enumerate(self.stages):
            if epoch < start + stage.epochs:
                return index, start
            start += stage.epochs
        raise ValueError(f"epoch {epoch} is past the last stage ({self.config.total_epochs} epochs)")

    def _enter_stage(self, index: int) -> None:
        """Freeze / unfreeze for stage `index`, build its optimizer and schedule, (re)wrap for DDP."""
        stage = self.stages[index]
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        chosen = self.model.parameters() if stage.train == "all" else getattr(self.model, f"{stage.train}_parameters")()
        for parameter in chosen:
            parameter.requires_grad_(True)
        # Normalisation layers whose parameters are frozen keep their running statistics too.
        self._frozen_norms = [m for m in self.model.modules() if isinstance(m, _BatchNorm)
                              and any(True for _ in m.parameters())
                              and not any(p.requires_grad for p in m.parameters())]
        trainable = [p for p in self.model.parameters() if p.requires_grad] + list(self.criterion.parameters())
        options = self.config.optimizer
        lr = stage.lr if stage.lr is not None else options.lr
        optimizer_class = torch.optim.AdamW if options.name == "adamw" else torch.optim.Adam
        self.optimizer = optimizer_class(trainable, lr=lr, betas=tuple(options.betas),
                                         weight_decay=options.weight_decay)
        self.scheduler = self._build_scheduler(stage)
        self._trainable = trainable
        step_module = _StudentObjective(self.model, self.criterion, refine=stage.refine)
        if self.context.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # static_graph: every step of a stage runs the same graph, and some parameters may be unused
            # throughout (a frozen part, the LSPKD students' adapters without feature distillation).
            step_module = DistributedDataParallel(step_module, device_ids=device_ids, static_graph=True)
        self._step_module = step_module
        self._stage_index = index

    def _build_scheduler(self, stage: StageConfig):
        schedule = self.config.schedule
        if schedule.type == "constant":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=1.0)
        if schedule.type == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=schedule.step_size, gamma=schedule.gamma)
        if schedule.type == "multistep":
            return torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=list(schedule.milestones),
                                                        gamma=schedule.gamma)
        return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=stage.epochs, eta_min=schedule.min_lr)

    def _loader(self, dataset, indices: list[int], batch_size: int, shuffle: bool, epoch: int,
                skip_batches: int = 0) -> DataLoader:
        if shuffle:
            sampler = DistributedSampler(range(len(indices)), num_replicas=self.context.world_size,
                                         rank=self.context.rank, shuffle=True, seed=self.config.seed, drop_last=False)
            sampler.set_epoch(epoch)
            order = [indices[i] for i in sampler][skip_batches * batch_size:]
        else:
            order = [indices[i] for i in shard(len(indices), self.context)]
        generator = torch.Generator()
        generator.manual_seed(self.config.seed * 1_000_003 + epoch * 1_009 + self.context.rank)
        return DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=self.config.data.workers,
                          worker_init_fn=seed_worker, generator=generator,
                          pin_memory=self.device.type == "cuda", drop_last=False)

    # -------------------------------------------------------------------------------- training
    def fit(self, max_epochs: int | None = None) -> dict:
        """Train until the last stage ends (or for at most `max_epochs` more epochs); returns a summary."""
        if self.context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._open_tensorboard()
        barrier(self.context)
        total = self.config.total_epochs
        end = total if max_epochs is None else min(total, self.epoch + max_epochs)
        if self.config.validate_start and self.step == 0 and self.batches_done == 0 and not self.history:
            self._validate_start()
        try:
            while self.epoch < end:
                stage_index, _ = self.stage_of_epoch(self.epoch)
                if stage_index != self._stage_index:
                    self._enter_stage(stage_index)
                self._run_epoch(stage_index)
        finally:
            if self._tensorboard is not None:
                self._tensorboard.flush()
        if self.save_rank_weights:
            path = self.out_dir / "rank_weights" / f"rank{self.context.rank}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, path)
        barrier(self.context)
        return {"epochs": self.epoch, "step": self.step, "best_metric": self.config.best_metric,
                "best_val": self.best_value,
                "last_val": self.last_val, "out_dir": str(self.out_dir)}

    def _validate_start(self) -> None:
        """Score the starting weights (log row of epoch 0, stage "start") and keep them as best.pt."""
        started = time.perf_counter()
        val = self.validate(refine=self.stages[0].refine)
        if not val:
            return
        self.last_val = val
        self.best_value = val[self.config.best_metric]
        row = {"epoch": 0, "step": 0, "stage": "start", "lr": float("nan"), "train_loss": float("nan")}
        row.update({f"val_{column}": val[column] for column in VAL_COLUMNS})
        row["seconds"] = round(time.perf_counter() - started, 3)
        self.history.append(row)
        if self.context.is_main:
            self._write_log_row(row)
            LOGGER.info("starting weights: val RMSE %.1f mm, MAE %.1f mm", val["rmse_mm"], val["mae_mm"])
            save_checkpoint(self.out_dir / BEST_CHECKPOINT, self.model, self._metadata(with_state=False))
        barrier(self.context)

    def _views(self, batch: dict, rgb: torch.Tensor) -> dict | None:
        """The neighbouring views a photometric criterion compares the frame with (None for the others)."""
        if not getattr(self.criterion, "needs_views", False):
            return None
        return {"rgb": rgb, "K": batch["K"].to(self.device), "views": batch["views"].to(self.device, non_blocking=True),
                "poses": batch["view_poses"].to(self.device), "valid": batch["view_valid"].to(self.device)}

    def _teacher_outputs(self, names, rgb, sparse):
        if not getattr(self.criterion, "needs_teacher", False):
            return None, None
        if self.teacher_cache is not None:
            return self.teacher_cache.get(list(names), rgb, sparse), None
        with torch.no_grad():
            if getattr(self.criterion, "needs_features", False):
                return self.teacher(rgb, sparse, return_features=True)
            return self.teacher(rgb, sparse), None

    def _run_epoch(self, stage_index: int) -> None:
        stage = self.stages[stage_index]
        epoch = self.epoch
        batch_size = stage.batch_size or self.config.data.batch_size
        self.train_set.random_crop = stage.random_crop or self.config.data.random_crop
        self.train_set.set_epoch(epoch)
        loader = self._loader(self.train_set, self.train_indices, batch_size, shuffle=True, epoch=epoch,
                              skip_batches=self.batches_done)
        self.model.train()
        for module in self._frozen_norms:
            module.eval()
        started = time.perf_counter()
        # Loss sums stay on the device: reading them back every step would stall the GPU queue.
        sum_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        sums = {name: torch.tensor(value, dtype=sum_dtype, device=self.device)
                for name, value in self._epoch_sums.items()}
        total_batches = self.batches_done + len(loader)
        show = self.progress and self.context.is_main
        if show:
            from tqdm import tqdm

            batches = tqdm(loader, total=total_batches, initial=self.batches_done, leave=False, dynamic_ncols=True,
                           desc=f"epoch {epoch + 1}/{self.config.total_epochs} [{stage.name}]")
        else:
            batches = loader
        for batch in batches:
            rgb = batch["rgb"].to(self.device, non_blocking=True)
            sparse = batch["sparse"].to(self.device, non_blocking=True)
            gt = batch["gt"].to(self.device, non_blocking=True)
            teacher_depth, teacher_features = self._teacher_outputs(batch["name"], rgb, sparse)
            loss, terms = self._step_module(rgb, sparse, gt, teacher_depth, teacher_features, self._views(batch, rgb))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.optimizer.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self._trainable, self.config.optimizer.grad_clip_norm)
            self.optimizer.step()
            self.step += 1
            self.batches_done += 1
            for name, value in {"loss": loss.detach(), **terms}.items():
                sums[name] = sums.get(name, torch.zeros((), dtype=sum_dtype, device=self.device)) + value.to(sum_dtype)
            if self.batches_done % CHECK_EVERY == 0 or self.batches_done == total_batches:
                self._check_finite(sums["loss"], stage, epoch)
                if show:
                    batches.set_postfix(loss=f"{loss.item():.4g}", **self._val_postfix())
            if (self.config.save_every_steps and self.step % self.config.save_every_steps == 0
                    and self.batches_done < total_batches):
                self._epoch_sums = {k: float(v) for k, v in sums.items()}
                self._epoch_seconds += time.perf_counter() - started
                started = time.perf_counter()
                self._save_last()
        if show:
            batches.close()

        broadcast_buffers(self.context, self.model)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        train_means = all_reduce_mean(self.context, {k: float(v) / max(self.batches_done, 1) for k, v in sums.items()})
        val = self.validate(refine=stage.refine)
        seconds = self._epoch_seconds + time.perf_counter() - started
        self.epoch += 1
        self.batches_done = 0
        self._epoch_sums = {}
        self._epoch_seconds = 0.0
        self.last_val = val
        row = {"epoch": self.epoch, "step": self.step, "stage": stage.name, "lr": lr,
               "train_loss": train_means.pop("loss", float("nan"))}
        row.update({f"train/{name}": value for name, value in sorted(train_means.items())})
        for column in VAL_COLUMNS:
            row[f"val_{column}"] = val[column] if val else float("nan")
        row["seconds"] = round(seconds, 3)
        self.history.append(row)
        improved = bool(val) and stage.refine and val[self.config.best_metric] < self.best_value
        if improved:
            self.best_value = val[self.config.best_metric]
        if self.context.is_main:
            self._write_log_row(row)
            if val:
                LOGGER.info("epoch %d/%d [%s] step %d: loss %.5g, val RMSE %.1f mm, MAE %.1f mm (%.1f s)",
                            self.epoch, self.config.total_epochs, stage.name, self.step, row["train_loss"],
                            val["rmse_mm"], val["mae_mm"], seconds)
            else:
                LOGGER.info("epoch %d/%d [%s] step %d: loss %.5g (%.1f s)", self.epoch, self.config.total_epochs,
                            stage.name, self.step, row["train_loss"], seconds)
        self._save_last()
        if improved and self.context.is_main:
            save_checkpoint(self.out_dir / BEST_CHECKPOINT, self.model, self._metadata(with_state=False))
        barrier(self.context)

    def _val_postfix(self) -> dict:
        """The last validation figure (and the best so far) for the progress bar."""
        if not self.last_val:
            return {}
        metric = self.config.best_metric
        return {f"val_{metric}": f"{self.last_val[metric]:.1f}", "best": f"{self.best_value:.1f}"}

    def _check_finite(self, loss_sum: torch.Tensor, stage: StageConfig, epoch: int) -> None:
        if not torch.isfinite(loss_sum):
            raise FloatingPointError(f"the training loss became {float(loss_sum)} by step {self.step} (epoch "
                                     f"{epoch + 1}, stage {stage.name}); lower the learning rate or set "
                                     "optimizer.grad_clip_norm")

    # ------------------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, refine: bool = True) -> dict | None:
        """KITTI metrics (DepthMetrics) of the current model on the validation split, every rank scoring its
        share and rank 0 combining all per-image rows; the same figures are returned on every rank."""
        if self.val_set is None:
            return None
        was_training = self.model.training
        self.model.eval()
        metrics = DepthMetrics()
        batch_size = self.config.data.val_batch_size or self.config.data.batch_size
        loader = self._loader(self.val_set, self.val_indices, batch_size, shuffle=False, epoch=0)
        kwargs = {} if refine else {"refine": False}
        for batch in loader:
            rgb = batch["rgb"].to(self.device, non_blocking=True)
            sparse = batch["sparse"].to(self.device, non_blocking=True)
            prediction = self.model(rgb, sparse, **kwargs)
            metrics.update(prediction, batch["gt"].to(self.device), names=batch["name"])
        self.model.train(was_training)
        for module in self._frozen_norms if was_training else ():
            module.eval()
        gathered = all_gather_objects(self.context, (metrics.per_image(), metrics.images_skipped,
                                                     metrics.skipped_missing))
        summary = None
        if self.context.is_main:
            rows = [row for part in gathered for row in part[0]]
            combined = DepthMetrics.from_per_image(rows, images_skipped=sum(part[1] for part in gathered),
                                                   skipped_missing=sum(part[2] for part in gathered))
            summary = combined.compute()
        return broadcast_object(self.context, summary)

    # ---------------------------------------------------------------------------- checkpoints
    def _metadata(self, with_state: bool) -> dict:
        stage_index = self._stage_index if self._stage_index is not None else 0
        data = self.config.data
        roots = data.root if isinstance(data.root, str) else list(data.root)
        metadata = {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "stage": self.stages[stage_index].name,
            "stage_index": stage_index,
            "val": dict(self.last_val) if self.last_val else {},
            "best_metric": self.config.best_metric,
            "best_val": self.best_value,
            "training_data": {"root": roots, "train_split": data.train_split, "val_split": data.val_split,
                              "train_frames": len(self.train_indices), "val_frames": len(self.val_indices),
                              "crop": list(data.crop) if data.crop else None, "cameras": list(data.cameras)},
            "world_size": self.context.world_size,
            "torch_version": str(torch.__version__),
        }
        if with_state:
            metadata["training_state"] = self._pending_state
        return metadata

    def _save_last(self) -> None:
        """Write last.pt (rank 0); every rank contributes its RNG state, so every rank must call this."""
        rng_states = all_gather_objects(self.context, capture_rng_state())
        if self.context.is_main:
            self._pending_state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "criterion": {k: v.detach().cpu() for k, v in self.criterion.state_dict().items()},
                "stage_index": self._stage_index,
                "batches_done": self.batches_done,
                "epoch_sums": dict(self._epoch_sums),
                "epoch_seconds": self._epoch_seconds,
                "rng": rng_states,
                "world_size": self.context.world_size,
            }
            save_checkpoint(self.out_dir / LAST_CHECKPOINT, self.model, self._metadata(with_state=True))
            self._pending_state = None
        barrier(self.context)

    def _load_resume(self, path: Path) -> None:
        checkpoint = load_checkpoint(path)
        metadata = checkpoint.metadata
        state = metadata.get("training_state")
        if not isinstance(state, dict):
            raise ValueError(f"{path}: no training state to resume from (a best.pt or an exported model?); "
                             f"resume from {LAST_CHECKPOINT}")
        if checkpoint.architecture != self.config.model.name or checkpoint.kwargs != self.config.model.kwargs:
            raise ValueError(f"{path}: checkpoint holds {checkpoint.architecture} {checkpoint.kwargs}, the config "
                             f"asks for model {self.config.model.name} {self.config.model.kwargs}")
        saved_config = metadata.get("config", {})
        try:  # read back and written again, so that a default spelled out by another version is no difference
            saved_config = TrainConfig.from_dict(saved_config, source=str(path)).to_dict()
        except ValueError:
            pass  # not a config this version reads: compare as stored
        current_config = self.config.to_dict()
        for section in ("stages", "schedule", "optimizer", "loss", "distillation"):
            if saved_config.get(section) != current_config.get(section):
                LOGGER.warning("resuming with a different %s section than %s was trained with", section, path)
        self.model.load_state_dict(checkpoint.state_dict, strict=True)
        self.criterion.load_state_dict(state["criterion"], strict=True)
        self.epoch = int(metadata["epoch"])
        self.step = int(metadata["step"])
        self.batches_done = int(state.get("batches_done", 0))
        self._epoch_sums = dict(state.get("epoch_sums", {}))
        self._epoch_seconds = float(state.get("epoch_seconds", 0.0))
        # The best so far counts only for the same metric; checkpoints from before best_metric hold RMSE.
        stored_metric = metadata.get("best_metric", "rmse_mm")
        stored_value = metadata.get("best_val", metadata.get("best_val_rmse_mm", math.inf))
        self.best_value = float(stored_value) if stored_metric == self.config.best_metric else math.inf
        self.last_val = metadata.get("val") or None
        if self.epoch < self.config.total_epochs:
            stage_index, _ = self.stage_of_epoch(self.epoch)
            self._enter_stage(stage_index)
            if state.get("stage_index") == stage_index:  # the optimizer state belongs to this stage
                self.optimizer.load_state_dict(state["optimizer"])
                self.scheduler.load_state_dict(state["scheduler"])
        rng = state.get("rng") or []
        if rng:
            same_layout = len(rng) == self.context.world_size
            if not same_layout:
                LOGGER.warning("%s was written by %d processes, this run has %d: RNG streams restart from rank 0's",
                               path, len(rng), self.context.world_size)
            restore_rng_state(rng[self.context.rank] if same_layout else rng[0])
        if self.context.is_main:
            self._truncate_log()
        LOGGER.info("resumed from %s: epoch %d, step %d%s", path, self.epoch, self.step,
                    f" (+{self.batches_done} batches)" if self.batches_done else "")

    # -------------------------------------------------------------------------------- logging
    def _write_log_row(self, row: dict) -> None:
        path = self.out_dir / LOG_FILE
        if path.is_file() and path.stat().st_size > 0:
            with open(path, newline="") as stream:
                reader = csv.DictReader(stream)
                fieldnames = list(reader.fieldnames or row)
                new = [name for name in row if name not in fieldnames]
                rows = list(reader) if new else []
            if new:  # e.g. the loss terms after the starting weights' row (validate_start), which has none
                at = fieldnames.index("train_loss") + 1 if "train_loss" in fieldnames else len(fieldnames)
                fieldnames[at:at] = new
                _rewrite_log(path, fieldnames, rows)
            with open(path, "a", newline="") as stream:
                csv.DictWriter(stream, fieldnames=fieldnames, extrasaction="ignore").writerow(row)
        else:
            with open(path, "w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=list(row))
                writer.writeheader()
                writer.writerow(row)
        if self._tensorboard is not None:
            for name, value in row.items():
                if name not in ("epoch", "step", "stage") and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tensorboard.add_scalar(name.replace("train_", "train/").replace("val_", "val/"),
                                                 value, self.step)

    def _truncate_log(self) -> None:
        """Drop log rows of epochs after the checkpoint (written before an interruption lost their state)."""
        path = self.out_dir / LOG_FILE
        if not path.is_file():
            return
        with open(path, newline="") as stream:
            rows = list(csv.DictReader(stream))
            fieldnames = rows and list(rows[0].keys())
        kept = [row for row in rows if row.get("epoch", "").isdigit() and int(row["epoch"]) <= self.epoch]
        if fieldnames and len(kept) != len(rows):
            _rewrite_log(path, fieldnames, kept)

    def _open_tensorboard(self) -> None:
        wanted = self.config.tensorboard
        if wanted is False or self._tensorboard is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if wanted is True:
                LOGGER.warning("tensorboard: true, but the tensorboard package is not installed; logging to "
                               "%s only", LOG_FILE)
            return
        self._tensorboard = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"), purge_step=self.step or None)


def _rewrite_log(path: Path, fieldnames: list[str], rows: list[dict]) -> None:
    """The log file anew: the header `fieldnames`, then `rows`."""
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def find_resume_checkpoint(resume: str | None, out_dir: Path) -> Path | None:
    """`--resume` -> the checkpoint to load: `auto` = out_dir/last.pt when it exists (else None: a fresh
    start), a path = that file (which must exist), None = no resume."""
    if resume is None:
        return None
    if resume == "auto":
        candidate = out_dir / LAST_CHECKPOINT
        return candidate if candidate.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: checkpoint not found: {path}")
    return path
