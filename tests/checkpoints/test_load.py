"""segzoo.load end to end: the real download path against the local fake Hub, every foreign format, conversion
cache, offline mode, fine-tuning with another number of classes, and pretrained encoders."""

import dataclasses
import io

import pytest
import timm
import torch
import torch.nn.functional as F

import segzoo
import segzoo.checkpoints._table as pretrained
from segzoo import ConversionError
from segzoo.checkpoints._table import Source

from support.checkpoint_formats import hf_segformer_b0, randomized, serve_hf_model, to_mmseg, to_segmenter_official


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def logits_diff(ours, reference_fn, size=(64, 96)):
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        return (ours(x) - reference_fn(x)).abs().max().item()


def test_load_segformer_from_the_hub_by_name(fake_hub, tmp_path, monkeypatch):
    reference = hf_segformer_b0()
    serve_hf_model(fake_hub, reference, "nvidia/segformer-b0-finetuned-ade-512-512", tmp_path)
    model = segzoo.load("segformer-b0-ade")
    assert not model.training and model.arch_name == "segformer-b0"
    cfg = model.pretrained_cfg
    assert cfg["eval"]["mode"] == "whole" and len(cfg["class_names"]) == len(cfg["palette"]) == 150
    assert cfg["mean"] == [123.675, 116.28, 103.53]

    def upsampled(x):
        return F.interpolate(reference(pixel_values=x).logits, size=x.shape[2:], mode="bilinear")

    assert logits_diff(model, upsampled) < 1e-4
    # the converted weights were cached as safetensors: a second load converts nothing and works offline
    converted = list((tmp_path / "hf" / "hub" / "segzoo-converted").glob("segformer-b0-*.safetensors"))
    assert len(converted) == 1
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    requests = len(fake_hub.requests)
    again = segzoo.load("segformer-b0-ade")
    assert len(fake_hub.requests) == requests
    assert torch.equal(again.decode_head.linear_pred.weight, model.decode_head.linear_pred.weight)
    # a converter that changes its output raises the cache version: files converted before are converted again
    import segzoo.checkpoints._cache as loader

    monkeypatch.setattr(loader, "CONVERTED_CACHE_VERSION", loader.CONVERTED_CACHE_VERSION + 1)
    segzoo.load("segformer-b0-ade")
    assert len(list(converted[0].parent.glob("segformer-b0-*.safetensors"))) == 2


def test_create_model_follows_timm_and_each_entry_point_names_the_other(fake_hub, tmp_path):
    serve_hf_model(fake_hub, hf_segformer_b0(), "nvidia/segformer-b0-finetuned-ade-512-512", tmp_path)
    # pretrained=True: the architecture's first listed checkpoint, as segzoo.load gives it
    assert segzoo.list_pretrained(arch="segformer-b0")[0] == "segformer-b0-ade"
    model = segzoo.create_model("segformer-b0", pretrained=True)
    loaded = segzoo.load("segformer-b0-ade")
    assert isinstance(model, segzoo.SegmentationModel) and not model.training
    assert model.pretrained_cfg == loaded.pretrained_cfg == segzoo.get_pretrained_cfg("segformer-b0-ade").to_dict()
    assert torch.equal(model.decode_head.linear_pred.weight, loaded.decode_head.linear_pred.weight)
    # a checkpoint name: create_model loads it with pretrained=True, and without says to use segzoo.load
    named = segzoo.create_model("segformer-b0-ade", pretrained=True, num_classes=5)
    assert named.num_classes == 5
    assert all(torch.equal(a, b) for a, b in zip(named.backbone.parameters(), loaded.backbone.parameters()))
    with pytest.raises(segzoo.UnknownModelError, match=r"is a checkpoint.*segzoo\.load\('segformer-b0-ade'\)"):
        segzoo.create_model("segformer-b0-ade")
    # an architecture given to load says to use create_model
    with pytest.raises(ValueError, match=r"is an architecture.*segzoo\.create_model\('segformer-b0'"):
        segzoo.load("segformer-b0")
    # an architecture without a published checkpoint says so, and what to do instead
    assert segzoo.list_pretrained(arch="segmenter-t8-linear") == []
    with pytest.raises(segzoo.UnknownModelError, match="has no published checkpoint.*pretrained_encoder=True"):
        segzoo.create_model("segmenter-t8-linear", pretrained=True)


def test_load_transformers_folder_and_hub_repo(fake_hub, tmp_path):
    reference = hf_segformer_b0(num_labels=7)
    folder = serve_hf_model(fake_hub, reference, "someone/my-segformer", tmp_path)

    def upsampled(x):
        return F.interpolate(reference(pixel_values=x).logits, size=x.shape[2:], mode="bilinear")

    for model in (segzoo.load(str(folder)), segzoo.load("hf-hub:someone/my-segformer")):
        assert model.num_classes == 7 and logits_diff(model, upsampled) < 1e-4
    # a folder as checkpoint= of a table entry: that entry's preprocessing, these weights
    model = segzoo.load("segformer-b0-ade", checkpoint=folder)
    assert model.pretrained_cfg["name"] == "segformer-b0-ade" and model.num_classes == 7


def use_local_url(monkeypatch, fake_hub, name, data):
    """Point a table row's URL at the fake server (the row's real host is unreachable here)."""
    table = pretrained._default_table()
    path = f"/mirror/{name}.pth"
    fake_hub.urls[path] = data
    row = dataclasses.replace(table[name], source=Source(url=fake_hub.url + path), sha256=None)
    monkeypatch.setitem(table, name, row)


def test_load_mmseg_segmenter_from_url(fake_hub, monkeypatch):
    source = randomized("segmenter-t16-mask", num_classes=150, img_size=512)
    use_local_url(
        monkeypatch,
        fake_hub,
        "segmenter-t16-mask-ade",
        torch_bytes({"meta": {"CLASSES": ["wall"]}, "state_dict": to_mmseg(source.state_dict())}),
    )
    model = segzoo.load("segmenter-t16-mask-ade")
    assert model.eval_protocol.mode == "slide" and model.pretrained_cfg["mean"] == [127.5] * 3
    assert logits_diff(model, source, size=(96, 80)) < 1e-5


def test_load_mmseg_setr_aux_heads_and_unused_class_token(tmp_path):
    source = randomized("setr-test-mla")
    sd = to_mmseg(source.state_dict())
    dim = sd["backbone.pos_embed"].shape[-1]
    sd["backbone.cls_token"] = torch.zeros(1, 1, dim)
    sd["backbone.pos_embed"] = torch.cat([torch.zeros(1, 1, dim), sd["backbone.pos_embed"]], dim=1)
    torch.save({"state_dict": sd, "meta": {}}, tmp_path / "setr.pth")
    model = segzoo.load("setr-test-mla", checkpoint=tmp_path / "setr.pth")
    assert len(model.auxiliary_head) == 4 and logits_diff(model, source) < 1e-5
    # without auxiliary heads in the file, the model drops its own (inference never uses them)
    torch.save({"state_dict": {k: v for k, v in sd.items() if not k.startswith("auxiliary_head.")}}, tmp_path / "b.pth")
    assert len(segzoo.load("setr-test-mla", checkpoint=tmp_path / "b.pth").auxiliary_head) == 0


def test_load_official_segmenter_and_segformer_files(tmp_path):
    # the official code: LayerNorm eps 1e-5, position embeddings resampled bilinearly
    official = dict(pos_embed_interp="bilinear", norm_eps=1e-5)
    segmenter = randomized("segmenter-test-mask", encoder_args=official)
    torch.save({"model": to_segmenter_official(segmenter.state_dict()), "n_cls": 5, "epoch": 64}, tmp_path / "seg.pth")
    loaded = segzoo.load("segmenter-test-mask", checkpoint=tmp_path / "seg.pth")
    assert loaded.backbone.pos_embed_interp == "bilinear" and loaded.backbone.norm.eps == 1e-5
    assert logits_diff(loaded, segmenter, size=(40, 72)) < 1e-5  # another grid: resampled the official way
    segformer = randomized("segformer-test")
    torch.save({"state_dict": dict(segformer.state_dict()), "meta": {}}, tmp_path / "segformer.b0.pth")
    assert logits_diff(segzoo.load("segformer-test", checkpoint=tmp_path / "segformer.b0.pth"), segformer) == 0


def test_save_pretrained_round_trip_is_exact(tmp_path):
    model = randomized("segmenter-test-mask")
    model.pretrained_cfg = {"name": "mine", "mean": [1.0, 2.0, 3.0]}
    model.save_pretrained(tmp_path / "out")
    loaded = segzoo.load(str(tmp_path / "out"))
    assert loaded.pretrained_cfg["mean"] == [1.0, 2.0, 3.0]
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert segzoo.load(str(tmp_path / "out" / "model.safetensors")).arch_name == "segmenter-test-mask"


def test_push_to_hub_then_load(fake_hub):
    model = randomized("setr-test-naive")
    model.push_to_hub("me/tiny-setr")
    assert "model.safetensors" in fake_hub.repos["me/tiny-setr"]
    loaded = segzoo.load("hf-hub:me/tiny-setr")
    assert logits_diff(loaded, model) == 0


def test_new_number_of_classes_keeps_everything_else(tmp_path, caplog):
    model = randomized("segformer-test")
    model.save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="segzoo"):
        tuned = segzoo.load(str(tmp_path), num_classes=3)
    assert tuned.num_classes == 3 and "re-initialised" in caplog.text
    assert torch.equal(tuned.backbone.block1[0].attn.q.weight, model.backbone.block1[0].attn.q.weight)
    assert torch.equal(tuned.decode_head.linear_fuse.conv.weight, model.decode_head.linear_fuse.conv.weight)
    assert tuned.decode_head.linear_pred.weight.shape[0] == 3


def test_pretrained_encoders(fake_hub, tmp_path):
    vit = timm.create_model("vit_tiny_patch16_384", pretrained=False).eval()
    from safetensors.torch import save_file

    save_file(vit.state_dict(), tmp_path / "vit.safetensors")
    fake_hub.add_file(
        "timm/vit_tiny_patch16_384.augreg_in21k_ft_in1k",
        "model.safetensors",
        (tmp_path / "vit.safetensors").read_bytes(),
    )
    model = segzoo.create_model("segmenter-t16-mask", num_classes=5, img_size=384, pretrained_encoder=True)
    assert torch.equal(model.backbone.blocks[3].attn.qkv.weight, vit.blocks[3].attn.qkv.weight)
    assert torch.equal(model.backbone.pos_embed, vit.pos_embed)
    resized = segzoo.create_model("segmenter-t16-mask", num_classes=5, img_size=512, pretrained_encoder=True)
    assert resized.backbone.pos_embed.shape == (1, 1 + 32 * 32, 192)

    import transformers

    mit = transformers.SegformerForImageClassification(transformers.SegformerConfig(num_labels=1000))
    serve_hf_model(fake_hub, mit, "nvidia/mit-b0", tmp_path)
    segformer = segzoo.create_model("segformer-b0", num_classes=5, pretrained_encoder=True)
    assert torch.equal(
        segformer.backbone.block1[0].attn.q.weight,
        mit.state_dict()["segformer.stages.0.blocks.0.attention.q_proj.weight"],
    )


def test_clear_errors(tmp_path):
    with pytest.raises(KeyError, match="segformer-b2-ade"):
        segzoo.load("segformer-b2-ad")
    with pytest.raises(ValueError, match="encoder"):
        segzoo.load("mit-b0")
    torch.save({"whatever.weight": torch.zeros(2)}, tmp_path / "odd.pth")
    with pytest.raises(ConversionError, match="whatever.weight"):
        segzoo.load("segformer-test", checkpoint=tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="does not say which architecture"):
        segzoo.load(str(tmp_path / "odd.pth"))
    data = torch_bytes({"state_dict": randomized("segformer-test").state_dict()})
    (tmp_path / "broken.pth").write_bytes(data[: len(data) // 2])  # an interrupted copy
    with pytest.raises(OSError, match="truncated or corrupted"):
        segzoo.load("segformer-test", checkpoint=tmp_path / "broken.pth")
