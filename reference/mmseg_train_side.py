#!/usr/bin/env python
"""The mmsegmentation side of the training-parity tests (``reference/test_training_parity.py``).

Runs **inside the reference environment** (mmsegmentation 1.2.2, mmengine 0.10.7; ``bash reference/setup.sh``) and
never imports segzoo. For each model it builds mmseg's model from the config shipped in the mmseg wheel, loads the
random weights ``reference/mmseg_side.py`` wrote (``--ref``), and records what mmseg's own training code does:

- ``param_groups``: every parameter's lr and weight decay from ``mmengine.optim.build_optim_wrapper(model,
  cfg.optim_wrapper)`` (one group per parameter, as mmengine builds them);
- ``schedule``: the lr at chosen iterations of ``cfg.param_scheduler`` (``PARAM_SCHEDULERS.build`` on an
  ``OptimWrapper``, stepped once per iteration as ``ParamSchedulerHook`` does) for each distinct initial lr. The
  schedulers treat every group alike and depend on nothing but the step and the group's initial lr, so they run on an
  optimizer with one group per distinct initial lr rather than one per parameter;
- ``losses``: ``model.loss(x, data_samples)`` and ``model.parse_losses`` on a fixed batch (2×3×64×96, about 15% of
  the pixels labelled 255) in training mode with every dropout and drop path set to 0;
- ``steps``: three iterations of the real optimizer wrapper and schedulers (``optim_wrapper.update_params`` on the
  parsed loss, then every scheduler's ``step``) from the same weights, noise off, starting at iteration
  ``STEPS_FROM`` (the schedulers are stepped there first), in float64 for the AdamW model (``STEPS_DTYPE``): the loss
  of each iteration and of the weights after the third, and per parameter and buffer the sum, sum of squares and
  largest magnitude of its change;
- ``noise``: the dropout and drop-path calls (scope, residual branch, kind, p) of one training forward with the
  config's own noise, counted with forward hooks (calls with p = 0 are left out: they change nothing);
- ``names``, ``state_shapes``: the parameter names and shapes (whether the patch projection has a bias, and
  everything else), and those of every parameter and buffer.

    python reference/mmseg_train_side.py --ref /work/mmseg-ref --out /tmp/mmseg-train-ref [--models setr-naive,...]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import torch
from torch import nn

# mmseg_side first: importing it registers the mmcv.ops stand-in that any mmseg import needs
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmseg_side import MODEL_SPECS, build_model, load_config  # noqa: E402, I001
from noise_probe import noise_calls  # noqa: E402

from mmengine.logging import MMLogger  # noqa: E402
from mmengine.optim import OptimWrapper, build_optim_wrapper  # noqa: E402
from mmengine.registry import PARAM_SCHEDULERS  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

TRAIN_MODELS = ("segformer-b0", "setr-naive", "setr-pup", "setr-mla", "segmenter-t16-mask", "segmenter-s16-linear")
BATCH_SEED = 4321
BATCH_SHAPE = (2, 3, 64, 96)
IGNORE_SHARE = 0.15
STEPS_FROM = 1500  # the three optimizer steps run at iterations 1500-1502 (SegFormer's lr is 1e-6 × base before)
NUM_STEPS = 3
# Adam divides each gradient by sqrt(v) + eps: an element whose gradient is near eps (1e-8) takes a step that the
# gradient's last fp32 digits decide, so the AdamW model (SegFormer) takes its three steps in float64; the SGD models
# (SETR, Segmenter), whose steps are linear in the gradient, in float32.
STEPS_DTYPE = {"segformer-b0": torch.float64}


def schedule_iterations(max_iters: int) -> list[int]:
    """0, 1, the end of SegFormer's warm-up (1499, 1500, 1501), mid-run and the last two iterations."""
    return sorted({0, 1, 2, 1499, 1500, 1501, max_iters // 2, max_iters - 2, max_iters - 1})


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(BATCH_SEED)
    b, _, h, w = BATCH_SHAPE
    images = torch.randn(BATCH_SHAPE, generator=gen)
    labels = torch.randint(0, 150, (b, h, w), generator=gen)
    labels[torch.rand((b, h, w), generator=gen) < IGNORE_SHARE] = 255
    return images, labels


def data_samples(labels: torch.Tensor) -> list[SegDataSample]:
    samples = []
    for label in labels:
        shape = tuple(label.shape)
        sample = SegDataSample(metainfo={"img_shape": shape, "ori_shape": shape, "pad_shape": shape})
        sample.gt_sem_seg = PixelData(data=label[None])
        samples.append(sample)
    return samples


def load_weights(model: nn.Module, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict(state, strict=True)


def noise_off(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
        elif hasattr(module, "drop_prob"):
            module.drop_prob = 0.0


# --------------------------------------------------------------------------------------------------------------


def param_groups(model: nn.Module, cfg) -> dict[str, list[float]]:
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in wrapper.optimizer.param_groups:
        for param in group["params"]:
            out[names[id(param)]] = [group["lr"], group.get("weight_decay", 0.0)]
    return out


def build_schedulers(wrapper: OptimWrapper, cfg) -> list:
    return [PARAM_SCHEDULERS.build(dict(copy.deepcopy(s), optimizer=wrapper)) for s in cfg.param_scheduler]


def schedule(cfg, initial_lrs: list[float]) -> dict:
    """lr at ``schedule_iterations`` for each initial lr, from the config's own schedulers."""
    params = [nn.Parameter(torch.zeros(1)) for _ in initial_lrs]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, initial_lrs)], lr=1.0)
    wrapper = OptimWrapper(optimizer)
    schedulers = build_schedulers(wrapper, cfg)
    max_iters = cfg.train_cfg.max_iters
    wanted = set(schedule_iterations(max_iters))
    lrs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": nothing to optimize here
        for iteration in range(max_iters):
            if iteration in wanted:
                lrs[iteration] = [group["lr"] for group in optimizer.param_groups]
            for scheduler in schedulers:
                scheduler.step()
    return {"max_iters": max_iters, "initial_lrs": initial_lrs, "lrs": {str(k): v for k, v in lrs.items()}}


def loss_values(model: nn.Module, images: torch.Tensor, samples: list) -> tuple[torch.Tensor, dict[str, float]]:
    losses = model.loss(images, samples)
    total, log_vars = model.parse_losses(losses)
    return total, {k: float(v) for k, v in log_vars.items()}


def change_summary(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    out = {}
    for name, old in before.items():
        if not old.is_floating_point():
            continue
        delta = (after[name] - old).flatten()  # exact: an update is far smaller than the weight it changes
        norm = torch.linalg.vector_norm(delta, dtype=torch.float64)
        out[name] = [float(delta.sum(dtype=torch.float64)), float(norm) ** 2, float(delta.abs().max())]
    return out


def three_steps(model: nn.Module, cfg, images: torch.Tensor, samples: list, dtype: torch.dtype) -> dict:
    model.to(dtype)
    images = images.to(dtype)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    schedulers = build_schedulers(wrapper, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": only the position matters here
        for _ in range(STEPS_FROM):
            for scheduler in schedulers:
                scheduler.step()
    losses = []
    for _ in range(NUM_STEPS):
        total, _ = loss_values(model, images, samples)
        losses.append(float(total))
        wrapper.update_params(total)
        for scheduler in schedulers:
            scheduler.step()
    change = change_summary(before, {k: v.detach() for k, v in model.state_dict().items()})
    with torch.no_grad():
        final_loss = float(loss_values(model, images, samples)[0])
    return {
        "from_iteration": STEPS_FROM,
        "dtype": str(dtype).removeprefix("torch."),
        "losses": losses,
        "loss_after": final_loss,
        "change": change,
    }


def run_model(key: str, ref: Path, out: Path) -> dict:
    config, _ = MODEL_SPECS[key]
    t0 = time.perf_counter()
    cfg, _ = load_config(config)
    images, labels = fixed_batch()
    samples = data_samples(labels)
    model = build_model(cfg)
    load_weights(model, ref / f"{key}.pth")
    model.train()
    record = {
        "config": config,
        "names": {n: list(p.shape) for n, p in model.named_parameters()},
        "state_shapes": {n: list(t.shape) for n, t in model.state_dict().items()},
        "noise": noise_calls(model, partial(model.loss, images, samples)),
        "param_groups": param_groups(model, cfg),
    }
    initial_lrs = sorted({lr for lr, _ in record["param_groups"].values()})
    record["schedule"] = schedule(cfg, initial_lrs)
    noise_off(model)
    _, record["losses"] = loss_values(model, images, samples)  # in training mode: batch statistics, not running ones
    load_weights(model, ref / f"{key}.pth")  # the forwards above moved the BatchNorm running statistics
    record["steps"] = three_steps(model, cfg, images, samples, STEPS_DTYPE.get(key, torch.float32))
    record["seconds"] = round(time.perf_counter() - t0, 1)
    del model
    gc.collect()
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, type=Path, help="a complete mmseg_side.py output folder")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--models", default=",".join(TRAIN_MODELS), help="subset of " + ", ".join(TRAIN_MODELS))
    args = parser.parse_args(argv)
    keys = [k for k in args.models.split(",") if k]
    unknown = sorted(set(keys) - set(TRAIN_MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(TRAIN_MODELS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    MMLogger.get_current_instance().setLevel("WARNING")  # not one line per parameter from build_optim_wrapper
    images, labels = fixed_batch()
    torch.save({"images": images, "labels": labels}, args.out / "train_batch.pt")
    manifest = {
        "batch_file": "train_batch.pt",
        "batch_how": f"torch.randn({BATCH_SHAPE}) then randint(0, 150) labels and rand < {IGNORE_SHARE} set to 255, "
        f"all from torch.Generator().manual_seed({BATCH_SEED})",
        "steps_from": STEPS_FROM,
        "models": {},
    }
    start = time.perf_counter()
    for key in keys:
        print(f"[mmseg_train_side] {key} ...", flush=True)
        manifest["models"][key] = run_model(key, args.ref, args.out)
        print(f"[mmseg_train_side] {key}: {manifest['models'][key]['seconds']} s", flush=True)
        (args.out / "train_manifest.json").write_text(json.dumps(manifest))
    manifest["seconds"] = round(time.perf_counter() - start, 1)
    manifest["complete"] = True
    (args.out / "train_manifest.json").write_text(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
