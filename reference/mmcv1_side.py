#!/usr/bin/env python
"""The NVlabs SegFormer rows' training rules as mmcv 1.x's own code applies them (run by hand, not in CI).

NVlabs trained the SegFormer checkpoints on their mmseg 0.11 fork with mmcv 1.x: parameter groups from
``mmcv.runner.DefaultOptimizerConstructor`` with NVlabs' ``paramwise_cfg.custom_keys`` and the lr from
``PolyLrUpdaterHook(power=1.0, min_lr=0.0, by_epoch=False, warmup='linear', warmup_iters=1500, warmup_ratio=1e-6)``
(``local_configs/segformer/B*/segformer.*.py``). This script runs both in an environment with mmcv 1.x (no mmseg, no
segzoo): the constructor on a module tree with the parameter names and shapes given in ``--names`` (the NVlabs
model's: segzoo's MiT and SegFormer head keep the official names; ``decode_head.conv_seg`` is the head's unused
leftover of mmseg's base head), the hook driven by a stand-in runner over the 160k iterations. ``check_mmcv1.py``
compares the output with segzoo's recipe. mmcv 1.7.2 installs here from its sdist:

    python3 -m venv /tmp/mmcv1 && /tmp/mmcv1/bin/pip install torch "setuptools<70" wheel
    MMCV_WITH_OPS=0 /tmp/mmcv1/bin/pip install --no-build-isolation mmcv==1.7.2
    /tmp/mmcv1/bin/python reference/mmcv1_side.py --names names.json --out mmcv1.json
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch
from torch import nn

# mmcv.runner imports torchvision for its model-zoo URLs only; none is used here
_torchvision = types.ModuleType("torchvision")
_torchvision.__version__ = "0.0"
_torchvision.models = types.ModuleType("torchvision.models")
sys.modules.setdefault("torchvision", _torchvision)
sys.modules.setdefault("torchvision.models", _torchvision.models)

import mmcv  # noqa: E402
from mmcv.runner import DefaultOptimizerConstructor  # noqa: E402
from mmcv.runner.hooks.lr_updater import PolyLrUpdaterHook  # noqa: E402

NVLABS_OPTIMIZER = dict(type="AdamW", lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01)
NVLABS_CUSTOM_KEYS = {"pos_block": dict(decay_mult=0.0), "norm": dict(decay_mult=0.0), "head": dict(lr_mult=10.0)}
NVLABS_LR_CONFIG = dict(power=1.0, min_lr=0.0, by_epoch=False, warmup="linear", warmup_iters=1500, warmup_ratio=1e-6)
MAX_ITERS = 160000
ITERATIONS = (0, 1, 2, 1499, 1500, 1501, 80000, 159998, 159999)


def module_tree(shapes: dict[str, list[int]]) -> nn.Module:
    root = nn.Module()
    for name, shape in shapes.items():
        *path, leaf = name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(torch.zeros(shape, device="meta")))
    return root


def param_groups(shapes: dict[str, list[int]]) -> dict[str, list[float]]:
    model = module_tree(shapes)
    constructor = DefaultOptimizerConstructor(dict(NVLABS_OPTIMIZER), dict(custom_keys=NVLABS_CUSTOM_KEYS))
    optimizer = constructor(model)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: [g["lr"], g["weight_decay"]] for g in optimizer.param_groups for p in g["params"]}


def schedule(initial_lrs: list[float]) -> dict[str, list[float]]:
    params = [nn.Parameter(torch.zeros(1)) for _ in initial_lrs]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, initial_lrs)], lr=1.0)
    runner = types.SimpleNamespace(optimizer=optimizer, iter=0, epoch=0, max_iters=MAX_ITERS, max_epochs=1)
    hook = PolyLrUpdaterHook(**NVLABS_LR_CONFIG)
    hook.before_run(runner)
    lrs = {}
    for iteration in range(max(ITERATIONS) + 1):
        runner.iter = iteration
        hook.before_train_iter(runner)
        if iteration in ITERATIONS:
            lrs[str(iteration)] = [g["lr"] for g in optimizer.param_groups]
    return lrs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", required=True, type=Path, help="JSON {parameter name: shape} of the model")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    groups = param_groups(json.loads(args.names.read_text()))
    initial_lrs = sorted({lr for lr, _ in groups.values()})
    result = {
        "mmcv_version": mmcv.__version__,
        "param_groups": groups,
        "initial_lrs": initial_lrs,
        "max_iters": MAX_ITERS,
        "lrs": schedule(initial_lrs),
    }
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
