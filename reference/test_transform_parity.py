"""segzoo's training transforms against mmsegmentation 1.2.2's own, on the same images and the same random draws
(reference/README.md, "Training transforms").

``reference/mmseg_aug_side.py`` runs mmseg's training pipelines (from the shipped ADE20K and Cityscapes SegFormer
configs) on real photos and records every ``numpy.random`` draw its transforms make and every stage's output. Here
segzoo's transforms, taken from :func:`segzoo.data.build_train_transform` with the config's settings, draw from
:class:`MmsegDraws`, which hands them mmseg's values in mmseg's order and fails when segzoo asks for a different kind
of draw or range than mmseg used. Outputs must be identical arrays.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pytest
import yaml

from segzoo.data import (
    CatMaxRatioRandomCrop,
    KeepRatioRescale,
    PhotoMetricDistortion,
    SegmentationDataset,
    build_train_transform,
    read_image,
    read_mask,
)
from segzoo.data._dataset import identity_label_map, reduce_zero_label_map

REPO = Path(__file__).resolve().parents[1]
SIDE_SCRIPT = REPO / "reference" / "mmseg_aug_side.py"
SIDE_TIMEOUT_S = 600
SETUP_HINT = "build it with `bash reference/setup.sh` (or point SEGZOO_MMSEG_PYTHON at a python that has mmseg 1.2.2)"


# ---------------------------------------------------------------------------------------------------------------
# mmseg's recorded run


@dataclass
class AugReference:
    out: Path
    manifest: dict

    def arrays(self, npz: str) -> dict[str, np.ndarray]:
        with np.load(self.out / npz) as data:
            return dict(data)


def _run_side(python: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [python, str(SIDE_SCRIPT), "--out", str(out)]
    log = out / "mmseg_aug_side.log"
    with log.open("w") as stream:
        proc = subprocess.run(cmd, stdout=stream, stderr=subprocess.STDOUT, timeout=SIDE_TIMEOUT_S, cwd=REPO)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed (exit {proc.returncode}), log {log}:\n{log.read_text()[-6000:]}")


@pytest.fixture(scope="session")
def mmseg_aug(tmp_path_factory) -> AugReference:
    """mmseg's recorded pipelines: ``SEGZOO_MMSEG_AUG_OUT`` when it holds a complete run, else a fresh run (into that
    folder when given)."""
    given = os.environ.get("SEGZOO_MMSEG_AUG_OUT")
    out = Path(given) if given else tmp_path_factory.mktemp("mmseg-aug")
    manifest = out / "manifest.json"
    if not (manifest.exists() and json.loads(manifest.read_text()).get("complete")):
        python = os.environ.get("SEGZOO_MMSEG_PYTHON", str(REPO / ".venv-mmseg" / "bin" / "python"))
        if not Path(python).exists():
            pytest.fail(f"the mmsegmentation reference environment is missing ({python} not found): {SETUP_HINT}")
        _run_side(python, out)
    return AugReference(out, json.loads(manifest.read_text()))


# ---------------------------------------------------------------------------------------------------------------
# Replaying mmseg's draws


class MmsegDraws(random.Random):
    """A ``random.Random`` that answers segzoo's draws with the values mmseg's ``numpy.random`` calls returned, in
    order. Each call must be the same kind of draw over the same range as mmseg's:

    - ``random()``: mmseg's ``random_sample()``, or the uniform number behind a ``choice(options, p=...)``;
    - ``uniform(a, b)``: mmseg's ``uniform(a, b)``;
    - ``randint(a, b)`` (inclusive): mmseg's ``randint(a, b + 1)`` (numpy excludes the upper end).

    Anything else (``choice``, ``getrandbits``, ...) fails, so a transform cannot draw behind the replay's back.
    """

    def __init__(self, draws: list[dict]):
        self.draws = list(draws)
        self.used = 0
        super().__init__(0)

    def _next(self, call: str) -> dict:
        if self.used >= len(self.draws):
            raise AssertionError(f"segzoo called {call} after all {len(self.draws)} of mmseg's draws were used")
        draw = self.draws[self.used]
        self.used += 1
        return draw

    def _mismatch(self, call: str, draw: dict) -> AssertionError:
        return AssertionError(
            f"draw {self.used}: segzoo called {call} where mmseg called numpy.random.{draw['fn']}"
            f"{tuple(draw['args']) if isinstance(draw['args'], list) else draw['args']}"
        )

    def random(self) -> float:
        draw = self._next("random()")
        if draw["fn"] in ("random_sample", "random", "rand") and not draw["args"]:
            return draw["value"]
        if draw["fn"] == "choice":
            return draw["uniform"]
        raise self._mismatch("random()", draw)

    def uniform(self, a: float, b: float) -> float:
        draw = self._next(f"uniform({a}, {b})")
        if draw["fn"] != "uniform" or draw["args"] != [a, b]:
            raise self._mismatch(f"uniform({a}, {b})", draw)
        return draw["value"]

    def randint(self, a: int, b: int) -> int:
        draw = self._next(f"randint({a}, {b})")
        args = draw["args"]
        low, high = (0, args[0]) if len(args) == 1 else args
        if draw["fn"] != "randint" or (low, high - 1) != (a, b):
            raise self._mismatch(f"randint({a}, {b})", draw)
        return draw["value"]

    def getrandbits(self, k: int) -> int:
        raise AssertionError(f"segzoo drew getrandbits({k}) (e.g. through choice/randrange), which mmseg never does")

    def assert_all_used(self) -> None:
        assert self.used == len(self.draws), f"segzoo used {self.used} of mmseg's {len(self.draws)} draws"


class NoNumpyDraws:
    """Stands in for albumentations' numpy generator: mmseg's draws are replayed through ``py_random`` only."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"segzoo drew from the numpy generator ({name}); only py_random is replayed")


def replaying(transform: A.BasicTransform | A.BaseCompose, draws: list[dict]) -> MmsegDraws:
    stream = MmsegDraws(draws)
    transform.set_random_state(NoNumpyDraws(), stream)
    return stream


# ---------------------------------------------------------------------------------------------------------------
# segzoo's pipeline for a config


def our_pipeline(settings: dict) -> A.Compose:
    return build_train_transform(
        crop_size=tuple(settings["crop_size"]),
        scale=tuple(settings["scale"]),
        ratio_range=tuple(settings["ratio_range"]),
        cat_max_ratio=settings["cat_max_ratio"],
        mean=settings["mean"],
        std=settings["std"],
        photometric=True,
        ignore_index=settings["seg_pad_val"],
    )


def step(pipeline: A.Compose, kind: type) -> A.BasicTransform:
    (found,) = [t for t in pipeline.transforms if isinstance(t, kind)]
    return found


def rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[..., ::-1])


def assert_identical(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs mmseg {theirs.shape}"
    differ = ours != theirs
    if differ.any():
        gap = np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max()
        raise AssertionError(f"{what}: {differ.sum()} of {differ.size} values differ from mmseg's (max |diff| {gap})")


def label_table(settings: dict) -> np.ndarray:
    return reduce_zero_label_map() if settings["reduce_zero_label"] else identity_label_map()


def case_id(case: dict) -> str:
    return f"{case['case']}-{case['seed']}"


# The recorded cases (mmseg_aug_side.py's PIPELINE_CASES / PHOTOMETRIC_SEEDS); the tests check that the manifest
# holds exactly these.
STAGED = [("ade20k-rocket", s) for s in range(12)] + [("ade20k-coffee", s) for s in (100, 101, 102, 103)]
STAGED += [("ade20k-one-class", s) for s in (200, 201)]
END_TO_END = STAGED + [("cityscapes-rocket", s) for s in (300, 301, 302)]
PHOTOMETRIC = [(photo, s) for photo in ("rocket", "coffee") for s in (*range(400, 432), 437, 469)]


def find_case(ref: AugReference, name: str, seed: int) -> dict:
    found = [c for c in ref.manifest["pipeline_cases"] if (c["case"], c["seed"]) == (name, seed)]
    if len(found) != 1:
        pytest.fail(f"mmseg's run {ref.out} has no case {name} seed {seed}: rerun reference/mmseg_aug_side.py")
    return found[0]


# ---------------------------------------------------------------------------------------------------------------
# The tests


def test_recorded_cases_cover_every_branch(mmseg_aug):
    """The recorded draws reach every path the transforms have (so the tests below exercise each)."""
    cases = mmseg_aug.manifest["pipeline_cases"]
    assert sorted((c["case"], c["seed"]) for c in cases) == sorted(END_TO_END)
    photometric = mmseg_aug.manifest["photometric_cases"]
    assert sorted((c["image"].split("_")[0], c["seed"]) for c in photometric) == sorted(PHOTOMETRIC)

    windows = [len(c["draws"]["crop"]) // 2 for c in cases]
    assert 1 in windows and 11 in windows, windows  # first window taken; all 10 checks failed (11th taken)
    assert any(1 < w < 11 for w in windows), windows  # a retry that succeeded
    flips = {c["draws"]["flip"][0]["value"] for c in cases}
    assert flips == {"horizontal", None}

    coins: dict[str, set] = {"brightness": set(), "contrast first": set(), "contrast": set(), "saturation": set()}
    coins["hue"], hues = set(), set()
    for case in cases + photometric:
        draws = case["draws"]["photometric"]
        flags = [d for d in draws if d["fn"] == "randint" and d["args"] == [2]]
        contrast_first = flags[1]["value"] == 1
        order = ["brightness", "mode"] + (["contrast"] if contrast_first else []) + ["saturation", "hue"]
        order += [] if contrast_first else ["contrast"]
        for name, flag in zip(order, flags):
            coins.setdefault(name, set()).add(flag["value"])
        coins["contrast first"].add(contrast_first)
        hues |= {d["value"] for d in draws if d["fn"] == "randint" and d["args"] != [2]}
    assert all(values == {0, 1} for values in coins.values()), coins  # each step on and off; both orders
    assert {-18, 0, 17} <= hues, sorted(hues)  # both ends of mmseg's hue range and a shift of 0

    shapes = [c for c in cases if c["case"] != "cityscapes-rocket"]
    small = [c for c in shapes if min(mmseg_aug.arrays(c["npz"])["resize_image"].shape[:2]) < 512]
    assert small, "no case where the rescaled image is smaller than the crop"


@pytest.mark.parametrize(
    "photo,labels",
    [("rocket.jpg", "rocket_ade.png"), ("coffee.png", "coffee_ade.png"), ("rocket.jpg", "rocket_cityscapes.png")],
)
def test_loading_matches_mmseg(mmseg_aug, photo, labels):
    """segzoo's ``read_image`` / ``read_mask`` + label table equal mmseg's ``LoadImageFromFile`` /
    ``LoadAnnotations`` (ADE20K: ``reduce_zero_label``)."""
    case = next(c for c in mmseg_aug.manifest["pipeline_cases"] if (c["image"], c["labels"]) == (photo, labels))
    arrays = mmseg_aug.arrays(case["npz"])
    settings = mmseg_aug.manifest["configs"][case["config"]]
    assert_identical(read_image(mmseg_aug.out / photo), rgb(arrays["load_image"]), "image")
    assert_identical(label_table(settings)[read_mask(mmseg_aug.out / labels)], arrays["load_mask"], "labels")


@pytest.mark.parametrize("name,seed", STAGED, ids=[f"{n}-{s}" for n, s in STAGED])
def test_each_transform_matches_mmseg(mmseg_aug, record, name, seed):
    """Each step, on mmseg's input to that step and with mmseg's draws, gives mmseg's output exactly."""
    case = find_case(mmseg_aug, name, seed)
    settings = mmseg_aug.manifest["configs"][case["config"]]
    arrays = mmseg_aug.arrays(case["npz"])
    pipeline = our_pipeline(settings)
    steps = [
        ("resize", step(pipeline, KeepRatioRescale), "load"),
        ("crop", step(pipeline, CatMaxRatioRandomCrop), "resize"),
        ("flip", step(pipeline, A.HorizontalFlip), "crop"),
        ("photometric", step(pipeline, PhotoMetricDistortion), "flip"),
    ]
    for stage, transform, before in steps:
        stream = replaying(transform, case["draws"][stage])
        out = transform(image=rgb(arrays[f"{before}_image"]), mask=arrays[f"{before}_mask"])
        stream.assert_all_used()
        assert_identical(out["image"], rgb(arrays[f"{stage}_image"]), f"{stage} image")
        if stage != "photometric":
            assert_identical(out["mask"], arrays[f"{stage}_mask"], f"{stage} mask")

    # normalisation and padding: everything after the photometric step, against the data preprocessor
    tail = pipeline.transforms[pipeline.transforms.index(steps[-1][1]) + 1 :]
    data = {"image": rgb(arrays["photometric_image"]), "mask": arrays["flip_mask"]}
    for transform in tail:
        data = transform(**data)
    assert_identical(data["image"].numpy(), arrays["final_image"], "normalised, padded image")
    assert_identical(data["mask"].numpy(), arrays["final_mask"], "padded mask")
    record("windows tried", str(len(case["draws"]["crop"]) // 2))


@pytest.mark.parametrize("name,seed", END_TO_END, ids=[f"{n}-{s}" for n, s in END_TO_END])
def test_pipeline_end_to_end_matches_mmseg(mmseg_aug, name, seed):
    """From the files to the normalised, padded crop: segzoo's dataset reading and ``build_train_transform`` with
    the config's settings and mmseg's draws equal mmseg's pipeline and data preprocessor."""
    case = find_case(mmseg_aug, name, seed)
    settings = mmseg_aug.manifest["configs"][case["config"]]
    assert settings["bgr_to_rgb"] and settings["pad_val"] == 0 and settings["pad_size"] == settings["crop_size"]
    pipeline = our_pipeline(settings)
    assert step(pipeline, A.HorizontalFlip).p == settings["flip_prob"]
    dataset = SegmentationDataset(
        [(mmseg_aug.out / case["image"], mmseg_aug.out / case["labels"])],
        num_classes=150 if settings["reduce_zero_label"] else 19,
        transform=pipeline,
        label_map=label_table(settings),
    )
    image, mask, _ = dataset.load_sample(0)
    draws = [d for stage in ("resize", "crop", "flip", "photometric") for d in case["draws"][stage]]
    stream = replaying(pipeline, draws)
    out = pipeline(image=image, mask=mask, force_apply=True)  # force_apply: skip Compose's own p=1 draw
    stream.assert_all_used()
    arrays = mmseg_aug.arrays(case["npz"])
    assert_identical(out["image"].numpy(), arrays["final_image"], "image")
    assert_identical(out["mask"].numpy(), arrays["final_mask"], "mask")


@pytest.mark.parametrize("photo,seed", PHOTOMETRIC, ids=[f"{p}-{s}" for p, s in PHOTOMETRIC])
def test_photometric_distortion_matches_mmseg(mmseg_aug, photo, seed):
    (case,) = [c for c in mmseg_aug.manifest["photometric_cases"] if c["npz"] == f"photometric-{photo}-{seed}.npz"]
    image = rgb(np.load(mmseg_aug.out / case["image"]))
    distort = PhotoMetricDistortion()
    stream = replaying(distort, case["draws"]["photometric"])
    out = distort(image=image)["image"]
    stream.assert_all_used()
    assert_identical(out, rgb(mmseg_aug.arrays(case["npz"])["photometric_image"]), "image")


@pytest.mark.parametrize("config,recipe", [("ade20k", "ade20k.yaml"), ("cityscapes", "cityscapes.yaml")])
def test_recipe_data_settings_are_the_configs(mmseg_aug, config, recipe):
    """segzoo's base data configs use the training-pipeline settings of mmseg's config."""
    settings = mmseg_aug.manifest["configs"][config]
    ours = yaml.safe_load((REPO / "configs" / "_base" / recipe).read_text())["data"]["init_args"]
    crop = ours["crop_size"] if isinstance(ours["crop_size"], list) else [ours["crop_size"]] * 2
    assert crop == settings["crop_size"]
    assert ours["scale"] == settings["scale"] and ours["ratio_range"] == settings["ratio_range"]
    assert ours["cat_max_ratio"] == settings["cat_max_ratio"]
