"""Convert every checkpoint of checkpoints.yaml to segzoo's format and push it to a Hugging Face Hub organisation.

Each checkpoint ``NAME`` is loaded with ``segzoo.load(NAME)`` (download + conversion from its published format),
checked with one forward pass, and uploaded with ``segzoo.push_to_hub`` to ``ORG/segzoo-NAME`` as
``model.safetensors`` + ``config.json`` + a model card.

Examples:
    python scripts/push_all.py --org segzoo --dry-run
    python scripts/push_all.py --org segzoo --only "segformer-b0-*"
    HF_TOKEN=hf_... python scripts/push_all.py --org segzoo --private
"""

from __future__ import annotations

import argparse
import sys

import torch

import segzoo
from segzoo import push_to_hub
from segzoo.checkpoints._table import get_pretrained_cfg, list_pretrained


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--org", required=True, help="Hub organisation (or user) that receives the repositories")
    parser.add_argument("--only", default=None, metavar="PATTERN", help="fnmatch pattern of checkpoint names")
    parser.add_argument("--dry-run", action="store_true", help="print what would be pushed; download nothing")
    parser.add_argument("--private", action="store_true", help="create the repositories as private")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the logged-in one)")
    parser.add_argument("--prefix", default="segzoo-", help="repository name prefix (default: %(default)s)")
    parser.add_argument("--keep-going", action="store_true", help="report a failed checkpoint and continue")
    return parser.parse_args(argv)


def check_model(model: torch.nn.Module, name: str) -> None:
    """One forward pass on a small random image: right shape, finite logits."""
    cfg = get_pretrained_cfg(name)
    with torch.inference_mode():
        logits = model(torch.randn(1, 3, 64, 64))
    if logits.shape != (1, cfg.num_classes, 64, 64) or not torch.isfinite(logits).all():
        raise RuntimeError(f"{name}: bad logits {tuple(logits.shape)} (finite: {bool(torch.isfinite(logits).all())})")


def push_one(name: str, repo_id: str, args: argparse.Namespace) -> str:
    """Loads, checks and pushes one checkpoint; returns the commit URL."""
    model = segzoo.load(name)
    check_model(model, name)
    return push_to_hub(
        model,
        repo_id,
        private=args.private,
        token=args.token,
        commit_message=f"Upload {name} converted from {get_pretrained_cfg(name).source.describe()}",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Encoder-only entries (ImageNet weights) are not full segmentation models; they stay at their source.
    names = list_pretrained(args.only)
    if not names:
        print(f"No segmentation checkpoint matches {args.only!r}; see segzoo.list_pretrained().")
        return 1
    failures = []
    for name in names:
        repo_id = f"{args.org}/{args.prefix}{name}"
        cfg = get_pretrained_cfg(name)
        if args.dry_run:
            print(f"{name:32s} -> {repo_id}   (from {cfg.source.describe()}, {cfg.format})")
            continue
        try:
            print(f"{name}: {push_one(name, repo_id, args)}")
        except Exception as err:  # report it and go on with --keep-going
            if not args.keep_going:
                raise
            failures.append(name)
            print(f"{name}: FAILED ({type(err).__name__}: {err})", file=sys.stderr)
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
