"""Training as the publishers did, and nothing silent: the loss normalisation, parameter-group and schedule rules of
the recipes (checked against the publishers' formulas here and against mmseg's own code in reference/), noise
placement, the patch bias of mmseg >= 1.1 files, NaN losses, fine-tuning from a checkpoint in training mode, and the
training switches on loaded models."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import warnings
from functools import partial
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from torch import nn

import segzoo
from segzoo.training import (
    CrossEntropyLoss,
    MMEnginePolyLR,
    OhemCrossEntropyLoss,
    PolyLR,
    SegmentationTask,
    cli_main,
    mmengine_poly_lr,
    param_groups,
    poly_warmup_lr,
)

from support import REPO, TESTS
from support.checkpoint_formats import to_mmseg
from support.lit_helpers import ColourDataModule, TinySegNet, quiet_trainer
from support.processes import clean_env, finish, start

IGNORE = 255


# --------------------------------------------------------------------------------------------------------------
# Losses


def test_cross_entropy_over_all_pixels_divides_by_every_pixel_of_the_batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, 0] = IGNORE
    per_pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    labelled = (target != IGNORE).sum()
    assert CrossEntropyLoss(average_over="all")(logits, target).item() == pytest.approx(per_pixel.sum() / 40)
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(per_pixel.sum() / labelled)
    weights = [1.0, 2.0, 0.5]
    weighted = torch.nn.functional.cross_entropy(
        logits, target, torch.tensor(weights), ignore_index=IGNORE, reduction="none"
    )
    assert CrossEntropyLoss(weights, average_over="all")(logits, target).item() == pytest.approx(weighted.sum() / 40)
    with pytest.raises(ValueError, match="average_over"):
        CrossEntropyLoss(average_over="labeled")


@pytest.mark.parametrize("average", [{}, {"average_over": "all"}], ids=["labelled", "all"])
def test_class_weights_that_zero_every_labelled_pixel_give_zero_not_nan(average):
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0] = IGNORE
    loss = CrossEntropyLoss(class_weight=[0.0, 1.0, 1.0], **average)(logits, target)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()


def test_ohem_with_nothing_hard_left_gives_zero_not_nan():
    logits = torch.full((1, 2, 4, 4), -50.0)
    logits[:, 0] = 50.0  # probability 1 for class 0 everywhere: no pixel under any threshold
    logits.requires_grad_(True)
    loss = OhemCrossEntropyLoss(thresh=0.7, min_kept=1)(logits, torch.zeros(1, 4, 4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------------------------------------------
# A NaN or infinite loss never reaches the weights


class NanLoss(nn.Module):
    """Cross-entropy, but NaN on the batches whose index is in ``bad``."""

    def __init__(self, bad: set[int]):
        super().__init__()
        self.bad, self.calls, self.ignore_index = bad, 0, 255

    def forward(self, logits, target):
        loss = CrossEntropyLoss(ignore_index=self.ignore_index)(logits, target)
        self.calls += 1
        return loss * float("nan") if self.calls - 1 in self.bad else loss


class WeightsAtEachStep(Callback):
    def __init__(self):
        self.weights = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.weights.append([p.detach().clone() for p in pl_module.parameters()])


def test_a_nan_loss_skips_the_step_with_a_warning_and_changes_no_weight():
    torch.manual_seed(0)
    module = SegmentationTask(
        TinySegNet(with_aux=False),
        num_classes=3,
        loss=NanLoss(bad={1, 2}),
        optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9),
        num_log_images=0,
    )
    recorder = WeightsAtEachStep()
    with pytest.warns(UserWarning, match=r"the loss is NaN or infinite .* this step is skipped"):
        quiet_trainer(max_steps=4, limit_val_batches=0, callbacks=[recorder]).fit(module, ColourDataModule())
    assert module.skipped_steps == 2
    before_bad, after_bad, last = recorder.weights[1], recorder.weights[3], list(module.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before_bad, after_bad))  # batches 1 and 2 changed nothing
    assert not all(torch.equal(a, b) for a, b in zip(after_bad, last))  # batch 3 trained again
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_a_run_whose_loss_stays_nan_stops_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(SegmentationTask, "MAX_CONSECUTIVE_SKIPS", 3)
    module = SegmentationTask(
        TinySegNet(with_aux=False), num_classes=3, loss=NanLoss(bad=set(range(100))), num_log_images=0
    )
    with pytest.warns(UserWarning), pytest.raises(segzoo.NonFiniteLossError, match="3 steps in a row"):
        quiet_trainer(max_steps=10, limit_val_batches=0).fit(module, ColourDataModule())


@pytest.mark.multiprocess
def test_under_ddp_a_nan_on_one_process_drops_the_step_on_every_process(tmp_path):
    """Gradients are averaged over the processes, so one process's NaN reaches all: every process drops that update
    (one all-reduced flag), and they stay in step and equal."""
    out = tmp_path / "report"
    proc = start(
        [sys.executable, str(TESTS / "support" / "nan_ddp_worker.py"), "--out", str(out)], tmp_path, clean_env()
    )
    ((code, stdout, stderr),) = finish([proc], timeout=150)
    assert code == 0, stderr[-3000:]
    reports = [json.loads(Path(f"{out}.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["skipped"] for r in reports] == [1, 1] and [r["global_step"] for r in reports] == [4, 4]
    assert all(r["unchanged_by_the_skipped_step"] for r in reports)
    assert reports[0]["checksum"] == reports[1]["checksum"] and math.isfinite(reports[0]["checksum"])


# --------------------------------------------------------------------------------------------------------------
# Fine-tuning from a checkpoint


class ModesAtFirstStep(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            modules = [m for m in pl_module.model.modules() if isinstance(m, (nn.BatchNorm2d, nn.Dropout2d))]
            self.training = [m.training for m in modules]


def test_init_from_a_checkpoint_trains_in_training_mode(tmp_path):
    segzoo.create_model("segformer-test", num_classes=3).save_pretrained(tmp_path / "start")
    module = SegmentationTask("segformer-test", num_classes=3, init_from=str(tmp_path / "start"), num_log_images=0)
    probe = ModesAtFirstStep()
    datamodule = ColourDataModule(num_train=4, batch_size=2, size=32)
    quiet_trainer(max_steps=1, limit_val_batches=0, callbacks=[probe]).fit(module, datamodule)
    assert probe.training and all(probe.training)  # the head's BatchNorm and dropout: batch statistics, dropout on


def test_training_switches_work_on_loaded_models(tmp_path):
    segzoo.create_model("segmenter-test-linear", num_classes=3).save_pretrained(tmp_path / "start")
    loaded = segzoo.load(str(tmp_path / "start"), freeze_encoder=True, grad_checkpointing=True)
    assert not any(p.requires_grad for p in loaded.backbone.parameters())
    assert loaded.backbone.grad_checkpointing
    module = SegmentationTask(
        "segmenter-test-linear",
        num_classes=3,
        init_from=str(tmp_path / "start"),
        model_args={"freeze_encoder": True, "grad_checkpointing": True},
    )
    assert not any(p.requires_grad for p in module.model.backbone.parameters())
    assert module.model.training and not module.model.backbone.training  # a frozen encoder stays in eval mode
    with pytest.raises(ValueError, match="pretrained_encoder does not apply"):
        segzoo.load(str(tmp_path / "start"), pretrained_encoder=True)


# --------------------------------------------------------------------------------------------------------------
# Parameter groups


def lr_and_decay(model: nn.Module, **rules) -> dict[str, tuple[float, float]]:
    return {n: (g["lr_mult"], g["decay_mult"]) for g in param_groups(model, **rules) for n in g["names"]}


def test_custom_keys_take_the_longest_key_then_the_alphabetically_first_and_only_that_one():
    model = TinySegNet()  # backbone.0 conv, backbone.1 BatchNorm, backbone.pos_embed, decode_head.*, auxiliary_head.*
    keys = {
        "head": {"lr_mult": 10.0},
        "pos": {"decay_mult": 0.0},
        "aux": {"lr_mult": 3.0, "decay_mult": 0.5},
        "backbone.1": {"decay_mult": 0.0},
        "backbone": {"lr_mult": 2.0},
    }
    groups = lr_and_decay(model, custom_keys=keys, norm_decay_mult=7.0, head_lr_mult=5.0)
    assert groups["backbone.0.weight"] == (2.0, 1.0)
    assert groups["backbone.1.weight"] == (1.0, 0.0)  # "backbone.1" is longer than "backbone": only it applies
    assert groups["backbone.pos_embed"] == (2.0, 1.0)  # "backbone" (8 characters) beats "pos" (3)
    assert groups["auxiliary_head.0.weight"] == (10.0, 1.0)  # "head" (4) beats "aux" (3)
    assert groups["decode_head.1.weight"] == (10.0, 1.0)  # a GroupNorm: the type rules skip keyed names
    ties = lr_and_decay(model, custom_keys={"ckbo": {"lr_mult": 4.0}, "0.we": {"lr_mult": 9.0}})
    assert ties["backbone.0.weight"] == (9.0, 1.0)  # both 4 characters and contained: "0.we" sorts first
    unmatched = lr_and_decay(model, custom_keys={"nothing": {"lr_mult": 9.0}}, head_lr_mult=5.0, norm_decay_mult=0.0)
    assert unmatched["decode_head.0.weight"] == (5.0, 1.0) and unmatched["backbone.1.weight"] == (1.0, 0.0)
    with pytest.raises(ValueError, match="custom_keys"):
        SegmentationTask(TinySegNet(), num_classes=3, custom_keys={"head": {"lr": 10.0}})


def recipe_keys(base: str) -> dict:
    return yaml.safe_load((REPO / "configs" / "_base" / base).read_text())["model"]["custom_keys"]


def test_setr_recipes_train_the_mla_neck_at_the_base_lr_as_mmseg():
    groups = lr_and_decay(segzoo.create_model("setr-test-mla", num_classes=3), custom_keys=recipe_keys("setr.yaml"))
    assert {v for k, v in groups.items() if k.startswith("neck.")} == {(1.0, 1.0)}
    assert {v for k, v in groups.items() if k.startswith(("decode_head.", "auxiliary_head."))} == {(10.0, 1.0)}
    assert {v for k, v in groups.items() if k.startswith("backbone.")} == {(1.0, 1.0)}


def test_segformer_recipes_decay_what_their_publisher_decays():
    """mmseg's keys act on mmseg's names (stage norms ``layers.{i}.2`` decay); NVlabs' on NVlabs' names, which are
    segzoo's (stage norms ``norm{i}`` do not); in both the head's BatchNorms decay ('head' is found first)."""
    mmseg = lr_and_decay(
        segzoo.create_model("segformer-test-mmseg", num_classes=3), custom_keys=recipe_keys("segformer-mmseg.yaml")
    )
    nvlabs = lr_and_decay(
        segzoo.create_model("segformer-test", num_classes=3), custom_keys=recipe_keys("segformer.yaml")
    )
    for groups in (mmseg, nvlabs):
        assert groups["backbone.block1.0.norm1.weight"] == (1.0, 0.0)
        assert groups["backbone.patch_embed1.norm.bias"] == (1.0, 0.0)
        assert groups["backbone.block4.0.attn.q.weight"] == (1.0, 1.0)
    assert mmseg["backbone.norm1.weight"] == (1.0, 1.0) and nvlabs["backbone.norm1.weight"] == (1.0, 0.0)
    assert mmseg["decode_head.fusion_conv.bn.weight"] == (10.0, 1.0)
    assert nvlabs["decode_head.linear_fuse.bn.weight"] == (10.0, 1.0)


def test_the_dinov2_and_fine_tuning_recipes_keep_their_rules():
    for recipe in ("configs/dinov2/segmenter-mask-dinov2-s14-ade.yaml", "configs/finetune-folder.yaml"):
        text = (REPO / recipe).read_text()
        assert "head_lr_mult: 10.0" in text and "norm_decay_mult: 0.0" in text and "custom_keys" not in text


# --------------------------------------------------------------------------------------------------------------
# Schedules, against the publishers' arithmetic


def mmcv_poly_with_linear_warmup(iteration, base_lr, max_iters, power, min_lr, warmup_iters, warmup_ratio):
    """mmcv 1.x ``PolyLrUpdaterHook.get_lr`` and ``LrUpdaterHook.get_warmup_lr('linear')``, as that code reads."""
    regular = (base_lr - min_lr) * (1 - iteration / max_iters) ** power + min_lr
    if iteration >= warmup_iters:
        return regular
    k = (1 - iteration / warmup_iters) * (1 - warmup_ratio)
    return regular * (1 - k)


def mmengine_chain(base_lr, max_iters, power, min_lr, warmup_iters, start_factor):
    """The lr of every iteration of mmengine's LinearLR(begin=0, end=warmup_iters) then PolyLR(begin=warmup_iters,
    end=max_iters), each updating the group's lr in place as its ``_get_value`` reads (``total_iters = end - begin -
    1``), stepped once per iteration in this order."""
    lr, lrs, global_step = base_lr, [], 0
    linear_total, poly_total = warmup_iters - 1, max_iters - warmup_iters - 1
    linear_step = poly_step = -1
    for global_step in range(max_iters):
        if global_step < warmup_iters:
            linear_step += 1
            if linear_step == 0:
                lr = lr * start_factor
            else:
                step_factor = linear_total * start_factor + (linear_step - 1) * (1 - start_factor)
                lr = lr * (1 + (1 - start_factor) / step_factor)
        if warmup_iters <= global_step:
            poly_step += 1
            if poly_step > 0:
                lr = (lr - min_lr) * (1 - 1 / (poly_total - poly_step + 1)) ** power + min_lr
        lrs.append(lr)
    return lrs


def scheduled(scheduler_cls, base_lrs, steps, **kwargs):
    params = [nn.Parameter(torch.zeros(1)) for _ in base_lrs]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, base_lrs)], lr=1.0)
    scheduler = scheduler_cls(optimizer, total_steps=steps, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return lrs


def test_mmengine_schedule_follows_mmengine_step_arithmetic():
    warm = dict(power=1.0, min_lr=0.0, warmup_iters=15, warmup_ratio=1e-6)
    ours = scheduled(MMEnginePolyLR, [6e-5, 6e-4], 300, **warm)
    for column, base in enumerate((6e-5, 6e-4)):
        expected = mmengine_chain(base, 300, 1.0, 0.0, 15, 1e-6)
        assert [row[column] for row in ours] == pytest.approx(expected, rel=1e-10, abs=1e-18)
    assert ours[14][0] == pytest.approx(6e-5) and ours[-1][0] == 0.0  # the end of each phase one iteration early
    plain = scheduled(MMEnginePolyLR, [1e-3], 300, power=0.9, min_lr=1e-4, warmup_iters=0)
    assert [row[0] for row in plain] == pytest.approx(mmengine_chain(1e-3, 300, 0.9, 1e-4, 0, 1.0), rel=1e-10)
    assert plain[-1][0] == pytest.approx(1e-4)


def test_nvlabs_schedule_is_mmcv_lr_updater_arithmetic():
    ours = scheduled(PolyLR, [6e-5], 300, power=1.0, min_lr=0.0, warmup_iters=15, warmup_ratio=1e-6)
    expected = [mmcv_poly_with_linear_warmup(i, 6e-5, 300, 1.0, 0.0, 15, 1e-6) for i in range(300)]
    assert [row[0] for row in ours] == pytest.approx(expected, rel=1e-12, abs=1e-20)


def test_the_two_schedules_differ_where_mmseg_1x_and_0x_do():
    """mmseg 1.x's schedule (LinearLR, then PolyLR) and mmcv's (warm-up factor × poly over the whole run) over the
    160k iterations of a SegFormer recipe: about 1% apart at the end of the warm-up."""
    args = dict(power=1.0, min_lr=0.0, warmup_iters=1500, warmup_ratio=1e-6)
    assert mmengine_poly_lr(1499, 1.0, 160000, **args) == pytest.approx(1.0)
    assert poly_warmup_lr(1499, 1.0, 160000, **args) == pytest.approx(0.98997, abs=1e-5)
    # SETR and Segmenter (power 0.9, down to 1e-4, no warm-up): the floor at the last iteration, not 2e-5 of lr above
    setr = dict(power=0.9, min_lr=1e-4, warmup_iters=0)
    assert mmengine_poly_lr(159999, 1e-3, 160000, **setr) == pytest.approx(1e-4, rel=1e-12)
    assert (poly_warmup_lr(159999, 1e-3, 160000, **setr) - 1e-4) / 1e-3 == pytest.approx(1.9e-5, rel=0.1)


# --------------------------------------------------------------------------------------------------------------
# Resuming with another run length


@pytest.mark.slow
def test_resuming_with_more_steps_continues_on_the_longer_schedule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    common = [
        "--config",
        str(REPO / "configs/test/tiny.yaml"),
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.check_val_every_n_epoch=null",
        "--trainer.val_check_interval=4",
        "--last_checkpoint.every_n_train_steps=0",
    ]
    cli_main(["fit", *common, "--trainer.max_steps=4", "--trainer.logger.init_args.name=short"])
    last = tmp_path / "runs/short/version_0/checkpoints/last.ckpt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = cli_main(
            [
                "fit",
                *common,
                "--trainer.max_steps=8",
                "--trainer.logger.init_args.name=resumed",
                "--ckpt_path",
                str(last),
            ]
        )
    fresh = cli_main(["fit", *common, "--trainer.max_steps=8", "--trainer.logger.init_args.name=fresh"])
    resumed_lrs, fresh_lrs = logged_lrs(resumed.trainer.log_dir), logged_lrs(fresh.trainer.log_dir)
    assert sorted(resumed_lrs) == [4, 5, 6, 7]
    for step in range(4, 8):
        assert min(resumed_lrs[step]) > 0
        assert resumed_lrs[step] == pytest.approx(fresh_lrs[step], rel=1e-12)
    assert any("schedule of 8 iterations (the checkpoint's ran over 4)" in str(w.message) for w in caught)


def logged_lrs(log_dir) -> dict[int, tuple[float, ...]]:
    import csv

    with open(Path(log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = sorted(c for c in rows[0] if c.startswith("lr-"))
    return {int(r["step"]): tuple(float(r[c]) for c in columns) for r in rows if r[columns[0]]}


# --------------------------------------------------------------------------------------------------------------
# Structure: patch bias per file, noise per family


def mmseg_11_file(tmp_path: Path, arch: str = "segmenter-test-linear") -> Path:
    """A file as mmseg >= 1.1 writes its ViTs: no patch-projection bias."""
    state = to_mmseg(segzoo.create_model(arch, num_classes=3).state_dict())
    del state["backbone.patch_embed.projection.bias"]
    path = tmp_path / "mmseg11.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    return path


def test_a_file_without_patch_bias_builds_a_model_without_one_and_keeps_it(tmp_path):
    path = mmseg_11_file(tmp_path)
    model = segzoo.load("segmenter-test-linear", checkpoint=path)
    assert model.backbone.patch_embed.proj.bias is None
    assert "backbone.patch_embed.proj.bias" not in dict(model.named_parameters())
    model.save_pretrained(tmp_path / "saved")
    assert segzoo.load(str(tmp_path / "saved")).backbone.patch_embed.proj.bias is None
    # trained from it, the run's checkpoint rebuilds the same network
    module = SegmentationTask("segmenter-test-linear", num_classes=3, init_from=str(path), num_log_images=0)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, ColourDataModule(num_train=2, batch_size=2))
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    assert segzoo.load(str(tmp_path / "run.ckpt")).backbone.patch_embed.proj.bias is None
    reloaded = SegmentationTask.load_from_checkpoint(tmp_path / "run.ckpt")
    assert reloaded.model.backbone.patch_embed.proj.bias is None
    # and a new run started from that .ckpt (another number of classes) builds it too, its weights carried over
    again = SegmentationTask("segmenter-test-linear", num_classes=5, init_from=str(tmp_path / "run.ckpt"))
    assert again.model.backbone.patch_embed.proj.bias is None and again.model.training
    assert torch.equal(again.model.backbone.pos_embed, module.model.backbone.pos_embed)


def test_vit_noise_is_placed_as_the_publisher_placed_it(tmp_path):
    from support.checkpoint_formats import to_segmenter_official

    mmseg_row = segzoo.create_model("segmenter-test-mask", num_classes=3, drop_path_rate=0.1)
    blocks = list(mmseg_row.backbone.blocks) + list(mmseg_row.decode_head.blocks)
    assert all(isinstance(b.drop_path1, nn.Identity) for b in blocks)  # mmseg: feed-forward branch only
    assert [type(b.drop_path2).__name__ for b in blocks] == ["Identity", "DropPath", "Identity", "DropPath"]
    dropouts = [m.p for m in mmseg_row.decode_head.modules() if isinstance(m, nn.Dropout)]
    assert set(dropouts) == {0.0}  # mmseg's Segmenter head: dropout_ratio=0
    official = tmp_path / "checkpoint.pth"
    torch.save(
        {"model": to_segmenter_official(segzoo.create_model("segmenter-test-mask", num_classes=3).state_dict())},
        official,
    )
    model = segzoo.load("segmenter-test-mask", checkpoint=official, drop_path_rate=0.1)
    assert type(model.backbone.blocks[1].drop_path1).__name__ == "DropPath"  # the official block: both branches
    head = model.decode_head.blocks[0]
    assert head.attn.attn_drop.p == head.attn.proj_drop.p == head.mlp.drop1.p == head.mlp.drop2.p == 0.1
    assert all(isinstance(b.drop_path2, nn.Identity) for b in model.decode_head.blocks)  # official: drop path 0


def test_every_paper_recipe_names_its_origin():
    recipes = sorted((REPO / "configs").glob("s*/*.yaml"))
    assert len(recipes) == 40
    for recipe in recipes:
        text = " ".join(line.lstrip("# ") for line in recipe.read_text().splitlines() if line.startswith("#"))
        if recipe.stem.startswith("segformer") and not recipe.stem.endswith("-mmseg"):
            assert re.search(
                r"Origin: NVlabs/SegFormer `local_configs/segformer/B\d/segformer\.b\d\.\S+\.160k\.py`", text
            ), recipe
            assert "_base/segformer.yaml" in recipe.read_text(), recipe
        else:
            assert re.search(r"Origin: mmseg 1\.x `configs/(segformer|setr|segmenter)/\S+\.py`", text), recipe
