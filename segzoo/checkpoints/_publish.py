"""Publishing: :func:`save_pretrained` writes ``model.safetensors`` + ``config.json`` + a model card, and
:func:`push_to_hub` uploads that folder to the Hugging Face Hub."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import CommitInfo, EvalResult, HfApi, ModelCard, ModelCardData

from segzoo._atomic import atomic_write
from segzoo._model_config import ModelConfig
from segzoo._preprocessing import EvalProtocol
from segzoo._version import __version__
from segzoo.checkpoints._table import PretrainedCfg

# Licence ids the Hub knows; anything else is published as license "other" with license_name.
_HUB_LICENSES = {"apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-nc-4.0", "cc-by-sa-4.0", "gpl-3.0", "other"}
_LICENSE_LINKS = {"nvidia-source-code-license-nc": "https://github.com/NVlabs/SegFormer/blob/master/LICENSE"}
# The card's body: a Jinja2 template shipped with the package (package-data ``checkpoints/*.md``).
_TEMPLATE = Path(__file__).with_name("model_card_template.md")


def model_config(model: torch.nn.Module, pretrained_cfg: PretrainedCfg | dict | None = None) -> dict[str, Any]:
    """The ``config.json`` content for a model: its :class:`~segzoo._model_config.ModelConfig` as a dict.

    Args:
        model: A segzoo model (``arch_name``, ``num_classes``; optional ``build_args`` and ``pretrained_cfg``).
        pretrained_cfg: Overrides ``model.pretrained_cfg``.

    Returns:
        ``{"architecture", "num_classes", "model_args", "pretrained_cfg", "segzoo_version"}``.

    Raises:
        ValueError: The model has no ``arch_name`` (it was not built by ``segzoo.create_model``).
    """
    if not getattr(model, "arch_name", None):
        raise ValueError(
            "The model has no arch_name, so segzoo could not rebuild it from config.json: build it with "
            "segzoo.create_model(name, ...) or set model.arch_name to a name from segzoo.list_models()."
        )
    if isinstance(pretrained_cfg, PretrainedCfg):
        pretrained_cfg = pretrained_cfg.to_dict()
    return ModelConfig.of(model, pretrained_cfg).to_dict()


def _model_card(config: dict[str, Any], repo_id: str | None) -> ModelCard:
    """The ``README.md`` of a saved model: ``model_card_template.md`` rendered with the config's metadata."""
    cfg = config["pretrained_cfg"]
    arch = config["architecture"]
    name = cfg.get("name") or (repo_id.split("/")[-1] if repo_id else arch)
    dataset = cfg.get("dataset")
    license_id = cfg.get("license")
    extra: dict[str, Any] = {}
    if license_id and license_id not in _HUB_LICENSES:
        extra = {"license_name": license_id, "license_link": _LICENSE_LINKS.get(license_id)}
        license_id = "other"
    metrics = cfg.get("metrics") or {}
    scores = metrics.get("publisher") or metrics.get("paper") or {}
    eval_results = None
    if dataset and "miou_ss" in scores:
        eval_results = [
            EvalResult(
                task_type="image-segmentation",
                dataset_type=dataset,
                dataset_name=dataset,
                metric_type="mean_iou",
                metric_name="mIoU (single scale)",
                metric_value=scores["miou_ss"],
            )
        ]
    card_data = ModelCardData(
        license=license_id,
        library_name="segzoo",
        pipeline_tag="image-segmentation",
        tags=["semantic-segmentation", "segzoo", arch.split("-")[0]],
        datasets=[dataset] if dataset else None,
        model_name=name,
        eval_results=eval_results,
        **{key: value for key, value in extra.items() if value},
    )
    source = cfg.get("source") or {}
    weights_url = source.get("url") or (
        f"https://huggingface.co/{source['hf_hub_id']}" if source.get("hf_hub_id") else None
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(_TEMPLATE),
        title=name,
        arch=arch,
        num_classes=config["num_classes"],
        dataset=dataset,
        load_id=f"hf-hub:{repo_id}" if repo_id else "/path/to/this/folder",
        metrics=[
            {"source": source_name, "miou_ss": values.get("miou_ss", "-"), "miou_ms": values.get("miou_ms", "-")}
            for source_name, values in metrics.items()
        ],
        # Only a checkpoint that states its protocol gets the section.
        protocol=EvalProtocol.from_dict(cfg["eval"]) if cfg.get("eval") else None,
        paper=cfg.get("paper"),
        weights_url=weights_url,
        weights_format=cfg.get("format"),
        notes=cfg.get("notes"),
        original_license=cfg.get("license"),
    )


def save_pretrained(
    model: torch.nn.Module,
    folder: str | Path,
    pretrained_cfg: PretrainedCfg | dict | None = None,
    *,
    repo_id: str | None = None,
) -> Path:
    """Writes ``model.safetensors``, ``config.json`` and a model card ``README.md`` into a folder.

    Args:
        model: A segzoo model (``arch_name``, ``num_classes``; optional ``build_args`` and ``pretrained_cfg``).
        folder: Output folder (created if needed).
        pretrained_cfg: Overrides ``model.pretrained_cfg`` in ``config.json`` and the card.
        repo_id: Hub repository the folder is meant for; used in the card's usage snippet.

    Returns:
        The folder.
    """
    from safetensors.torch import save_model

    folder = Path(folder)
    config = model_config(model, pretrained_cfg)
    with atomic_write(folder / "model.safetensors") as path:  # each file whole or not at all (segzoo._atomic)
        save_model(model, str(path), metadata={"format": "pt"})
    with atomic_write(folder / "config.json") as path:
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    with atomic_write(folder / "README.md") as path:
        _model_card(config, repo_id).save(path)
    return folder


def push_to_hub(
    model: torch.nn.Module,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload segzoo model",
    pretrained_cfg: PretrainedCfg | dict | None = None,
    revision: str | None = None,
) -> CommitInfo:
    """Saves a model with :func:`save_pretrained` and uploads it to a Hub repository (created if missing).

    Args:
        model: A segzoo model.
        repo_id: ``org/name``.
        private: Create the repository as private.
        token: Hub token; default the logged-in one or ``HF_TOKEN``.
        commit_message: Commit message.
        pretrained_cfg: Overrides ``model.pretrained_cfg``.
        revision: Branch to commit to; default ``main``.

    Returns:
        What ``huggingface_hub``'s ``PyTorchModelHubMixin.push_to_hub`` returns: the ``CommitInfo`` of the upload (a
        ``str``, the commit URL, with ``oid``, ``commit_url``, ``pr_url`` and more).
    """
    api = HfApi(token=token, library_name="segzoo", library_version=__version__)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="segzoo-push-") as tmp:
        save_pretrained(model, tmp, pretrained_cfg, repo_id=repo_id)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=revision)
