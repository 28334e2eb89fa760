"""segzoo against mmsegmentation 1.2.2's own code (reference/README.md).

Every expected value comes from ``reference/mmseg_side.py``, run in the separate reference environment: mmseg's
models built from its shipped ADE20K configs, seeded random weights, checkpoints written by mmengine's own
``save_checkpoint``. Nothing here was produced by segzoo's converters.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from parity_cases import MODELS, SETR_MODELS, SIZES, TTA_MODELS, Reference

import segzoo

pytestmark = pytest.mark.timeout(2400)  # the first test also waits for mmseg_side.py

LOGIT_TOL = 1e-4
LABEL_SHARE = 0.999


@dataclass
class Loaded:
    """One segzoo model loaded by checkpoint name from mmseg's file, or the error that prevented it."""

    key: str
    model: torch.nn.Module | None
    error: Exception | None

    def get(self) -> torch.nn.Module:
        if self.model is None:
            pytest.fail(
                f"segzoo.load({MODELS[self.key]!r}, checkpoint=<mmseg {self.key}.pth>) failed: "
                f"{type(self.error).__name__}: {self.error}",
                pytrace=False,
            )
        return self.model


_CURRENT: dict[str, Loaded] = {}


@pytest.fixture
def loaded(key: str, mmseg_ref: Reference) -> Loaded:
    """The segzoo model for ``key``, loaded once and kept until a test needs another model (conftest orders the tests
    model by model, so each model is loaded once and only one is in memory)."""
    current = _CURRENT.get("model")
    if current is None or current.key != key:
        _CURRENT.clear()
        gc.collect()
        ckpt = mmseg_ref.path(mmseg_ref.model(key)["checkpoint"])
        try:
            model, error = segzoo.load(MODELS[key], checkpoint=ckpt), None
        except Exception as err:  # noqa: BLE001 - reported by test_load and every test that needs the model
            model, error = None, err
        _CURRENT["model"] = Loaded(key, model, error)
    return _CURRENT["model"]


def _selected(logits: torch.Tensor, ref: dict) -> torch.Tensor:
    return logits[:, :, ref["rows"]][:, :, :, ref["cols"]]


def _compare_logits(ours: torch.Tensor, ref: dict, record, what: str) -> tuple[float, int, float]:
    """Max abs difference on mmseg's sub-grid; argmax disagreements where mmseg's argmax is decisive; overall share."""
    assert ours.shape[2:] == ref["argmax"].shape, (
        f"{what}: segzoo gives {tuple(ours.shape)}, mmseg {tuple(ref['argmax'].shape)}"
    )
    assert ours.shape[1] == ref["logits"].shape[1], f"{what}: {ours.shape[1]} classes, mmseg {ref['logits'].shape[1]}"
    diff = float((_selected(ours.float(), ref) - ref["logits"]).abs().max())
    labels = ours[0].argmax(dim=0)
    same = labels == ref["argmax"].long()
    wrong_decisive = int((~same & ref["decisive"]).sum())
    share = float(same.float().mean())
    record(what, f"max|Δ| {diff:.2e}, argmax equal {100 * share:.4f}% ({wrong_decisive} decisive pixels differ)")
    return diff, wrong_decisive, share


def _share(ours: np.ndarray, ref: torch.Tensor) -> float:
    ref = ref.numpy().astype(np.int64)
    assert ours.shape == ref.shape, f"segzoo labels {ours.shape}, mmseg {ref.shape}"
    return float((ours.astype(np.int64) == ref).mean())


# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(MODELS))
def test_load_mmseg_file_by_name(loaded: Loaded, record):
    """1a. segzoo.load(<checkpoint name>, checkpoint=<file mmseg wrote>) loads."""
    record("load", "ok" if loaded.model is not None else f"{type(loaded.error).__name__}: {str(loaded.error)[:160]}")
    loaded.get()


_FORWARD: dict = {}


def _forward(loaded: Loaded, x: torch.Tensor, size: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Main and auxiliary logits from one forward pass (ViT-L is the slowest part of the run), kept for one model."""
    if _FORWARD.get("key") != (loaded.key, size):
        _FORWARD.clear()
        with torch.no_grad():
            _FORWARD["out"] = loaded.get().forward_with_aux(x)
        _FORWARD["key"] = (loaded.key, size)
    return _FORWARD["out"]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key", list(MODELS))
def test_logits(loaded: Loaded, size: str, mmseg_ref: Reference, record):
    """1b. model(x) equals mmseg's encode_decode logits within 1e-4; argmax equal wherever mmseg's is decisive."""
    x = mmseg_ref.inputs()[size]
    ref = mmseg_ref.outputs(loaded.key)["results"][size]["main"]
    with torch.no_grad():
        ours = loaded.get()(x) if loaded.key not in SETR_MODELS else _forward(loaded, x, size)[0]
    diff, wrong, _ = _compare_logits(ours, ref, record, f"logits {size}")
    assert diff <= LOGIT_TOL, f"{loaded.key} {size}: max |segzoo - mmseg| = {diff:.3e} > {LOGIT_TOL}"
    assert wrong == 0, f"{loaded.key} {size}: argmax differs on {wrong} pixels where mmseg's top-2 gap is decisive"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key", SETR_MODELS)
def test_aux_logits(loaded: Loaded, size: str, mmseg_ref: Reference, record):
    """2. SETR: forward_with_aux(x)[1] equals each mmseg auxiliary head's logits (its predict_by_feat resize)."""
    x = mmseg_ref.inputs()[size]
    refs = mmseg_ref.outputs(loaded.key)["results"][size]["aux"]
    _, aux = _forward(loaded, x, size)
    assert len(aux) == len(refs), f"{loaded.key}: segzoo has {len(aux)} auxiliary heads, mmseg {len(refs)}"
    diffs = [_compare_logits(ours, ref, record, f"aux[{i}] {size}")[0] for i, (ours, ref) in enumerate(zip(aux, refs))]
    assert max(diffs) <= LOGIT_TOL, f"{loaded.key} {size}: aux heads max |segzoo - mmseg| = {diffs}"


@pytest.mark.parametrize("key", list(MODELS))
def test_predict_photo(loaded: Loaded, mmseg_ref: Reference, record):
    """3. model.predict(photo) labels equal mmseg's inference_model labels on >= 99.9% of the pixels."""
    photo = mmseg_ref.path(mmseg_ref.manifest["photo"])
    ours = loaded.get().predict(str(photo))
    share = _share(ours, mmseg_ref.outputs(loaded.key)["photo_labels"])
    record("predict(photo) vs inference_model", f"{100 * share:.4f}% equal")
    assert share >= LABEL_SHARE, f"{loaded.key}: predict agrees with mmseg inference_model on {100 * share:.3f}%"


@pytest.mark.parametrize("key", TTA_MODELS)
def test_predict_tta_photo(loaded: Loaded, mmseg_ref: Reference, record):
    """4. Segmenter-T: predict(photo, tta=True) equals an mmseg-0.x-style multi-scale + flip run of mmseg's own model
    (the protocol the zoo's published MS numbers came from) on >= 99.9% of the pixels."""
    photo = mmseg_ref.path(mmseg_ref.manifest["photo"])
    outputs = mmseg_ref.outputs(loaded.key)
    ours = loaded.get().predict(str(photo), tta=True)
    share = _share(ours, outputs["tta_mmseg0x_labels"])
    record("predict(photo, tta=True) vs mmseg-0.x MS+flip", f"{100 * share:.4f}% equal")
    if "tta_mmseg1x_labels" in outputs:  # for information: mmseg 1.x --tta resizes by the ratio itself
        record("  (for information) vs mmseg 1.x --tta", f"{100 * _share(ours, outputs['tta_mmseg1x_labels']):.4f}%")
        record(
            "  (for information) mmseg-0.x MS+flip vs mmseg 1.x --tta",
            f"{100 * _share(outputs['tta_mmseg0x_labels'].numpy(), outputs['tta_mmseg1x_labels']):.4f}%",
        )
    assert share >= LABEL_SHARE, f"{loaded.key}: MS+flip agrees with mmseg-0.x-style MS+flip on {100 * share:.3f}%"


@pytest.mark.parametrize("key", list(MODELS))
def test_load_bare_file(loaded: Loaded, mmseg_ref: Reference, record):
    """5. segzoo.load(<mmseg .pth>) with no name infers the architecture and gives the same logits."""
    ckpt = mmseg_ref.path(mmseg_ref.model(loaded.key)["checkpoint"])
    expected_arch = segzoo.get_pretrained_cfg(MODELS[loaded.key]).arch
    model = segzoo.load(str(ckpt))
    try:
        record("bare file -> architecture", f"{model.arch_name} (table: {expected_arch})")
        assert model.arch_name == expected_arch, f"{ckpt.name}: built {model.arch_name}, expected {expected_arch}"
        size = "250x330"
        with torch.no_grad():
            ours = model(mmseg_ref.inputs()[size])
        ref = mmseg_ref.outputs(loaded.key)["results"][size]["main"]
        diff, _, _ = _compare_logits(ours, ref, record, f"bare-file logits {size}")
        assert diff <= LOGIT_TOL, f"{ckpt.name} loaded bare: max |segzoo - mmseg| = {diff:.3e} at {size}"
    finally:
        del model
        gc.collect()


def test_ohem_selects_the_pixels_mmsegs_sampler_selects(mmseg_ref: Reference, record):
    """OhemCrossEntropyLoss keeps exactly the pixels mmseg's OHEMPixelSampler weights, with a threshold that binds,
    one that min_kept overrides, and without a threshold (the largest losses)."""
    from segzoo.training import OhemCrossEntropyLoss

    cases = torch.load(mmseg_ref.path(mmseg_ref.manifest["ohem_file"]), weights_only=True)
    assert len(cases) == 3
    for case in cases:
        loss = OhemCrossEntropyLoss(thresh=case["thresh"], min_kept=case["min_kept"])
        losses = torch.nn.functional.cross_entropy(case["logits"], case["labels"], ignore_index=255, reduction="none")
        kept = loss.hard_pixels(case["logits"], case["labels"], losses)
        expected = case["weight"] > 0
        assert expected.sum() > 0 and torch.equal(kept, expected), (case["thresh"], case["min_kept"])
        record(f"OHEM thresh={case['thresh']} min_kept={case['min_kept']}", f"{int(kept.sum())} pixels, identical")
