"""Downloading and publishing (``segzoo.checkpoints``: ``download_file``, ``snapshot``, ``read_state_dict``,
``save_pretrained``, ``push_to_hub``) against a local fake Hugging Face Hub (tests/support/fakehub.py)."""

from __future__ import annotations

import hashlib
import json
import socket
import time

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import load_file, save

import segzoo
from segzoo import (
    CorruptedFileError,
    DownloadError,
    UnknownFormatError,
    UnsafeCheckpointError,
    push_to_hub,
    save_pretrained,
)
from segzoo.checkpoints import download_file, get_pretrained_cfg, read_state_dict, snapshot
from segzoo.checkpoints._download import parse_hf_hub_id, url_cache_path
from segzoo.checkpoints._table import Source


def _tensors_bytes() -> tuple[dict[str, torch.Tensor], bytes]:
    tensors = {"backbone.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "head.bias": torch.ones(3)}
    return tensors, save(tensors)


def _pth_bytes(tmp_path, obj) -> bytes:
    path = tmp_path / "tmp.pth"
    torch.save(obj, path)
    return path.read_bytes()


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = segzoo.create_model("segformer-test", num_classes=3)
    model.build_args = {"num_classes": 3}
    model.pretrained_cfg = get_pretrained_cfg("segformer-b0-ade").to_dict()
    return model


def test_hf_file_downloads_into_hf_cache(fake_hub, tmp_path):
    tensors, data = _tensors_bytes()
    fake_hub.add_file("nvidia/tiny", "model.safetensors", data)
    source = Source(hf_hub_id="nvidia/tiny", filename="model.safetensors")
    path = download_file(source, sha256=hashlib.sha256(data).hexdigest())
    assert path.read_bytes() == data
    assert str(tmp_path / "hf" / "hub" / "models--nvidia--tiny") in str(path)
    state = read_state_dict(path)
    assert torch.equal(state["backbone.weight"], tensors["backbone.weight"])
    assert any(method == "HEAD" and "/nvidia/tiny/resolve/main/" in p for method, p in fake_hub.requests)


def test_hf_errors_name_the_url_and_suggest_checkpoint(fake_hub):
    fake_hub.add_file("org/repo", "config.json", b"{}")
    with pytest.raises(DownloadError, match=r"no file 'model\.bin'.*checkpoint="):
        download_file(Source(hf_hub_id="org/repo", filename="model.bin"))
    with pytest.raises(DownloadError, match=r"org/missing.*does not exist"):
        download_file(Source(hf_hub_id="org/missing", filename="model.bin"))
    with pytest.raises(DownloadError, match=r"no revision 'v9'"):
        download_file(Source(hf_hub_id="org/repo", filename="config.json", revision="v9"))


def test_url_download_is_atomic_and_cached(fake_hub):
    data = b"checkpoint bytes " * 1000
    fake_hub.urls["/weights/model-1234abcd.pth"] = data
    url = fake_hub.url + "/weights/model-1234abcd.pth"
    path = download_file(url, sha256=hashlib.sha256(data).hexdigest()[:8])
    assert path == url_cache_path(url) and path.read_bytes() == data
    assert path.parent.parent.name == "segzoo-url"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    fake_hub.requests.clear()
    assert download_file(url) == path
    assert fake_hub.requests == []  # served from the cache


@pytest.mark.parametrize("fault", ["truncate", "drop"])
def test_broken_url_download_leaves_nothing_in_cache(fake_hub, fault):
    fake_hub.urls["/weights/big.pth"] = b"x" * 100_000
    fake_hub.faults["/weights/big.pth"] = fault
    url = fake_hub.url + "/weights/big.pth"
    with pytest.raises(DownloadError) as info:
        download_file(url)
    assert url in str(info.value) and "checkpoint=" in str(info.value)
    assert not url_cache_path(url).parent.exists() or list(url_cache_path(url).parent.iterdir()) == []


def test_connection_failure_names_url_and_suggests_checkpoint(fake_hub):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/weights/model.pth"
    start = time.monotonic()
    with pytest.raises(DownloadError, match="connection failed") as info:
        download_file(url)
    assert time.monotonic() - start < 10
    assert url in str(info.value) and "checkpoint='path/to/file'" in str(info.value)


def test_sha256_mismatch(fake_hub):
    fake_hub.urls["/weights/model.pth"] = b"the real bytes"
    url = fake_hub.url + "/weights/model.pth"
    with pytest.raises(CorruptedFileError, match="nothing was cached"):
        download_file(url, sha256="0" * 64)
    assert not url_cache_path(url).exists()
    fake_hub.add_file("org/repo", "model.safetensors", _tensors_bytes()[1])
    with pytest.raises(CorruptedFileError, match=r"cached file .*model\.safetensors.*Delete it and retry"):
        download_file(Source(hf_hub_id="org/repo", filename="model.safetensors"), sha256="deadbeef")


def test_offline_mode_after_first_download(fake_hub, monkeypatch):
    _, data = _tensors_bytes()
    fake_hub.add_file("org/repo", "model.safetensors", data)
    fake_hub.urls["/weights/model.pth"] = b"plain url bytes"
    hf_source = Source(hf_hub_id="org/repo", filename="model.safetensors")
    url = fake_hub.url + "/weights/model.pth"
    hf_path, url_path = download_file(hf_source), download_file(url)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    fake_hub.requests.clear()
    assert download_file(hf_source) == hf_path
    assert download_file(url) == url_path
    assert fake_hub.requests == []
    with pytest.raises(DownloadError, match=r"offline mode is on.*checkpoint="):
        download_file(Source(hf_hub_id="org/repo", filename="other.safetensors"))
    with pytest.raises(DownloadError, match=r"offline mode is on.*checkpoint="):
        download_file(fake_hub.url + "/weights/never-downloaded.pth")
    assert fake_hub.requests == []


def test_corrupted_cached_file_gives_clear_error(fake_hub, tmp_path):
    _, data = _tensors_bytes()
    fake_hub.add_file("org/repo", "model.safetensors", data)
    fake_hub.add_file("org/repo", "pytorch_model.bin", _pth_bytes(tmp_path, {"w": torch.zeros(64, 64)}))
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = download_file(Source(hf_hub_id="org/repo", filename=filename))
        blob = path.resolve()
        blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])  # a truncated cache entry
        with pytest.raises(CorruptedFileError, match=r"truncated or corrupted.*delete it and retry") as info:
            read_state_dict(path)
        assert str(blob) in str(info.value)


def test_read_state_dict_formats_and_safety(tmp_path):
    tensors, data = _tensors_bytes()
    (tmp_path / "a.safetensors").write_bytes(data)
    torch.save({"state_dict": tensors, "meta": {"CLASSES": ("wall", "sky")}}, tmp_path / "b.pth")
    assert torch.equal(read_state_dict(tmp_path / "a.safetensors")["head.bias"], tensors["head.bias"])
    mmseg_style = read_state_dict(tmp_path / "b.pth")
    assert mmseg_style["meta"]["CLASSES"] == ("wall", "sky")
    assert torch.equal(mmseg_style["state_dict"]["backbone.weight"], tensors["backbone.weight"])

    torch.save({"model": tensors, "obj": Source(url="http://x")}, tmp_path / "unsafe.pth")
    with pytest.raises(UnsafeCheckpointError, match="weights_only"):
        read_state_dict(tmp_path / "unsafe.pth")
    (tmp_path / "weights.npz").write_bytes(b"zip")
    with pytest.raises(UnknownFormatError, match=r"\.safetensors"):
        read_state_dict(tmp_path / "weights.npz")


def test_snapshot_downloads_whole_repo(fake_hub):
    fake_hub.add_file("org/folder", "config.json", b'{"architecture": "segformer-test"}')
    fake_hub.add_file("org/folder", "model.safetensors", _tensors_bytes()[1])
    folder = snapshot("org/folder")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(DownloadError, match="does not exist"):
        snapshot("org/nothing")


def test_parse_hf_hub_id():
    assert parse_hf_hub_id("hf-hub:org/repo") == ("org/repo", None)
    assert parse_hf_hub_id("hf-hub:org/repo@v1.0") == ("org/repo", "v1.0")
    assert parse_hf_hub_id("segformer-b0-ade") is None
    with pytest.raises(ValueError, match="org/repo"):
        parse_hf_hub_id("hf-hub:just-a-name")


def test_save_pretrained_writes_weights_config_and_card(tmp_path):
    model = _tiny_model()
    folder = save_pretrained(model, tmp_path / "out", repo_id="org/segformer-tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "segformer-test" and config["num_classes"] == 3
    assert config["model_args"] == {"num_classes": 3}
    assert config["pretrained_cfg"]["name"] == "segformer-b0-ade"
    assert len(config["pretrained_cfg"]["class_names"]) == 150
    saved = load_file(folder / "model.safetensors")
    state = model.state_dict()
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) for k in state)
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: segzoo" in card
    assert "license: other" in card and "license_name: nvidia-source-code-license-nc" in card
    assert 'segzoo.load("hf-hub:org/segformer-tiny")' in card and "37.4" in card


def test_the_model_methods_return_what_huggingface_hubs_mixin_returns(fake_hub, tmp_path):
    model = segzoo.create_model("segformer-test", num_classes=3)
    assert model.save_pretrained(tmp_path / "local") is None
    url = model.save_pretrained(tmp_path / "pushed", repo_id="segzoo/saved-and-pushed", push_to_hub=True)
    assert isinstance(url, str) and fake_hub.commits["segzoo/saved-and-pushed"] in url
    assert sorted(fake_hub.repos["segzoo/saved-and-pushed"]) == ["README.md", "config.json", "model.safetensors"]
    again = model.push_to_hub("segzoo/pushed")
    assert isinstance(again, str) and fake_hub.commits["segzoo/pushed"] in again
    assert isinstance(type(model).from_pretrained(str(tmp_path / "local")), segzoo.SegmentationModel)


def test_save_pretrained_needs_arch_name(tmp_path):
    with pytest.raises(ValueError, match="arch_name"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path)


def test_push_to_hub_uploads_to_fake_hub(fake_hub):
    model = _tiny_model()
    url = push_to_hub(model, "segzoo/segformer-tiny", commit_message="Add tiny model")
    files = fake_hub.repos["segzoo/segformer-tiny"]
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert fake_hub.commit_messages["segzoo/segformer-tiny"] == ["Add tiny model"]
    assert fake_hub.commits["segzoo/segformer-tiny"] in url
    assert json.loads(files["config.json"])["architecture"] == "segformer-test"
    push_to_hub(model, "segzoo/segformer-tiny")  # the repository exists now: pushing again still works

    folder = snapshot("segzoo/segformer-tiny")  # and the upload reads back through the download path
    state = read_state_dict(folder / "model.safetensors")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
