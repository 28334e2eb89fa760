"""segzoo._atomic: the one way segzoo writes a file others read (downloads, caches, saved models, exports, prepared
datasets): whole or not at all, through a temporary folder of its own."""

import threading

import pytest

from segzoo._atomic import atomic_write


def test_a_file_appears_only_when_complete_and_an_error_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "model.onnx"
    with atomic_write(target) as draft:
        draft.write_text("graph")
        (draft.parent / "model.onnx.data").write_text("weights")  # what a writer puts beside it moves too
        assert draft != target and draft.name == target.name and not target.exists()
    assert target.read_text() == "graph" and (tmp_path / "out" / "model.onnx.data").read_text() == "weights"
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as draft:
        draft.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "graph"  # the previous file stays
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx", "model.onnx.data"]  # no leftovers


def test_concurrent_writers_of_one_file_never_share_a_temporary_path(tmp_path):
    target, drafts, barrier = tmp_path / "cache.safetensors", [], threading.Barrier(3)

    def write(text):
        with atomic_write(target) as draft:
            drafts.append(draft)
            draft.write_text(text)
            barrier.wait(timeout=10)  # all three hold a half-done file at once

    threads = [threading.Thread(target=write, args=(str(i) * 1000,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(drafts)) == 3 and target.read_text() in {str(i) * 1000 for i in range(3)}
    assert [p.name for p in tmp_path.iterdir()] == ["cache.safetensors"]
