"""``train.py test`` and ``segzoo eval`` against mmsegmentation 1.2.2's own ``Runner.test()`` (reference/README.md,
"Scoring").

Every expected value comes from ``reference/mmseg_test_loop.py``, run in the reference environment: the random-weight
checkpoints mmengine wrote, a folder in ADE20K's layout of three real photos with labels at their own sizes, scored by
``Runner.from_cfg(cfg).test()`` with the shipped configs (whole image, sliding window, and multi-scale + flip by the
mmseg 0.x and 1.x rules). segzoo must give the same aAcc, mIoU and mAcc within 0.01 points, unrounded (from the areas
mmseg's ``IoUMetric`` summed) and as printed (rounded to 0.01).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from parity_cases import MODELS, Reference

import segzoo
from segzoo.training import cli_main, segmentation_metrics

pytestmark = pytest.mark.timeout(2400)

REPO = Path(__file__).resolve().parents[1]
RECIPES = {
    "segformer-b0": REPO / "configs" / "segformer" / "segformer-b0-ade-mmseg.yaml",
    "segmenter-t16-mask": REPO / "configs" / "segmenter" / "segmenter-t16-mask-ade.yaml",
}
RUNS = [
    ("segformer-b0", "ss"),
    ("segformer-b0", "ms-0.x"),
    ("segformer-b0", "ms-1.x"),
    ("segmenter-t16-mask", "ss"),
    ("segmenter-t16-mask", "ms-0.x"),
]
# segzoo eval runs train.py test's loop (segzoo.training.evaluate): whole, slide and one multi-scale run show it,
# which keeps the CI step short
EVAL_RUNS = [("segformer-b0", "ss"), ("segformer-b0", "ms-0.x"), ("segmenter-t16-mask", "ss")]
POINTS = 0.01  # aAcc / mIoU / mAcc, in %
# one process, CPU, no logs: the recipes' 8-GPU trainer settings are for training
TRAINER = [
    "--trainer.accelerator",
    "cpu",
    "--trainer.devices",
    "1",
    "--trainer.strategy",
    "auto",
    "--trainer.sync_batchnorm",
    "false",
    "--trainer.logger",
    "false",
    "--trainer.enable_progress_bar",
    "false",
]


def data_root(ref: Reference, key: str) -> Path:
    return ref.out / ref.manifest["models"][key]["data_root"]


def checkpoint(mmseg_ref: Reference, key: str) -> Path:
    return mmseg_ref.path(mmseg_ref.model(key)["checkpoint"])


def tta_args(ref: Reference, run: str, cli: str) -> list[str]:
    """The multi-scale options of ``train.py test`` (``cli="train"``) or ``segzoo eval`` for a run."""
    if run == "ss":
        return []
    ratios = ref.manifest["ms_ratios"]
    style = "mmseg-" + run.removeprefix("ms-")
    if cli == "train":
        return ["--model.test_tta", "true", "--model.tta_scales", json.dumps(ratios), "--model.tta_style", style]
    return ["--tta", "--tta-scales", *map(str, ratios), "--tta-style", style]


def mmseg_scores(ref: Reference, key: str, run: str) -> tuple[dict[str, float], torch.Tensor]:
    """Runner.test()'s aAcc / mIoU / mAcc in %, unrounded (from the per-image areas IoUMetric summed), and the
    per-class (intersect, union, pred, label) totals."""
    areas = torch.load(ref.out / ref.manifest["models"][key]["runs"][run]["areas_file"], weights_only=True)
    totals = torch.stack([areas[k].sum(0) for k in ("intersect", "union", "pred_area", "label_area")])
    intersect, union, _, label = totals
    scores = {
        "aAcc": 100 * float(intersect.sum() / label.sum()),
        "mIoU": 100 * float((intersect / union).nanmean()),
        "mAcc": 100 * float((intersect / label).nanmean()),
    }
    return scores, totals


def our_scores(confusion: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
    metrics = segmentation_metrics(confusion)
    scores = {k: 100 * float(metrics[m]) for k, m in (("aAcc", "acc"), ("mIoU", "miou"), ("mAcc", "macc"))}
    confusion = confusion.double()
    intersect, label, pred = confusion.diag(), confusion.sum(1), confusion.sum(0)
    return scores, torch.stack([intersect, label + pred - intersect, pred, label])


def assert_scores_equal(confusion: torch.Tensor, ref: Reference, key: str, run: str, record, what: str) -> None:
    """Unrounded within POINTS, rounded (as Runner.test() prints) within POINTS, and the pixel areas recorded."""
    ours, our_areas = our_scores(confusion)
    theirs, their_areas = mmseg_scores(ref, key, run)
    printed = ref.manifest["models"][key]["runs"][run]["metrics"]
    moved = int((our_areas[0] - their_areas[0]).abs().sum())  # pixels counted as correct by one side only
    record(
        what,
        " ".join(f"{k} {ours[k]:.4f} (mmseg {theirs[k]:.4f}, printed {printed[k]:.2f})" for k in ours)
        + f"; correct-pixel count differs by {moved} of {int(their_areas[3].sum())}",
    )
    for name in ours:
        assert abs(ours[name] - theirs[name]) < POINTS, f"{what}: {name} {ours[name]:.4f} vs mmseg {theirs[name]:.4f}"
        assert abs(float(np.round(ours[name], 2)) - printed[name]) <= POINTS + 1e-6, (what, name, printed[name])
    assert torch.equal(our_areas[3], their_areas[3]), f"{what}: the labelled pixels differ (ground truth read apart)"


@pytest.fixture(scope="session")
def saved_folders(tmp_path_factory, mmseg_ref: Reference) -> dict[str, Path]:
    """Each mmseg file loaded by its table name and saved as a segzoo folder (``save_pretrained``): a local
    checkpoint that carries its test pipeline, as a user's would."""
    folders = {}
    for key in RECIPES:
        folder = tmp_path_factory.mktemp(f"saved-{key}")
        segzoo.load(MODELS[key], checkpoint=checkpoint(mmseg_ref, key)).save_pretrained(folder)
        folders[key] = folder
    return folders


def train_py_test(args: list[str], tmp_path: Path, monkeypatch) -> tuple[torch.Tensor, str]:
    """``python train.py test ...`` in this process: the confusion matrix and where its test pipeline came from."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    cli = cli_main(["test", *args, *TRAINER])
    return cli.model.confusion_matrices["test"], cli.model.eval_protocol()[1]


@pytest.mark.parametrize(("case", "run"), RUNS)
def test_train_py_test_of_a_saved_checkpoint_equals_runner_test(
    case, run, mmseg_test_loop, saved_folders, tmp_path, monkeypatch, record
):
    """``train.py test --config <recipe> --model.init_from <folder>``: the checkpoint's own test pipeline."""
    args = [
        "--config",
        str(RECIPES[case]),
        "--model.init_from",
        str(saved_folders[case]),
        "--data.data_root",
        str(data_root(mmseg_test_loop, case)),
        "--data.num_workers",
        "0",
    ]
    confusion, origin = train_py_test(args + tta_args(mmseg_test_loop, run, "train"), tmp_path, monkeypatch)
    assert origin == "checkpoint"
    assert_scores_equal(confusion, mmseg_test_loop, case, run, record, f"train.py test {case} {run}")


@pytest.mark.parametrize("case", list(RECIPES))
def test_train_py_test_with_the_recipes_pipeline_equals_runner_test(
    case, mmseg_ref, mmseg_test_loop, tmp_path, monkeypatch, record
):
    """``train.py test --config <recipe> --model.init_from <mmseg .pth>``: a bare file carries no test pipeline, so
    the recipe's DataModule and evaluation settings score it, and they are mmseg's config's."""
    args = [
        "--config",
        str(RECIPES[case]),
        "--model.init_from",
        str(checkpoint(mmseg_ref, case)),
        "--data.data_root",
        str(data_root(mmseg_test_loop, case)),
        "--data.num_workers",
        "0",
    ]
    confusion, origin = train_py_test(args, tmp_path, monkeypatch)
    assert origin == "data"
    assert_scores_equal(confusion, mmseg_test_loop, case, "ss", record, f"train.py test (recipe's pipeline) {case}")


@pytest.mark.parametrize(("case", "run"), EVAL_RUNS)
def test_segzoo_eval_equals_runner_test(case, run, mmseg_ref, mmseg_test_loop, tmp_path, capsys, record):
    """``segzoo eval --model <table name> --checkpoint <mmseg .pth> --data <folder>``: the table's test pipeline, the
    dataset from the table; its printed line too."""
    from segzoo._cli import main

    out = tmp_path / "eval.json"
    status = main(
        [
            "eval",
            "--model",
            MODELS[case],
            "--checkpoint",
            str(checkpoint(mmseg_ref, case)),
            "--data",
            str(data_root(mmseg_test_loop, case)),
            "--num-workers",
            "0",
            "--json",
            str(out),
            *tta_args(mmseg_test_loop, run, "eval"),
        ]
    )
    assert status == 0
    result = json.loads(out.read_text())
    assert result["protocol_source"] == "checkpoint" and result["images"] == 3
    confusion = torch.tensor(result["confusion"])
    assert_scores_equal(confusion, mmseg_test_loop, case, run, record, f"segzoo eval {case} {run}")
    printed = mmseg_test_loop.manifest["models"][case]["runs"][run]["metrics"]
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{MODELS[case]}: aAcc ")
    assert all(abs(result[k] - printed[k]) <= POINTS + 1e-6 for k in ("aAcc", "mIoU", "mAcc")), (line, printed)
