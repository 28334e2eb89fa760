"""The model card ``README.md`` of ``save_pretrained``: ``segzoo/checkpoints/model_card_template.md`` rendered with
``huggingface_hub.ModelCard.from_template``, read back with ``ModelCard.load``."""

from __future__ import annotations

import re

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

import segzoo


def _save(tmp_path, pretrained_cfg=None, num_classes=150, repo_id=None):
    model = segzoo.create_model("segformer-test", num_classes=num_classes)
    folder = segzoo.save_pretrained(model, tmp_path / "out", pretrained_cfg=pretrained_cfg, repo_id=repo_id)
    path = folder / "README.md"
    return path, path.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The lines under ``## heading`` up to the next heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"no section {heading!r} in the card"
    return match.group(1).strip()


def test_card_of_a_table_checkpoint(tmp_path):
    cfg = segzoo.get_pretrained_cfg("segformer-b0-ade").to_dict()
    path, text = _save(tmp_path, cfg, repo_id="org/segformer-b0-ade")

    data = ModelCard.load(path).data
    assert data.library_name == "segzoo"
    assert data.pipeline_tag == "image-segmentation"
    assert data.license == "other"
    assert data.license_name == "nvidia-source-code-license-nc"
    assert data.license_link == "https://github.com/NVlabs/SegFormer/blob/master/LICENSE"
    assert data.tags == ["semantic-segmentation", "segzoo", "segformer"]
    assert data.datasets == ["ade20k"]
    assert data.model_name == "segformer-b0-ade"
    [result] = data.eval_results
    assert (result.task_type, result.dataset_type, result.metric_type) == ("image-segmentation", "ade20k", "mean_iou")
    assert result.metric_value == pytest.approx(37.4)

    assert "\n# segformer-b0-ade\n" in text
    assert "`segformer-test` semantic segmentation model (150 classes, trained on ade20k)" in text
    usage = _section(text, "Usage")
    assert 'model = segzoo.load("hf-hub:org/segformer-b0-ade")' in usage
    assert 'labels = model.predict("image.jpg")' in usage
    assert "from segzoo.inference import predict" not in usage
    assert "| publisher | 37.4 | 38.0 |" in _section(text, "Evaluation").splitlines()
    assert _section(text, "Preprocessing and evaluation").splitlines() == [
        "- RGB mean 123.675, 116.28, 103.53, std 58.395, 57.12, 57.375 (0-255 scale)",
        "- test resize: keep the aspect ratio, fit within 2048 x 512 (long x short side)",
        "- then each side resized up to the next multiple of 32",
        "- inference: whole image",
        "- multi-scale + flip (mmseg-0.x): ratios 0.5, 0.75, 1.0, 1.25, 1.5, 1.75 of the test scale, each resized from "
        "the original image, plus horizontal flips",
    ]
    provenance = _section(text, "Provenance")
    assert "- paper: https://arxiv.org/abs/2105.15203" in provenance
    hub_weights = "https://huggingface.co/nvidia/segformer-b0-finetuned-ade-512-512"
    assert f"- original weights: {hub_weights} (transformers format), converted to segzoo" in provenance
    assert "- license: nvidia-source-code-license-nc" in provenance
    assert "\n\n\n" not in text and text.endswith("- license: nvidia-source-code-license-nc\n")


def test_card_of_a_bare_model(tmp_path):
    path, text = _save(tmp_path, num_classes=4, repo_id="org/my-model")

    data = ModelCard.load(path).data
    assert data.library_name == "segzoo" and data.pipeline_tag == "image-segmentation"
    assert data.model_name == "my-model"
    assert data.license is None and data.datasets is None and data.eval_results is None
    assert "license" not in path.read_text().split("---")[1]

    assert "\n# my-model\n" in text
    assert "`segformer-test` semantic segmentation model (4 classes) for" in text
    assert 'labels = model.predict("image.jpg")' in _section(text, "Usage")
    for heading in ("Evaluation", "Preprocessing and evaluation", "Provenance"):
        assert f"## {heading}" not in text
    assert "\n\n\n" not in text and text.endswith("testing.\n")


def test_card_of_a_slide_checkpoint_with_a_hub_license(tmp_path):
    cfg = {
        "name": "my-ckpt",
        "dataset": "cityscapes",
        "eval": {"mode": "slide", "crop": 768, "stride": [512, 512], "tta_style": "mmseg-1.x"},
        "license": "mit",
        "metrics": {"paper": {"miou_ss": 80.1}},
        "source": {"url": "https://example.com/weights.pth"},
    }
    path, text = _save(tmp_path, cfg, num_classes=19)

    data = ModelCard.load(path).data
    assert data.license == "mit" and data.to_dict().get("license_name") is None
    assert data.eval_results[0].metric_value == pytest.approx(80.1)
    assert data.datasets == ["cityscapes"]

    assert 'model = segzoo.load("/path/to/this/folder")' in _section(text, "Usage")
    assert "| paper | 80.1 | - |" in _section(text, "Evaluation").splitlines()
    protocol = _section(text, "Preprocessing and evaluation")
    assert "- test resize: none, the image keeps its size" in protocol
    assert "- inference: sliding window 768 x 768, stride 512 x 512" in protocol
    assert "multiple of" not in protocol
    assert "- multi-scale + flip (mmseg-1.x): ratios 0.5, 0.75, 1.0, 1.25, 1.5, 1.75 of the image size" in protocol
    provenance = _section(text, "Provenance").splitlines()
    assert provenance == ["- original weights: https://example.com/weights.pth, converted to segzoo", "- license: mit"]


def test_card_usage_snippet_runs(tmp_path):
    """The card's Usage code, pointed at the saved folder and a real image, predicts a label map."""
    model = segzoo.create_model("segformer-test", num_classes=5)
    folder = segzoo.save_pretrained(model, tmp_path / "out")
    Image.fromarray(np.full((48, 80, 3), 128, dtype=np.uint8)).save(tmp_path / "image.jpg")
    code = re.search(r"```python\n(.*?)```", (folder / "README.md").read_text(), flags=re.S).group(1)
    code = code.replace("/path/to/this/folder", str(folder)).replace("image.jpg", str(tmp_path / "image.jpg"))
    namespace: dict = {}
    exec(code, namespace)
    labels = namespace["labels"]
    assert labels.shape == (48, 80) and labels.min() >= 0 and labels.max() < 5
