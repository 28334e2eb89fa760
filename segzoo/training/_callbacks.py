"""Callbacks of segzoo's training: the rolling ``last.ckpt`` (:class:`LastCheckpoint`), the SIGTERM watchdog that
stops every rank of a multi-process run at the same step (:class:`SigtermWatchdog`), a progress bar that counts the
steps of an iteration-based run (:class:`StepProgressBar`), and :class:`MaskWriter` for ``train.py predict``. The
validation panels are :class:`~segzoo.training.ValidationPanels`."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import socket
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from segzoo.inference._visualize import save_label_png

__all__ = ["LastCheckpoint", "MaskWriter", "SigtermWatchdog", "StepProgressBar", "StopOnEveryRank"]


class MaskWriter(BasePredictionWriter):
    """Writes each predicted label map as ``<output_dir>/<name>.png`` (8-bit, class index per pixel, with the
    DataModule's palette so image viewers show colours; 16-bit above 256 classes), as ``segzoo predict`` does.

    Use with ``python train.py predict ... --trainer.callbacks+=segzoo.training.MaskWriter
    --trainer.callbacks.output_dir predictions``.

    Args:
        output_dir: Folder for the PNG files (created if missing).
    """

    def __init__(self, output_dir: str | Path = "predictions"):
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self.output_dir.mkdir(parents=True, exist_ok=True)
        names = batch.get("name") if isinstance(batch, dict) else None
        palette = pl_module.palette()
        for i, labels in enumerate(prediction):
            name = Path(str(names[i])).stem if names is not None else f"batch{batch_idx:05d}_{i:02d}"
            save_label_png(labels, self.output_dir / f"{name}.png", palette, pl_module.num_classes)


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, whose training line says where an iteration-based run stands: the recipes set
    ``max_steps`` and no ``max_epochs`` (Lightning's -1), where Lightning's line reads "Epoch 9/-2"; this one reads
    "Step 2880/20000 · epoch 9". Runs with ``max_epochs`` keep Lightning's line. ``train.py`` uses it unless
    ``--trainer.enable_progress_bar false``."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._describe_steps(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        self._describe_steps(trainer)

    def _describe_steps(self, trainer: L.Trainer) -> None:
        if self.progress is None or self.train_progress_bar_id is None:
            return
        if trainer.max_steps < 1 or trainer.max_epochs not in (None, -1):
            return
        text = f"Step {trainer.global_step}/{trainer.max_steps} · epoch {trainer.current_epoch}"
        style = self.theme.description
        self.progress.update(self.train_progress_bar_id, description=f"[{style}]{text}" if style else text)


class StopOnEveryRank(SIGTERMException):
    """A stop that every rank of a multi-process run raises at the same point (the start of the same training step,
    after agreeing on it; see :class:`SigtermWatchdog`), so collectives after it (saving a checkpoint) still pair up.
    A ``SIGTERMException``: Lightning and ``train.py`` treat it as a SIGTERM stop (exit status 143)."""


class LastCheckpoint(ModelCheckpoint):
    """Keeps ``<checkpoints>/last.ckpt`` current, so that a killed or interrupted run resumes with little lost
    (``--ckpt_path .../last.ckpt``).

    ``last.ckpt`` (weights, optimizer, schedule, loop state) is rewritten:

    - every ``every_n_train_steps`` optimizer steps (the recipes set a few minutes of work; 0 or None: never on a step
      count), after each validation and at the end of training;
    - when the run is interrupted, if that can be done safely:

      * one process: on Ctrl-C (``KeyboardInterrupt``) and on SIGTERM (Lightning stops at the next batch);
      * several processes (DDP): on SIGTERM, which :class:`SigtermWatchdog` turns into a stop every rank takes at the
        start of the same training step (:class:`StopOnEveryRank`), where all ranks can enter the save's collectives.
        A Ctrl-C, a SIGTERM during validation and a SIGTERM that the watchdog's grace period cuts short interrupt each
        rank wherever it is: saving then would pair one rank's save with another's gradient reduction (a hang or a
        gloo/NCCL abort), so nothing is written and the previous ``last.ckpt`` (at most ``every_n_train_steps`` old)
        stays the resume point. Stop a multi-GPU run with SIGTERM (``kill <pid of rank 0>``, or the scheduler's)
        rather than Ctrl-C to keep the current step.

    Other exceptions (a crash in the middle of a step) save nothing: the weights may be half-updated. Writes are
    atomic (Lightning writes to a temporary file, then renames it), so a process killed while saving keeps the
    previous ``last.ckpt``. ``train.py`` always adds it (``--last_checkpoint.every_n_train_steps``).

    Args:
        every_n_train_steps: Optimizer steps between two saves of ``last.ckpt``.
        dirpath: Folder of ``last.ckpt``; defaults to ``<log_dir>/checkpoints`` (beside the best-mIoU checkpoints).
    """

    def __init__(self, every_n_train_steps: int | None = 1000, dirpath: str | Path | None = None):
        if every_n_train_steps is not None and (isinstance(every_n_train_steps, bool) or every_n_train_steps < 0):
            raise ValueError(f"every_n_train_steps must be a number of steps >= 0, got {every_n_train_steps!r}")
        super().__init__(
            dirpath=dirpath,
            monitor=None,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps or 0,
            enable_version_counter=False,  # always last.ckpt, never last-v1.ckpt
        )

    @property
    def state_key(self) -> str:
        return "segzoo.LastCheckpoint"  # the same whatever the interval: resuming with another one is fine

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        what = "Ctrl-C" if isinstance(exception, KeyboardInterrupt) else "SIGTERM"
        if self._should_skip_saving_checkpoint(trainer) or trainer.global_step == 0:
            return  # not fitting, sanity check, nothing trained yet, or last.ckpt is already of this step
        if trainer.world_size > 1 and not isinstance(exception, StopOnEveryRank):
            previous = self.last_model_path or "none yet"
            rank_zero_warn(
                f"{what} stopped the ranks of this {trainer.world_size}-process run at different points, where saving "
                f"a checkpoint could hang or abort; last.ckpt not updated (step {trainer.global_step}). Resume from "
                f"the previous one: {previous}. Stop a multi-process run with SIGTERM to save its current step."
            )
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        rank_zero_info(
            f"{what}: saved {self.last_model_path} at step {trainer.global_step}; resume with "
            f"--ckpt_path {self.last_model_path}"
        )


class SigtermWatchdog(Callback):
    """Makes SIGTERM (a job scheduler's) end a run on every rank, stuck or not, within ``grace_period`` seconds.

    Lightning replaces SIGTERM's default action with a Python handler that sets a flag and forwards the signal to the
    ranks it launched; its loops check the flag between batches and stop with ``SIGTERMException``. Two things defeat
    that under DDP, and this callback fixes both:

    - CPython runs a Python handler only when the main thread returns to the interpreter, so a process blocked in C++
      (a rank waiting in a collective a peer never enters, up to the process group's 30-minute timeout) never sees
      the signal. CPython's C-level handler also writes the signal number to the wakeup file descriptor
      (``signal.set_wakeup_fd``), which a thread here reads: Lightning's orderly stop gets ``grace_period`` seconds;
      then the thread prints every thread's stack to stderr (where the process was stuck), forwards SIGTERM to the
      ranks this process launched and exits with status 143 (128 + SIGTERM), like a process the signal killed.
    - Lightning 2.6's handler itself runs a collective (``dist.broadcast``) wherever the signal interrupts the rank,
      while the other ranks are in some other collective: gloo then aborts ("Received data size doesn't match
      expected size. Is there a distributed collective mismatch?") or the ranks pair the wrong operations. The
      handler installed here runs no collective: it notes the signal and forwards it to the ranks this process
      launched.

    Where the run stops: one process stops at the next batch (Lightning's flag). Several processes in a training
    step stop together: at the start of each training step Lightning shares rank 0's flag with every rank; here that
    exchange takes the maximum over the ranks of "a SIGTERM arrived" instead (the same one collective per step, so a
    SIGTERM to any rank stops them all), and every rank raises :class:`StopOnEveryRank` at that same point, where
    :class:`LastCheckpoint` can save ``last.ckpt`` (its collectives pair up). A SIGTERM during validation stops each
    rank after its current validation batch, as Lightning does, without a checkpoint. The save has to finish within
    the grace period.

    ``train.py`` always adds it (``--sigterm.grace_period``); add it to your own ``Trainer`` the same way. Keep the
    grace period below the scheduler's SIGTERM-to-SIGKILL delay (SLURM and Kubernetes: 30 s by default).

    Args:
        grace_period: Seconds from the SIGTERM to the forced exit.
    """

    def __init__(self, grace_period: float = 20.0):
        super().__init__()
        if not grace_period > 0:
            raise ValueError(f"grace_period must be a positive number of seconds, got {grace_period!r}")
        self.grace_period = float(grace_period)
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._previous_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._launcher: Any = None
        self._connector: Any = None
        self._epoch_loop: Any = None
        self.received = threading.Event()
        self.stop_requested = False  # a SIGTERM reached this process's handler

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._thread is not None or threading.current_thread() is not threading.main_thread():
            return  # armed already, or not on the main thread (signals are only delivered there)
        reader, writer = socket.socketpair()
        writer.setblocking(False)  # CPython requires a non-blocking wakeup fd
        try:
            self._previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError):
            reader.close()
            writer.close()
            return
        self._reader, self._writer = reader, writer
        self._launcher = trainer.strategy.launcher
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None and hasattr(connector, "_sigterm_notifier_fn"):
            # Lightning registers ``connector._sigterm_notifier_fn`` as its SIGTERM handler once setup is done; this
            # instance attribute takes the method's place for this trainer (removed again in _disarm).
            connector._sigterm_notifier_fn = partial(_flag_sigterm, trainer, connector, self)
            self._connector = connector
            epoch_loop = trainer.fit_loop.epoch_loop
            if hasattr(epoch_loop, "_broadcast_sigterm_tensor"):
                # Lightning calls it at the start of every training step of a multi-process run; this instance
                # attribute takes the method's place (removed again in _disarm).
                epoch_loop._broadcast_sigterm_tensor = partial(_agree_on_stop, trainer, connector, self)
                self._epoch_loop = epoch_loop
        self._thread = threading.Thread(target=self._watch, name="segzoo-sigterm-watchdog", daemon=True)
        self._thread.start()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._disarm()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._disarm()

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """A SIGTERM noted during training but not yet acted on (multi-process runs act at the next training step):
        stop validation at the next batch, as Lightning would."""
        if self.stop_requested and self._connector is not None:
            self._connector.received_sigterm = True

    def _disarm(self) -> None:
        """Restores the previous wakeup fd and stops the thread, unless a SIGTERM is counting down (the process
        still has to end then, whatever it does next)."""
        if self._thread is None or self.received.is_set():
            return
        if self._connector is not None:
            with contextlib.suppress(AttributeError):
                del self._connector._sigterm_notifier_fn  # Lightning's own method again
            self._connector = None
        if self._epoch_loop is not None:
            with contextlib.suppress(AttributeError):
                del self._epoch_loop._broadcast_sigterm_tensor
            self._epoch_loop = None
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
        self._reader.shutdown(socket.SHUT_RDWR)  # ends the thread's recv
        self._thread.join(timeout=5)
        self._reader.close()
        self._writer.close()
        self._thread = self._reader = self._writer = None

    def _watch(self) -> None:
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            if self._previous_fd not in (None, -1):  # keep feeding whoever had the wakeup fd before
                with contextlib.suppress(OSError):
                    os.write(self._previous_fd, data)
            if signal.SIGTERM in data:
                break
        self.received.set()
        time.sleep(self.grace_period)
        sys.stderr.write(
            f"\nsegzoo: SIGTERM received {self.grace_period:g} s ago and the run has not stopped (blocked outside "
            f"Python, e.g. in a collective another rank never entered); every thread's stack follows, then exit 143.\n"
        )
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        kill = getattr(self._launcher, "kill", None)
        if kill is not None:  # the ranks this process launched (Lightning's subprocess launcher)
            with contextlib.suppress(Exception):
                kill(signal.SIGTERM)
        os._exit(128 + signal.SIGTERM)


def _flag_sigterm(trainer: L.Trainer, connector: Any, watchdog: SigtermWatchdog, signum: int, frame: Any) -> None:
    """Lightning's SIGTERM handler without its collective: forwards the signal to the ranks this process launched
    (once) and notes it. One process, or several outside a training step: sets the flag Lightning's loops check after
    each batch. Several in a training step: :func:`_agree_on_stop` acts on it at the start of the next step, on every
    rank at once (Lightning's own checks of the flag at the end of a step are per rank, at different points)."""
    print(f"[rank: {trainer.global_rank}] Received SIGTERM: {signum}", file=sys.stderr, flush=True)
    if not watchdog.stop_requested and not connector.received_sigterm:
        launcher = trainer.strategy.launcher
        if launcher is not None:
            launcher.kill(signum)
    watchdog.stop_requested = True
    if trainer.world_size == 1 or not trainer.training:
        connector.received_sigterm = True


def _agree_on_stop(trainer: L.Trainer, connector: Any, watchdog: SigtermWatchdog) -> None:
    """Replaces Lightning's per-step broadcast of rank 0's SIGTERM flag: the maximum over every rank (the same one
    collective), and every rank raises :class:`StopOnEveryRank` here when any rank got the signal."""
    import torch.distributed as dist

    noted = watchdog.stop_requested or connector.received_sigterm
    flag = torch.tensor([1 if noted else 0], device=trainer.strategy.root_device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item():
        connector.received_sigterm = True
        raise StopOnEveryRank()
