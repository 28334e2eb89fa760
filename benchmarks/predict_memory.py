"""Memory and speed of ``predict`` on photos of every size: labels tile by tile vs full-resolution logits.

``predict`` turns the decode head's low-resolution logits into full-resolution labels a tile of pixels at a time, so
its memory is bounded by the tile (``segzoo.inference.TILE_BYTES``), not by the photo. The ``full logits`` rows
measure the computation predict replaced: the logits of all classes resized to the photo's size, then the argmax.
Each row runs in a fresh process; "added" is the peak RSS of the process minus its RSS just before the predict step
(model built, photo decoded).

    python benchmarks/predict_memory.py                         # the README table (segformer-b0-ade's protocol)
    python benchmarks/predict_memory.py --sizes 512x683 4032x3024 --model segformer-b2-ade

Targets (issue 13): a 4032×3024 photo adds under 600 MB; 10000×10000 completes under 4 GB; at 512×512 the labels path
is at least as fast as ``model(x).argmax(1)``. Random weights with the checkpoint's own protocol (no download).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # speed.py's helpers, beside this script

import numpy as np  # noqa: E402
import torch  # noqa: E402
from speed import _peak_rss_mb, _reset_peak_rss, machine, markdown, median_latency  # noqa: E402

import segzoo  # noqa: E402
from segzoo.checkpoints._table import get_pretrained_cfg  # noqa: E402
from segzoo.inference._tensor import _resize  # noqa: E402
from segzoo.inference._tiles import fields_for_input, labels_from_fields  # noqa: E402

TARGETS_MB = {(3024, 4032): 600}


def build(name: str) -> torch.nn.Module:
    cfg = get_pretrained_cfg(name)
    model = segzoo.create_model(cfg.arch, num_classes=cfg.num_classes).eval()
    model.pretrained_cfg = cfg.to_dict()
    return model


def _current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def full_logits_labels(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The replaced computation: every class's logits at the photo's size, then the argmax."""
    with torch.inference_mode():
        logits = model(model.eval_protocol(image))
        return _resize(logits.float(), image.shape[:2])[0].argmax(0).numpy()


def _child(spec: dict) -> None:
    model = build(spec["model"])
    height, width = spec["size"]
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    _reset_peak_rss()
    before = _current_rss_mb()
    start = time.perf_counter()
    labels = model.predict(image) if spec["path"] == "strips" else full_logits_labels(model, image)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "added_mb": _peak_rss_mb() - before,
                "peak_mb": _peak_rss_mb(),
                "seconds": seconds,
                "shape": list(labels.shape),
            }
        )
    )


def measure(model: str, size: tuple[int, int], path: str, timeout: float) -> dict:
    spec = json.dumps({"model": model, "size": size, "path": path})
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--_child", spec], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["killed"])[-1][:80]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed_at_512(model_name: str) -> list[dict]:
    """The labels path against ``model(x).argmax(1)`` on a 512×512 image (ADE's protocol keeps it at 512×512): both
    from the same normalised input, so the rows differ only in how logits become labels."""
    model = build(model_name)
    image = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    x = model.eval_protocol(image)
    protocol = segzoo.EvalProtocol()  # whole image

    def plain():
        with torch.inference_mode():
            return model(x).argmax(1)

    def tiles():
        with torch.inference_mode():
            fields = fields_for_input(model, x, protocol, (512, 512), batch_size=1)
            return labels_from_fields(fields, (512, 512)).numpy()

    cases = (
        ("model(x).argmax(1)", plain),
        ("labels in tiles (predict's path)", tiles),
        ("predict(image), preprocessing included", lambda: model.predict(image)),
    )
    return [
        {
            "model": model_name,
            "size": "512x512",
            "path": label,
            "median ms": round(1000 * median_latency(fn, warmup=2, repeats=7), 1),
        }
        for label, fn in cases
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="segformer-b0-ade", help="a checkpoint name (its protocol; random weights)")
    parser.add_argument(
        "--sizes", nargs="+", default=["512x683", "1080x1920", "3024x4032", "10000x10000"], help="photo sizes HxW"
    )
    parser.add_argument("--paths", nargs="+", default=["strips", "full"], choices=["strips", "full"])
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        return _child(json.loads(args._child))
    rows = []
    for size in args.sizes:
        height, width = (int(v) for v in size.lower().split("x"))
        for path in args.paths:
            result = measure(args.model, (height, width), path, args.timeout)
            target = TARGETS_MB.get((height, width))
            rows.append(
                {
                    "model": args.model,
                    "photo HxW": f"{height}x{width}",
                    "path": "predict (tiles)" if path == "strips" else "full logits",
                    "added MB": round(result["added_mb"]) if "added_mb" in result else result["error"],
                    "peak MB": round(result["peak_mb"]) if "peak_mb" in result else "",
                    "seconds": round(result["seconds"], 2) if "seconds" in result else "",
                    "target": f"< {target} MB added" if target and path == "strips" else "",
                }
            )
    print(f"### predict memory ({machine()})\n")
    print(markdown(rows))
    print("\n### speed at 512×512\n")
    print(markdown(speed_at_512(args.model)))


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.exit(main())
