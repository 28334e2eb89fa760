"""The benchmark scripts run (no timing is asserted: speed figures live in benchmarks/README.md)."""

import importlib.util
from pathlib import Path

from fake_datasets import make_ade20k

import segzoo

ROOT = Path(__file__).resolve().parents[1]


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_accuracy_script_evaluates_with_the_checkpoint_protocol(tmp_path, capsys):
    data = make_ade20k(tmp_path / "ade")
    weights = tmp_path / "weights"
    segzoo.create_model("segformer-b0", num_classes=150).save_pretrained(weights)
    out = tmp_path / "acc.csv"
    script("accuracy").main(["--model", "segformer-b0-ade", "--data", str(data), "--checkpoint", str(weights),
                             "--num-workers", "0", "--limit", "1", "--csv", str(out)])
    table = capsys.readouterr().out
    assert "| segformer-b0-ade | ade20k | 1 | whole |" in table and "37.4" in table  # publisher's single-scale mIoU
    miou = float(out.read_text().splitlines()[1].split(",")[4])
    assert 0.0 <= miou <= 100.0


def test_speed_script_compares_with_transformers(capsys):
    script("speed").main(["--models", "segformer-test", "--sizes", "64", "--dtypes", "fp32", "--no-memory"])
    out = capsys.readouterr().out
    assert "| segformer-test | segzoo | 64 | 1 | fp32 |" in out and "| segformer-test | reference |" in out
