"""The ``segzoo`` console script: ``segzoo predict``, ``segzoo export`` and ``segzoo list``.

Examples::

    segzoo predict --model segformer-b0-ade photos/ --out predictions/
    segzoo predict --arch segformer-b0 --num-classes 150 image.jpg --out out/   # random weights, to try the tool
    segzoo export --model segformer-b0-ade --format onnx --out segformer-b0-ade.onnx
    segzoo list "segformer*"
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

__all__ = ["main"]


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (give --model, or --arch with --num-classes for random weights)")
    group.add_argument("--model", help="checkpoint name, hf-hub:org/repo, or a local folder or file")
    group.add_argument("--checkpoint", help="weights file or folder to load instead of the published ones")
    group.add_argument("--arch", help="architecture name for segzoo.create_model (random weights unless --checkpoint)")
    group.add_argument(
        "--num-classes", type=int, help="classes of a random --arch model (default 150), or a new head for --model"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the console script."""
    parser = argparse.ArgumentParser(prog="segzoo", description="Transformer semantic segmentation model zoo.")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="write label maps and colour overlays for images")
    _add_model_args(predict)
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    predict.add_argument("--out", required=True, type=Path, help="output folder")
    predict.add_argument("--mode", choices=("whole", "slide"), help="inference mode (default: the checkpoint's)")
    predict.add_argument("--tta", action="store_true", help="multi-scale + flip test-time augmentation")
    predict.add_argument("--crop-size", type=int, help="window size for --mode slide (default: the checkpoint's)")
    predict.add_argument("--stride", type=int, help="window stride for --mode slide (default: the checkpoint's)")
    predict.add_argument("--alpha", type=float, default=0.5, help="weight of the colours in the overlay")
    predict.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    predict.add_argument("--no-overlay", action="store_true", help="write only the label maps")

    export = commands.add_parser("export", help="export a model to ONNX (dynamic batch, height and width)")
    _add_model_args(export)
    export.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
    export.add_argument("--out", required=True, type=Path, help="output file, e.g. model.onnx")
    export.add_argument("--height", type=int, default=512, help="height of the tracing input (default 512)")
    export.add_argument("--width", type=int, default=512, help="width of the tracing input (default 512)")
    export.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    export.add_argument("--static", action="store_true", help="fixed input size instead of dynamic axes")
    export.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")

    listing = commands.add_parser("list", help="list architectures and pretrained checkpoints")
    listing.add_argument("pattern", nargs="?", help="wildcard filter, e.g. 'segformer*'")
    return parser


def load_model(args: argparse.Namespace) -> nn.Module:
    """The model the command line asks for: ``segzoo.load(--model)`` or ``segzoo.create_model(--arch)``."""
    import segzoo

    if args.arch and not args.checkpoint:
        return segzoo.create_model(args.arch, num_classes=args.num_classes or 150)
    name = args.arch or args.model
    if not name:
        raise ValueError("give a model: --model NAME (checkpoint name, hf-hub:org/repo or local path), or --arch NAME")
    kwargs = {"checkpoint": args.checkpoint} if args.checkpoint else {}
    if args.num_classes:
        kwargs["num_classes"] = args.num_classes  # a new head of this size on the loaded weights
    return segzoo.load(name, **kwargs)


def _output_stems(files: list[Path], inputs: Sequence[str]) -> list[Path]:
    """Output path (without suffix) for each file: its path relative to the folder it was found in, else its stem."""
    folders = [Path(p) for p in inputs if Path(p).is_dir()]
    stems = []
    for file in files:
        parent = next((folder for folder in folders if file.is_relative_to(folder)), None)
        stems.append(file.relative_to(parent).with_suffix("") if parent is not None else Path(file.stem))
    seen: dict[Path, Path] = {}
    for file, stem in zip(files, stems):
        if stem in seen:
            raise ValueError(
                f"{seen[stem]} and {file} would both be written as {stem}.png; rename one or predict them separately"
            )
        seen[stem] = file
    return stems


def save_label_map(labels: np.ndarray, path: Path, palette: Sequence[Sequence[int]], num_classes: int) -> None:
    """Writes a label map as a palette PNG (up to 256 classes) or a 16-bit grayscale PNG (more classes)."""
    if num_classes <= 256:
        image = Image.fromarray(labels.astype(np.uint8))  # mode L; putpalette makes it P
        flat = [int(v) for colour in list(palette)[:256] for v in colour]
        image.putpalette(flat + [0] * (768 - len(flat)))
    else:
        image = Image.fromarray(labels.astype(np.uint16))
    image.save(path)


def run_predict(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.progress import track

    from segzoo.inference import list_images, load_image, predict
    from segzoo.visualize import default_palette, overlay_with_legend

    files = list_images(args.inputs)
    stems = _output_stems(files, args.inputs)
    model = load_model(args).to(args.device)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    num_classes = getattr(model, "num_classes", None) or len(cfg.get("class_names") or []) or 256
    palette = cfg.get("palette") or default_palette(num_classes)
    class_names = cfg.get("class_names")

    console = Console(stderr=True)
    for file, stem in track(list(zip(files, stems)), description="Predicting", console=console):
        image = load_image(file)
        labels = predict(model, image, mode=args.mode, tta=args.tta, crop_size=args.crop_size, stride=args.stride)
        target = args.out / stem
        target.parent.mkdir(parents=True, exist_ok=True)
        save_label_map(labels, target.with_name(target.name + ".png"), palette, num_classes)
        if not args.no_overlay:
            rgb = image.convert("RGB")
            overlay_with_legend(rgb, labels, class_names, palette, alpha=args.alpha).save(
                target.with_name(target.name + "_overlay.png")
            )
    console.print(f"wrote {len(files)} prediction(s) to {args.out}")


def run_export(args: argparse.Namespace) -> None:
    from segzoo.export import export_onnx

    model = load_model(args)
    diff = export_onnx(
        model,
        args.out,
        height=args.height,
        width=args.width,
        opset=args.opset,
        dynamic=not args.static,
        verify=not args.no_verify,
    )
    message = f"wrote {args.out}"
    if diff is not None:
        message += f" (max abs difference to PyTorch on two input sizes: {diff:.2e})"
    print(message)


def run_list(args: argparse.Namespace) -> None:
    import segzoo

    print("architectures:")
    for name in segzoo.list_models(args.pattern):
        print(f"  {name}")
    print("checkpoints:")
    for name in segzoo.list_pretrained(args.pattern):
        print(f"  {name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segzoo`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    commands = {"predict": run_predict, "export": run_export, "list": run_list}
    try:
        commands[args.command](args)
    except (ValueError, KeyError, OSError) as err:  # bad names, paths, images, downloads: a message, no traceback
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"segzoo {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
