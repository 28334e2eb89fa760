#!/usr/bin/env python
"""The mmsegmentation side of the training-transform parity tests (``reference/README.md``, "Training transforms").

Runs **inside the reference environment** (``bash reference/setup.sh``) and never imports segzoo. It runs mmseg's
own training pipelines, built from the configs shipped in the mmseg wheel, on real photos (skimage's ``rocket.jpg``
and ``coffee.png``) with label maps that hold several classes and ignore pixels, and records

- every random draw mmseg's transforms make (``numpy.random`` is wrapped while each transform runs; a draw through
  ``numpy.random.choice`` is recorded as the uniform number it consumed), stage by stage;
- each stage's output (``LoadImageFromFile`` + ``LoadAnnotations``, ``RandomResize``, ``RandomCrop``,
  ``RandomFlip``, ``PhotoMetricDistortion``) and the data preprocessor's normalised, padded batch.

``reference/test_transform_parity.py`` feeds the same draws to segzoo's transforms and compares the arrays.

    python reference/mmseg_aug_side.py --out /tmp/mmseg-aug
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmseg_side import _register_mmcv_ops_stand_in  # noqa: E402 - mmcv-lite needs it before mmseg imports

_register_mmcv_ops_stand_in()

import cv2  # noqa: E402
import mmseg  # noqa: E402
import skimage.data  # noqa: E402
import torch  # noqa: E402
from mmengine import Config  # noqa: E402
from mmseg.registry import MODELS, TRANSFORMS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

register_all_modules()

CONFIGS = {
    "ade20k": "segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py",
    "cityscapes": "segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py",
}
PHOTOS = ("rocket.jpg", "coffee.png")
# (case name, config, photo, label kind, seeds, keep every stage's arrays). The seeds were chosen so that the cases
# meet every branch the tests list (all crop retries failing, a crop larger than the image, each photometric step
# on and off, contrast first and last, a hue shift of 0); the tests check that coverage from the recorded draws.
PIPELINE_CASES = (
    ("ade20k-rocket", "ade20k", "rocket.jpg", "ade", tuple(range(12)), True),
    ("ade20k-coffee", "ade20k", "coffee.png", "ade", (100, 101, 102, 103), True),
    ("ade20k-one-class", "ade20k", "rocket.jpg", "ade-one-class", (200, 201), True),
    ("cityscapes-rocket", "cityscapes", "rocket.jpg", "cityscapes", (300, 301, 302), False),
)
# PhotoMetricDistortion alone, on a 200×300 window of each photo; 437 and 469 draw hue shifts of 0 and -18
PHOTOMETRIC_SEEDS = (*range(400, 432), 437, 469)
PHOTOMETRIC_WINDOW = (slice(100, 300), slice(150, 450))
STAGES = ("load", "resize", "crop", "flip", "photometric")


# ---------------------------------------------------------------------------------------------------------------
# Recording mmseg's random draws


@contextmanager
def recorded_draws(draws: list[dict]):
    """Wrap the ``numpy.random`` functions mmseg/mmcv transforms call (module attributes, looked up at call time)
    so that every draw is appended to ``draws`` as ``{"fn", "args", "value"}``."""
    rnd = np.random
    originals = {name: getattr(rnd, name) for name in ("randint", "uniform", "random_sample", "rand", "random")}
    original_choice = rnd.choice

    def wrap(name, fn):
        def recorded(*args, **kwargs):
            if kwargs or any(isinstance(a, (list, tuple, np.ndarray)) for a in args):
                raise RuntimeError(f"unexpected numpy.random.{name}{args}{kwargs}: extend the recorder")
            value = fn(*args)
            if not np.isscalar(value):
                raise RuntimeError(f"numpy.random.{name}{args} returned an array: extend the recorder")
            draws.append({"fn": name, "args": [_plain(a) for a in args], "value": _plain(value)})
            return value

        return recorded

    def choice(options, p=None):
        # One uniform number u picks the first option whose cumulative probability exceeds u; record u by drawing
        # it again from the state choice started from, and check that both consumed the same stream.
        before = rnd.get_state()
        value = original_choice(options, p=p)
        after = rnd.get_state()
        rnd.set_state(before)
        uniform = originals["random_sample"]()
        if not all(np.array_equal(a, b) for a, b in zip(after, rnd.get_state())):
            raise RuntimeError("numpy.random.choice consumed other draws than one uniform number")
        draws.append(
            {"fn": "choice", "args": {"options": list(options), "p": list(p)}, "value": value, "uniform": uniform}
        )
        return value

    for name, fn in originals.items():
        setattr(rnd, name, wrap(name, fn))
    rnd.choice = choice
    try:
        yield draws
    finally:
        for name, fn in originals.items():
            setattr(rnd, name, fn)
        rnd.choice = original_choice


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def write_inputs(out: Path) -> dict[str, dict[str, str]]:
    """Copy the photos and write one label map per (photo, kind): ``{photo: {kind: file name}}``."""
    files: dict[str, dict[str, str]] = {}
    data_dir = Path(skimage.data.__file__).parent
    for photo in PHOTOS:
        shutil.copy(data_dir / photo, out / photo)
        grey = cv2.cvtColor(cv2.imread(str(out / photo), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
        files[photo] = {}
        for kind, labels in label_maps(grey).items():
            name = f"{Path(photo).stem}_{kind}.png"
            cv2.imwrite(str(out / name), labels)
            files[photo][kind] = name
    return files


def label_maps(grey: np.ndarray) -> dict[str, np.ndarray]:
    """Label maps that follow the photo's grey levels (so classes form regions, some dominating a crop), with
    unlabelled areas: ADE20K-style (0 = unlabelled, 1..150), a single class plus unlabelled pixels (no crop can
    pass ``cat_max_ratio``), and Cityscapes train ids (0..18, 255 = ignore)."""
    height, width = grey.shape
    rows, cols = np.mgrid[:height, :width]
    ade = (1 + grey // 24).astype(np.uint8)  # classes 1..11 below, one class dominating the upper 60%
    ade[(rows // 40 + cols // 40) % 7 == 0] = 150
    ade[rows < height * 0.6] = 3
    ade[(rows > height * 0.8) & (cols < width * 0.3)] = 0
    ade[np.random.default_rng(0).random(grey.shape) < 0.03] = 0
    one_class = np.full_like(ade, 7)
    one_class[:, : width // 5] = 0
    cityscapes = np.minimum(grey // 13, 18).astype(np.uint8)
    cityscapes[(rows < height * 0.15) | (np.random.default_rng(1).random(grey.shape) < 0.02)] = 255
    return {"ade": ade, "ade-one-class": one_class, "cityscapes": cityscapes}


# ---------------------------------------------------------------------------------------------------------------
# Running mmseg's pipelines


def load_config(name: str) -> Config:
    config_dir = Path(mmseg.__file__).parent / ".mim" / "configs"
    return Config.fromfile(str(config_dir / CONFIGS[name]))


def run_pipeline(cfg: Config, image: Path, labels: Path, seed: int) -> dict:
    """Run the config's ``train_pipeline`` transform by transform, then its data preprocessor; record each stage's
    draws and output."""
    transforms = [TRANSFORMS.build(copy.deepcopy(t)) for t in cfg.train_dataloader.dataset.pipeline]
    names = [type(t).__name__ for t in transforms]
    expected = [
        "LoadImageFromFile",
        "LoadAnnotations",
        "RandomResize",
        "RandomCrop",
        "RandomFlip",
        "PhotoMetricDistortion",
        "PackSegInputs",
    ]
    if names != expected:
        raise RuntimeError(f"the config's train pipeline is {names}, expected {expected}")
    stage_of = {"LoadAnnotations": "load", "RandomResize": "resize", "RandomCrop": "crop", "RandomFlip": "flip"}
    stage_of["PhotoMetricDistortion"] = "photometric"
    reduce_zero_label = bool(cfg.train_dataloader.dataset.pipeline[1].get("reduce_zero_label", False))
    results = {
        "img_path": str(image),
        "seg_map_path": str(labels),
        "reduce_zero_label": reduce_zero_label,
        "seg_fields": [],
        "label_map": None,
    }
    np.random.seed(seed)
    record = {"seed": seed, "draws": {}, "arrays": {}, "transforms": [repr(t) for t in transforms]}
    for name, transform in zip(names, transforms):
        draws: list[dict] = []
        with recorded_draws(draws):
            results = transform(results)
        stage = stage_of.get(name)
        if stage:
            record["draws"][stage] = draws
            record["arrays"][f"{stage}_image"] = results["img"]
            if stage != "photometric":
                record["arrays"][f"{stage}_mask"] = results["gt_seg_map"]
        elif draws:
            raise RuntimeError(f"{name} drew random numbers: {draws}")
    preprocessor = MODELS.build(copy.deepcopy(cfg.model.data_preprocessor))
    batch = preprocessor({"inputs": [results["inputs"]], "data_samples": [results["data_samples"]]}, training=True)
    record["arrays"]["final_image"] = batch["inputs"][0].numpy()  # 3×H×W float32, RGB
    record["arrays"]["final_mask"] = batch["data_samples"][0].gt_sem_seg.data[0].numpy().astype(np.uint8)
    record["preprocessor"] = {k: v for k, v in cfg.model.data_preprocessor.items()}
    return record


def run_photometric(image: np.ndarray, seed: int) -> dict:
    transform = TRANSFORMS.build({"type": "PhotoMetricDistortion"})
    np.random.seed(seed)
    draws: list[dict] = []
    with recorded_draws(draws):
        out = transform({"img": image.copy()})["img"]
    return {"seed": seed, "draws": {"photometric": draws}, "arrays": {"photometric_image": out}}


def settings(cfg: Config) -> dict:
    """The pipeline settings segzoo's ``build_train_transform`` takes, read from the config."""
    steps = {t["type"]: t for t in cfg.train_dataloader.dataset.pipeline}
    pre = cfg.model.data_preprocessor
    return {
        "scale": list(steps["RandomResize"]["scale"]),
        "ratio_range": list(steps["RandomResize"]["ratio_range"]),
        "crop_size": list(steps["RandomCrop"]["crop_size"]),
        "cat_max_ratio": steps["RandomCrop"]["cat_max_ratio"],
        "flip_prob": steps["RandomFlip"]["prob"],
        "mean": list(pre["mean"]),
        "std": list(pre["std"]),
        "pad_size": list(pre["size"]),
        "pad_val": pre["pad_val"],
        "seg_pad_val": pre["seg_pad_val"],
        "bgr_to_rgb": pre["bgr_to_rgb"],
        "reduce_zero_label": bool(steps["LoadAnnotations"].get("reduce_zero_label", False)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    start = time.time()
    files = write_inputs(out)
    configs = {name: load_config(name) for name in CONFIGS}
    manifest = {
        "mmseg_version": mmseg.__version__,
        "numpy_version": np.__version__,
        "opencv_version": cv2.__version__,
        "torch_version": torch.__version__,
        "configs": {name: {"file": CONFIGS[name], **settings(cfg)} for name, cfg in configs.items()},
        "pipeline_cases": [],
        "photometric_cases": [],
    }
    for case, config, photo, kind, seeds, keep_stages in PIPELINE_CASES:
        for seed in seeds:
            record = run_pipeline(configs[config], out / photo, out / files[photo][kind], seed)
            arrays = record.pop("arrays")
            if not keep_stages:
                arrays = {k: v for k, v in arrays.items() if k.startswith(("load_", "final_"))}
            npz = f"{case}-{seed}.npz"
            np.savez_compressed(out / npz, **arrays)
            manifest["pipeline_cases"].append(
                {"case": case, "config": config, "image": photo, "labels": files[photo][kind], "npz": npz, **record}
            )
    for photo in PHOTOS:
        window = cv2.imread(str(out / photo), cv2.IMREAD_COLOR)[PHOTOMETRIC_WINDOW]
        np.save(out / f"{Path(photo).stem}_window.npy", window)
        for seed in PHOTOMETRIC_SEEDS:
            record = run_photometric(window, seed)
            npz = f"photometric-{Path(photo).stem}-{seed}.npz"
            np.savez_compressed(out / npz, **record.pop("arrays"))
            manifest["photometric_cases"].append({"image": f"{Path(photo).stem}_window.npy", "npz": npz, **record})
    manifest["seconds"] = round(time.time() - start, 1)
    manifest["complete"] = True
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    print(
        f"wrote {len(manifest['pipeline_cases'])} pipeline and {len(manifest['photometric_cases'])} photometric "
        f"cases to {out} in {manifest['seconds']} s"
    )


if __name__ == "__main__":
    main()
