"""Every error segzoo raises on purpose derives from :class:`SegzooError`, and also from the builtin type it
replaces, so ``except SegzooError`` catches all of them and ``except ValueError`` (or ``KeyError``, ``OSError``...)
keeps working. The messages say what is wrong and how to fix it."""


class SegzooError(Exception):
    """Base class of segzoo's errors."""


class UnknownModelError(SegzooError, KeyError, ValueError):
    """A name that is neither an architecture (``list_models()``) nor a checkpoint (``list_pretrained()``)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class UnknownCheckpointError(UnknownModelError):
    """A checkpoint name that is not in ``checkpoints.yaml``."""


class CheckpointTableError(SegzooError, ValueError):
    """A row of ``checkpoints.yaml`` is malformed."""


class DownloadError(SegzooError, ConnectionError):
    """A checkpoint could not be downloaded (no network, offline mode, missing repository or file)."""


class CorruptedFileError(SegzooError, OSError):
    """A checkpoint or dataset file is truncated, corrupted, does not match its published sha256, or does not hold
    what its format promises."""


class CheckpointReadError(CorruptedFileError, ValueError):
    """A checkpoint file (``.pth``, ``.ckpt``, ``.safetensors``...) that cannot be read: truncated, corrupt, or not a
    checkpoint at all; the message names the file (and the option it was given to: ``--ckpt_path``, ``init_from``)."""


class UnknownFormatError(SegzooError, ValueError):
    """A file that segzoo does not know how to read."""


class UnsafeCheckpointError(SegzooError, ValueError):
    """A ``.pth`` file that needs arbitrary Python objects to unpickle; segzoo refuses to run that code."""


class ConversionError(SegzooError, ValueError):
    """A checkpoint's keys or shapes do not match the format or architecture it was read as."""


class ArchitectureNotFoundError(ConversionError):
    """No architecture in the registry has these weights."""


class AmbiguousArchitectureError(ConversionError):
    """Several architectures fit these weights; ``candidates`` names them."""

    def __init__(self, message: str, candidates: list[str]):
        super().__init__(message)
        self.candidates = candidates


class ExportError(SegzooError, RuntimeError):
    """The exported graph failed a check (opset, onnxruntime, agreement with PyTorch); nothing was written."""


class CheckpointMismatchError(SegzooError, ValueError):
    """``--ckpt_path`` holds a checkpoint of another architecture than the one the config asks for."""


class InputSizeError(SegzooError, ValueError):
    """An input image too small for the model (MiT encoders need at least 4 × their first reduction ratio pixels a
    side); ``segzoo predict`` names the image and goes on with the others."""


class UnknownDatasetError(SegzooError, ValueError):
    """A model scored without a dataset segzoo can tell (``--dataset``), or a dataset it has no DataModule for."""


class DatasetSourceError(SegzooError, FileNotFoundError):
    """``segzoo data prepare``: an archive or folder of the dataset is missing; the message names it and its site."""


class NonFiniteLossError(SegzooError, FloatingPointError):
    """Training stopped: the loss was NaN or infinite for many steps in a row (each was skipped, no weight changed)."""


class DatasetTargetError(SegzooError, OSError):
    """``segzoo data prepare``: DST is a file, or cannot be written (permissions, a full or read-only disk)."""


class BackendUnavailableError(SegzooError, ImportError):
    """The inference engine asked for (onnxruntime, OpenVINO) is not installed."""


class RuntimeModelError(SegzooError, ValueError):
    """An ONNX file the runtime cannot run as segzoo's labels: no segzoo metadata, or a protocol it does not know."""


class AgreementError(SegzooError, ValueError):
    """Reduced-precision labels (int8, bf16) agree with fp32 on fewer pixels than the threshold asked for."""


__all__ = [
    "AgreementError",
    "AmbiguousArchitectureError",
    "ArchitectureNotFoundError",
    "BackendUnavailableError",
    "CheckpointMismatchError",
    "CheckpointReadError",
    "CheckpointTableError",
    "ConversionError",
    "CorruptedFileError",
    "DatasetSourceError",
    "DatasetTargetError",
    "DownloadError",
    "ExportError",
    "InputSizeError",
    "NonFiniteLossError",
    "RuntimeModelError",
    "SegzooError",
    "UnknownCheckpointError",
    "UnknownFormatError",
    "UnknownModelError",
    "UnsafeCheckpointError",
]
