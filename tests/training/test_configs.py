"""configs/: every recipe resolves (``fit --config <recipe> --print_config``) to the values recorded in
tests/assets/resolved_configs/ (scripts/snapshot_configs.py, written from the recipes before they moved onto the base
configs of configs/_base/), and a recipe's ``_base_`` list is expanded as documented or refused naming the file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest
import yaml

from segzoo.training import cli_main
from segzoo.training._cli import expand_base_configs

from support.recipes import CONFIGS, RECIPES, SNAPSHOTS, resolve, resolved_recipe

PAPER_RECIPES = [r for r in RECIPES if r.split("/")[0] in ("segformer", "segmenter", "setr")]
REGENERATE = "if the change is meant, run python scripts/snapshot_configs.py and review the snapshots' diff"


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """LightningCLI warns when pytest's own arguments are in sys.argv next to ``args``."""
    monkeypatch.setattr(sys, "argv", ["train.py"])


def snapshot(recipe: str) -> dict:
    return yaml.safe_load((SNAPSHOTS / recipe).read_text())


def differences(actual, expected, where: str = "") -> list[str]:
    """The dotted keys whose values differ (a readable failure instead of two 150-line dicts).

    A key the snapshot lacks is accepted when its value is null: an argument added to the code since the snapshot,
    left at a None default, which no recipe can have set. Any other new, missing or changed value is a difference.
    """
    if isinstance(actual, dict) and isinstance(expected, dict):
        return [
            diff
            for key in sorted(set(actual) | set(expected), key=str)
            if not (key not in expected and actual[key] is None)
            for diff in differences(actual.get(key, "<missing>"), expected.get(key, "<missing>"), f"{where}.{key}")
        ]
    return [] if actual == expected else [f"{where.lstrip('.')}: {actual!r}, recorded {expected!r}"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_resolves_to_its_recorded_values(recipe):
    assert differences(resolved_recipe(recipe), snapshot(recipe)) == [], REGENERATE


def test_every_recipe_has_a_snapshot_and_every_snapshot_a_recipe():
    snapshots = sorted(p.relative_to(SNAPSHOTS).as_posix() for p in SNAPSHOTS.rglob("*.yaml"))
    assert snapshots == RECIPES
    assert len(PAPER_RECIPES) == 40


def test_paper_recipes_start_from_bases_and_every_base_is_used():
    bases = sorted(p.name for p in (CONFIGS / "_base").glob("*.yaml"))
    used = set()
    for recipe in PAPER_RECIPES:
        listed = yaml.safe_load((CONFIGS / recipe).read_text())["_base_"]
        assert listed[0] == "../_base/runtime.yaml", recipe
        used.update(Path(base).name for base in listed)
    assert sorted(used) == bases
    for base in bases:  # bases are one level deep
        assert "_base_" not in yaml.safe_load((CONFIGS / "_base" / base).read_text()), base


def test_a_changed_value_shows_in_the_comparison():
    """The comparison can fail: an override on the command line, or a recipe cut off from its bases, differs."""
    recipe = "segformer/segformer-b2-ade-mmseg.yaml"  # a recipe without a data block: it resolves without its bases
    assert differences(resolve(CONFIGS / recipe, "--model.head_lr_mult", "3"), snapshot(recipe)) == [
        "model.head_lr_mult: 3.0, recorded 1.0"
    ]
    text = (CONFIGS / recipe).read_text()
    without_bases = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("_base_:"))
    found = differences(resolve(without_bases), snapshot(recipe))
    assert "trainer.devices: 'auto', recorded 8" in found  # runtime.yaml's
    assert "model.pretrained_encoder: False, recorded True" in found  # segformer.yaml's
    # only a new key at null is let through
    assert differences({"a": 1, "new": None}, {"a": 1}) == []
    assert differences({"a": 1, "new": 0}, {"a": 1}) == ["new: 0, recorded '<missing>'"]
    assert differences({"a": None}, {"a": 1, "gone": None}) == [
        "a: None, recorded 1",
        "gone: '<missing>', recorded None",
    ]


def test_recipe_values_override_their_bases():
    """Later configs win key by key: the Cityscapes recipe's sliding window over segformer.yaml's whole-image
    evaluation, its own logger name next to runtime.yaml's save_dir, segformer.yaml's mean next to the dataset."""
    config = resolved_recipe("segformer/segformer-b2-cityscapes.yaml")
    assert (config["model"]["eval_mode"], config["model"]["eval_crop"], config["model"]["eval_stride"]) == (
        "slide", 1024, 768
    )  # fmt: skip
    assert config["trainer"]["logger"]["init_args"]["name"] == "segformer-b2-cityscapes"
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == "runs"
    assert config["data"]["class_path"] == "segzoo.data.CityscapesDataModule"
    assert config["data"]["init_args"]["mean"] == [123.675, 116.28, 103.53]


@pytest.mark.parametrize("flag", ["--config=", "-c"])
def test_other_spellings_of_config_expand_the_bases(flag):
    recipe = "setr/setr-pup-cityscapes.yaml"
    assert differences(resolve(CONFIGS / recipe, flag=flag), snapshot(recipe)) == []


def test_a_recipe_split_into_a_base_resolves_as_the_whole(tmp_path):
    """The mechanism on its own, with files outside configs/: tiny.yaml cut into a base and a recipe. The recipe's
    values keep their YAML text through the expansion (``1e-1`` is a string to PyYAML, a float to jsonargparse)."""
    tiny = yaml.safe_load((CONFIGS / "test" / "tiny.yaml").read_text())
    scheduler = tiny["model"].pop("lr_scheduler")
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / "tiny-base.yaml").write_text(yaml.safe_dump(tiny))
    recipe = tmp_path / "recipes" / "tiny.yaml"
    recipe.parent.mkdir()
    recipe.write_text(
        "_base_: ../bases/tiny-base.yaml  # one base may be given without a list\n"
        "model:\n"
        f"  lr_scheduler: {{class_path: {scheduler['class_path']}, init_args: {{power: 1.0, warmup_iters: 2,"
        " warmup_ratio: 1e-1}}\n"
    )
    assert scheduler["init_args"]["warmup_ratio"] == 0.1
    assert differences(resolve(recipe), snapshot("test/tiny.yaml")) == []


def test_expansion_of_the_argument_list(tmp_path):
    (tmp_path / "a.yaml").write_text("seed_everything: 1\n")
    (tmp_path / "b.yaml").write_text("seed_everything: 2\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("_base_: [a.yaml, b.yaml]\nseed_everything: 3  # the recipe's own value comes last\n")
    assert expand_base_configs(["fit", "--config", str(recipe), "--trainer.devices", "1"]) == [
        "fit", "--config", str(tmp_path / "a.yaml"), "--config", str(tmp_path / "b.yaml"),
        "--config", "seed_everything: 3\n", "--trainer.devices", "1",
    ]  # fmt: skip
    plain = ["fit", "--config", str(tmp_path / "a.yaml"), "--config", "seed_everything: 4", "--print_config"]
    assert expand_base_configs(plain) == plain  # no _base_, or a YAML string: untouched
    recipe.write_text("_base_: [a.yaml]\n")  # nothing of its own: only the bases
    assert expand_base_configs(["--config", str(recipe)]) == ["--config", str(tmp_path / "a.yaml")]


def test_a_missing_base_is_a_usage_error_naming_the_recipe_and_the_base(tmp_path, capsys):
    recipe = tmp_path / "recipes" / "recipe.yaml"
    recipe.parent.mkdir()
    recipe.write_text("_base_: [../_base/runtime.yaml, ../_base/imagenet.yaml]\nmodel:\n  model: segformer-b0\n")
    (tmp_path / "_base").mkdir()
    (tmp_path / "_base" / "runtime.yaml").write_text("seed_everything: 0\n")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(recipe), "--print_config"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"{recipe}: base config ../_base/imagenet.yaml not found" in error
    assert str(tmp_path / "recipes" / ".." / "_base" / "imagenet.yaml") in error


def test_a_base_with_its_own_bases_is_refused(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text("seed_everything: 1\n")
    (tmp_path / "b.yaml").write_text("_base_: [a.yaml]\n")
    (tmp_path / "r.yaml").write_text("_base_: [b.yaml]\n")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(tmp_path / "r.yaml"), "--print_config"])
    assert exit_info.value.code == 2
    assert f"{tmp_path / 'r.yaml'}: base config b.yaml has its own _base_" in capsys.readouterr().err
