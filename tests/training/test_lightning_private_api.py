"""The private parts of Lightning segzoo's training layer relies on are still there, with the signatures segzoo calls.

``SegzooCLI`` overrides two private methods of ``LightningCLI`` (checking ``--ckpt_path`` before Lightning reads it)
and calls a third; ``SigtermWatchdog`` replaces two private methods of a trainer's signal handling for the duration
of a run. Lightning may rename or drop them in any release: pyproject.toml bounds ``lightning`` below the next minor
version, and raising that bound is checked here first, so a missing method fails by name instead of silently
disabling a check or the watchdog. (That the overrides take effect is checked by their behaviour:
training/test_interrupt.py, training/test_train_cli_errors.py, training/test_ddp.py.)
"""

from __future__ import annotations

import inspect

import lightning as L
import pytest
from lightning.pytorch.cli import LightningCLI

from segzoo.training import SegzooCLI

# LightningCLI's private methods SegzooCLI overrides or calls, with the parameters it passes them
LIGHTNING_CLI_PRIVATE = {
    "_parse_ckpt_path": ["self"],
    "_prepare_subcommand_kwargs": ["self", "subcommand"],
    "_get": ["self", "config", "key", "default"],
}


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize("name", sorted(LIGHTNING_CLI_PRIVATE))
def test_lightning_cli_has_the_private_methods_segzoo_cli_uses(name):
    method = getattr(LightningCLI, name, None)
    assert callable(method), f"lightning {L.__version__}: LightningCLI.{name} is gone; SegzooCLI relies on it"
    assert parameters(method) == LIGHTNING_CLI_PRIVATE[name], f"lightning {L.__version__}: LightningCLI.{name} changed"


def test_every_private_override_of_segzoo_cli_is_checked():
    """A new private override must be added to LIGHTNING_CLI_PRIVATE (and so be checked above)."""
    private = {name for name in vars(SegzooCLI) if name.startswith("_") and not name.startswith("__")}
    assert private <= set(LIGHTNING_CLI_PRIVATE), sorted(private - set(LIGHTNING_CLI_PRIVATE))
    assert {"_parse_ckpt_path", "_prepare_subcommand_kwargs"} <= private


def test_the_trainer_has_the_signal_hooks_the_sigterm_watchdog_replaces():
    """``SigtermWatchdog.setup`` swaps them only where they exist (``hasattr``), so without this check a Lightning
    without them would leave a stuck multi-process run unstoppable by SIGTERM, silently."""
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    connector = trainer._signal_connector
    assert parameters(connector._sigterm_notifier_fn) == ["signum", "_"]
    assert connector.received_sigterm is False
    assert parameters(trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor) == []
