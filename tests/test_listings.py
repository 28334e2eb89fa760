"""timm's guarantee for names: every name a listing returns is accepted by the function next to it, and every error
segzoo raises on purpose is a SegzooError that is also the builtin type callers caught before."""

import fnmatch

import pytest

import segzoo
import segzoo.checkpoints._download as download


class ReachedDownload(Exception):
    """Raised instead of downloading: the name was accepted all the way to fetching its weights."""


@pytest.fixture
def no_download(monkeypatch):
    def refuse(cfg, **kwargs):
        raise ReachedDownload(cfg.name)

    monkeypatch.setattr(download, "download_file", refuse)


def test_every_listed_checkpoint_is_accepted_by_load(no_download):
    names = segzoo.list_pretrained()
    assert len(names) >= 40
    for name in names:
        with pytest.raises(ReachedDownload, match=name):
            segzoo.load(name)


def test_every_listed_encoder_is_accepted_by_create_model(no_download):
    names = segzoo.list_pretrained(kind="encoder")
    assert names and not set(names) & set(segzoo.list_pretrained())
    for name in names:
        patterns = segzoo.get_pretrained_cfg(name).encoder_of
        arch = next(a for a in segzoo.list_models() if any(fnmatch.fnmatchcase(a, p) for p in patterns))
        with pytest.raises(ReachedDownload, match=name):
            segzoo.create_model(arch, num_classes=2, pretrained_encoder=name, device="meta")


def test_an_encoder_is_refused_by_load_and_a_misfit_by_create_model():
    with pytest.raises(ValueError, match=r"segzoo\.create_model\(<architecture>, pretrained_encoder='mit-b0'\)"):
        segzoo.load("mit-b0")
    with pytest.raises(segzoo.UnknownCheckpointError, match="does not fit 'segmenter-t16-mask'"):
        segzoo.create_model("segmenter-t16-mask", pretrained_encoder="mit-b0", device="meta")
    with pytest.raises(segzoo.UnknownCheckpointError, match="not an encoder"):
        segzoo.create_model("segformer-b0", pretrained_encoder="segformer-b0-ade", device="meta")


def test_list_models_pretrained_names_architectures_with_a_checkpoint():
    published = segzoo.list_models(pretrained=True)
    archs = {segzoo.get_pretrained_cfg(name).arch for name in segzoo.list_pretrained()}
    assert set(published) == archs and set(published) <= set(segzoo.list_models())
    assert "segformer-b2" in published and "segmenter-t8-linear" not in published
    assert segzoo.list_models("segformer-b?", pretrained=True) == [f"segformer-b{i}" for i in range(6)]


def test_every_exported_error_is_a_segzoo_error_and_a_builtin():
    errors = [getattr(segzoo, name) for name in segzoo.__all__ if name.endswith("Error")]
    assert len(errors) >= 13
    for error in errors:
        assert issubclass(error, segzoo.SegzooError)
        assert error is segzoo.SegzooError or any(
            base.__module__ == "builtins" and base is not Exception for base in error.__mro__[1:]
        ), error


def test_segzoo_error_catches_a_bad_name_that_keyerror_also_catches():
    with pytest.raises(segzoo.SegzooError, match="segformer-b2-ade"):
        segzoo.load("segformer-b2-ad")
    with pytest.raises(KeyError):
        segzoo.create_model("segformer-b9")


def test_renamed_public_names_still_resolve_with_a_warning():
    import segzoo.models
    import segzoo.training

    with pytest.warns(FutureWarning, match="segzoo.training.SegmentationTask"):
        assert segzoo.training.SegmentationModule is segzoo.training.SegmentationTask
    with pytest.warns(FutureWarning, match="segzoo.SegmentationModel"):
        assert segzoo.EncoderDecoder is segzoo.models.EncoderDecoder
    assert issubclass(segzoo.SegmentationModel, segzoo.models.EncoderDecoder)
