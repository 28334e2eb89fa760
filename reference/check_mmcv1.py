#!/usr/bin/env python
"""Compares an NVlabs SegFormer recipe's parameter groups and schedule with mmcv 1.x's own (``mmcv1_side.py``).

    python reference/check_mmcv1.py names --recipe configs/segformer/segformer-b0-ade.yaml --out names.json
    <mmcv 1.x python> reference/mmcv1_side.py --names names.json --out mmcv1.json
    python reference/check_mmcv1.py compare --recipe configs/segformer/segformer-b0-ade.yaml --mmcv mmcv1.json

Run by hand (mmcv 1.x is not installed by reference/setup.sh); CI checks the same rules against the formulas read
from mmcv's code (tests/training/test_training_fidelity.py). Prints the largest differences; exits 1 if any exceeds
1e-6 of the start lr (lr) or differs (weight decay).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from unittest import mock

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def recipe_module(recipe: str):
    from segzoo.training import cli_main

    args = [
        "--config",
        str(REPO / recipe),
        "--model.pretrained_encoder=false",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.strategy=auto",
        "--trainer.logger=false",
    ]
    with mock.patch.object(sys, "argv", ["check_mmcv1.py"]):
        cli = cli_main(args, run=False)
    cli.model.trainer = cli.trainer
    return cli.model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("names", "compare"))
    parser.add_argument("--recipe", default="configs/segformer/segformer-b0-ade.yaml")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--mmcv", type=Path)
    args = parser.parse_args()
    module = recipe_module(args.recipe)
    params = dict(module.model.named_parameters())
    if args.mode == "names":
        shapes = {n: list(p.shape) for n, p in params.items()}
        head = module.model.decode_head  # NVlabs' head also holds mmseg's unused base-head classifier
        shapes |= {
            "decode_head.conv_seg.weight": [head.num_classes, head.channels, 1, 1],
            "decode_head.conv_seg.bias": [head.num_classes],
        }
        args.out.write_text(json.dumps(shapes))
        return 0
    ref = json.loads(args.mmcv.read_text())
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    iterations = sorted(int(i) for i in ref["lrs"])
    lrs = {}
    for step in range(max(iterations) + 1):
        if step in iterations:
            lrs[step] = [g["lr"] for g in optimizer.param_groups]
        scheduler.step()
    names = {id(p): n for n, p in params.items()}
    worst_lr, worst_wd = (0.0, None), (0.0, None)
    for index, group in enumerate(optimizer.param_groups):
        for param in group["params"]:
            name = names[id(param)]
            start_lr, weight_decay = ref["param_groups"][name]
            if abs(group["weight_decay"] - weight_decay) > worst_wd[0]:
                worst_wd = (abs(group["weight_decay"] - weight_decay), name)
            column = ref["initial_lrs"].index(start_lr)
            for step in iterations:
                error = abs(lrs[step][index] - ref["lrs"][str(step)][column]) / start_lr
                if error > worst_lr[0]:
                    worst_lr = (error, f"{name} at {step}")
    print(f"mmcv {ref['mmcv_version']}, {len(params)} parameters, iterations {iterations}")
    print(f"largest |lr - mmcv's| / start lr: {worst_lr[0]:.2e} {worst_lr[1] or ''}")
    print(f"largest weight-decay difference: {worst_wd[0]:.2e} {worst_wd[1] or ''}")
    return 0 if worst_lr[0] <= 1e-6 and worst_wd[0] == 0.0 else 1


if __name__ == "__main__":
    sys.exit(main())
