"""The one training loop, shared by every ``train/`` script (built on accelerate).

A *task* supplies the data and the loss; the loop owns everything else: optimiser, cosine schedule with
warmup, bf16 autocast, channels_last, seeding, progress bar, TensorBoard logs, best checkpoint by
validation accuracy, and resume after interruption.

Resume is exact at epoch boundaries: every epoch's shuffling, augmentation and dropout are seeded from
``(seed, epoch)``, and the full state (model, optimiser, scheduler, history) is saved after each epoch,
so a run killed at any point and resumed ends in the same state as one that was never interrupted.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import torch
from safetensors.torch import load_file, save_file, save_model
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from fermm.hub import push_trained
from fermm.training import sync

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """How to train; saved as ``training_args.json`` next to the weights."""

    output_dir: str
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.01
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    class_weighted: bool = False
    mixed_precision: str = "bf16"  # bf16 | no
    channels_last: bool = True
    seed: int = 0
    threads: int = 0  # torch threads; 0 = torch's default
    log_with: str = "tensorboard"  # tensorboard | wandb | none
    max_steps_per_epoch: int = 0  # 0 = whole epoch (tests set a few)
    ema_decay: float = 0.0  # > 0: validate and keep an exponential moving average of the weights
    select_metric: str = "accuracy"  # the validation figure that picks the best epoch (higher is better)
    extra: dict = field(default_factory=dict)  # task- and script-specific arguments, recorded as-is

    def to_dict(self) -> dict:
        return asdict(self)


def add_run_args(p: argparse.ArgumentParser, **defaults) -> None:
    """The flags every training script shares (output, optimisation, schedule, reproducibility, logging), with
    the script's own ``defaults``; ``None`` leaves a value to the recipe's preset (:func:`run_config`)."""
    p.add_argument("--output_dir", required=True)
    p.add_argument("--push_to_hub", metavar="REPO_ID", help="push the final model and card to this Hub repo")
    p.add_argument("--sync_to_hub", metavar="REPO_ID",
                   help="mirror the run (resume state, best weights, history) to this Hub repo after every epoch, "
                        "and restore it from there when --output_dir is missing or behind it: the same command then "
                        "resumes on another machine (a repo of its own, not --push_to_hub's)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch_size", type=int)
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    p.add_argument("--lr", type=float)
    p.add_argument("--weight_decay", type=float)
    p.add_argument("--warmup_epochs", type=float, default=1.0)
    p.add_argument("--label_smoothing", type=float, default=0.0)
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights, e.g. 0.999 (0 = off); the "
                   "average is what is validated and saved when it scores better")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--log_with", default="tensorboard", choices=("tensorboard", "wandb", "none"))
    p.add_argument("--max_steps_per_epoch", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(**defaults)


def run_config(args: argparse.Namespace, output_dir: str | Path, presets: dict | None = None, **fixed) -> TrainConfig:
    """The one mapping from a script's arguments to a stage's :class:`TrainConfig`: a shared flag left unset takes
    ``presets[flag]``; ``fixed`` sets what the stage decides itself (its epochs and lr, precision, ...)."""
    def pick(key: str):
        value = getattr(args, key)
        return value if value is not None else (presets or {})[key]

    cfg = {"output_dir": str(output_dir), "warmup_epochs": args.warmup_epochs, "label_smoothing": args.label_smoothing,
           "ema_decay": args.ema, "seed": args.seed, "threads": args.threads, "log_with": args.log_with,
           "max_steps_per_epoch": args.max_steps_per_epoch, "extra": dict(vars(args)),
           **{k: pick(k) for k in ("epochs", "batch_size", "optimizer", "lr", "weight_decay") if k not in fixed}}
    return TrainConfig(**{**cfg, **fixed})


class Task(Protocol):
    """What a model family supplies to the loop."""

    def batches(self, epoch: int, batch_size: int, gen: torch.Generator) -> Iterator[tuple]:
        """This epoch's training batches (shuffled/augmented with ``gen`` only)."""

    def loss(self, model: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
        """(mean loss, number of correct predictions in the batch)."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics with at least ``accuracy``."""


@dataclass
class TrainResult:
    best_accuracy: float
    best_epoch: int
    history: list[dict]
    seconds: float


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected sgd, adam or adamw")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The RNG for one epoch, independent of what ran before (this makes resume exact)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class Trainer:
    """Runs ``task`` on ``model``; call :meth:`fit`. State lives in ``cfg.output_dir``:
    ``last/`` (resume state, every epoch), ``best/`` (the model at its best validation accuracy),
    ``history.json`` and ``logs/`` (TensorBoard)."""

    def __init__(self, model: nn.Module, task: Task, cfg: TrainConfig, steps_per_epoch: int,
                 save_best: Callable[[nn.Module, Path, dict], None] | None = None):
        from accelerate import Accelerator  # lazy: a heavy import, paid only when this runs
        from accelerate.state import AcceleratorState  # lazy: a heavy import, paid only when this runs

        # one process may train several stages with different precisions (GloVe-CNN, tests): start each
        # from a clean accelerator state, keeping the distributed set-up (PartialState) as it is
        AcceleratorState._reset_state(reset_partial_state=False)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.task = cfg, task
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        log_with = None if cfg.log_with == "none" else cfg.log_with
        self.acc = Accelerator(mixed_precision=cfg.mixed_precision, log_with=log_with,
                               project_dir=str(self.out / "logs"), cpu=not torch.cuda.is_available())
        torch.manual_seed(cfg.seed)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch or steps_per_epoch)
        opt = make_optimizer(model.parameters(), cfg)
        total = self.steps_per_epoch * cfg.epochs
        sched = get_cosine_schedule_with_warmup(opt, round(cfg.warmup_epochs * self.steps_per_epoch), total)
        self.ema = None
        if cfg.ema_decay > 0:  # per-step EMA of weights and batch-norm statistics

            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.model, self.opt, self.sched = self.acc.prepare(model, opt, sched)
        # prepare() wraps forward in autocast; strip it so validation scores the weights in fp32, as evaluation
        # and the EMA copy do (training steps run inside acc.autocast() anyway)
        self.acc.unwrap_model(self.model, keep_fp32_wrapper=False)
        self.raw_model = model
        self.save_best = save_best or _save_state_dict
        self.history: list[dict] = []
        self.start_epoch, self.best_acc, self.best_epoch = 0, -1.0, -1
        self.sync = sync.for_run(cfg.extra)  # --sync_to_hub: the run folder mirrored to the Hub (fermm.training.sync)

    # ----------------------------------------------------------------------------- state

    def _save_last(self, epoch: int) -> None:
        """Atomically replace ``last/`` with the state after ``epoch`` (safetensors + plain tensors, no pickle
        of objects: loaded back with ``weights_only=True``). Only the main process writes."""
        if not self.acc.is_main_process:
            return
        tmp = self.out / "last.tmp"
        _rmtree(tmp)
        tmp.mkdir()
        save_file(_resume_state(self.acc.unwrap_model(self.model)), str(tmp / "model.safetensors"))
        torch.save({"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()}, tmp / "optim.pt")
        if self.ema is not None:
            save_file({k: v.detach().contiguous() for k, v in self.ema.state_dict().items()}, str(tmp / "ema.safetensors"))
        meta = {"epoch": epoch, "best_accuracy": self.best_acc, "best_epoch": self.best_epoch,
                "history": self.history, "config": self.cfg.to_dict()}
        (tmp / "trainer.json").write_text(json.dumps(meta, indent=2))
        swap_in(tmp, self.out / "last")

    def resume(self) -> bool:
        """Load ``last/`` if present (with ``--sync_to_hub``, restored from the Hub first when the run folder holds no
        run state); returns whether a run was resumed."""
        if self.sync is not None:
            if self.acc.is_main_process:
                self.sync.restore()
            self.acc.wait_for_everyone()
        last = self.out / "last"
        if not (last / "trainer.json").exists():
            return False

        model = self.acc.unwrap_model(self.model)
        state = load_file(str(last / "model.safetensors"))
        if hasattr(model, "load_learned"):  # checked like a saved model: names, shapes, adapters through peft
            model.load_learned(state, None)
        else:
            model.load_state_dict(state)
        optim = torch.load(last / "optim.pt", weights_only=True)
        self.opt.load_state_dict(optim["optimizer"])
        self.sched.load_state_dict(optim["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(load_file(str(last / "ema.safetensors")))
        meta = json.loads((last / "trainer.json").read_text())
        self.start_epoch = meta["epoch"] + 1
        self.best_acc, self.best_epoch = meta["best_accuracy"], meta["best_epoch"]
        self.history = meta["history"]
        log.info("resumed from %s after epoch %d (best %.4f at epoch %d)", last, meta["epoch"],
                 self.best_acc, self.best_epoch)
        return True

    # ----------------------------------------------------------------------------- loop

    def fit(self) -> TrainResult:
        cfg = self.cfg
        if self.acc.is_main_process:
            (self.out / "training_args.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
        if self.acc.trackers == [] and cfg.log_with != "none":
            self.acc.init_trackers("train", config={k: v for k, v in cfg.to_dict().items()
                                                    if isinstance(v, (int, float, str, bool))})
        t0 = time.time()
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                self._epoch(epoch)
        finally:  # finished, interrupted or failed: the Hub gets the last epoch that was saved
            self._flush_sync()
        for tracker in self.acc.trackers:  # not end_training(): later stages and the final save still need the
            tracker.finish()                # process group, which it would destroy
        return TrainResult(self.best_acc, self.best_epoch, self.history, time.time() - t0)

    def _epoch(self, epoch: int) -> None:
        """Train and validate one epoch, keep the best weights, save the resume state (and push it, if synced)."""
        cfg = self.cfg
        row = self._train_epoch(epoch)
        candidate = self._validate(row)
        if row[f"val_{cfg.select_metric}"] > self.best_acc:
            self.best_acc, self.best_epoch = row[f"val_{cfg.select_metric}"], epoch
            if self.acc.is_main_process:
                self.save_best(candidate, self.out / "best", row)
        row["best_val_accuracy"] = self.best_acc
        self.history.append(row)
        self.acc.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
        self._save_last(epoch)
        if self.acc.is_main_process:
            (self.out / "history.json").write_text(json.dumps(self.history, indent=2))
            if self.sync is not None:
                self.sync.push(f"{self.out.name}: epoch {epoch + 1} of {cfg.epochs}")
        self.acc.wait_for_everyone()  # the others read best/ and last/ only once they are written

    def _flush_sync(self) -> None:
        if self.sync is not None and self.acc.is_main_process:
            if self.sync.busy:
                log.info("waiting for the run state to reach %s (Ctrl-C again to leave it)", self.sync.repo_id)
            self.sync.flush()

    def _validate(self, row: dict) -> nn.Module:
        """Validate the weights (and, with EMA, the averaged ones too); add the figures to ``row`` and return the
        better model. Both are kept in the running: an EMA of batch-norm statistics can lag the weights it is
        averaged with (a ResNet50 from scratch: EMA 21% vs live 52% validation accuracy after 4 epochs)."""
        live = {f"val_{k}": v for k, v in self.task.validate(self.model).items()}
        if self.ema is None:
            row.update(live)
            return self.raw_model
        ema = {f"val_{k}": v for k, v in self.task.validate(self.ema.module).items()}
        key = f"val_{self.cfg.select_metric}"
        use_ema = ema[key] >= live[key]
        row.update(ema if use_ema else live)
        row.update(val_accuracy_live=live["val_accuracy"], val_accuracy_ema=ema["val_accuracy"], selected_ema=use_ema)
        return self.ema.module if use_ema else self.raw_model

    def _share(self, batch: tuple) -> tuple:
        """This process's slice of a batch that every process drew alike (the same seeded order): gradients are
        averaged across processes, so each step is the whole batch's. One process: the whole batch."""
        n, i = self.acc.num_processes, self.acc.process_index
        if n == 1:
            return batch
        return tuple(torch.tensor_split(b, n)[i] if isinstance(b, torch.Tensor) and b.dim() > 0 else b for b in batch)

    def _train_epoch(self, epoch: int) -> dict:
        cfg, gen = self.cfg, epoch_generator(self.cfg.seed, epoch)
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout etc.
        self.model.train()
        total_loss, correct, seen, t0 = 0.0, 0, 0, time.time()
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not self.acc.is_local_main_process or os.environ.get("FERMM_NO_PROGRESS") == "1")
        for step, batch in enumerate(self.task.batches(epoch, cfg.batch_size, gen)):
            if step >= self.steps_per_epoch:
                break
            batch = self._share(batch)
            if cfg.channels_last:
                batch = tuple(b.contiguous(memory_format=torch.channels_last)
                              if isinstance(b, torch.Tensor) and b.dim() == 4 else b for b in batch)
            with self.acc.autocast():
                loss, n_correct = self.task.loss(self.model, batch)
            self.opt.zero_grad(set_to_none=True)
            self.acc.backward(loss)
            self.opt.step()
            self.sched.step()
            if self.ema is not None:
                self.ema.update_parameters(self.raw_model)
            n = len(batch[-1])  # tasks put the targets last
            total_loss, correct, seen = total_loss + loss.item() * n, correct + n_correct, seen + n
            bar.update(1)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        secs = time.time() - t0
        return {"epoch": epoch, "train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                "lr": self.sched.get_last_lr()[0], "epoch_seconds": secs, "images_per_second": seen / max(secs, 1e-9)}


def swap_in(new: Path, dest: Path) -> None:
    """Replace folder ``dest`` by the fully written ``new`` with renames, so an interruption leaves the old
    folder or the new one, never a half-written mix."""
    old = dest.with_name(dest.name + ".old")
    _rmtree(old)
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    _rmtree(old)


def finish(model, output_dir: str | Path, push_to_hub: str | None, training: dict,
           history_stage: str | Callable[[Path], str] | None, make_card: Callable[[list[dict] | None], str]) -> Path:
    """Every training script's last step: on the main process only, save the model with its card (built by
    ``make_card`` from the history of ``history_stage``, a stage folder or a function of ``output_dir`` naming
    one) and training arguments in ``output_dir``, then push if asked."""
    out = Path(output_dir)
    if not main_process():
        return out
    stage = history_stage(out) if callable(history_stage) else history_stage
    history = json.loads((out / stage / "history.json").read_text()) if stage else None
    model.save_with_card(out, card=make_card(history), training_args=training)
    if push_to_hub:
        push_trained(out, push_to_hub)
    return out


def main_process() -> bool:
    """Once every process has finished training: is this the one that saves and pushes? (``accelerate
    launch`` runs a script once per GPU; the final model needs one writer and one push.)"""
    from accelerate import PartialState  # lazy: a heavy import, paid only when this runs

    state = PartialState()
    state.wait_for_everyone()
    return state.is_main_process


def _resume_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What resuming needs: everything, or only the learned part of models on a frozen base (CLIP)."""
    state = model.learned_state_dict() if hasattr(model, "learned_state_dict") else model.state_dict()
    return {k: v.detach().contiguous() for k, v in state.items()}


def _save_state_dict(model: nn.Module, folder: Path, row: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
