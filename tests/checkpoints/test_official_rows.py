"""The rows added from the publishers' own releases (official Segmenter and SETR, mmseg's re-trained 0.x files):
each loads by name, with its table protocol, through the local Hub imitation (its URL served by ``fake_hub``) or, for
the Google Drive rows, from the file a person downloaded; ``predict`` follows that protocol.

Models are built at tiny widths (the layout of each format, not its size, is what loading by name exercises); that
the official formats compute what the official code does is proven in test_official_segmenter.py and
test_official_setr.py."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

import segzoo
import segzoo.checkpoints._table as table
from segzoo.checkpoints._table import Source

from support.checkpoint_formats import randomized, to_mmseg, to_mmseg_mit, to_segmenter_official, to_setr_official

NEW_ROWS = [name for name in segzoo.list_pretrained() if name.endswith(("-official", "-retrained"))]


def tiny_args(arch: str) -> dict:
    """Overrides that keep an architecture's layout at a test width."""
    row = segzoo.get_arch(arch)
    if row.encoder == "mit":
        return dict(
            encoder_args=dict(embed_dims=(8, 16, 24, 32), depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2)),
            decoder_args=dict(channels=16),
        )
    depth = 4 if row.neck else 2
    args = dict(
        encoder_args=dict(
            embed_dim=32,
            depth=depth,
            num_heads=2,
            out_indices=tuple(range(depth))[-len(row.encoder_args["out_indices"]) :],
        )
    )
    if row.decoder == "mask_transformer":
        args["decoder_args"] = dict(num_heads=2)
    elif row.decoder == "setr_mla":
        args |= dict(neck_args=dict(out_channels=16), decoder_args=dict(mla_channels=8))
    elif row.decoder == "setr_up":
        args["decoder_args"] = dict(channels=16)
    return args


def crop(cfg) -> int | None:
    """The training crop the position embeddings are stored for (ViTs only)."""
    return cfg.crop_size[0] if "img_size" in segzoo.get_arch(cfg.arch).encoder_args else None


def published_file(cfg, model) -> bytes:
    """The row's file as its publisher writes it, with ``model``'s weights."""
    sd = model.state_dict()
    if cfg.format == "segmenter-official":
        obj = {"model": to_segmenter_official(sd), "n_cls": cfg.num_classes, "epoch": 63}
    elif cfg.format == "setr-official":
        obj = {"state_dict": to_setr_official(sd), "meta": {}}
    elif cfg.arch.startswith("segformer"):
        obj = {"state_dict": to_mmseg_mit(sd), "meta": {}}
    else:
        obj = {"state_dict": to_mmseg(sd), "meta": {}}
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_the_new_rows_are_there():
    official = segzoo.list_pretrained("segmenter-*-official")
    assert len(official) == 9 and len(segzoo.list_pretrained("setr-*-official")) == 15
    assert len(segzoo.list_pretrained("*-retrained")) == 7
    assert all(segzoo.get_pretrained_cfg(n).format == "segmenter-official" for n in official)


@pytest.mark.parametrize("name", NEW_ROWS)
def test_every_new_row_loads_by_name_with_its_protocol(name, fake_hub, monkeypatch, tmp_path):
    cfg = segzoo.get_pretrained_cfg(name)
    args = tiny_args(cfg.arch)
    if cfg.format == "segmenter-official":  # the official code's numerics, which the format brings
        args["encoder_args"] |= dict(pos_embed_interp="bilinear", norm_eps=1e-5)
    source = randomized(cfg.arch, num_classes=cfg.num_classes, img_size=crop(cfg), aux_heads=False, **args)
    data = published_file(cfg, source)
    args["encoder_args"] = {k: v for k, v in args["encoder_args"].items() if k not in ("pos_embed_interp", "norm_eps")}
    if cfg.source.manual:  # a Google Drive page: segzoo asks for the downloaded file
        with pytest.raises(segzoo.DownloadError, match="only a browser can download"):
            segzoo.load(name)
        (tmp_path / "downloaded.pth").write_bytes(data)
        model = segzoo.load(name, checkpoint=tmp_path / "downloaded.pth", **args)
    else:
        path = f"/mirror/{name}.pth"
        fake_hub.urls[path] = data
        rows = table._default_table()
        monkeypatch.setitem(rows, name, dataclasses.replace(cfg, source=Source(url=fake_hub.url + path), sha256=None))
        model = segzoo.load(name, **args)
        assert ("GET", path) in fake_hub.requests
    assert model.pretrained_cfg["name"] == name and model.eval_protocol == cfg.eval
    assert model.pretrained_cfg["metrics"] == cfg.to_dict()["metrics"]
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        assert (model(x) - source(x)).abs().max() < 1e-4


class WindowRecorder(torch.nn.Module):
    """Wraps a model and keeps the size of every input it runs on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x):
        self.sizes += [tuple(x.shape[-2:])] * x.shape[0]
        return self.model(x)


@pytest.mark.parametrize(
    ("name", "image", "windows"),
    [
        # ADE20K: short side 512 (uint8), no float resize needed, windows 512 / stride 480: rows [0], cols [0, 256]
        ("segmenter-t16-mask-ade-official", (40, 60), [(512, 512)] * 2),
        # Seg-L 640: short side 512, then the float resize to the 640 window: 640 x 960, cols [0, 320]
        ("segmenter-l16-mask-ade-official", (40, 60), [(640, 640)] * 2),
        # Pascal Context: short side 520, windows 480 / stride 448: 520 x 780 -> rows [0, 40], cols [0, 300]
        ("segmenter-l16-mask-pascal-context-official", (40, 60), [(480, 480)] * 4),
        # Cityscapes: 1024 x 2048, windows 768 / stride 736: rows [0, 256], cols [0, 736, 1280]
        ("segmenter-l16-mask-cityscapes-official", (32, 64), [(768, 768)] * 6),
        # mmseg's re-trained SegFormer: whole image, 512 x 768
        ("segformer-b0-ade-mmseg-retrained", (40, 60), [(512, 768)]),
        # mmseg's re-trained Segmenter-L: test scale 2560x640 -> 640 x 960, windows 640 / stride 608: cols [0, 320]
        ("segmenter-l16-mask-ade-retrained", (40, 60), [(640, 640)] * 2),
        # official SETR, ADE20K: 512 x 768, windows 512 / stride 341: cols [0, 256]
        ("setr-pup-ade-official", (40, 60), [(512, 512)] * 2),
        # official SETR, Cityscapes: 2049x1025 -> 1025 x 2050, windows 768 / stride 512: 2 rows x 4 cols
        ("setr-mla-cityscapes-official", (32, 64), [(768, 768)] * 8),
    ],
)
def test_predict_follows_the_row_protocol(name, image, windows):
    cfg = segzoo.get_pretrained_cfg(name)
    # three classes: the protocol is the row's, the classes do not matter (150-class logits of 1024 x 2048 would
    # only make the test slow)
    model = randomized(cfg.arch, num_classes=3, img_size=crop(cfg), aux_heads=False, **tiny_args(cfg.arch))
    recorder = WindowRecorder(model)
    recorder.pretrained_cfg = cfg.to_dict()
    labels = segzoo.predict(recorder, np.random.default_rng(0).integers(0, 256, (*image, 3), dtype=np.uint8))
    assert labels.shape == image and recorder.sizes == windows


def test_deit_distilled_imagenet_weights_initialise_the_official_seg_b_dagger_encoder(fake_hub, monkeypatch):
    """DeiT's own file layout (``{"model": ...}`` with ``dist_token`` and ``head_dist``, timm's DeiT modules, as
    facebookresearch/deit publishes it): the distillation token becomes the encoder's ``reg_token`` and the encoder
    then computes DeiT's patch tokens (a tiny DeiT, its width set on the DeiT-B architecture)."""
    import timm

    deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False).eval()
    with torch.no_grad():
        deit.dist_token.normal_()
        deit.pos_embed.normal_()
    buffer = io.BytesIO()
    torch.save({"model": deit.state_dict()}, buffer)
    name = "deit-b16-distilled-384"
    fake_hub.urls["/deit.pth"] = buffer.getvalue()
    rows = table._default_table()
    monkeypatch.setitem(
        rows, name, dataclasses.replace(rows[name], source=Source(url=fake_hub.url + "/deit.pth"), sha256=None)
    )
    model = segzoo.create_model(
        "segmenter-deit-b16-mask",
        num_classes=5,
        img_size=224,
        pretrained_encoder=name,
        encoder_args=dict(embed_dim=192, num_heads=3, norm_eps=1e-6),
        decoder_args=dict(num_heads=3),
    ).eval()
    assert torch.equal(model.backbone.reg_token, deit.dist_token)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        tokens = deit.forward_features(x)[:, 2:]  # after the class and distillation tokens
        ours = model.backbone(x)[-1].flatten(2).transpose(1, 2)
    assert (ours - tokens).abs().max() < 1e-4
