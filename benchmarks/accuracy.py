"""Score checkpoints on a real dataset folder as their publishers did; print our mIoU beside the published one.

    python benchmarks/accuracy.py --model segformer-b0-ade --data /data/ade           # ADEChallengeData2016 inside
    python benchmarks/accuracy.py --model setr-pup-cityscapes --data /data/cityscapes --tta
    python benchmarks/accuracy.py --model segformer-b0-ade segformer-b1-ade --data /data/ade --limit 100 --csv acc.csv
    python benchmarks/accuracy.py --model runs/my-run/version_0/checkpoints/last.ckpt     # its own data
    python benchmarks/accuracy.py --model weights.pth --dataset ade20k --data /data/ade  # a bare file: say which data

Each model is scored by ``segzoo.training.evaluate``, the test loop of ``train.py test`` and ``segzoo eval`` (one
scoring path, also behind ``predict``): every image goes through the checkpoint's own test pipeline
(``model.eval_protocol``: resize of the ``uint8`` image with OpenCV, ``size_divisor``, normalisation, whole or
sliding window; with ``--tta`` multi-scale 0.5–1.75 + flip by the rule that produced the published multi-scale number,
mmseg 0.x or 1.x), the logits are resized back to the original size before the argmax, and the ground truth is compared
at its original size, as mmsegmentation's ``Runner.test()`` does (``reference/test_test_loop.py`` proves it equal).
``--model`` takes anything ``segzoo.load`` reads; the dataset comes from the checkpoint (its table row, or the
DataModule a ``.ckpt`` was trained with) or from ``--dataset``. Needs the dataset; not run in CI.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import segzoo  # noqa: E402
from segzoo.training import build_datamodule, evaluate  # noqa: E402
from segzoo.training._evaluate import DATAMODULES  # noqa: E402


def score(
    name: str,
    data_root: str | None,
    dataset: str | None,
    tta: bool,
    limit: int | None,
    checkpoint: str | None,
    num_workers: int,
) -> dict:
    model = segzoo.load(name, checkpoint=checkpoint) if checkpoint else segzoo.load(name)
    ckpt = next((p for p in (name, checkpoint) if p and str(p).endswith(".ckpt")), None)
    datamodule = build_datamodule(model, data_root, dataset, checkpoint_path=ckpt, num_workers=num_workers)
    result = evaluate(model, datamodule, tta=tta, limit=limit)
    cfg = model.pretrained_cfg
    published = (cfg.get("metrics") or {}).get("publisher") or (cfg.get("metrics") or {}).get("paper") or {}
    rounded = result.rounded()
    return {
        "checkpoint": name,
        "dataset": cfg.get("dataset") or dataset or result.dataset,
        "images": result.images,
        "protocol": f"{result.protocol.mode}{f' + ms/flip ({result.protocol.tta_style})' if tta else ''}",
        "miou": rounded["mIoU"],
        "macc": rounded["mAcc"],
        "acc": rounded["aAcc"],
        "published_miou": published.get("miou_ms" if tta else "miou_ss"),
        "seconds": round(result.seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="checkpoint names, files or folders (segzoo.load)")
    parser.add_argument("--data", default=None, help="dataset folder in its official layout (a .ckpt: its own)")
    parser.add_argument("--dataset", choices=list(DATAMODULES), default=None, help="which dataset --data holds")
    parser.add_argument("--checkpoint", default=None, help="local weights instead of the table's (one model only)")
    parser.add_argument("--tta", action="store_true", help="multi-scale 0.5-1.75 + flip (the papers' MS numbers)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N validation images only")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.checkpoint and len(args.model) > 1:
        parser.error("--checkpoint goes with a single --model")
    rows = [
        score(m, args.data, args.dataset, args.tta, args.limit, args.checkpoint, args.num_workers) for m in args.model
    ]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
