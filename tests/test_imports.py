"""Loading and predicting import no training stack: ``import segzoo`` stays light (Lightning, albumentations and wandb
load only when a DataModule, the training module or a W&B logger is used)."""

import subprocess
import sys

CHECK = """
import sys, numpy as np, segzoo
model = segzoo.create_model("segformer-test", num_classes=3)
model.pretrained_cfg = segzoo.get_pretrained_cfg("segformer-b0-ade").to_dict()
model.predict(np.zeros((40, 50, 3), np.uint8))
print(sorted({m.split(".")[0] for m in sys.modules} & {"lightning", "albumentations", "torchmetrics", "wandb"}))
import wandb  # still importable afterwards (the W&B logger)
print(wandb.__name__)
"""


def test_predicting_imports_no_lightning_albumentations_or_wandb():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-2:] == ["[]", "wandb"]


def test_the_command_line_answers_help_and_checks_data_without_torch(capsys):
    """``segzoo --help``, ``segzoo predict --help`` and ``segzoo data check`` import neither torch nor Lightning (the
    start-up figures are benchmarks/startup.py's; nothing here is timed)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "startup.py"
    spec = importlib.util.spec_from_file_location("startup", path)
    startup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(startup)
    light = ["segzoo --help", "segzoo predict --help", "segzoo data check <empty folder>"]
    rows = startup.main(["--repeat", "1"], only=light)
    assert [row["command"] for row in rows] == light
    assert {row["command"]: row["imported"] for row in rows} == dict.fromkeys(light, [])
    assert "| `segzoo --help` |" in capsys.readouterr().out
