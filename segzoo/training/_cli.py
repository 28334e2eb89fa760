"""The LightningCLI behind ``segzoo train`` and ``python train.py`` (``fit``, ``validate``, ``test``, ``predict``).

The model is :class:`SegmentationTask`; ``--data`` takes any LightningDataModule (``ADE20KDataModule``,
``CityscapesDataModule``, ``PascalContextDataModule``, ``COCOStuffDataModule``, ``FolderDataModule``,
``SyntheticDataModule``, or your own class path). ``num_classes`` and ``ignore_index`` are linked from the data to
the model. Scaling out is Lightning's: ``--trainer.devices 8 --trainer.strategy ddp``, ``--trainer.num_nodes``,
``--trainer.sync_batchnorm true``, ``--trainer.precision bf16-mixed``, ``--trainer.accumulate_grad_batches``.

SIGTERM (a job scheduler's) stops a run at the next batch on every rank and exits with status 143; a run stuck
outside Python (e.g. a rank waiting in a collective) is ended ``--sigterm.grace_period`` seconds (default 20) after the
signal, its stacks printed (:class:`SigtermWatchdog`).

``last.ckpt`` (``<log_dir>/checkpoints/``) is rewritten every ``--last_checkpoint.every_n_train_steps`` steps (set in
each recipe), after each validation, at the end, and on Ctrl-C or SIGTERM where every rank can save
(:class:`LastCheckpoint`); ``--ckpt_path last`` resumes from the newest ``last.ckpt`` of the run's logger folder (any
version; with none yet it says so and starts the run). A checkpoint of another architecture than ``--model.model`` or
of another class count than the data's is refused, as is a missing or unreadable (truncated) one, naming the file.
Every error in what the user gave ends in one line, ``<prog>: error: <option>: <what is wrong>``, exit status 2
(``JSONARGPARSE_DEBUG=1`` shows jsonargparse's full report and the traceback).

A recipe may start from base configs: a top-level ``_base_: [../_base/runtime.yaml, ...]`` (paths relative to the
recipe) turns ``--config recipe.yaml`` into ``--config base1 --config base2 ... --config <the recipe without _base_>``
before LightningCLI parses the arguments, so later files override earlier ones with jsonargparse's rules (nested
keys and ``init_args`` merge key by key; lists and dict-typed values such as ``model_args`` are replaced whole).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
import yaml
from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from segzoo._errors import CheckpointMismatchError, CheckpointReadError, SegzooError
from segzoo._model_config import ModelConfig
from segzoo.checkpoints import read_state_dict as read_checkpoint
from segzoo.data import (  # noqa: F401  (imported so that --data takes their short names)
    ADE20KDataModule,
    CityscapesDataModule,
    COCOStuffDataModule,
    FolderDataModule,
    PascalContextDataModule,
    SyntheticDataModule,
)
from segzoo.training._callbacks import LastCheckpoint, SigtermWatchdog, StepProgressBar
from segzoo.training._module import SegmentationTask

__all__ = ["ConfigError", "SegzooArgumentParser", "SegzooCLI", "cli_main", "main", "trainer_defaults"]


def trainer_defaults() -> dict:
    """CSV logging into ``runs/`` (no network) and the lr of every step in the log.

    Callbacks given here are always present (configs add theirs with ``trainer.callbacks``).
    """
    return {
        "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs"}},
        "callbacks": [LearningRateMonitor(logging_interval="step")],
    }


class SegzooArgumentParser(LightningArgumentParser):
    """Lightning's parser, whose errors end in one line saying what is wrong (``<prog>: error: ...``, exit status 2)
    instead of jsonargparse's report of every type the value was tried as. ``JSONARGPARSE_DEBUG=1`` shows the full
    report and the traceback."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):
            return super().error(message, ex)  # nested parsers raise, and jsonargparse collects their errors
        print(f"{Path(sys.argv[0]).name}: error: {one_line_error(message)}", file=sys.stderr)
        self.exit(2)


def one_line_error(message: str) -> str:
    """jsonargparse's report of a value that failed (``Parser key "data": ... Errors: - <why> ... Given value: ...``)
    as one line: the option, the class it was tried as, and why, leaving out the alternatives that were only tried
    because the type allows them (``None``)."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    classes = re.findall(r"Problem with given class_path '([^']+)'", message)
    no_data = re.search(r"the following arguments are required: (\w+)\.data\b", message)
    if no_data or (keys == ["data"] and classes and classes[-1].endswith(".LightningDataModule")):
        what = f"{no_data.group(1)} needs" if no_data else "--data options need"
        return f"{what} a DataModule: {_DATA_HINT}"
    reasons = []
    for line in (line.strip().removeprefix("- ").strip() for line in message.splitlines()):
        line = re.sub(r"\. Got value: Namespace\(.*$", "", line)  # the whole config of a class, after its reason
        line = re.sub(r"Type .*? expects a function or a callable class: ", "", line)  # the type it was tried as
        if not line or line.startswith(_REPORT_LINES) or re.match(r'Parser key "[^"]+":?$', line):
            continue
        reasons.append(re.sub(r"Expected a <class '([\w.]+)'>\. Got value: (.*)", r"expected \1, got '\2'", line))
    if not keys:
        return " ".join(reasons) or message.strip()
    where = "--" + ".".join(keys) + (f" ({classes[-1]})" if classes else "")
    reason = " ".join(reasons).rstrip(".")
    required = re.search(r"the following arguments are required: (\S+)", reason)
    hint = f": give --{'.'.join(keys)}.{required.group(1)}" if required else ""
    return f"{where}: {reason}{hint}"


_DATA_HINT = (
    "give a recipe (--config configs/...yaml) or --data with its class first, e.g. --data FolderDataModule "
    "--data.data_root DIR --data.num_classes N (also ADE20KDataModule, CityscapesDataModule, PascalContextDataModule, "
    "COCOStuffDataModule, SyntheticDataModule)"
)

# jsonargparse's report lines that say how the value was tried, not why it failed
_REPORT_LINES = (
    "Does not validate against",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Expected a <class 'NoneType'>",
    "Problem with given class_path",
    "Not a valid subclass",
)


class SegzooCLI(LightningCLI):
    """LightningCLI with the data→model links, a best-mIoU checkpoint callback (``--checkpoint.*``), the rolling
    ``last.ckpt`` (``--last_checkpoint.every_n_train_steps``) and the SIGTERM watchdog (``--sigterm.grace_period``).
    Errors in what the user gave end in one line (``SegzooArgumentParser``; :class:`ConfigError` after parsing)."""

    def __init__(self, *args, **kwargs):
        self._resume_from: tuple[str, ModelConfig] | None = None  # (--ckpt_path, its model config)
        super().__init__(*args, parser_class=kwargs.pop("parser_class", SegzooArgumentParser), **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.ignore_index", "model.ignore_index", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/miou",
                "checkpoint.mode": "max",
                "checkpoint.save_last": False,  # last.ckpt is LastCheckpoint's
                "checkpoint.filename": "step={step}-miou={val/miou:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(SigtermWatchdog, "sigterm")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Expands the ``_base_`` list of each ``--config`` recipe (:func:`expand_base_configs`), then parses as
        LightningCLI does; a missing or unusable base file is a usage error (exit status 2) naming the recipe."""
        if isinstance(args, (dict, Namespace)):  # a config object, not an argument list: nothing to expand
            super().parse_arguments(parser, args)
            return
        try:
            expanded = expand_base_configs(sys.argv[1:] if args is None else args)
        except BaseConfigError as error:
            parser.error(str(error))
        # parsed here, not by super(), which warns whenever args are given and sys.argv has any (``segzoo train``)
        self.config = parser.parse_args(expanded)

    def _parse_ckpt_path(self) -> None:
        """LightningCLI replaces the model's config with the hyperparameters stored in ``--ckpt_path``, so a
        checkpoint of another architecture would silently train that one: refuse it. A file torch cannot read
        (truncated) is named."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in _CKPT_KEYWORDS and "://" not in str(ckpt_path):
            if not Path(ckpt_path).is_file():
                what = "is a folder: give the .ckpt file in it" if Path(ckpt_path).is_dir() else "does not exist"
                raise CheckpointReadError(
                    f"--ckpt_path {ckpt_path} {what} (or --ckpt_path last for the newest "
                    "last.ckpt of the recipe's runs)"
                )
            checkpoint = read_checkpoint(ckpt_path, "--ckpt_path")
            _check_architecture(checkpoint, ckpt_path, self.config[subcommand].model)
            self._resume_from = (str(ckpt_path), ModelConfig.from_checkpoint(checkpoint))
        super()._parse_ckpt_path()

    def after_instantiate_classes(self) -> None:
        """What only the built objects tell: a checkpoint trained for other classes than the data's (it would fail to
        load with a dump of size mismatches), and class weights of the wrong length (found at the first step)."""
        super().after_instantiate_classes()
        num_classes = getattr(self.model, "num_classes", None)
        if self._resume_from is not None and num_classes is not None:
            _check_num_classes(*self._resume_from, num_classes)
        _check_class_weights(getattr(self.model, "loss", None), num_classes)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
        """``--ckpt_path last``: Lightning looks only in this run's new ``version_N`` folder, finds nothing and starts
        from scratch; take the newest ``last.ckpt`` of the logger's folder (every version) instead, checked as any
        ``--ckpt_path``."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if kwargs.get("ckpt_path") == "last":
            found = _newest_last_checkpoint(self.trainer)
            if found is None:  # a job that resumes whenever it can starts here; Lightning would hint at save_last
                print(
                    f"--ckpt_path last: no last.ckpt under {_last_checkpoint_folders(self.trainer)} yet, so "
                    f"nothing to resume: {subcommand} starts from the config's model",
                    file=sys.stderr,
                )
                kwargs["ckpt_path"] = None
            else:
                checkpoint = read_checkpoint(found, "--ckpt_path last")
                _check_architecture(checkpoint, found, self.model.hparams)
                _check_num_classes(str(found), ModelConfig.from_checkpoint(checkpoint), self.model.num_classes)
                print(f"--ckpt_path last: resuming from {found}", file=sys.stderr)
                kwargs["ckpt_path"] = str(found)
        return kwargs

    def instantiate_classes(self) -> None:
        """Build the model, data and trainer. A class refusing the values it was given is a :class:`ConfigError`
        naming it: a segzoo error while building the model (an unknown architecture or encoder, weights that do not
        load), or the ``ValueError`` / ``OSError`` of a class given by ``class_path`` (``--data``, ``--model.loss``),
        which jsonargparse reports among every type it tried."""
        try:
            super().instantiate_classes()
        except SegzooError as error:
            if isinstance(error, (CheckpointMismatchError, CheckpointReadError, ConfigError)):
                raise
            raise ConfigError(f"--model: {error}") from error
        except ValueError as error:
            cause = error.__cause__
            built = re.search(r"class_path='([^']+)'", str(error))
            if built is None or not isinstance(cause, (ValueError, OSError)) or os.environ.get("JSONARGPARSE_DEBUG"):
                raise
            raise ConfigError(f"{built.group(1)}: {cause}") from error

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """The trainer, with a rich progress bar (:class:`StepProgressBar`) unless ``trainer.enable_progress_bar``
        is false."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("enable_progress_bar") is not False:
            callbacks = kwargs.get("callbacks", trainer_config.get("callbacks")) or []
            if not any(isinstance(c, ProgressBar) for c in callbacks):
                kwargs["callbacks"] = list(callbacks) + [StepProgressBar()]
        return super().instantiate_trainer(**kwargs)


class BaseConfigError(ValueError):
    """A recipe's ``_base_`` list names a file that is missing or not a plain config."""


_BASE_KEY = "_base_"


def expand_base_configs(args: Sequence[str]) -> list[str]:
    """``args`` with each ``--config recipe.yaml`` (also ``--config=recipe.yaml``, ``-c recipe.yaml``) whose recipe has
    a top-level ``_base_`` list replaced by ``--config <base> ...`` for each base (paths relative to the recipe), in
    order, then ``--config <the recipe's YAML without _base_>`` (jsonargparse takes a YAML string for a config file).

    Bases are one level deep: a base with its own ``_base_`` is refused rather than followed. Anything else (a config
    without ``_base_``, a YAML string, a missing or malformed file) is left to jsonargparse to read and report.
    """
    expanded: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        if arg.startswith("--config="):
            expanded += _expand_recipe("--config", arg.removeprefix("--config="))
        elif arg in ("--config", "-c") and position + 1 < len(args):
            expanded += _expand_recipe(arg, args[position + 1])
            position += 1
        else:
            expanded.append(arg)
        position += 1
    return expanded


def _expand_recipe(flag: str, value: str) -> list[str]:
    """``[flag, value]``, or the base configs and the recipe without ``_base_`` when ``value`` is a recipe with one."""
    recipe = Path(value)
    root = _read_mapping_node(recipe)
    base_entries = [(key, node) for key, node in root.value if key.value == _BASE_KEY] if root else []
    if not base_entries:
        return [flag, value]
    bases = yaml.safe_load(yaml.serialize(base_entries[0][1], Dumper=yaml.SafeDumper))
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not bases or not all(isinstance(base, str) for base in bases):
        raise BaseConfigError(f"{recipe}: {_BASE_KEY} must be a list of config paths (relative to the recipe)")
    expanded = []
    for base in bases:
        base_path = recipe.parent / base
        if not base_path.is_file():
            raise BaseConfigError(f"{recipe}: base config {base} not found (looked for {base_path})")
        base_root = _read_mapping_node(base_path)
        if base_root is not None and any(key.value == _BASE_KEY for key, _ in base_root.value):
            # one level keeps the order of overrides visible in the recipe itself
            raise BaseConfigError(f"{recipe}: base config {base} has its own {_BASE_KEY}; bases are one level deep")
        expanded += [flag, str(base_path)]
    # The recipe's own keys, re-serialised from the YAML nodes so that every value keeps its exact text
    # (a round trip through Python objects could turn e.g. `1e-6` into a quoted string).
    root.value = [(key, node) for key, node in root.value if key.value != _BASE_KEY]
    if root.value:
        expanded += [flag, yaml.serialize(root, Dumper=yaml.SafeDumper)]
    return expanded


def _read_mapping_node(path: Path) -> yaml.MappingNode | None:
    """The top-level YAML mapping of the file at ``path`` (keys as scalar nodes); None when it is not a readable
    file holding a mapping."""
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(root, yaml.MappingNode) or not all(isinstance(key, yaml.ScalarNode) for key, _ in root.value):
        return None
    return root


def _check_architecture(checkpoint: dict, path: str | os.PathLike, model_config) -> None:
    """Raises :class:`CheckpointMismatchError` when the checkpoint was trained as another registry architecture than
    ``model_config["model"]`` (a name; module objects given in the config are not compared)."""
    saved = ModelConfig.from_checkpoint(checkpoint).architecture
    asked = model_config.get("model") if hasattr(model_config, "get") else None
    if isinstance(saved, str) and isinstance(asked, str) and saved != asked:
        raise CheckpointMismatchError(
            f"--ckpt_path {path} is a checkpoint of {saved!r} but the config asks for model {asked!r}: resuming would "
            f"train {saved!r}. Give --model.model {saved} (and its recipe) to resume it, or leave out --ckpt_path "
            f"(--model.init_from {path} starts a new {asked!r} run from its weights where the shapes match)"
        )


_CKPT_KEYWORDS = ("last", "hpc", "best", "registry")  # Lightning's ckpt_path words, resolved by the Trainer


class ConfigError(SegzooError, ValueError):
    """A config (or command line) that cannot train as given; ``main`` prints it as one line, exit status 2."""


def _check_num_classes(path: str, config: ModelConfig, num_classes: int) -> None:
    saved = config.num_classes
    if isinstance(saved, int) and saved != num_classes:
        raise CheckpointMismatchError(
            f"--ckpt_path {path} was trained for {saved} classes, and the data has {num_classes}: a run resumes (or is "
            f"evaluated) with the classes it was trained for. To train on this data from its weights, leave out "
            f"--ckpt_path and give --model.init_from {path} (the classifier is re-initialised)"
        )


def _check_class_weights(loss: torch.nn.Module | None, num_classes: int | None) -> None:
    """Every ``class_weight`` in the loss (``LossSum`` included) has one value per class."""
    if loss is None or num_classes is None:
        return
    for module in loss.modules():
        weights = getattr(module, "class_weight", None)
        if weights is not None and len(weights) != num_classes:
            raise ConfigError(
                f"--model.loss: {type(module).__name__}'s class_weight has {len(weights)} values for {num_classes} "
                "classes: give one weight per class (segzoo data check proposes them)"
            )


def _last_checkpoint_folders(trainer: L.Trainer) -> str:
    root = getattr(trainer.logger, "root_dir", None) if trainer.logger is not None else None
    return str(Path(root) / "version_*" / "checkpoints") if root is not None else trainer.default_root_dir


def _newest_last_checkpoint(trainer: L.Trainer) -> Path | None:
    """The most recently written ``last.ckpt`` under the logger's folder (``<save_dir>/<name>/version_*/checkpoints``)
    or the LastCheckpoint's own folder; None when there is none."""
    candidates: set[Path] = set()
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint) and callback.dirpath:
            candidates.add(Path(callback.dirpath) / "last.ckpt")
    logger = trainer.logger
    root = getattr(logger, "root_dir", None) if logger is not None else None
    if root is not None:
        candidates.update(Path(root).glob("version_*/checkpoints/last.ckpt"))
    else:
        candidates.add(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt")
    existing = [path for path in candidates if path.is_file()]
    return max(existing, key=lambda path: path.stat().st_mtime) if existing else None


def cli_main(args: list[str] | None = None, run: bool = True) -> SegzooCLI:
    """Runs the CLI on ``args`` (``sys.argv`` when None); tests call it in-process."""
    return SegzooCLI(
        SegmentationTask,
        L.LightningDataModule,
        subclass_mode_data=True,
        auto_configure_optimizers=False,  # the module's own optimizer/lr_scheduler arguments configure them
        save_config_kwargs={"overwrite": True},
        trainer_defaults=trainer_defaults(),
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> int:
    """``segzoo train`` and ``python train.py``.

    Lightning ends a run stopped by SIGTERM with ``SIGTERMException``, a ``SystemExit`` whose status is 0 (success);
    exit with 143 (128 + SIGTERM) instead, so schedulers and shells see the run did not finish. An unusable
    ``--ckpt_path`` ends in one line and status 2.
    """
    try:
        cli_main(args)
    except SIGTERMException:
        sys.exit(128 + signal.SIGTERM)
    except SegzooError as error:  # what the user gave is wrong (names, files, classes): one line
        if os.environ.get("JSONARGPARSE_DEBUG"):
            raise
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(2)
    return 0
