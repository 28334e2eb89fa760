"""The ``segzoo`` console script: ``segzoo predict``, ``segzoo eval``, ``segzoo export``, ``segzoo list``,
``segzoo train`` and ``segzoo data``.

Examples::

    segzoo predict --model segformer-b0-ade photos/ --out predictions/
    segzoo predict --arch segformer-b0 --num-classes 150 image.jpg --out out/   # random weights, to try the tool
    segzoo eval --model segformer-b0-ade --data data/ade [--tta]   # mIoU / mAcc / aAcc as the publisher scored them
    segzoo export --model segformer-b0-ade --format onnx --out segformer-b0-ade.onnx
    segzoo predict --onnx segformer-b0-ade.onnx photos/ --out predictions/   # segzoo.runtime: no PyTorch
    segzoo demo --model segformer-b0-ade                  # a page to try a checkpoint on your photos
    segzoo list "segformer*"
    segzoo train fit --config configs/quickstart.yaml     # LightningCLI (segzoo.training), as python train.py
    segzoo data check data/my-dataset --num-classes 5      # what the masks hold, and the settings to train them
    segzoo data prepare ade20k ~/Downloads data/ade20k     # the downloaded archives -> the DataModule's layout

A user error (a bad option, a missing file, an unknown name, a failed download) ends in one line
``segzoo <command>: error: <what is wrong and what to change>`` and exit status 2, as argparse does; anything else
is a bug and keeps its traceback. ``segzoo data check`` exits with status 1 when the data cannot be trained on as is.
``segzoo predict`` skips an image it cannot read or predict (one line naming it and why) and goes on with the others;
it exits with status 1 when it skipped some, 2 when it wrote none.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from segzoo._errors import SegzooError

if TYPE_CHECKING:
    from torch import nn

    from segzoo._preprocessing import EvalProtocol

__all__ = ["main"]


class UsageError(SegzooError):
    """A user error found after parsing: ``main`` prints it as one line and exits with status 2."""


PREPARE_DATASETS = ("ade20k", "cityscapes", "pascal-context", "coco-stuff")  # segzoo.tools.prepare_dataset's names
# segzoo.training._evaluate.DATAMODULES' keys (checkpoints.yaml dataset keys); a test keeps the two lists equal
EVAL_DATASETS = ("ade20k", "cityscapes", "pascal-context-59", "pascal-context-60", "coco-stuff-164k")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {value}")
    return value


def _mask_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a mask value from 0 to 255, got {text!r}") from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"must be from 0 to 255 (masks are 8-bit), got {value}")
    return value


def _device(text: str) -> str:
    """A torch device that exists on this machine: cpu, cuda, cuda:N, mps or xpu."""
    if text == "cpu":  # the default: no torch import (predict --onnx runs without PyTorch)
        return text
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return text
    backend = getattr(torch, device.type, None)
    if device.type not in ("cuda", "mps", "xpu") or backend is None:
        raise argparse.ArgumentTypeError(f"cannot run on device {text!r}: use cpu, cuda, cuda:N or mps")
    if not backend.is_available():
        raise argparse.ArgumentTypeError(f"no {device.type} device is available on this machine: use --device cpu")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if device.index is not None and device.index >= count:
        raise argparse.ArgumentTypeError(
            f"{text} does not exist: this machine has {count} {device.type} device(s), "
            f"{device.type}:0 to {device.type}:{count - 1}"
        )
    return text


def _opset(text: str) -> int:
    import onnx

    value = _positive_int(text)
    newest = onnx.defs.onnx_opset_version()
    if value > newest:
        raise argparse.ArgumentTypeError(f"the installed onnx knows opsets up to {newest}, got {value}")
    return value


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (give --model, or --arch with --num-classes for random weights)")
    group.add_argument(
        "--model",
        help="checkpoint name (always the published one), hf-hub:org/repo, or a local folder or file written as a "
        "path (./my-run, run/last.ckpt, weights.pth) or as local-dir:PATH",
    )
    group.add_argument("--checkpoint", help="weights file or folder to load instead of the published ones")
    group.add_argument("--arch", help="architecture name for segzoo.create_model (random weights unless --checkpoint)")
    group.add_argument(
        "--num-classes",
        type=_positive_int,
        help="classes of a random --arch model (default 150), or a new head for --model",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the console script."""
    parser = argparse.ArgumentParser(prog="segzoo", description="Transformer semantic segmentation model zoo.")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="write label maps and colour overlays for images")
    _add_model_args(predict)
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    predict.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder for <name>.png (label map) and <name>_overlay.png; it must not be an input folder or lie "
        "inside one, and no output may have the path of an input image: segzoo refuses rather than overwrite inputs",
    )
    predict.add_argument("--mode", choices=("whole", "slide"), help="inference mode (default: the checkpoint's)")
    predict.add_argument("--tta", action="store_true", help="multi-scale + flip test-time augmentation")
    predict.add_argument("--crop-size", type=_positive_int, help="--mode slide window (default: the checkpoint's)")
    predict.add_argument("--stride", type=_positive_int, help="--mode slide window stride (default: the checkpoint's)")
    predict.add_argument("--alpha", type=_fraction, default=0.5, help="weight of the colours in the overlay")
    predict.add_argument("--device", type=_device, default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    predict.add_argument("--no-overlay", action="store_true", help="write only the label maps")
    runtime = predict.add_argument_group("exported model (segzoo.runtime: onnxruntime or OpenVINO, no PyTorch)")
    runtime.add_argument("--onnx", type=Path, help="an ONNX file written by segzoo export, instead of --model")
    runtime.add_argument(
        "--backend",
        choices=("onnxruntime", "openvino"),
        help="engine for --onnx (default onnxruntime; openvino for --precision bf16)",
    )
    runtime.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16 (OpenVINO, CPUs with bf16): labels are first compared with fp32 on the first "
        "input images and refused below --min-agreement",
    )
    runtime.add_argument(
        "--min-agreement",
        type=_fraction,
        default=0.99,
        help="share of pixels bf16 labels must share with fp32 (default 0.99)",
    )

    evaluate = commands.add_parser(
        "eval",
        help="score a model on a dataset folder as its publisher did (mIoU, mAcc, aAcc, per-class IoU)",
        description="Scores a model with the test loop of `train.py test`: each image through the model's own test "
        "pipeline (its resize, normalisation, whole or sliding window, multi-scale + flip with --tta), the prediction "
        "at the image's own size compared with the mask as stored; prints the per-class table and aAcc / mIoU / mAcc "
        "in % rounded to 0.01, as mmsegmentation's Runner.test() does.",
    )
    _add_model_args(evaluate)
    evaluate.add_argument(
        "--data",
        type=Path,
        help="the dataset folder (as `segzoo data prepare` writes it, e.g. the "
        "folder holding ADEChallengeData2016); a .ckpt's own folder by default",
    )
    evaluate.add_argument(
        "--dataset",
        choices=EVAL_DATASETS,
        help="which dataset --data holds (default: the model's; a .ckpt train.py wrote brings its own DataModule)",
    )
    evaluate.add_argument("--tta", action="store_true", help="multi-scale + flip, by the checkpoint's rule")
    evaluate.add_argument(
        "--tta-style",
        choices=("mmseg-0.x", "mmseg-1.x"),
        help="multi-scale rule: ratio × the test scale (0.x) or × the image size (1.x)",
    )
    evaluate.add_argument(
        "--tta-scales",
        type=float,
        nargs="+",
        metavar="RATIO",
        help="multi-scale ratios (default: 0.5 0.75 1.0 1.25 1.5 1.75)",
    )
    evaluate.add_argument("--mode", choices=("whole", "slide"), help="inference mode (default: the checkpoint's)")
    evaluate.add_argument("--crop-size", type=_positive_int, help="--mode slide window (default: the checkpoint's)")
    evaluate.add_argument("--stride", type=_positive_int, help="--mode slide stride (default: the checkpoint's)")
    evaluate.add_argument("--limit", type=_positive_int, help="score the first N images only")
    evaluate.add_argument("--batch-size", type=_positive_int, default=1, help="images per batch (default 1)")
    evaluate.add_argument("--num-workers", type=int, default=2, help="data loading processes (default 2)")
    evaluate.add_argument("--device", type=_device, default="cpu", help="torch device, e.g. cpu or cuda:0")
    evaluate.add_argument("--json", type=Path, help="also write the results (unrounded too) to this JSON file")

    export = commands.add_parser("export", help="export a model to ONNX (dynamic batch, height and width)")
    _add_model_args(export)
    export.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
    export.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output file, e.g. model.onnx; written only once it passed the checks (an existing file is replaced "
        "then, never left half-written); it must not be the checkpoint being exported",
    )
    export.add_argument("--height", type=_positive_int, default=512, help="height of the tracing input (default 512)")
    export.add_argument("--width", type=_positive_int, default=512, help="width of the tracing input (default 512)")
    export.add_argument(
        "--opset",
        type=_opset,
        help="ONNX opset (default: the exporter's); the file written is checked to have it (opsets below 18 only "
        "where every operator of the model has an older version)",
    )
    export.add_argument("--static", action="store_true", help="fixed input size instead of dynamic axes")
    export.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    export.add_argument(
        "--head-logits",
        action="store_true",
        help="output the decode head's low-resolution logits (for segzoo.runtime: less memory, faster)",
    )
    export.add_argument(
        "--int8",
        type=Path,
        metavar="FILE",
        help="also write an int8 copy (static quantisation, onnxruntime), refused below "
        "--min-agreement with fp32 labels",
    )
    export.add_argument("--calibration", type=Path, metavar="DIR", help="photos to calibrate --int8 on")
    export.add_argument(
        "--check-images",
        type=Path,
        metavar="DIR",
        help="photos to compare int8 and fp32 labels on (default: the calibration photos)",
    )
    export.add_argument(
        "--min-agreement",
        type=_fraction,
        default=0.99,
        help="share of pixels int8 labels must share with fp32 (default 0.99)",
    )

    demo = commands.add_parser("demo", help="a web page to try a checkpoint on your photos (runs offline)")
    demo.add_argument(
        "--model",
        default=None,
        help="checkpoint name, local folder, weights file or .onnx file to start with (default: none; "
        "pick one on the page)",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine)")
    demo.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")

    listing = commands.add_parser("list", help="list architectures and pretrained checkpoints")
    listing.add_argument("pattern", nargs="?", help="wildcard filter, e.g. 'segformer*'")

    data = commands.add_parser("data", help="check a dataset folder, or prepare a public dataset for training")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="{check,prepare}")
    check = data_commands.add_parser(
        "check",
        help="read every mask of a folder dataset, report what it holds and the settings to train it",
        description="Reads every mask of a FolderDataModule folder (images/ + masks/, split by train/ val/ "
        "subfolders or train.txt / val.txt, or not split) once and reports the mask encoding, the values and their "
        "frequencies, what 0 and 255 look like, missing or extra files and size mismatches; then prints the "
        "FolderDataModule settings and class weights, as a config file to give after a recipe (--config recipe.yaml "
        "--config data.yaml). Exit status 1 when the data cannot be "
        "trained on as is.",
    )
    check.add_argument("data_root", metavar="DIR", type=Path, help="the folder holding images/ and masks/")
    check.add_argument("--num-classes", type=_positive_int, help="the number of classes you mean to train, if known")
    check.add_argument(
        "--ignore-index", type=_mask_value, default=255, help="the mask value meaning 'not labelled' (default 255)"
    )
    check.add_argument(
        "--save-config",
        metavar="FILE",
        type=Path,
        help="also write the recommended settings to FILE (YAML), to give after a recipe: --config recipe.yaml "
        "--config FILE (merged key by key: the recipe's other settings are kept)",
    )
    prepare = data_commands.add_parser(
        "prepare", help="convert a downloaded public dataset into the layout its DataModule reads"
    )
    prepare.add_argument("dataset", choices=PREPARE_DATASETS, help="which dataset SRC holds")
    prepare.add_argument(
        "src", metavar="SRC", type=Path, help="the folder with the downloaded archives (or the folders they unpack to)"
    )
    prepare.add_argument("dst", metavar="DST", type=Path, help="the folder to write the prepared dataset to")

    # ``segzoo train ...`` hands every argument to the LightningCLI (see main); listed here for --help.
    commands.add_parser(
        "train", help="train, validate, test or predict with LightningCLI (as python train.py)", add_help=False
    )
    return parser


def _check_model_args(args: argparse.Namespace) -> None:
    """The model options name something that exists; raises :class:`UsageError` saying what to change."""
    from segzoo.checkpoints._download import HF_HUB_PREFIX, parse_hf_hub_id
    from segzoo.checkpoints._table import list_pretrained
    from segzoo.models import ARCHS

    if not args.arch and not args.model:
        raise UsageError("give a model: --model NAME (checkpoint name, hf-hub:org/repo or local path), or --arch NAME")
    if args.arch and args.arch not in ARCHS:
        close = difflib.get_close_matches(args.arch, list(ARCHS), n=3, cutoff=0.6)
        hint = f" (closest: {', '.join(close)})" if close else ""
        raise UsageError(f"unknown architecture --arch {args.arch}{hint}; `segzoo list` shows every name")
    if args.arch and args.model:
        raise UsageError("give --model or --arch, not both (--arch with --checkpoint loads weights for it)")
    name = args.model
    if name and name.startswith(HF_HUB_PREFIX):
        try:
            parse_hf_hub_id(name)
        except ValueError as err:
            raise UsageError(f"--model {err}") from err
    if name and not args.checkpoint and name in ARCHS:
        raise UsageError(
            f"--model {name} is an architecture, which has no weights of its own: use --arch {name} for random "
            f"weights, add --checkpoint FILE for your weights, or pick a checkpoint: `segzoo list '{name}*'`"
        )
    if name and name in list_pretrained(kind="encoder"):
        raise UsageError(
            f"--model {name} is an ImageNet encoder, not a segmentation model: pick a checkpoint from `segzoo list`"
        )


def load_model(args: argparse.Namespace) -> nn.Module:
    """The model the command line asks for: ``segzoo.load(--model)`` or ``segzoo.create_model(--arch)``."""
    import segzoo

    _check_model_args(args)
    if args.arch and not args.checkpoint:
        return segzoo.create_model(args.arch, num_classes=150 if args.num_classes is None else args.num_classes)
    kwargs = {"checkpoint": args.checkpoint} if args.checkpoint else {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes  # a new head of this size on the loaded weights
    try:
        return segzoo.load(args.arch or args.model, **kwargs)
    except FileNotFoundError as err:  # a --model or --checkpoint path that does not exist
        raise UsageError(str(err)) from err


def _output_stems(files: list[Path], inputs: Sequence[str]) -> list[Path]:
    """Output path (without suffix) for each file: its path relative to the folder it was found in, else its stem."""
    folders = [Path(p) for p in inputs if Path(p).is_dir()]
    stems = []
    for file in files:
        parent = next((folder for folder in folders if file.is_relative_to(folder)), None)
        stems.append(file.relative_to(parent).with_suffix("") if parent is not None else Path(file.stem))
    return stems


def plan_outputs(
    files: list[Path], inputs: Sequence[str], out: Path, overlay: bool = True
) -> list[tuple[Path, Path | None]]:
    """(label map, overlay or ``None``) paths for each input file under ``out``.

    Never writes over an input: raises :class:`UsageError` (saying what to change) when ``out`` is an input folder
    or lies inside one (a later run would read the predictions as photos), when an output path is an input image,
    or when two outputs share a path.
    """
    out_abs = out.expanduser().resolve()
    if out_abs.exists() and not out_abs.is_dir():
        raise UsageError(f"--out {out} is a file: give a folder for the label maps and overlays")
    for folder in (Path(p).resolve() for p in inputs if Path(p).is_dir()):
        if out_abs == folder or out_abs.is_relative_to(folder):
            where = "is the input folder" if out_abs == folder else f"lies inside the input folder {folder}"
            raise UsageError(
                f"--out {out} {where}: the predictions would replace or mix with the images; give a folder outside "
                f"it, e.g. --out {folder.parent / (folder.name + '-pred')}"
            )
    inputs_abs = {file.resolve(): file for file in files}
    written: dict[Path, Path] = {}
    plan = []
    for file, stem in zip(files, _output_stems(files, inputs)):
        target = out / stem
        overlay_path = target.with_name(target.name + "_overlay.png") if overlay else None
        paths = (target.with_name(target.name + ".png"), overlay_path)
        for path in filter(None, paths):
            key = path.expanduser().resolve()
            if key in inputs_abs:
                raise UsageError(
                    f"the prediction of {file} would be written to {path}, which is the input image "
                    f"{inputs_abs[key]}: give another --out folder"
                )
            if key in written:
                raise UsageError(
                    f"{written[key]} and {file} would both be written as {path.relative_to(out)} (in {out}); "
                    "rename one or predict them separately"
                )
            written[key] = file
        plan.append(paths)
    return plan


def run_predict(args: argparse.Namespace) -> int:
    """Predicts every input; an image that cannot be read or predicted (named, with why) is skipped and the others
    go on. Exit status 0 when all were written, 1 when some were skipped, 2 when none could be written."""
    if args.onnx is not None:
        return run_predict_onnx(args)
    from PIL import Image
    from rich.console import Console
    from rich.progress import track

    from segzoo._images import image_to_rgb, list_images, load_image
    from segzoo.inference._predict import predict
    from segzoo.inference._visualize import default_palette, overlay_with_legend, save_label_png

    try:
        files = list_images(args.inputs)
    except (FileNotFoundError, ValueError) as err:  # a missing input, or a folder without images
        raise UsageError(str(err)) from err
    plan = plan_outputs(files, args.inputs, args.out, overlay=not args.no_overlay)
    model = load_model(args).to(args.device)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    num_classes = getattr(model, "num_classes", None) or len(cfg.get("class_names") or []) or 256
    palette = cfg.get("palette") or default_palette(num_classes)
    class_names = cfg.get("class_names")
    if (args.mode or model.eval_protocol.mode) == "slide":
        _check_slide_options(args, model.eval_protocol)

    console = Console(stderr=True)
    skipped = []

    def skip(file: Path, why: str) -> None:
        skipped.append(file)
        console.print(f"segzoo predict: skipped {file}: {why}", markup=False, highlight=False, soft_wrap=True)

    for file, (label_path, overlay_path) in track(list(zip(files, plan)), description="Predicting", console=console):
        try:
            image = load_image(file)
            rgb = image_to_rgb(image, f"image file {file}")  # the pixels predict reads: refused here, naming the file
        except (OSError, ValueError) as err:  # unreadable, or pixels segzoo does not read
            skip(file, str(err))
            continue
        try:  # the PIL image, so that predict says what it converts (grayscale, alpha)
            labels = predict(model, image, mode=args.mode, tta=args.tta, crop_size=args.crop_size, stride=args.stride)
        except SegzooError as err:  # e.g. too small for the encoder; anything else is a bug and keeps its traceback
            skip(file, str(err))
            continue
        label_path.parent.mkdir(parents=True, exist_ok=True)
        save_label_png(labels, label_path, palette, num_classes)
        if overlay_path is not None:
            overlay_with_legend(Image.fromarray(rgb), labels, class_names, palette, alpha=args.alpha).save(overlay_path)
    written = len(files) - len(skipped)
    console.print(
        f"wrote {written} prediction(s) to {args.out}"
        + (f"; {len(skipped)} of {len(files)} image(s) skipped (named above)" if skipped else ""),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 0 if not skipped else 1 if written else 2


def run_eval(args: argparse.Namespace) -> None:
    import json

    from segzoo.training._evaluate import build_datamodule, evaluate

    model = load_model(args)
    protocol = model.eval_protocol
    if (args.mode or protocol.mode) == "slide":
        _check_slide_options(args, protocol)
    model.eval_protocol = protocol.with_window(args.mode, args.crop_size, args.stride)
    ckpt = next((p for p in (args.model, args.checkpoint) if p and str(p).endswith(".ckpt")), None)
    try:
        datamodule = build_datamodule(
            model, args.data, args.dataset, checkpoint_path=ckpt, num_workers=args.num_workers,
            val_batch_size=args.batch_size,
        )  # fmt: skip
        datamodule.setup("test")
    except (FileNotFoundError, ValueError) as err:  # a missing folder or files: the message shows the layout
        raise UsageError(str(err)) from err
    device = args.device.split(":")
    accelerator = "cpu" if device[0] == "cpu" else "gpu"
    devices = [int(device[1])] if len(device) > 1 else 1
    result = evaluate(
        model,
        datamodule,
        tta=args.tta,
        tta_style=args.tta_style,
        tta_scales=args.tta_scales,
        limit=args.limit,
        accelerator=accelerator,
        devices=devices,
        progress=sys.stderr.isatty(),
    )
    scores = result.rounded()
    print(
        f"{args.model or args.arch}: aAcc {scores['aAcc']:.2f}  mIoU {scores['mIoU']:.2f}  mAcc {scores['mAcc']:.2f}  "
        f"({result.images} images of {result.dataset}, the "
        f"{'checkpoint' if result.protocol_source == 'checkpoint' else 'DataModule'}'s test pipeline"
        f"{', multi-scale + flip ' + result.protocol.tta_style if args.tta else ''}, {result.seconds:.1f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps({"model": args.model or args.arch} | result.to_dict(), indent=1))


def run_predict_onnx(args: argparse.Namespace) -> int:
    """``segzoo predict --onnx``: the torch-free runtime on an exported file."""
    from segzoo._errors import BackendUnavailableError, RuntimeModelError
    from segzoo.inference._visualize import default_palette, overlay_with_legend, save_label_png
    from segzoo.runtime import list_images, load, read_image

    if args.model or args.arch or args.checkpoint:
        raise UsageError("give --onnx or --model/--arch, not both")
    try:
        files = list_images(args.inputs)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from err
    plan = plan_outputs(files, args.inputs, args.out, overlay=not args.no_overlay)
    # never silently: reduced precision is compared with fp32 on the first inputs and refused below the bar
    checks = files[:4] if args.precision != "fp32" else None
    try:
        model = load(
            args.onnx,
            backend=args.backend,
            precision=args.precision,
            check_images=checks,
            min_agreement=args.min_agreement,
        )
    except (FileNotFoundError, ValueError, ImportError) as err:
        if isinstance(err, SegzooError) and not isinstance(err, (RuntimeModelError, BackendUnavailableError)):
            raise
        raise UsageError(f"--onnx {args.onnx}: {err}") from err
    if model.checked is not None:
        print(f"{args.precision}: {model.checked}")
    names = model.class_names
    num_classes = len(names) if names else 256
    palette = model.palette or default_palette(num_classes)
    settings = model.settings(args.mode, args.crop_size, args.stride)
    skipped = []
    for file, (label_path, overlay_path) in zip(files, plan):
        try:
            image = read_image(file)
        except (OSError, ValueError) as err:  # as the PyTorch path: named, skipped, the others go on
            skipped.append(file)
            print(f"segzoo predict: skipped {file}: {err}", file=sys.stderr)
            continue
        labels = model.labels(image, settings, args.tta)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        save_label_png(labels, label_path, palette, num_classes)
        if overlay_path is not None:
            overlay_with_legend(image.astype("uint8"), labels, names, palette, alpha=args.alpha).save(overlay_path)
    written = len(files) - len(skipped)
    print(
        f"wrote {written} prediction(s) to {args.out} ({model.backend.name}, {model.backend.precision})"
        + (f"; {len(skipped)} of {len(files)} image(s) skipped (named above)" if skipped else "")
    )
    return 0 if not skipped else 1 if written else 2


def _check_slide_options(args: argparse.Namespace, protocol: EvalProtocol) -> None:
    """Slide mode has a window size and a stride that covers every pixel (stride at most the window)."""
    from segzoo._preprocessing import size_pair

    crop, stride = args.crop_size or protocol.crop, args.stride or protocol.stride
    if crop is None or stride is None:
        raise UsageError(
            "--mode slide needs --crop-size and --stride for this model (it has no published window), "
            "e.g. --crop-size 512 --stride 341"
        )
    crop, stride = size_pair(crop, "--crop-size"), size_pair(stride, "--stride")
    if stride[0] > crop[0] or stride[1] > crop[1]:
        raise UsageError(
            f"the window stride {stride[0]}×{stride[1]} is larger than the window {crop[0]}×{crop[1]}, which leaves "
            "pixels no window covers: give a --stride of at most --crop-size"
        )


def _local_sources(args: argparse.Namespace) -> list[Path]:
    """Local files the model is read from (--checkpoint, or --model as a path: segzoo.load's rule)."""
    from segzoo.checkpoints import local_path

    sources = [Path(args.checkpoint).expanduser()] if args.checkpoint else []
    try:
        sources += [local_path(args.model)] if args.model else []
    except FileNotFoundError as err:
        raise UsageError(str(err)) from err
    return [p.resolve() for p in sources if p is not None and p.exists()]


def run_export(args: argparse.Namespace) -> None:
    from segzoo.inference._export import export_onnx

    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder: give a file name, e.g. --out {args.out / 'model.onnx'}")
    out = args.out.expanduser().resolve()
    for source in _local_sources(args):
        if out == source or (source.is_dir() and out.parent == source and out.name in _WEIGHT_FILES):
            raise UsageError(
                f"--out {args.out} is the checkpoint being exported: give another file, e.g. --out "
                f"{args.out.with_suffix('.onnx') if args.out.suffix != '.onnx' else 'model.onnx'}"
            )
    if args.int8 is not None and args.calibration is None:
        raise UsageError("--int8 needs --calibration DIR: a folder of photos like those the model will see")
    model = load_model(args)
    diff = export_onnx(
        model,
        args.out,
        height=args.height,
        width=args.width,
        opset=args.opset,
        dynamic=not args.static,
        verify=not args.no_verify,
        head_logits=args.head_logits,
    )
    message = f"wrote {args.out}"
    if diff is not None:
        message += f" (max abs difference to PyTorch on two input sizes: {diff:.2e})"
    print(message)
    if args.int8 is not None:
        from segzoo.runtime import quantize_int8

        result = quantize_int8(
            args.out, args.int8, args.calibration, check_images=args.check_images, min_agreement=args.min_agreement
        )
        print(f"wrote {args.int8}: int8 {result}")


def run_demo(args: argparse.Namespace) -> None:
    from segzoo.demo import serve

    serve(args.model, host=args.host, port=args.port)


_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "config.json")


def run_list(args: argparse.Namespace) -> None:
    import segzoo

    print("architectures:")
    for name in segzoo.list_models(args.pattern):
        print(f"  {name}")
    print("checkpoints (segzoo.load):")
    for name in segzoo.list_pretrained(args.pattern):
        print(f"  {name}")
    print("encoder checkpoints (segzoo.create_model(arch, pretrained_encoder=name)):")
    for name in segzoo.list_pretrained(args.pattern, kind="encoder"):
        print(f"  {name}")


def run_data(args: argparse.Namespace) -> int:
    if args.data_command == "prepare":
        from segzoo.tools import prepare_dataset

        try:
            print(prepare_dataset(args.dataset, args.src, args.dst))
        except KeyboardInterrupt:  # every file written is complete (written under a temporary name, then renamed)
            print(
                f"segzoo data prepare: interrupted; the files written so far are complete: run the same command "
                f"again to finish {args.dst}",
                file=sys.stderr,
            )
            return 130
        return 0
    from segzoo.tools import check_dataset

    try:
        report = check_dataset(args.data_root, num_classes=args.num_classes, ignore_index=args.ignore_index)
    except (FileNotFoundError, ValueError) as err:  # not a folder dataset at all: one line
        raise UsageError(str(err)) from err
    print(report)
    if args.save_config is not None and report.settings:
        try:
            args.save_config.write_text(report.recommended_yaml)
        except OSError as err:
            raise UsageError(f"--save-config {args.save_config}: cannot write it ({err.strerror or err})") from err
        print(f"wrote the recommended settings to {args.save_config}")
    return report.exit_status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segzoo`` console script; returns the exit status (2 for a user error, as argparse)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from segzoo.training import main as train_main  # the training layer, imported only for this command

        return train_main(argv[1:])
    args = build_parser().parse_args(argv)  # option errors: usage and one line, exit status 2
    commands = {
        "predict": run_predict, "eval": run_eval, "export": run_export, "list": run_list, "data": run_data,
        "demo": run_demo,
    }  # fmt: skip
    try:
        status = commands[args.command](args)
    except SegzooError as err:  # what the user asked for is wrong (names, files, downloads): one line
        message = str(err)
        name = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
        print(f"segzoo {name}: error: {message}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
