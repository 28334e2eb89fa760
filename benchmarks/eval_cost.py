"""What scoring at the original size costs, per image: the publisher's protocol against the approximation segzoo's
validation used before (comparing at the resized size).

- ``resized`` (the old validation): the test pipeline's input, the model, the argmax at the input size (masks would be
  resized to it); with ``--tta``, every scale rescaled from the already resized float input;
- ``original`` (validation, test, ``segzoo eval`` and ``predict`` now): ``predict_arrays``, i.e. the same input, then
  the logits brought to the original size strip by strip before the argmax; with ``--tta``, every scale resized from
  the original ``uint8`` image.

Random weights with each checkpoint's own protocol (no download); photo-like inputs of typical ADE20K sizes. CPU time
of this process (``time.process_time``, one thread by default), the median of ``--repeats`` runs, so other jobs on the
machine move the figures less than wall time would.

    python benchmarks/eval_cost.py                                     # SegFormer-B0 (whole), Segmenter-T (slide)
    python benchmarks/eval_cost.py --models segformer-b0-ade-mmseg --sizes 512x683 1024x2048 --tta
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import segzoo
from segzoo.checkpoints._table import get_pretrained_cfg
from segzoo.inference import inference, predict_arrays


def build(name: str) -> torch.nn.Module:
    cfg = get_pretrained_cfg(name)
    model = segzoo.create_model(cfg.arch, num_classes=cfg.num_classes).eval()
    model.pretrained_cfg = cfg.to_dict()
    return model


def photo(height: int, width: int) -> np.ndarray:
    """Smooth random colours (a photo's statistics matter little to the cost)."""
    coarse = np.random.default_rng(0).integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(coarse, np.ones((16, 16, 1), np.uint8))[:height, :width])


def cpu_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def resized(model: torch.nn.Module, image: np.ndarray, tta: bool) -> torch.Tensor:
    protocol = model.eval_protocol
    return inference(model, protocol(image), protocol, tta=tta).argmax(dim=1)


def original(model: torch.nn.Module, image: np.ndarray, tta: bool) -> torch.Tensor:
    return predict_arrays(model, [image], model.eval_protocol, tta=tta)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["segformer-b0-ade-mmseg", "segmenter-t16-mask-ade"])
    parser.add_argument("--sizes", nargs="+", default=["512x683", "375x500", "1024x768"], help="HxW")
    parser.add_argument("--tta", action="store_true", help="multi-scale + flip (mmseg's six ratios)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| model | mode | image | resized (old validation) s | original size s | added |\n|---|---|---|---|---|---|")
    for name in args.models:
        model = build(name)
        mode = model.eval_protocol.mode + (" + ms/flip" if args.tta else "")
        for size in args.sizes:
            height, width = (int(v) for v in size.split("x"))
            image = photo(height, width)
            with torch.inference_mode():
                original(model, image, args.tta)  # warm-up
                old = cpu_seconds(lambda: resized(model, image, args.tta), args.repeats)
                new = cpu_seconds(lambda: original(model, image, args.tta), args.repeats)
            print(f"| {name} | {mode} | {size} | {old:.2f} | {new:.2f} | {100 * (new / old - 1):+.0f}% |", flush=True)


if __name__ == "__main__":
    main()
