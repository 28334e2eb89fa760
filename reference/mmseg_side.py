#!/usr/bin/env python
"""The mmsegmentation side of the reference-parity test set (``reference/README.md``).

Runs **inside the reference environment** (``bash reference/setup.sh``: mmsegmentation 1.2.2, mmcv-lite 2.1.0,
mmengine 0.10.7, CPU torch) and never imports segzoo. For each model it builds mmseg's own model from the config
file shipped in the mmseg wheel, fills it with seeded random weights, saves the checkpoint with mmengine's own
``save_checkpoint`` as mmseg's Runner does, and records what mmseg's own code computes from it:

- ``encode_decode`` logits on fixed seeded normalised inputs at 512×512, 320×416 and 250×330;
- the auxiliary heads' logits (SETR), through each head's own ``predict`` (``predict_by_feat`` resize);
- ``mmseg.apis.inference_model`` labels on a real photo (skimage's ``rocket.jpg``, 427×640);
- for Segmenter-T: an mmseg-0.x-style multi-scale + flip run and mmseg 1.x's own ``--tta`` (``SegTTAModel``).

Everything goes into ``--out DIR`` with ``manifest.json`` describing each file and how it was computed.

    python reference/mmseg_side.py --out /tmp/mmseg-ref [--models setr-naive,segmenter-t16-mask] [--sensitivity]
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import json
import os
import re
import shutil
import sys
import time
import types
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _register_mmcv_ops_stand_in() -> None:
    """mmcv-lite ships no compiled ``mmcv._ext``, and ``mmcv/ops/__init__.py`` imports it, while mmseg imports a few
    names from ``mmcv.ops`` at module level. A stand-in package whose ``__path__`` is the real ops folder lets the
    pure-PyTorch submodules (``mmcv.ops.point_sample``) import; any other name is a placeholder that raises when
    used. SETR, Segmenter and SegFormer use no compiled op."""
    if "mmcv.ops" in sys.modules:
        return
    spec = importlib.util.find_spec("mmcv")
    ops_dir = os.path.join(os.path.dirname(spec.origin), "ops")
    stand_in = types.ModuleType("mmcv.ops")
    stand_in.__path__ = [ops_dir]
    stand_in.__file__ = os.path.join(ops_dir, "__init__.py")

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:  # pure-PyTorch op modules such as point_sample.py export a function of the same name
            module = importlib.import_module(f"mmcv.ops.{name}")
            return getattr(module, name, module)
        except Exception:  # noqa: BLE001 - the op needs the compiled extension

            def missing(*args, **kwargs):
                raise RuntimeError(f"mmcv.ops.{name} needs mmcv's compiled extension (not in mmcv-lite)")

            return missing

    stand_in.__getattr__ = __getattr__
    sys.modules["mmcv.ops"] = stand_in


_register_mmcv_ops_stand_in()

import mmcv
import mmengine
import mmseg
from mmengine import Config, ConfigDict
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
from mmseg.apis import inference_model
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

register_all_modules()  # sets the default scope to mmseg

# key -> (config under <mmseg>/.mim/configs, the segzoo checkpoint name it corresponds to)
MODEL_SPECS = {
    "setr-naive": ("setr/setr_vit-l_naive_8xb2-160k_ade20k-512x512.py", "setr-naive-ade"),
    "setr-pup": ("setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py", "setr-pup-ade"),
    "setr-mla": ("setr/setr_vit-l_mla_8xb2-160k_ade20k-512x512.py", "setr-mla-ade"),
    "segmenter-t16-mask": ("segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py", "segmenter-t16-mask-ade"),
    "segmenter-s16-linear": ("segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512.py", "segmenter-s16-linear-ade"),
    "segmenter-s16-mask": ("segmenter/segmenter_vit-s_mask_8xb1-160k_ade20k-512x512.py", "segmenter-s16-mask-ade"),
    "segmenter-b16-mask": ("segmenter/segmenter_vit-b_mask_8xb1-160k_ade20k-512x512.py", "segmenter-b16-mask-ade"),
    "segformer-b0": ("segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py", "segformer-b0-ade-mmseg"),
}
TTA_MODELS = ("segmenter-t16-mask",)
SIZES = ((512, 512), (320, 416), (250, 330))  # crop; non-square whole patches; not a multiple of the patch size
INPUT_SEED = 1234
STRIDE_MAIN = 7  # odd: the sub-grid meets every phase of the ×4 and ×16 upsampling
STRIDE_AUX = 13
DECISIVE_GAP = 1e-3  # argmax is compared where mmseg's top-1 logit leads the top-2 by more than this
MS_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
PHOTO = "rocket.jpg"

# Modules whose output is added to a residual stream: their output is scaled to std ~0.03 so that every LayerNorm
# sees small-variance input and its eps shows in the logits.
RESIDUAL_WRITERS = (
    r"attn\.attn\.out_proj$",  # ViT, MiT and Segmenter decoder attention output
    r"^backbone\.layers\.\d+\.ffn\.layers\.1$",  # ViT FFN fc2 (Linear)
    r"^decode_head\.layers\.\d+\.ffn\.layers\.1$",  # Segmenter decoder FFN fc2
    r"^backbone\.layers\.\d+\.1\.\d+\.ffn\.layers\.4$",  # MiT Mix-FFN fc2 (1×1 conv)
    r"^backbone\.patch_embed\.projection$",  # ViT patch embedding
    r"^backbone\.layers\.\d+\.0\.projection$",  # MiT overlapping patch embedding (its LayerNorm follows)
    r"^backbone\.layers\.\d+\.0\.norm$",  # MiT: the patch-embedding LayerNorm starts each stage's stream
    r"^decode_head\.dec_proj$",  # Segmenter decoder input projection
    r"attn\.sr$",  # MiT spatial-reduction conv, followed by its own LayerNorm
)
SMALL = 0.03


def _is_writer(name: str) -> bool:
    return any(re.search(p, name) for p in RESIDUAL_WRITERS)


# --------------------------------------------------------------------------------------------------------------
# Building and randomising


def mmseg_root() -> Path:
    return Path(mmseg.__file__).parent


def load_config(config: str) -> tuple[Config, str]:
    """The shipped config and its text as the Runner stores it (``cfg.pretty_text``, before our edits)."""
    cfg = Config.fromfile(str(mmseg_root() / ".mim" / "configs" / config))
    return cfg, cfg.pretty_text


def _strip_for_building(node):
    """SyncBN → BN (one process, CPU); drop ``pretrained`` and checkpoint ``init_cfg`` (the weights are random)."""
    if isinstance(node, dict):
        if node.get("type") == "SyncBN":
            node["type"] = "BN"
        if "pretrained" in node:
            node["pretrained"] = None
        if isinstance(node.get("init_cfg"), dict) and node["init_cfg"].get("type") == "Pretrained":
            node["init_cfg"] = None
        for value in node.values():
            _strip_for_building(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _strip_for_building(value)


def build_model(cfg: Config) -> nn.Module:
    model_cfg = copy.deepcopy(cfg.model)
    _strip_for_building(model_cfg)
    model = MODELS.build(model_cfg)
    model.cfg = cfg  # mmseg.apis.inference_model reads the test pipeline from here
    model.test_cfg = ConfigDict(cfg.model.test_cfg)
    model.eval()
    return model


@torch.no_grad()
def randomise(model: nn.Module, seed: int) -> dict:
    """Seeded random weights, logits O(1), every LayerNorm input small (see RESIDUAL_WRITERS)."""
    gen = torch.Generator().manual_seed(seed)

    def normal(t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        t.copy_(torch.randn(t.shape, generator=gen) * std + mean)

    done: set[int] = set()
    for name, module in model.named_modules():
        writer = _is_writer(name)
        if isinstance(module, nn.LayerNorm):
            scale = SMALL if writer else 1.0
            normal(module.weight, 0.1 * scale, scale)
            normal(module.bias, 0.1 * scale)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            normal(module.weight, 0.1, 1.0)
            normal(module.bias, 0.1)
            normal(module.running_mean, 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
            done.update(id(b) for b in (module.running_mean, module.running_var))
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()
            gain = SMALL if writer else 1.0
            normal(module.weight, gain / fan_in**0.5)
            if module.bias is not None:
                normal(module.bias, 0.1 * gain)
        elif isinstance(module, nn.MultiheadAttention):
            normal(module.in_proj_weight, 1.0 / module.embed_dim**0.5)
            normal(module.in_proj_bias, 0.1)
            done.update(id(p) for p in (module.in_proj_weight, module.in_proj_bias))
            continue
        else:
            continue
        done.update(id(p) for p in module.parameters(recurse=False))
    for name, param in model.named_parameters():
        if id(param) in done:
            continue
        if name.endswith(("pos_embed", "cls_token", "cls_emb")):
            normal(param, SMALL)  # position embeddings random, so their resampling shows
            done.add(id(param))
        else:
            raise RuntimeError(f"no random initialisation rule for parameter {name} {tuple(param.shape)}")
    return {
        "residual_writers_std": SMALL,
        "rule": "Linear/Conv weight N(0, gain²/fan_in), bias N(0, (0.1·gain)²), gain 0.03 for modules writing into a "
        "residual stream (regexes in RESIDUAL_WRITERS) else 1; LayerNorm weight 1+0.1·N, bias 0.1·N (×0.03 when it "
        "writes into a stream); BN weight 1+0.1·N, bias 0.1·N, running_mean 0.1·N, running_var U(0.5, 1.5); "
        "pos_embed / cls_token / cls_emb 0.03·N",
    }


def dataset_meta() -> dict:
    """What the Runner stores as ``meta['dataset_meta']``: the training dataset's ``metainfo``."""
    dataset = DATASETS.build(
        {
            "type": "ADE20KDataset",
            "data_root": "",
            "data_prefix": {"img_path": "", "seg_map_path": ""},
            "lazy_init": True,
        }
    )
    return copy.deepcopy(dataset.metainfo)


def save_mmseg_checkpoint(model: nn.Module, cfg_text: str, path: Path, seed: int) -> None:
    """As ``mmengine.runner.Runner.save_checkpoint``, less the training state (optimizer, message hub, schedulers):
    ``{"meta", "state_dict"}`` through mmengine's ``save_checkpoint``."""
    meta = {
        "mmseg_version": mmseg.__version__,
        "cfg": cfg_text,
        "seed": seed,
        "experiment_name": "segzoo-reference",
        "time": time.strftime("%Y%m%d_%H%M%S", time.localtime()),
        "mmengine_version": mmengine.__version__,
        "epoch": 0,
        "iter": 160000,
        "dataset_meta": dataset_meta(),
    }
    save_checkpoint({"meta": meta, "state_dict": weights_to_cpu(model.state_dict())}, str(path))


# --------------------------------------------------------------------------------------------------------------
# What mmseg computes


def make_inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(INPUT_SEED)
    return {f"{h}x{w}": torch.randn((1, 3, h, w), generator=gen) for h, w in SIZES}


def metas_for(x: torch.Tensor) -> list[dict]:
    """The metas ``EncoderDecoder.predict`` builds when none are given: ``predict_by_feat`` then resizes the head's
    output to the input size (``pad_shape``)."""
    shape = tuple(x.shape[2:])
    return [{"ori_shape": shape, "img_shape": shape, "pad_shape": shape, "padding_size": [0, 0, 0, 0]}]


def sub_grid(size: tuple[int, int], stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns 0, s, 2s, … plus the last one (the border the padding stretch moves most)."""
    rows = sorted(set(range(0, size[0], stride)) | {size[0] - 1})
    cols = sorted(set(range(0, size[1], stride)) | {size[1] - 1})
    return torch.tensor(rows), torch.tensor(cols)


def summarise(logits: torch.Tensor, stride: int) -> dict[str, torch.Tensor]:
    """fp32 logits on a fixed sub-grid, the full argmax and where that argmax is decisive."""
    rows, cols = sub_grid(tuple(logits.shape[2:]), stride)
    top2 = logits[0].topk(2, dim=0).values
    return {
        "rows": rows,
        "cols": cols,
        "logits": logits[:, :, rows][:, :, :, cols].contiguous().clone(),
        "argmax": logits[0].argmax(dim=0).to(torch.uint8),
        "decisive": (top2[0] - top2[1]) > DECISIVE_GAP,
    }


@torch.no_grad()
def reference_logits(model: nn.Module, inputs: dict[str, torch.Tensor], with_aux: bool) -> tuple[dict, dict]:
    out, stats = {}, {}
    # the auxiliary heads run on the features encode_decode extracted (captured, not computed a second time)
    captured: dict[str, object] = {}
    source = model.neck if model.with_neck else model.backbone
    hook = source.register_forward_hook(lambda module, args, output: captured.__setitem__("feats", output))
    try:
        for size, x in inputs.items():
            metas = metas_for(x)
            logits = model.encode_decode(x, metas)
            out[size] = {"main": summarise(logits, STRIDE_MAIN)}
            stats[size] = {"std": float(logits.std()), "max_abs": float(logits.abs().max())}
            if with_aux:
                feats = captured.pop("feats")
                out[size]["aux"] = [
                    summarise(head.predict(feats, metas, model.test_cfg), STRIDE_AUX) for head in model.auxiliary_head
                ]
            del logits
            captured.clear()
    finally:
        hook.remove()
    return out, stats


@torch.no_grad()
def layernorm_input_variance(model: nn.Module, x: torch.Tensor) -> dict:
    """Per-token variance of every LayerNorm's input, to show that eps (1e-6 vs 1e-5) is not negligible."""
    seen: list[float] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: seen.append(float(args[0].float().var(-1).median())))
        for m in model.modules()
        if isinstance(m, nn.LayerNorm)
    ]
    try:
        model.encode_decode(x, metas_for(x))
    finally:
        for h in hooks:
            h.remove()
    return {
        "count": len(seen),
        "median_var_min": min(seen),
        "median_var_max": max(seen),
        "count_above_0.05": sum(v > 0.05 for v in seen),
    }


@torch.no_grad()
def sensitivity(model: nn.Module, inputs: dict[str, torch.Tensor], reference: dict) -> dict:
    """How far the logits move under the choices segzoo must get right (proof the tolerance can see them)."""
    result = {}
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    x = inputs["320x416"]
    base = model.encode_decode(x, metas_for(x))
    for m in norms:
        m.eps = 1e-5 if m.eps < 5e-6 else 1e-6
    result["every_layernorm_eps_swapped_1e-6_1e-5"] = float((model.encode_decode(x, metas_for(x)) - base).abs().max())
    for m in norms:
        m.eps = 1e-5 if m.eps < 5e-6 else 1e-6
    backbone = model.backbone
    if hasattr(backbone, "interpolate_mode"):
        mode = backbone.interpolate_mode
        backbone.interpolate_mode = "bicubic" if mode == "bilinear" else "bilinear"
        moved = (model.encode_decode(x, metas_for(x)) - base).abs().max()
        result[f"pos_embed_{mode}_vs_{backbone.interpolate_mode}"] = float(moved)
        backbone.interpolate_mode = mode
    return result


def photo_labels(model: nn.Module, photo: Path) -> torch.Tensor:
    result = inference_model(model, str(photo))
    return result.pred_sem_seg.data[0].to(torch.uint8)


@torch.no_grad()
def tta_mmseg0x(model: nn.Module, photo: Path) -> torch.Tensor:
    """mmseg 0.x ``MultiScaleFlipAug(img_scale=(2048, 512), img_ratios=…, flip=True)`` with mmseg's own model: the
    original uint8 image rescaled (keep ratio, cv2 bilinear) to (int(2048·r), int(512·r)) per ratio, normalised by
    the data preprocessor, slide inference, logits flipped back and resized to the original size, softmax averaged
    over the 12 passes, argmax."""
    from mmcv.transforms import LoadImageFromFile

    image = LoadImageFromFile()({"img_path": str(photo)})["img"]  # BGR uint8, as the test pipeline reads it
    original = image.shape[:2]
    total = None
    for ratio in MS_RATIOS:
        scale = (int(2048 * ratio), int(512 * ratio))
        resized = mmcv.imrescale(image, scale, interpolation="bilinear", backend="cv2")
        for flip in (False, True):
            img = resized[:, ::-1] if flip else resized
            sample = SegDataSample(
                metainfo={
                    "ori_shape": original,
                    "img_shape": img.shape[:2],
                    "pad_shape": img.shape[:2],
                    "padding_size": [0, 0, 0, 0],
                    "flip": flip,
                    "flip_direction": "horizontal" if flip else None,
                }
            )
            tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
            data = model.data_preprocessor({"inputs": [tensor], "data_samples": [sample]}, False)
            # predict: slide inference, then postprocess_result flips back and resizes to ori_shape (bilinear)
            result = model.predict(data["inputs"], data["data_samples"])[0]
            probs = result.seg_logits.data.softmax(dim=0)
            total = probs if total is None else total + probs
    return (total / (2 * len(MS_RATIOS))).argmax(dim=0).to(torch.uint8)


@torch.no_grad()
def tta_mmseg1x(model: nn.Module, cfg: Config, photo: Path) -> torch.Tensor:
    """mmseg 1.x ``tools/test.py --tta``: the config's ``tta_pipeline`` (``Resize(scale_factor=r, keep_ratio=True)`` of
    the original image, flips) and ``tta_model`` (``SegTTAModel``: softmax average, argmax), without the
    ``LoadAnnotations`` step (no ground truth here)."""
    from mmengine.dataset import Compose, pseudo_collate

    pipeline_cfg = copy.deepcopy(cfg.tta_pipeline)
    for step in pipeline_cfg:
        if step.get("type") == "TestTimeAug":
            step["transforms"] = [
                group for group in step["transforms"] if not any(t.get("type") == "LoadAnnotations" for t in group)
            ]
    pipeline = Compose(pipeline_cfg)
    data = pseudo_collate([pipeline({"img_path": str(photo)})])
    tta_cfg = copy.deepcopy(cfg.tta_model)
    tta_cfg["module"] = model
    tta = MODELS.build(tta_cfg)
    labels = tta.test_step(data)[0].pred_sem_seg.data  # PixelData keeps the label map 3-D: 1×H×W
    return labels.reshape(labels.shape[-2:]).to(torch.uint8)


# --------------------------------------------------------------------------------------------------------------


def find_photo() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent / PHOTO


def run_model(key: str, out: Path, inputs: dict, photo: Path, with_sensitivity: bool, with_tta_1x: bool) -> dict:
    config, segzoo_name = MODEL_SPECS[key]
    seed = zlib.crc32(key.encode())
    t0 = time.perf_counter()
    cfg, cfg_text = load_config(config)
    torch.manual_seed(seed)
    model = build_model(cfg)
    init_rule = randomise(model, seed)
    ckpt_name = f"{key}.pth"
    save_mmseg_checkpoint(model, cfg_text, out / ckpt_name, seed)
    with_aux = bool(getattr(model, "with_auxiliary_head", False))
    logits, stats = reference_logits(model, inputs, with_aux)
    record = {
        "config": config,
        "segzoo_checkpoint": segzoo_name,
        "seed": seed,
        "checkpoint": ckpt_name,
        "checkpoint_format": "mmengine.runner.checkpoint.save_checkpoint({'meta': {mmseg_version, cfg (pretty_text of "
        "the shipped config), seed, experiment_name, time, mmengine_version, epoch, iter, dataset_meta "
        "(ADE20KDataset.metainfo)}, 'state_dict': weights_to_cpu(model.state_dict())})",
        "init": init_rule,
        "test_cfg": dict(cfg.model.test_cfg),
        "num_classes": int(model.decode_head.num_classes),
        "logit_stats": stats,
        "layernorm_input_variance": layernorm_input_variance(model, inputs["512x512"]),
        "logits_file": f"{key}_logits.pt",
        "logits_how": "model.encode_decode(x, [dict(ori_shape, img_shape, pad_shape = x's size)]) on inputs.pt[size], "
        f"stored as fp32 logits[:, :, rows][:, :, :, cols] with rows/cols = 0, {STRIDE_MAIN}, 2·{STRIDE_MAIN}, … plus "
        f"the last, the full argmax (uint8) and 'decisive' = top-1 minus top-2 logit > {DECISIVE_GAP}",
        "aux_heads": len(model.auxiliary_head) if with_aux else 0,
    }
    if with_aux:
        record["aux_how"] = (
            "head.predict(feats, metas, model.test_cfg) for head in model.auxiliary_head (its predict_by_feat resize "
            "to the input size), feats = the output of model.extract_feat(x) inside encode_decode (captured by a "
            f"forward hook on the neck or backbone); sub-grid stride {STRIDE_AUX}"
        )
    if hasattr(model.backbone, "interpolate_mode"):
        record["pos_embed_interpolate_mode"] = model.backbone.interpolate_mode
    t_logits = time.perf_counter()
    photo_pred = photo_labels(model, photo)
    record["photo_labels_how"] = (
        f"mmseg.apis.inference_model(model, {PHOTO!r}).pred_sem_seg (the config's test_pipeline: LoadImageFromFile, "
        "Resize(scale=(2048, 512), keep_ratio=True); data preprocessor; test_cfg mode; resize to the original size)"
    )
    saved = {"inputs_key": list(inputs), "results": logits, "photo_labels": photo_pred}
    t_photo = time.perf_counter()
    if key in TTA_MODELS:
        saved["tta_mmseg0x_labels"] = tta_mmseg0x(model, photo)
        record["tta_mmseg0x_how"] = tta_mmseg0x.__doc__.split("\n\n")[0].replace("\n   ", "").strip()
        t_tta0 = time.perf_counter()
        if with_tta_1x:  # for information only (nothing asserts on it), and 2 minutes: opt-in
            try:
                saved["tta_mmseg1x_labels"] = tta_mmseg1x(model, cfg, photo)
                record["tta_mmseg1x_how"] = tta_mmseg1x.__doc__.replace("\n   ", "").strip()
            except Exception as err:  # noqa: BLE001 - recorded, the 0.x-style run is the one the tests need
                record["tta_mmseg1x_error"] = f"{type(err).__name__}: {err}"
        record["seconds_tta"] = {
            "mmseg0x": round(t_tta0 - t_photo, 1),
            "mmseg1x": round(time.perf_counter() - t_tta0, 1),
        }
    if with_sensitivity:
        record["sensitivity_320x416_max_abs"] = sensitivity(model, inputs, logits)
    torch.save(saved, out / record["logits_file"])
    record["seconds"] = {
        "build_save_logits": round(t_logits - t0, 1),
        "photo": round(t_photo - t_logits, 1),
        "total": round(time.perf_counter() - t0, 1),
    }
    del model
    gc.collect()
    return record


OHEM_CASES = ((0.7, 50), (0.7, 2000), (None, 300))  # (thresh, min_kept): below, above and without the threshold


def ohem_reference(out: Path) -> str:
    """mmseg's ``OHEMPixelSampler`` on seeded logits and labels (a third of the rows ignored): the pixel weights it
    chooses, for segzoo's ``OhemCrossEntropyLoss`` to match."""
    from mmseg.models.losses import CrossEntropyLoss
    from mmseg.structures.sampler import OHEMPixelSampler

    class DecodeHeadStandIn:  # what the sampler reads from its decode head
        ignore_index = 255
        loss_decode = CrossEntropyLoss()

    generator = torch.Generator().manual_seed(INPUT_SEED)
    cases = []
    for thresh, min_kept in OHEM_CASES:
        logits = torch.randn(2, 5, 24, 32, generator=generator) * 3
        labels = torch.randint(0, 5, (2, 1, 24, 32), generator=generator)
        labels[:, :, :8] = 255
        weight = OHEMPixelSampler(DecodeHeadStandIn(), thresh=thresh, min_kept=min_kept).sample(logits, labels)
        cases.append(
            {"thresh": thresh, "min_kept": min_kept, "logits": logits, "labels": labels[:, 0], "weight": weight}
        )
    torch.save(cases, out / "ohem.pt")
    return "ohem.pt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument(
        "--models", default=",".join(MODEL_SPECS), help="comma-separated subset of " + ", ".join(MODEL_SPECS)
    )
    parser.add_argument(
        "--sensitivity", action="store_true", help="also measure how far eps / interpolation choices move the logits"
    )
    parser.add_argument(
        "--tta-1x", action="store_true", help="also run mmseg 1.x's own --tta on the photo (for information)"
    )
    args = parser.parse_args(argv)
    keys = [k for k in args.models.split(",") if k]
    unknown = sorted(set(keys) - set(MODEL_SPECS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODEL_SPECS)}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    inputs = make_inputs()
    torch.save(inputs, out / "inputs.pt")
    photo = out / PHOTO
    shutil.copyfile(find_photo(), photo)
    manifest = {
        "versions": {
            "mmseg": mmseg.__version__,
            "mmcv": mmcv.__version__,
            "mmengine": mmengine.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "threads": torch.get_num_threads(),
        "inputs_file": "inputs.pt",
        "inputs_how": f"torch.randn((1, 3, h, w), generator=torch.Generator().manual_seed({INPUT_SEED})) for h, w in "
        f"{list(SIZES)} in that order (already normalised)",
        "photo": PHOTO,
        "photo_how": "skimage.data's rocket.jpg (427×640), copied unchanged",
        "decisive_gap": DECISIVE_GAP,
        "ms_ratios": list(MS_RATIOS),
        "models": {},
    }
    for key in keys:
        print(f"[mmseg_side] {key} ...", flush=True)
        manifest["models"][key] = run_model(key, out, inputs, photo, args.sensitivity, args.tta_1x)
        print(f"[mmseg_side] {key}: {manifest['models'][key]['seconds']}", flush=True)
        # written after every model, so a partial run is still usable
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    manifest["ohem_file"] = ohem_reference(out)
    manifest["seconds"] = round(time.perf_counter() - start, 1)
    manifest["complete"] = True
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    print(f"[mmseg_side] done in {manifest['seconds']} s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
