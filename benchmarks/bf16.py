"""bf16 autocast against our own fp32: how much faster, where the time goes, and how often the argmax agrees.

Three tables:

1. speed: fp32 and bf16-autocast latency of each model, measured interleaved in one process, and the ratio;
2. breakdown: the profiler's time per forward split into op classes (matrix products, resizing, norms and
   activations, the rest), fp32 beside bf16. The matrix units only speed up the first class; the others bound
   what bf16 can gain (Amdahl);
3. agreement: the share of pixels whose bf16 argmax equals the fp32 argmax, beside the ceiling any bf16 output can
   reach (the fp32 logits themselves rounded to bf16) and the median gap between the two best fp32 logits. With
   random weights the logits are nearly tied; ``--trained`` measures a trained model on its own kind of images.

    python benchmarks/bf16.py                                   # SegFormer-B0/B2, 512², random weights
    python benchmarks/bf16.py --models segformer-b0 --size 1024
    python benchmarks/bf16.py --trained runs/quickstart/version_0/checkpoints/last.ckpt   # after the quickstart
    python benchmarks/bf16.py --trained segformer-b0-ade --images /data/ade/ADEChallengeData2016/images/validation
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from torch.profiler import profile  # noqa: E402

import segzoo  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script's helpers
from speed import machine, markdown, median_latency  # noqa: E402

OP_CLASSES = {  # profiler op name -> class; anything else is "other"
    "matmul": (
        "addmm",
        "mm",
        "bmm",
        "baddbmm",
        "baddbmm_",
        "matmul",
        "mkldnn_convolution",
        "convolution",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_attention_math",
    ),
    "resize": ("upsample_bilinear2d", "lerp"),
    "norm+activation": ("native_layer_norm", "native_batch_norm", "gelu", "relu", "relu_", "clamp_min", "clamp_min_"),
}


def op_class(name: str) -> str:
    op = name.removeprefix("aten::")
    return next((cls for cls, ops in OP_CLASSES.items() if op in ops), "other")


def autocast(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")


def speed_row(name: str, model, x) -> dict:
    times = {"fp32": [], "bf16": []}
    with torch.inference_mode():
        for _ in range(2):  # interleaved rounds: both dtypes see the same machine state
            for dtype in times:
                with autocast(dtype):
                    times[dtype].append(median_latency(lambda: model(x), repeats=7) * 1e3)
    fp32, bf16 = min(times["fp32"]), min(times["bf16"])
    return {
        "model": name,
        "size": x.shape[-1],
        "fp32_ms": round(fp32, 1),
        "bf16_ms": round(bf16, 1),
        "bf16_speedup": round(fp32 / bf16, 2),
    }


def breakdown_rows(name: str, model, x, runs: int = 3) -> list[dict]:
    """Self CPU time per forward of each op class, fp32 and bf16."""
    per_class = {}
    with torch.inference_mode():
        for dtype in ("fp32", "bf16"):
            with autocast(dtype):
                for _ in range(2):
                    model(x)
                with profile() as prof:
                    for _ in range(runs):
                        model(x)
            totals = per_class.setdefault(dtype, {})
            for event in prof.key_averages():
                cls = op_class(event.key)
                totals[cls] = totals.get(cls, 0.0) + event.self_cpu_time_total / 1e3 / runs
    rows = []
    for cls in [*OP_CLASSES, "other"]:
        fp32, bf16 = per_class["fp32"].get(cls, 0.0), per_class["bf16"].get(cls, 0.0)
        rows.append(
            {
                "model": name,
                "op_class": cls,
                "fp32_ms": round(fp32, 1),
                "bf16_ms": round(bf16, 1),
                "bf16_speedup": round(fp32 / bf16, 2) if bf16 else None,
            }
        )
    fp32, bf16 = (sum(per_class[d].values()) for d in ("fp32", "bf16"))
    rows.append(
        {
            "model": name,
            "op_class": "total",
            "fp32_ms": round(fp32, 1),
            "bf16_ms": round(bf16, 1),
            "bf16_speedup": round(fp32 / bf16, 2),
        }
    )
    return rows


def agreement_row(name: str, model, batches) -> dict:
    """Pixels whose bf16 argmax equals the fp32 argmax, the ceiling of a bf16 output, and the fp32 top-2 gap."""
    same = ceiling = pixels = 0
    gaps = []
    with torch.inference_mode():
        for x in batches:
            fp32 = model(x)
            with autocast("bf16"):
                bf16 = model(x)
            labels = fp32.argmax(1)
            same += (bf16.argmax(1) == labels).sum().item()
            ceiling += (fp32.bfloat16().argmax(1) == labels).sum().item()
            pixels += labels.numel()
            top2 = fp32.topk(2, dim=1).values
            gaps.append((top2[:, 0] - top2[:, 1]).flatten())
    return {
        "model": name,
        "pixels": pixels,
        "argmax_agree": f"{100 * same / pixels:.2f}%",
        "ceiling_fp32_rounded_to_bf16": f"{100 * ceiling / pixels:.2f}%",
        "median_top2_gap": round(torch.cat(gaps).median().item(), 4),
    }


# --------------------------------------------------------------------------------------- trained models
def load_trained(source: str):
    """Anything ``segzoo.load`` reads, and for a Lightning ``.ckpt`` of ``SegmentationTask`` its DataModule's
    settings."""
    if not source.endswith(".ckpt"):
        return segzoo.load(source).eval(), None
    from segzoo.checkpoints import read_state_dict

    return segzoo.load(source).eval(), read_state_dict(source).get("datamodule_hyper_parameters")


def trained_batches(model, data_hparams: dict | None, images: Path | None, count: int):
    """Preprocessed image batches: files from ``images``, or synthetic validation scenes like the training ones."""
    if images is not None:
        from segzoo.inference._inputs import preprocess

        files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
        if not files:
            raise SystemExit(f"no .jpg/.png images in {images}")
        return [preprocess(str(f), model.eval_protocol)[0] for f in files]
    if not data_hparams or "SyntheticDataModule" not in str(data_hparams.get("_class_path")):
        raise SystemExit("give --images DIR: only the synthetic quickstart data can be regenerated here")
    from segzoo._preprocessing import EvalProtocol
    from segzoo.data._synthetic import SyntheticSegmentationDataset

    scenes = SyntheticSegmentationDataset(
        count, data_hparams["num_classes"], data_hparams["image_size"], seed=data_hparams.get("seed", 0) + 1
    )  # validation-like, unseen scenes
    normalise = EvalProtocol()  # the scenes' items are the images as generated (uint8): ImageNet normalisation
    images = torch.cat([normalise(scenes[i]["image"]) for i in range(count)])
    return list(images.split(8))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["segformer-b0", "segformer-b2"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--trained", default=None, help="a Lightning .ckpt or a checkpoint segzoo.load reads")
    parser.add_argument("--images", type=Path, default=None, help="image folder for --trained (else synthetic)")
    parser.add_argument("--count", type=int, default=32, help="images for --trained")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {machine()}\n")
    if args.trained:
        model, data_hparams = load_trained(args.trained)
        batches = trained_batches(model, data_hparams, args.images, args.count)
        print(markdown([agreement_row(args.trained, model, batches)]))
        return
    speed, breakdown, agreement = [], [], []
    for name in args.models:
        model = segzoo.create_model(name, num_classes=args.num_classes).eval()
        x = torch.randn(1, 3, args.size, args.size)
        speed.append(speed_row(name, model, x))
        breakdown += breakdown_rows(name, model, x)
        agreement.append(agreement_row(name, model, [x]))
    for title, rows in (("speed", speed), ("breakdown (ms per forward)", breakdown), ("agreement", agreement)):
        print(f"### {title}\n\n{markdown(rows)}\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
