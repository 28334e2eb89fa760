"""The benchmark scripts run (no timing is asserted: speed figures live in benchmarks/README.md)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo

from support.fake_datasets import make_ade20k

ROOT = Path(__file__).resolve().parents[1]


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_accuracy_script_scores_predict_labels_against_original_size_ground_truth(tmp_path, capsys):
    data = make_ade20k(tmp_path / "ade")
    weights = tmp_path / "weights"
    segzoo.create_model("segformer-b0", num_classes=150).save_pretrained(weights)
    out = tmp_path / "acc.csv"
    script("accuracy").main(
        [
            "--model",
            "segformer-b0-ade",
            "--data",
            str(data),
            "--checkpoint",
            str(weights),
            "--num-workers",
            "0",
            "--limit",
            "1",
            "--csv",
            str(out),
        ]
    )
    table = capsys.readouterr().out
    assert "| segformer-b0-ade | ade20k | 1 | whole |" in table and "37.4" in table  # publisher's single-scale mIoU
    miou = float(out.read_text().splitlines()[1].split(",")[4])
    # the same score computed by hand: predict's labels at the original size against the reduce_zero_label mask
    model = segzoo.load("segformer-b0-ade", checkpoint=weights)
    image = sorted((data / "images" / "validation").glob("*.jpg"))[0]
    labels = model.predict(image)
    mask = np.asarray(Image.open(data / "annotations" / "validation" / f"{image.stem}.png")).astype(np.int64) - 1
    valid = (mask >= 0) & (mask < 150)  # 0 (other) becomes ignored, the rest shift down by one
    ious = []
    for k in range(150):
        pred_k, gt_k = (labels == k) & valid, (mask == k) & valid
        union = (pred_k | gt_k).sum()
        if union:
            ious.append((pred_k & gt_k).sum() / union)
    assert miou == pytest.approx(100 * np.mean(ious), abs=0.01)


def test_speed_script_compares_with_transformers(capsys):
    script("speed").main(["--models", "segformer-test", "--sizes", "64", "--dtypes", "fp32", "--no-memory"])
    out = capsys.readouterr().out
    assert "| segformer-test | segzoo | 64 | 1 | fp32 |" in out and "| segformer-test | reference |" in out


def test_bf16_script_prints_speed_breakdown_and_agreement(capsys):
    bf16 = script("bf16")
    bf16.main(["--models", "segformer-test", "--size", "64", "--num-classes", "5"])
    out = capsys.readouterr().out
    for title in ("### speed", "### breakdown", "### agreement"):
        assert title in out
    rows = [line for line in out.splitlines() if line.startswith("| segformer-test |")]
    assert len(rows) == 1 + 5 + 1  # speed, four op classes + total, agreement
    total = next(r for r in rows if "| total |" in r).split("|")
    assert float(total[3]) > 0 and float(total[4]) > 0
    assert bf16.op_class("aten::addmm") == "matmul" and bf16.op_class("aten::lerp") == "resize"
    assert bf16.op_class("aten::gelu") == "norm+activation" and bf16.op_class("aten::add_") == "other"


def test_bf16_agreement_of_a_trained_lightning_checkpoint(tmp_path, capsys):
    """The --trained path reads a Lightning .ckpt (the quickstart's), regenerates its synthetic scenes and compares."""
    model = segzoo.create_model("segformer-test", num_classes=3)
    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"model": "segformer-test", "num_classes": 3, "model_args": {}},
            "datamodule_hyper_parameters": {
                "_class_path": "segzoo.data.SyntheticDataModule",
                "num_classes": 3,
                "image_size": 32,
                "seed": 0,
            },
        },
        ckpt,
    )
    script("bf16").main(["--trained", str(ckpt), "--count", "4"])
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {ckpt} |")][0].split("|")
    assert int(row[2]) == 4 * 32 * 32
    assert row[3].strip().endswith("%") and row[4].strip().endswith("%")


def test_bf16_agreement_counts_pixels_whose_argmax_changes():
    """A 1×1 identity convolution: bf16 rounds 1.001 to 1.0, so the first pixel's two logits tie and its argmax
    moves to class 0; the other three keep theirs. Agreement and ceiling are 3 of 4 pixels, the gaps exact."""
    conv = torch.nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
    x = torch.tensor([[1.0, 1.0, 2.0, 0.0], [1.001, 0.5, 0.0, 3.0]]).view(1, 2, 1, 4)
    row = script("bf16").agreement_row("identity", conv, [x])
    assert row["pixels"] == 4 and row["argmax_agree"] == "75.00%" and row["ceiling_fp32_rounded_to_bf16"] == "75.00%"
    assert row["median_top2_gap"] == pytest.approx(0.5, abs=1e-3)  # gaps 0.001, 0.5, 2, 3: median of torch = 0.5


def test_bf16_trained_on_an_image_folder(tmp_path, capsys):
    weights = tmp_path / "weights"
    segzoo.create_model("segformer-test", num_classes=3).save_pretrained(weights)
    with pytest.raises(SystemExit, match="--images"):
        script("bf16").main(["--trained", str(weights)])
    with pytest.raises(SystemExit, match="no .jpg/.png"):
        script("bf16").main(["--trained", str(weights), "--images", str(tmp_path)])
    images = tmp_path / "images"
    images.mkdir()
    for i, size in enumerate([(40, 56), (64, 48)]):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8)).save(images / f"{i}.png")
    script("bf16").main(["--trained", str(weights), "--images", str(images)])
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {weights} |")][0].split("|")
    assert int(row[2]) == 40 * 56 + 64 * 48  # each image at its own size


def test_gpu_script_smoke_run_writes_its_table_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nbefore\n<!-- gpu-table:start -->\nold table\n<!-- gpu-table:end -->\nafter\n")
    rows = script("gpu").main(["--smoke", "--models", "setr-test-pup", "--readme", str(readme)])
    modes = [(row["step"], row["mode"]) for row in rows]
    assert modes == [("inference", m) for m in script("gpu").INFERENCE_MODES] + [
        ("train", "bf16"),
        ("train", "bf16+checkpointing"),
    ]
    assert all(row["ms"] and row["images_per_s"] for row in rows), rows  # every configuration ran
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Benchmarks\n\nbefore\n") and text.endswith("after\n")
    assert "| setr-test-pup | train | bf16+checkpointing | 2 | 64 |" in text and "CPU (smoke run)" in text


def test_deploy_script_runs_transformers_pipeline_beside_predict(tmp_path, capsys):
    rows = script("deploy").main(
        [
            "--models",
            "segformer-test",
            "--paths",
            "transformers",
            "segzoo-eager",
            "--rounds",
            "1",
            "--photos",
            "chelsea",
            "--cache",
            str(tmp_path),
        ]
    )
    assert [row["path"] for row in rows] == ["transformers", "segzoo-eager"]
    assert all(row["ms_per_image"] > 0 and row["agree_vs_fp32_eager"] == "100.000%" for row in rows)
    assert rows[0]["vs_fastest_baseline"] == 1.0
    assert "| segformer-test | segzoo-eager |" in capsys.readouterr().out
