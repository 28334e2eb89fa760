"""Training parity: each paper recipe trains as mmsegmentation 1.2.2's own training code does (reference/README.md).

For SegFormer (mmseg head), SETR Naive / PUP / MLA and Segmenter Mask / Linear, segzoo's side is the recipe itself
(``train.py fit --config configs/<family>/<row>.yaml``, instantiated without running, starting from the random-weight
checkpoint ``mmseg_side.py`` wrote, given as ``--model.init_from``); mmseg's side is ``mmseg_train_side.py`` on the
same file (the ``mmseg_train_ref`` fixture). Parameters are paired through segzoo's converter, whose key map the
inference-parity tests prove.
"""

from __future__ import annotations

import contextvars
import gc
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import torch
from noise_probe import noise_calls
from parity_cases import TRAIN_RECIPES
from torch import Tensor, nn

from segzoo.checkpoints._convert import convert_mmseg
from segzoo.training import SegmentationTask, cli_main

REPO = Path(__file__).resolve().parents[1]
LOSS_TOL = 1e-5  # absolute, on losses of about 5 (fp32 sums over 12k pixels in another order: ~1e-6)
# Three optimizer steps: the losses before each step and after the third, and each parameter's (and BatchNorm
# statistic's) change over the steps by its norm, sum and largest magnitude. segzoo and mmseg compute the same
# functions with other kernels (timm's fused attention vs nn.MultiheadAttention, SegFormer's fused head), so their
# gradients agree to fp32 rounding, and the steps amplify that rounding: with SETR-Naive's head lr of 0.1, mmseg's own
# float32 and float64 runs of these three steps end 7e-5 apart in the loss and 7e-4 in the change of a LayerNorm
# weight. The SGD models (SETR, Segmenter) run in float32 with tolerances of 3x that: 2e-4 of the loss after the
# steps, 2e-3 of each tensor's change. Adam's step divides by sqrt(v) + eps and turns the last fp32 digits of a
# gradient near eps (1e-8) into a step of any size up to lr, so the AdamW model (SegFormer) takes its steps in float64
# on both sides (mmseg_train_side.py STEPS_DTYPE), with tolerances of 1e-9 and 1e-6. Changes that are rounding noise
# (a LayerNorm bias before a BatchNorm has no gradient but rounding) are absorbed by a floor of 1e-6 of the model's
# largest change.
LOSS_AFTER_REL = {"float32": 2e-4, "float64": 1e-9}
CHANGE_REL = {"float32": 2e-3, "float64": 1e-6}


def noise_off(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
        elif hasattr(module, "drop_prob"):
            module.drop_prob = 0.0


@dataclass
class TrainSide:
    """segzoo's side of one model: the recipe's SegmentationTask starting from mmseg's file."""

    module: SegmentationTask
    initial_state: dict[str, Tensor]
    noise: list[list]

    @classmethod
    def build(cls, key: str, checkpoint: Path, images: Tensor, labels: Tensor) -> TrainSide:
        args = ["--config", str(REPO / TRAIN_RECIPES[key]), f"--model.init_from={checkpoint}",
                "--model.pretrained_encoder=false", "--trainer.accelerator=cpu", "--trainer.devices=1",
                "--trainer.strategy=auto", "--trainer.sync_batchnorm=false", "--trainer.logger=false",
                "--trainer.enable_progress_bar=false"]  # fmt: skip
        with mock.patch.object(sys, "argv", ["train.py"]):  # LightningCLI warns about pytest's own arguments
            # in a copied context: jsonargparse keeps its parser, and so the model, in a context variable
            cli = contextvars.copy_context().run(cli_main, args, run=False)
        module = cli.model
        module.trainer = cli.trainer  # configure_optimizers reads the run's length (max_steps) from it
        state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
        module.model.train()
        noise = noise_calls(module.model, lambda: module.compute_loss(images, labels))
        module.model.load_state_dict(state)  # the noisy forward moved the BatchNorm statistics
        noise_off(module.model)
        return cls(module, state, noise)

    def loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self.module.model.load_state_dict(self.initial_state)
        return self.module.compute_loss(images, labels)

    def scheduled_lrs(self, iterations: list[int], max_iters: int):
        """The optimizer of ``configure_optimizers`` and each group's lr at ``iterations``, its scheduler stepped
        once per iteration as Lightning steps it (``interval: step``)."""
        configured = self.module.configure_optimizers()
        optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
        assert scheduler.total_steps == max_iters
        wanted, lrs = set(iterations), {}
        for step in range(max(iterations) + 1):
            if step in wanted:
                lrs[step] = [group["lr"] for group in optimizer.param_groups]
            scheduler.step()
        return optimizer, lrs

    def three_steps(self, images: Tensor, labels: Tensor, start: int, dtype: torch.dtype, steps: int = 3):
        """From the initial weights, at iteration ``start`` of the schedule: ``steps`` optimizer steps on the batch in
        ``dtype``. Returns the loss of each, the loss after, each tensor's change (sum, sum of squares, largest
        magnitude)."""
        model = self.module.model
        model.load_state_dict(self.initial_state)
        model.to(dtype)
        images = images.to(dtype)
        configured = self.module.configure_optimizers()
        optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
        for _ in range(start):
            scheduler.step()
        losses = []
        for _ in range(steps):
            loss, _ = self.module.compute_loss(images, labels)
            losses.append(float(loss.detach()))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)  # a ViT-L's gradients: 1.2 GB
        change = {}
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                delta = (tensor - self.initial_state[name].to(tensor.dtype)).flatten()
                norm = torch.linalg.vector_norm(delta, dtype=torch.float64)
                change[name] = (float(delta.sum(dtype=torch.float64)), float(norm) ** 2, float(delta.abs().max()))
        with torch.no_grad():
            loss_after = float(self.module.compute_loss(images, labels)[0])
        model.float()
        return losses, loss_after, change


@pytest.fixture(scope="module")
def sides(mmseg_train_ref, mmseg_ref):
    """segzoo's side of each model, built once per model and one at a time (the SETR models are ViT-L)."""
    cache: dict[str, TrainSide] = {}

    def get(key: str) -> TrainSide:
        if key not in cache:
            cache.clear()
            inference_tests = sys.modules.get("test_mmseg_parity")  # run just before, model by model (conftest)
            if inference_tests is not None:
                inference_tests._CURRENT.clear()  # their model of the same key: one ViT-L in memory at a time
            gc.collect()  # the optimizer and scheduler of the previous model form reference cycles
            cache[key] = TrainSide.build(key, mmseg_ref.path(f"{key}.pth"), *mmseg_train_ref.batch())
        return cache[key]

    return get


def counterparts(shapes: dict[str, list[int]]) -> dict[str, str]:
    """segzoo tensor name -> the mmseg tensor it comes from, through segzoo's converter: each mmseg tensor is given a
    unique value from 1 up, and each converted tensor tells by its value which one it came from (the fused q-kv
    projection of mmseg's MiT becomes two tensors; a tensor the converter made up, holding 0, has none)."""
    names = sorted(shapes)
    tagged = {name: torch.tensor(float(i + 1)).expand(shapes[name]) for i, name in enumerate(names)}
    converted = {ours: int(t.reshape(-1)[0]) for ours, t in convert_mmseg(tagged).items() if t.numel()}
    return {ours: names[tag - 1] for ours, tag in converted.items() if tag > 0}


# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(TRAIN_RECIPES))
def test_every_trained_parameter_has_an_mmseg_counterpart(key, sides, mmseg_train_ref, record):
    ref = mmseg_train_ref.model(key)
    params = dict(sides(key).module.model.named_parameters())
    pairs = counterparts(ref["names"])
    unpaired = [n for n in params if n not in pairs]
    record(
        "parameters without mmseg counterpart",
        f"{len(unpaired)} tensors, {sum(params[n].numel() for n in unpaired)} values {unpaired[:3]}",
    )
    assert not unpaired
    # mmseg's SETR-MLA keeps a class token that it drops before the first block (never trained); segzoo has none
    never_trained = {"backbone.cls_token"} if key == "setr-mla" else set()
    assert set(ref["names"]) - {pairs[n] for n in params} == never_trained


@pytest.mark.parametrize("key", list(TRAIN_RECIPES))
def test_lr_and_weight_decay_of_every_parameter_over_the_schedule(key, sides, mmseg_train_ref, record):
    """At iterations 0, 1, 2, 1499, 1500, 1501, mid-run and the last two, every parameter's lr (within 1e-6 of its
    start lr) and weight decay equal mmseg's build_optim_wrapper + param_scheduler."""
    ref = mmseg_train_ref.model(key)
    side = sides(key)
    pairs = counterparts(ref["names"])
    schedule = ref["schedule"]
    iterations = sorted(int(i) for i in schedule["lrs"])
    optimizer, lrs = side.scheduled_lrs(iterations, schedule["max_iters"])
    names = {id(p): n for n, p in side.module.model.named_parameters()}
    worst = (0.0, None)
    for index, group in enumerate(optimizer.param_groups):
        for param in group["params"]:
            name = names[id(param)]
            start_lr, weight_decay = ref["param_groups"][pairs[name]]
            assert group["weight_decay"] == pytest.approx(weight_decay, rel=1e-12, abs=1e-15), name
            column = schedule["initial_lrs"].index(start_lr)
            for step in iterations:
                ours, theirs = lrs[step][index], schedule["lrs"][str(step)][column]
                if abs(ours - theirs) / start_lr > worst[0]:
                    worst = (abs(ours - theirs) / start_lr, f"{name} at {step}: {ours:.6e} vs {theirs:.6e}")
    record("largest |lr - mmseg's| / start lr", f"{worst[0]:.2e} ({worst[1]})")
    assert worst[0] <= 1e-6, worst[1]


@pytest.mark.parametrize("key", list(TRAIN_RECIPES))
def test_loss_on_a_fixed_batch_equals_mmseg_model_loss(key, sides, mmseg_train_ref, record):
    expected = mmseg_train_ref.model(key)["losses"]
    with torch.no_grad():
        total, parts = sides(key).loss(*mmseg_train_ref.batch())
    ratio = float(total) / expected["loss"]
    record("loss segzoo / mmseg", f"{float(total):.6f} / {expected['loss']:.6f} = {ratio:.4f}")
    assert float(total) == pytest.approx(expected["loss"], abs=LOSS_TOL)
    assert float(parts["loss_main"]) == pytest.approx(expected["decode.loss_ce"], abs=LOSS_TOL)
    aux = sorted((k for k in expected if k.startswith("aux_") and k.endswith(".loss_ce")), key=lambda k: int(k[4]))
    assert [f"loss_aux{i}" for i in range(len(aux))] == [k for k in parts if k != "loss_main"]
    for i, name in enumerate(aux):
        assert float(parts[f"loss_aux{i}"]) == pytest.approx(expected[name], abs=LOSS_TOL), name


@pytest.mark.parametrize("key", list(TRAIN_RECIPES))
def test_three_optimizer_steps_change_the_weights_as_mmseg(key, sides, mmseg_train_ref, record):
    ref = mmseg_train_ref.model(key)
    steps = ref["steps"]
    dtype = getattr(torch, steps["dtype"])
    losses, loss_after, change = sides(key).three_steps(*mmseg_train_ref.batch(), steps["from_iteration"], dtype)
    record(
        "step losses and after",
        f"{[round(x, 6) for x in losses]} {loss_after:.6f}, mmseg "
        f"{[round(x, 6) for x in steps['losses']]} {steps['loss_after']:.6f}",
    )
    assert losses == pytest.approx(steps["losses"], abs=LOSS_TOL)
    assert loss_after == pytest.approx(steps["loss_after"], rel=LOSS_AFTER_REL[steps["dtype"]])
    pairs = counterparts(ref["state_shapes"])
    combined: dict[str, list[float]] = {}
    for ours, (total, squares, largest) in change.items():
        acc = combined.setdefault(pairs[ours], [0.0, 0.0, 0.0])  # mmseg's fused q-kv is two tensors here
        acc[0], acc[1], acc[2] = acc[0] + total, acc[1] + squares, max(acc[2], largest)
    rel = CHANGE_REL[steps["dtype"]]
    floor = 1e-6 * max(largest for *_, largest in steps["change"].values())
    worst = (0.0, None)
    for theirs, (mm_total, mm_squares, mm_largest) in steps["change"].items():
        total, squares, largest = combined.get(theirs, (0.0, 0.0, 0.0))  # MLA's class token: never trained, 0
        norm, mm_norm = math.sqrt(squares), math.sqrt(mm_squares)
        root_n = math.sqrt(math.prod(ref["state_shapes"][theirs]))
        errors = (
            abs(norm - mm_norm) / (rel * mm_norm + floor * root_n),
            abs(total - mm_total) / ((rel * mm_norm + floor) * root_n),
            abs(largest - mm_largest) / (rel * mm_largest + floor),
        )
        if max(errors) > worst[0]:
            worst = (
                max(errors),
                f"{theirs}: norm {norm:.6e} vs {mm_norm:.6e}, sum {total:.6e} vs {mm_total:.6e}, "
                f"largest {largest:.6e} vs {mm_largest:.6e}",
            )
    record(f"worst change difference / tolerance ({steps['dtype']})", f"{worst[0]:.3f} ({worst[1]})")
    assert worst[0] <= 1.0, worst[1]


@pytest.mark.parametrize("key", list(TRAIN_RECIPES))
def test_dropout_and_drop_path_calls_of_a_training_forward(key, sides, mmseg_train_ref, record):
    ours, theirs = sides(key).noise, mmseg_train_ref.model(key)["noise"]

    def summary(calls):
        paths = [c[3] for c in calls if c[2] == "drop_path"]
        return f"{len(paths)} drop path (Σp {sum(paths):.2f}), {len(calls) - len(paths)} dropout"

    record("noise segzoo vs mmseg", f"{summary(ours)} vs {summary(theirs)}")
    assert [c[:3] for c in ours] == [c[:3] for c in theirs]
    assert [c[3] for c in ours] == pytest.approx([c[3] for c in theirs], abs=1e-6)


def test_the_recipes_under_test_name_the_mmseg_configs_they_reproduce(mmseg_train_ref):
    for key, recipe in TRAIN_RECIPES.items():
        lines = (REPO / recipe).read_text().splitlines()
        header = " ".join(line.lstrip("# ") for line in lines if line.startswith("#"))
        assert f"Origin: mmseg 1.x `configs/{mmseg_train_ref.model(key)['config']}`" in header, recipe
