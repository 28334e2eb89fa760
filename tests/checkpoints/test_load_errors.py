"""``segzoo.load`` and ``read_state_dict`` on paths, names, URLs and files that cannot be loaded: each error says what
is wrong and what to change (the command line prints these messages as its one-line errors)."""

from __future__ import annotations

import io

import pytest
import torch

import segzoo
from segzoo import CorruptedFileError, UnknownFormatError, UnsafeCheckpointError
from segzoo.checkpoints import read_state_dict


def test_load_of_a_missing_path_says_the_path_is_missing(tmp_path):
    for missing in (str(tmp_path / "nope.pth"), "./nope/folder", "weights.safetensors", "~/no-such-segzoo-file.ckpt"):
        with pytest.raises(FileNotFoundError, match="does not exist.*check the path"):
            segzoo.load(missing)


def test_load_of_an_architecture_name_says_how_to_get_weights():
    with pytest.raises(ValueError, match=r"'segformer-b0' is an architecture, which has no weights") as info:
        segzoo.load("segformer-b0")
    message = str(info.value)
    assert "segzoo.create_model('segformer-b0'" in message and "checkpoint=" in message
    assert "segformer-b0-ade" in message and "segformer-b0-cityscapes" in message  # its checkpoints
    with pytest.raises(ValueError, match="a URL needs the architecture it is for"):
        segzoo.load("https://example.org/weights.pth")


def test_load_names_an_unsupported_url_scheme():
    with pytest.raises(UnknownFormatError, match=r"checkpoint='ftp://host/dir/w\.pth'.*not ftp:// URLs"):
        segzoo.load("segformer-test", checkpoint="ftp://host/dir/w.pth")


def test_load_reads_a_file_url(tmp_path):
    model = segzoo.create_model("segformer-test", num_classes=3)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pth")
    loaded = segzoo.load("segformer-test", checkpoint=(tmp_path / "w.pth").as_uri())
    assert torch.equal(loaded.decode_head.linear_pred.weight, model.decode_head.linear_pred.weight)


@pytest.mark.parametrize("content", [b"\x80\x02garbage" + bytes(range(256)) * 8, b"hello world\n" * 100, b""])
@pytest.mark.parametrize("suffix", [".pth", ".ckpt"])
def test_corrupt_checkpoint_is_reported_as_corrupt_never_as_unsafe(tmp_path, content, suffix):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(content)
    for call in (lambda: read_state_dict(path), lambda: segzoo.load("segformer-test", checkpoint=path)):
        with pytest.raises(CorruptedFileError) as info:
            call()
        message = str(info.value)
        assert str(path) in message and "truncated or corrupted, or not a checkpoint" in message
        assert "weights_only" not in message and "\n" not in message


def test_truncated_checkpoint_names_the_file(tmp_path):
    for legacy in (False, True):
        buffer = io.BytesIO()
        torch.save({"w": torch.zeros(1000)}, buffer, _use_new_zipfile_serialization=not legacy)
        path = tmp_path / f"cut{int(legacy)}.ckpt"
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        with pytest.raises(CorruptedFileError, match=rf"{path}.*truncated or corrupted"):
            read_state_dict(path)


def test_checkpoint_with_pickled_objects_is_named_but_unsafe_loading_is_not_advised(tmp_path):
    torch.save({"state_dict": {}, "optimizer": io.StringIO("x")}, tmp_path / "objects.pth")
    with pytest.raises(UnsafeCheckpointError, match=r"holds pickled Python objects \(_io.StringIO\)") as info:
        read_state_dict(tmp_path / "objects.pth")
    assert "weights_only=False" not in str(info.value)
