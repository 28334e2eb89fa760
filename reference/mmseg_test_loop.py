#!/usr/bin/env python
"""The mmsegmentation side of the test-loop parity (``reference/README.md``, "Scoring").

Runs **inside the reference environment** and never imports segzoo. It reuses the random-weight checkpoints that
``mmseg_side.py`` wrote (``--ref DIR``), builds a small dataset in ADE20K's own layout from real photos, and scores each
model with **mmengine's ``Runner.from_cfg(cfg)`` + ``runner.test()``** on the model's shipped config:

- the photos: three of scikit-image's, as 4:4:4 JPEGs at their own sizes: 300×451 and 400×600 (upscaled by the test
  resize to a 512 short side) and the top-left 576×704 of the Hubble field (downscaled); all non-square;
- the labels of each model's folder, at each photo's size: ``mmseg.apis.inference_model``'s prediction of that model,
  stored as ADE20K stores labels (class k as k + 1, 0 = unlabelled), then a seeded sixth of the blocks of a 6×6 grid
  relabelled with a random class and a tenth set to 0, so that scores are far from 0 and from 100 and every protocol
  difference shows;
- the runs: ``ss`` (the config's ``test_pipeline`` and ``test_cfg``: SegFormer-B0 whole, Segmenter-T slide);
  ``ms-0.x`` (mmseg 0.x's ``MultiScaleFlipAug`` rule, which scored the zoo's published multi-scale numbers: the
  config's ``tta_pipeline`` with ``Resize(scale=(int(2048·r), int(512·r)), keep_ratio=True)`` per ratio);
  ``ms-1.x`` (``tools/test.py --tta`` as shipped: ``Resize(scale_factor=r, keep_ratio=True)``; SegFormer only); the
  multi-scale runs through ``SegTTAModel`` as ``tools/test.py --tta`` builds it, with ratios 0.5 and 1.25.

``runner.test()`` returns aAcc / mIoU / mAcc rounded to 0.01; ``IoUMetric.compute_metrics`` is wrapped to record the
unrounded per-image areas it receives (and ``IoUMetric.process`` each prediction), so the segzoo side can compare more
digits. Everything goes into ``--out`` (default ``<ref>/test_loop``) with ``manifest.json``.

    python reference/mmseg_test_loop.py --ref /tmp/mmseg-ref [--out DIR] [--models segformer-b0]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import mmseg_side  # noqa: F401  (first: the mmcv.ops stand-in, then mmseg with its modules registered)
import numpy as np
import torch
from mmengine.runner import Runner, load_checkpoint
from mmseg.apis import inference_model
from mmseg.evaluation.metrics import IoUMetric
from PIL import Image

# key (mmseg_side.MODEL_SPECS) -> its runs. mmseg 1.x's multi-scale rule is run on SegFormer only: the two rules
# differ in the sizes only, which SegFormer's whole-image runs show as well as Segmenter's slower sliding windows.
MODELS = {"segformer-b0": ("ss", "ms-0.x", "ms-1.x"), "segmenter-t16-mask": ("ss", "ms-0.x")}
# Multi-scale ratios: two of mmseg's six (0.5 … 1.75), one below and one above 1, to keep the CI step short (mmseg's
# slide inference pads every window's logits to the whole image); the segzoo side uses the same.
MS_RATIOS = (0.5, 1.25)
PHOTOS = {  # file in skimage.data -> (name in the dataset, ADE20K's naming; crop (height, width) or None)
    "chelsea.png": ("ADE_val_00000001", None),  # 300×451: upscaled ×1.71 by the test resize
    "coffee.png": ("ADE_val_00000002", None),  # 400×600: upscaled ×1.28
    "hubble_deep_field.jpg": ("ADE_val_00000003", (576, 704)),  # the top-left 576×704: downscaled ×0.89
}
GRID = 6
LABEL_SEED = 20261204

_CAPTURED: dict[str, list] = {"areas": [], "preds": []}


def _capture_metric() -> None:
    """Wrap ``IoUMetric`` to keep what ``runner.test()`` rounds away: the per-image areas and predictions."""
    process, compute = IoUMetric.process, IoUMetric.compute_metrics

    def process_and_keep(self, data_batch, data_samples):
        for sample in data_samples:
            _CAPTURED["preds"].append(sample["pred_sem_seg"]["data"].squeeze().to(torch.uint8).cpu())
        return process(self, data_batch, data_samples)

    def compute_and_keep(self, results):
        _CAPTURED["areas"] = [tuple(t.clone() for t in r) for r in results]
        return compute(self, results)

    IoUMetric.process, IoUMetric.compute_metrics = process_and_keep, compute_and_keep


def write_photos(out: Path) -> tuple[list[Path], dict]:
    """The photos as 4:4:4 JPEGs (no chroma subsampling: OpenCV's and PIL's decoders then agree exactly)."""
    import cv2
    import skimage.data

    folder = out / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    paths, decoded_equal = [], {}
    for source, (name, crop) in PHOTOS.items():
        rgb = np.asarray(Image.open(Path(skimage.data.__file__).parent / source).convert("RGB"))
        if crop is not None:
            rgb = rgb[: crop[0], : crop[1]]
        path = folder / f"{name}.jpg"
        Image.fromarray(rgb).save(path, quality=95, subsampling=0)
        by_pil = np.asarray(Image.open(path).convert("RGB"))
        by_cv2 = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
        decoded_equal[name] = bool(np.array_equal(by_pil, by_cv2))
        paths.append(path)
    return paths, decoded_equal


def relabel(labels: np.ndarray, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """ADE20K's label encoding (class k as k + 1) with some grid blocks relabelled or unlabelled (0)."""
    stored = labels.astype(np.uint8) + 1
    height, width = stored.shape
    rows = np.linspace(0, height, GRID + 1).astype(int)
    cols = np.linspace(0, width, GRID + 1).astype(int)
    for i in range(GRID):
        for j in range(GRID):
            draw = rng.random()
            block = (slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1]))
            if draw < 1 / 6:
                stored[block] = rng.integers(1, num_classes + 1)
            elif draw < 1 / 6 + 1 / 10:
                stored[block] = 0
    return stored


def build_dataset(key: str, model, photos: list[Path], out: Path) -> Path:
    """``<out>/data/<key>/ADEChallengeData2016/{images,annotations}/validation``: the photos and labels from the
    model's own predictions (see the module docstring)."""
    root = out / "data" / key / "ADEChallengeData2016"
    images, annotations = root / "images" / "validation", root / "annotations" / "validation"
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(LABEL_SEED)
    for photo in photos:
        (images / photo.name).write_bytes(photo.read_bytes())
        labels = inference_model(model, str(photo)).pred_sem_seg.data[0].numpy()
        Image.fromarray(relabel(labels, rng, model.decode_head.num_classes)).save(annotations / f"{photo.stem}.png")
    return root


def run_config(cfg, ckpt: Path, data_root: Path, run: str, work_dir: Path):
    """The config as ``tools/test.py`` runs it (``--tta`` for the multi-scale runs), on ``data_root``, one process."""
    cfg = copy.deepcopy(cfg)
    mmseg_side._strip_for_building(cfg.model)
    cfg.load_from = str(ckpt)
    cfg.work_dir = str(work_dir)
    cfg.log_level = "WARNING"
    for key in (
        "train_dataloader",
        "train_cfg",
        "optim_wrapper",
        "param_scheduler",
        "val_dataloader",
        "val_cfg",
        "val_evaluator",
    ):
        cfg[key] = None
    loader = cfg.test_dataloader
    loader.num_workers, loader.persistent_workers = 0, False
    loader.dataset.data_root = str(data_root)
    if run != "ss":
        test_scale = next(step["scale"] for step in cfg.test_pipeline if step["type"] == "Resize")
        pipeline = copy.deepcopy(cfg.tta_pipeline)
        (augment,) = [step for step in pipeline if step["type"] == "TestTimeAug"]
        if run == "ms-0.x":  # MultiScaleFlipAug(img_scale=test scale, img_ratios): ratio × the test scale
            resizes = [
                dict(type="Resize", scale=tuple(int(s * r) for s in test_scale), keep_ratio=True) for r in MS_RATIOS
            ]
        else:  # tools/test.py --tta: ratio × the image size
            resizes = [dict(type="Resize", scale_factor=r, keep_ratio=True) for r in MS_RATIOS]
        augment["transforms"][0] = resizes
        loader.dataset.pipeline = pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    runner = Runner.from_cfg(cfg)
    _CAPTURED["areas"], _CAPTURED["preds"] = [], []
    metrics = runner.test()
    return {k: float(v) for k, v in metrics.items()}, list(_CAPTURED["areas"]), list(_CAPTURED["preds"])


def run_model(key: str, ref: Path, out: Path, photos: list[Path]) -> dict:
    config, segzoo_name = mmseg_side.MODEL_SPECS[key]
    cfg, _ = mmseg_side.load_config(config)
    ckpt = ref / f"{key}.pth"
    t0 = time.perf_counter()
    model = mmseg_side.build_model(cfg)
    load_checkpoint(model, str(ckpt), map_location="cpu", logger="silent")
    data_root = build_dataset(key, model, photos, out)
    record = {
        "config": config,
        "segzoo_checkpoint": segzoo_name,
        "checkpoint": str(ckpt),
        "data_root": str(data_root.relative_to(out)),
        "test_cfg": dict(cfg.model.test_cfg),
        "seconds_labels": round(time.perf_counter() - t0, 1),
        "runs": {},
    }
    del model
    names = sorted(p.stem for p in photos)
    for run in MODELS[key]:
        t0 = time.perf_counter()
        metrics, areas, preds = run_config(cfg, ckpt, data_root, run, out / "work_dirs" / f"{key}-{run}")
        assert len(areas) == len(names) == len(preds), (len(areas), len(preds))
        stacked = [torch.stack([a[i] for a in areas]).double() for i in range(4)]
        file = f"{key}_{run}.pt"
        torch.save(
            {
                "names": names,
                "intersect": stacked[0],
                "union": stacked[1],
                "pred_area": stacked[2],
                "label_area": stacked[3],
                "preds": preds,
            },
            out / file,
        )
        record["runs"][run] = {"metrics": metrics, "areas_file": file, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"[mmseg_test_loop] {key} {run}: {metrics} ({record['runs'][run]['seconds']} s)", flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, type=Path, help="a complete mmseg_side.py output folder")
    parser.add_argument("--out", type=Path, help="output folder (default <ref>/test_loop)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    args = parser.parse_args(argv)
    out: Path = args.out or args.ref / "test_loop"
    out.mkdir(parents=True, exist_ok=True)
    keys = [k for k in args.models.split(",") if k]
    if set(keys) - set(MODELS):
        parser.error(f"unknown models {sorted(set(keys) - set(MODELS))}; choose from {list(MODELS)}")
    _capture_metric()
    start = time.perf_counter()
    photos, decoded_equal = write_photos(out)
    manifest = {
        "photos": {p.stem: list(np.asarray(Image.open(p)).shape[:2]) for p in photos},
        "photos_how": f"skimage.data {', '.join(PHOTOS)} as RGB (hubble's top-left 576×704), saved by PIL as JPEG "
        "quality 95, 4:4:4",
        "decoded_equal_by_pil_and_cv2": decoded_equal,
        "labels_how": relabel.__doc__ + f" Grid {GRID}×{GRID}, numpy default_rng({LABEL_SEED}) across the photos "
        "in name order; the labels come from inference_model(model, photo).pred_sem_seg of the model the folder is for",
        "ms_ratios": list(MS_RATIOS),
        "runs_how": {
            "ss": "Runner.from_cfg(cfg).test() with the shipped config (test_pipeline, test_cfg)",
            "ms-0.x": "as tools/test.py --tta, the tta_pipeline's resizes replaced by Resize(scale=(int(2048*r), "
            "int(512*r)), keep_ratio=True) (mmseg 0.x MultiScaleFlipAug)",
            "ms-1.x": "as tools/test.py --tta: Resize(scale_factor=r, keep_ratio=True), flips, SegTTAModel",
        },
        "areas_how": "per image, the (intersect, union, pred_label, label) class areas IoUMetric.compute_metrics "
        "received; preds = each pred_sem_seg IoUMetric.process received (uint8), in the dataset's (name) order",
        "models": {},
    }
    for key in keys:
        manifest["models"][key] = run_model(key, args.ref, out, photos)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    manifest["seconds"] = round(time.perf_counter() - start, 1)
    manifest["complete"] = True
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"[mmseg_test_loop] done in {manifest['seconds']} s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
