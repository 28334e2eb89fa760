"""SegmentationTask: loss, auxiliary losses, metrics, parameter groups, schedule, evaluation and overlays."""

from __future__ import annotations

import math
import os
from functools import partial

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from segzoo.training import PolyLR, SegmentationTask, poly_warmup_lr, segmentation_metrics

from support.lit_helpers import ColourDataModule, TinySegNet, quiet_trainer


class LossRecorder(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.mark.slow
def test_training_loss_decreases():
    torch.manual_seed(0)
    module = SegmentationTask(TinySegNet(), num_classes=3, optimizer=partial(torch.optim.AdamW, lr=0.02))
    recorder = LossRecorder()
    trainer = quiet_trainer(max_steps=40, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(module, ColourDataModule(num_train=16, batch_size=4))
    first, last = sum(recorder.losses[:4]) / 4, sum(recorder.losses[-4:]) / 4
    assert last < 0.5 * first, (first, last)


def test_auxiliary_losses_are_weighted_and_trained():
    torch.manual_seed(0)
    net = TinySegNet(with_aux=True)
    module = SegmentationTask(net, num_classes=3)
    batch = next(iter(ColourDataModule().train_dataloader()))
    loss, parts = module.compute_loss(batch["image"], batch["mask"])
    logits, (aux,) = net.forward_with_aux(batch["image"])
    expected_aux = 0.4 * F.cross_entropy(aux, batch["mask"], ignore_index=255)
    assert torch.allclose(parts["loss_aux0"], expected_aux)
    assert torch.allclose(loss, F.cross_entropy(logits, batch["mask"], ignore_index=255) + expected_aux)
    loss.backward()
    assert net.auxiliary_head[0].weight.grad.abs().sum() > 0


def test_batch_without_valid_pixels_gives_zero_loss():
    module = SegmentationTask(TinySegNet(), num_classes=3)
    loss, _ = module.compute_loss(torch.rand(1, 3, 8, 8), torch.full((1, 8, 8), 255))
    assert loss.item() == 0.0 and loss.requires_grad


def test_miou_matches_hand_computation():
    # rows = ground truth, columns = prediction
    confusion = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    metrics = segmentation_metrics(confusion)
    iou = [3 / (4 + 5 - 3), 4 / (6 + 5 - 4)]  # class 2 absent everywhere: NaN, skipped
    assert math.isnan(metrics["iou"][2])
    assert metrics["miou"].item() == pytest.approx(sum(iou) / 2)
    assert metrics["macc"].item() == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert metrics["acc"].item() == pytest.approx(7 / 10)
    # a class predicted but absent from the ground truth counts with IoU 0
    metrics = segmentation_metrics(torch.tensor([[3, 1], [0, 0]]))
    assert metrics["miou"].item() == pytest.approx((3 / 4 + 0) / 2)


def test_ignored_pixels_are_excluded_from_metrics():
    module = SegmentationTask(TinySegNet(), num_classes=3)
    target = torch.tensor([[[0, 1, 2, 255], [255, 255, 1, 0]]])
    preds = torch.tensor([[[0, 1, 1, 2], [0, 1, 1, 0]]])  # predictions on ignored pixels must not count
    module.val_confusion.update(preds, target)
    metrics = segmentation_metrics(module.val_confusion.compute())
    assert module.val_confusion.compute().sum() == 5
    assert metrics["acc"].item() == pytest.approx(4 / 5)
    assert metrics["miou"].item() == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_param_groups_head_lr_and_no_decay():
    module = SegmentationTask(
        TinySegNet(),
        num_classes=3,
        optimizer=partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.01),
        lr_scheduler=partial(PolyLR, total_steps=10),
        head_lr_mult=10.0,
        norm_decay_mult=0.0,
        embed_decay_mult=0.0,
    )
    optimizer = module.configure_optimizers()["optimizer"]
    settings = {}
    names = {id(p): n for n, p in module.model.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            settings[names[id(param)]] = (group["lr"], group["weight_decay"])
    assert len(settings) == len(names)
    assert settings["backbone.0.weight"] == (pytest.approx(1e-3), pytest.approx(0.01))
    assert settings["backbone.0.bias"] == (pytest.approx(1e-3), pytest.approx(0.01))  # biases keep decay (mmseg)
    assert settings["backbone.1.weight"] == (pytest.approx(1e-3), 0.0)  # BatchNorm
    assert settings["backbone.pos_embed"] == (pytest.approx(1e-3), 0.0)  # no_weight_decay()
    assert settings["decode_head.0.weight"] == (pytest.approx(1e-2), pytest.approx(0.01))
    assert settings["decode_head.1.weight"] == (pytest.approx(1e-2), 0.0)  # GroupNorm in the head
    assert settings["auxiliary_head.0.weight"] == (pytest.approx(1e-2), pytest.approx(0.01))


def test_poly_schedule_with_warmup_values():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [param], "lr": 1.0}, {"params": [], "lr": 10.0}], lr=1.0)
    scheduler = PolyLR(optimizer, total_steps=100, power=1.0, warmup_iters=10, warmup_ratio=0.1)
    lrs = []
    for _ in range(101):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    # step 0: poly 1.0 × warm-up factor 0.1; step 5: 0.95 × (1 - 0.5 × 0.9); after warm-up: plain poly
    assert lrs[0][0] == pytest.approx(0.1)
    assert lrs[5][0] == pytest.approx(0.95 * 0.55)
    assert lrs[10][0] == pytest.approx(0.9)
    assert lrs[50][0] == pytest.approx(0.5)
    assert lrs[100][0] == pytest.approx(0.0)
    assert lrs[50][1] == pytest.approx(5.0)  # each group decays from its own lr
    # power 0.9 with a floor, as mmseg's PolyLR(min_lr=1e-4)
    assert poly_warmup_lr(40, 0.01, 160, power=0.9, min_lr=1e-4) == pytest.approx((0.01 - 1e-4) * 0.75**0.9 + 1e-4)


def test_schedule_spans_max_steps_and_steps_every_iteration():
    module = SegmentationTask(
        TinySegNet(), num_classes=3, optimizer=partial(torch.optim.SGD, lr=0.1), lr_scheduler=partial(PolyLR, power=1.0)
    )
    trainer = quiet_trainer(max_steps=8, limit_val_batches=0)
    trainer.fit(module, ColourDataModule(num_train=8, batch_size=2))  # 4 batches per epoch: spans two epochs
    scheduler = trainer.lr_scheduler_configs[0]
    assert scheduler.interval == "step" and scheduler.scheduler.total_steps == 8
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0)


def test_validation_logs_metrics_table_and_overlays(tmp_path, capsys):
    torch.manual_seed(0)
    module = SegmentationTask(TinySegNet(), num_classes=3, num_log_images=3)
    trainer = quiet_trainer(max_epochs=1, default_root_dir=tmp_path, limit_train_batches=2)
    datamodule = ColourDataModule(num_val=8, batch_size=2)
    trainer.fit(module, datamodule)
    for key in ("val/miou", "val/macc", "val/acc", "val/iou/colour0"):
        assert key in trainer.callback_metrics
    assert "colour2" in capsys.readouterr().out  # the per-class table names the DataModule's classes
    overlays = sorted((tmp_path / "val_overlays" / "epoch=0").glob("*.png"))
    assert [p.name for p in overlays] == ["00_sample000.png", "01_sample001.png", "02_sample002.png"]
    # the validation result equals the metric computed by hand over the whole validation set
    module.eval()
    with torch.no_grad():
        preds = module(datamodule.val_set.images).argmax(1)
    confusion = torch.zeros(3, 3, dtype=torch.long)
    valid = datamodule.val_set.masks != 255
    confusion.index_put_((datamodule.val_set.masks[valid], preds[valid]), torch.tensor(1), accumulate=True)
    assert trainer.callback_metrics["val/miou"].item() == pytest.approx(segmentation_metrics(confusion)["miou"].item())


def test_slide_and_tta_evaluation_settings():
    net = TinySegNet()
    net.pretrained_cfg = {"eval": {"mode": "slide", "crop": 8, "stride": 6}}
    module = SegmentationTask(net, num_classes=3, test_tta=True, tta_scales=(0.5, 1.0))
    # crop and stride as (height, width) pairs (EvalProtocol normalises them)
    protocol, _ = module.eval_protocol()
    assert (protocol.mode, protocol.tta_scales, protocol.crop, protocol.stride) == ("slide", (0.5, 1.0), (8, 8), (6, 6))
    module.eval()
    images = torch.rand(2, 3, 16, 12)
    with torch.no_grad():
        labels = module.predict_step({"image": images}, 0)
    assert labels.shape == (2, 16, 12) and labels.dtype == torch.long
    # whole mode given explicitly overrides the checkpoint's slide mode
    whole = SegmentationTask(net, num_classes=3, eval_mode="whole", eval_protocol_source="data")
    assert whole.eval_protocol()[0].mode == "whole"
    with pytest.raises(ValueError, match="eval_crop"):
        SegmentationTask(TinySegNet(), num_classes=3, eval_mode="slide").eval_protocol()


def test_test_and_predict_through_trainer():
    torch.manual_seed(0)
    module = SegmentationTask(TinySegNet(), num_classes=3, test_tta=True, tta_scales=(1.0,))
    trainer = quiet_trainer()
    datamodule = ColourDataModule(num_val=4, batch_size=2)
    results = trainer.test(module, datamodule, verbose=False)
    predictions = trainer.predict(module, datamodule)
    assert [tuple(p.shape) for p in predictions] == [(2, 16, 16), (2, 16, 16)]
    # the logged mIoU, by hand: over non-ignored pixels, |pred ∩ gt| / |pred ∪ gt| of each class seen in either
    preds = torch.cat(predictions).numpy()
    masks = torch.cat([batch["mask"] for batch in datamodule.test_dataloader()]).numpy()
    valid = masks != 255
    preds, masks = preds[valid], masks[valid]
    ious = [
        ((preds == k) & (masks == k)).sum() / ((preds == k) | (masks == k)).sum()
        for k in range(3)
        if ((preds == k) | (masks == k)).any()
    ]
    assert results[0]["test/miou"] == pytest.approx(float(np.mean(ious)), abs=1e-6)


def test_init_from_lightning_checkpoint_with_new_classes(tmp_path):
    torch.manual_seed(0)
    source = SegmentationTask(TinySegNet(num_classes=3), num_classes=3)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(source, ColourDataModule(num_train=4, batch_size=2))
    path = tmp_path / "source.ckpt"
    trainer.save_checkpoint(path)
    target = SegmentationTask(TinySegNet(num_classes=5), num_classes=5, init_from=str(path))
    assert torch.equal(target.model.backbone[0].weight, source.model.backbone[0].weight)
    assert target.model.decode_head[3].weight.shape[0] == 5  # the classifier is new
    with pytest.raises(ValueError, match="nn.Module only accepts a Lightning .ckpt"):
        SegmentationTask(TinySegNet(), num_classes=3, init_from="segformer-b0-ade")


def test_num_classes_mismatch_is_explained():
    with pytest.raises(ValueError, match="predicts 3 classes but num_classes=4"):
        SegmentationTask(TinySegNet(num_classes=3), num_classes=4)


def test_registry_model_rules_and_aux_losses():
    torch.manual_seed(0)
    module = SegmentationTask(
        "setr-test-pup",
        num_classes=3,
        optimizer=partial(torch.optim.SGD, lr=0.01, weight_decay=1e-4),
        lr_scheduler=partial(PolyLR, total_steps=10),
        head_lr_mult=10.0,
        norm_decay_mult=0.0,
        embed_decay_mult=0.0,
    )
    images, masks = torch.rand(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    loss, parts = module.compute_loss(images, masks)
    assert sorted(parts) == ["loss_aux0", "loss_aux1", "loss_aux2", "loss_main"]  # SETR-PUP's three aux heads
    assert loss.item() == pytest.approx(sum(p.item() for p in parts.values()))
    optimizer = module.configure_optimizers()["optimizer"]
    names = {id(p): n for n, p in module.model.named_parameters()}
    by_name = {names[id(p)]: g for g in optimizer.param_groups for p in g["params"]}
    assert by_name["backbone.pos_embed"]["weight_decay"] == 0.0 and by_name["backbone.cls_token"]["weight_decay"] == 0.0
    assert by_name["backbone.blocks.0.norm1.weight"]["weight_decay"] == 0.0
    assert by_name["backbone.blocks.0.attn.qkv.weight"]["weight_decay"] == pytest.approx(1e-4)
    assert by_name["backbone.blocks.0.attn.qkv.weight"]["lr"] == pytest.approx(0.01)
    head_lrs = [g["lr"] for n, g in by_name.items() if n.startswith(("decode_head.", "auxiliary_head."))]
    assert head_lrs and all(lr == pytest.approx(0.1) for lr in head_lrs)


def test_layer_decay_scales_vit_blocks():
    module = SegmentationTask(
        "segmenter-test-linear", num_classes=3, optimizer=partial(torch.optim.SGD, lr=1.0),
        lr_scheduler=partial(PolyLR, total_steps=10), layer_decay=0.5,
    )  # fmt: skip
    optimizer = module.configure_optimizers()["optimizer"]
    names = {id(p): n for n, p in module.model.named_parameters()}
    lr = {names[id(p)]: g["lr"] for g in optimizer.param_groups for p in g["params"]}
    # 2 blocks: embeddings 0.5^3, block 0 0.5^2, block 1 0.5, head 1
    assert lr["backbone.pos_embed"] == pytest.approx(0.125)
    assert lr["backbone.blocks.0.attn.qkv.weight"] == pytest.approx(0.25)
    assert lr["backbone.blocks.1.attn.qkv.weight"] == pytest.approx(0.5)
    assert all(v == pytest.approx(1.0) for k, v in lr.items() if k.startswith("decode_head."))
    with pytest.raises(ValueError, match="layer_decay needs a ViT backbone"):
        SegmentationTask("segformer-test", num_classes=3, layer_decay=0.9).configure_optimizers()


def test_init_from_weights_file_for_a_registry_architecture(tmp_path):
    import segzoo

    torch.manual_seed(0)
    source = segzoo.create_model("segformer-test", num_classes=3)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    module = SegmentationTask("segformer-test", num_classes=5, init_from=str(tmp_path / "weights.pth"))
    kept = [k for k in source.state_dict() if k.startswith("backbone.")]
    assert all(torch.equal(module.model.state_dict()[k], source.state_dict()[k]) for k in kept)
    assert module.model.num_classes == 5


def test_mask_writer_and_checkpoint_reload(tmp_path):
    from PIL import Image

    from segzoo.training import MaskWriter

    torch.manual_seed(0)
    module = SegmentationTask(TinySegNet(), num_classes=3)
    trainer = quiet_trainer(callbacks=[MaskWriter(tmp_path / "pred")])
    datamodule = ColourDataModule(num_val=4, batch_size=2)
    predictions = trainer.predict(module, datamodule)
    written = sorted((tmp_path / "pred").glob("*.png"))
    assert [p.name for p in written] == [f"sample{i:03d}.png" for i in range(4)]
    image = Image.open(written[1])
    assert image.mode == "P" and image.getpalette()[:6] == [255, 0, 0, 0, 255, 0]  # the DataModule's palette
    assert torch.equal(torch.from_numpy(np.array(image)).long(), predictions[0][1])
    # a saved module reloads without fetching its starting weights again
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    checkpoint = torch.load(tmp_path / "m.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["hyper_parameters"]["init_from"] is None
