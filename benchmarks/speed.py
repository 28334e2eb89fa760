"""Speed, memory and FLOPs of segzoo models, side by side with the reference implementations, in one run.

For each variant and input size: median latency and throughput (fp32, and bf16 under ``torch.autocast``), the peak
memory of a fresh process doing the same work, GFLOPs (``torch.utils.flop_counter``) and the fraction of this
machine's measured matmul peak that the model reaches. References use the same weights: Hugging Face transformers'
SegFormer for ``segformer-*``, timm's ``VisionTransformer`` for the ViT encoders (``vit-*``). The largest logit
difference to the reference and, for bf16, the share of pixels whose argmax agrees with our fp32 are reported too.

    python benchmarks/speed.py                                  # the README tables (SegFormer-B0/B2, ViT-S/B at 512)
    python benchmarks/speed.py --models segformer-b0 --sizes 512 1024 --batches 1 8 --csv out.csv
    python benchmarks/speed.py --train                          # forward + backward step, batch 2
    python benchmarks/speed.py --checkpoints --csv benchmarks/checkpoints.csv   # every checkpoint (for the plot)

Timings vary by ±15% between runs on a shared machine: compare rows of the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import segzoo  # noqa: E402
from segzoo.models._registry import ARCHS, VIT_SIZES  # noqa: E402

VIT_ENCODERS = {"vit-s16": ("s", 16), "vit-b16": ("b", 16), "vit-l16": ("l", 16), "vit-t16": ("t", 16)}


# ------------------------------------------------------------------------------------------------- measuring
def median_latency(fn, warmup: int = 2, repeats: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(dtype: torch.dtype, n: int = 2048) -> float:
    """Best of a few square GEMMs: the machine's practical matmul peak for ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    seconds = min(median_latency(lambda: a @ b, warmup=1, repeats=3) for _ in range(2))
    return 2 * n**3 / seconds / 1e9


def gflops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


# ---------------------------------------------------------------------------------------------- the models
def transformers_segformer(ours: torch.nn.Module):
    """A random transformers SegFormer whose weights are also loaded into ``ours``: the two hold identical weights."""
    import transformers

    stages = [getattr(ours.backbone, f"block{i}")[0].attn for i in range(1, 5)]
    config = transformers.SegformerConfig(
        num_labels=ours.num_classes,
        hidden_sizes=list(ours.backbone.out_channels),
        depths=list(ours.backbone.depths),
        num_attention_heads=[a.num_heads for a in stages],
        sr_ratios=[a.sr_ratio for a in stages],
        decoder_hidden_size=ours.decode_head.channels,
    )
    reference = transformers.SegformerForSemanticSegmentation(config).eval()
    import tempfile

    from safetensors.torch import load_file

    from segzoo.checkpoints._convert import convert_transformers_segformer

    with tempfile.TemporaryDirectory() as tmp:  # the saved (Hub) layout is what our converter reads
        reference.save_pretrained(tmp)
        saved = load_file(f"{tmp}/model.safetensors")
    converted = convert_transformers_segformer(saved)
    ours.load_state_dict(converted, strict=True)  # random reference weights into ours: identical models
    return reference


class LastFeature(torch.nn.Module):
    """An encoder returning only its last feature map, comparable with timm's final normalised tokens."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[-1]


def build(name: str, num_classes: int = 150, img_size: int = 512):
    """(our model or encoder, reference callable or None, kind). ``vit-*`` names benchmark encoders only."""
    if name in VIT_ENCODERS:
        size, patch = VIT_ENCODERS[name]
        width, depth, heads = VIT_SIZES[size]
        model = segzoo.create_model(f"segmenter-{size}{patch}-linear", num_classes=num_classes, img_size=img_size)
        encoder = model.backbone.eval()
        from timm.models.vision_transformer import VisionTransformer

        reference = VisionTransformer(
            img_size=img_size,
            patch_size=patch,
            embed_dim=width,
            depth=depth,
            num_heads=heads,
            num_classes=0,
            global_pool="",
            dynamic_img_size=True,
        ).eval()
        reference.load_state_dict(encoder.state_dict())
        return (
            LastFeature(encoder),
            lambda x: reference.forward_intermediates(x, indices=[depth - 1], norm=True, intermediates_only=True)[0],
            "encoder",
        )
    kwargs = {"img_size": img_size} if "img_size" in ARCHS[name].encoder_args else {}
    model = segzoo.create_model(name, num_classes=num_classes, **kwargs).eval()
    if name.startswith("segformer-"):
        reference = transformers_segformer(model)

        def run_reference(x):
            return F.interpolate(reference(pixel_values=x).logits, size=x.shape[2:], mode="bilinear")

        run_reference.module = reference
        return model, run_reference, "segmentation"
    return model, None, "segmentation"


# ------------------------------------------------------------------------------------------------ memory
def peak_rss_mb(args: list[str]) -> float:
    """Peak resident memory of a fresh process that builds the model and runs the step once."""
    out = subprocess.run([sys.executable, __file__, "--_memory", json.dumps(args)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def _reset_peak_rss() -> None:
    """Linux keeps the parent's peak RSS across fork + exec; writing 5 to clear_refs resets it for this process."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory_child(spec: list) -> None:
    _reset_peak_rss()
    name, impl, size, batch, dtype, train = spec
    torch.set_num_threads(int(os.environ.get("SEGZOO_BENCH_THREADS", torch.get_num_threads())))
    ours, reference, _ = build(name, img_size=size)
    run = ours if impl == "segzoo" else reference
    x = torch.randn(batch, 3, size, size)
    step = train_step(ours if impl == "segzoo" else reference.module, impl) if train else None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        if train:
            step(x)
        else:
            with torch.inference_mode():
                run(x)
    print(_peak_rss_mb())


def train_step(model: torch.nn.Module, impl: str):
    """One forward + backward with a cross-entropy loss at the input size (what a training iteration costs)."""
    model.train()
    labels = None

    def step(x):
        nonlocal labels
        if labels is None or labels.shape[0] != x.shape[0]:
            labels = torch.randint(0, 150, (x.shape[0], *x.shape[2:]))
        if impl == "segzoo":
            logits = model(x)
        else:
            logits = F.interpolate(model(pixel_values=x).logits, size=x.shape[2:], mode="bilinear")
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


# ------------------------------------------------------------------------------------------------- tables
def inference_rows(names, sizes, batches, dtypes, memory: bool, peaks: dict) -> list[dict]:
    rows = []
    for name in names:
        for size in sizes:
            ours, reference, kind = build(name, img_size=size)
            for batch in batches:
                x = torch.randn(batch, 3, size, size)
                with torch.inference_mode():
                    ours_fp32 = ours(x)
                    diff = (ours_fp32 - reference(x)).abs().max().item() if reference else None
                    flops = gflops(lambda: ours(x))
                for dtype in dtypes:
                    impls = [("segzoo", ours)] + ([("reference", reference)] if reference else [])
                    times = {}
                    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                        for impl, fn in impls:  # interleaved, so both see the same machine state
                            times[impl] = median_latency(lambda: fn(x))
                        agree = None
                        if dtype == "bf16" and kind == "segmentation":
                            agree = (ours(x).argmax(1) == ours_fp32.argmax(1)).float().mean().item()
                    for impl, _ in impls:
                        seconds = times[impl]
                        row = {
                            "model": name,
                            "impl": impl,
                            "size": size,
                            "batch": batch,
                            "dtype": dtype,
                            "latency_ms": round(seconds * 1e3, 1),
                            "img_per_s": round(batch / seconds, 2),
                            "gflops": round(flops, 1),
                            "peak_frac": round(flops / seconds / peaks[dtype], 3),
                            "speedup_vs_ref": round(times["reference"] / seconds, 2) if "reference" in times else None,
                            "max_abs_diff": diff if impl == "segzoo" else None,
                            "argmax_agree_vs_fp32": agree if impl == "segzoo" else None,
                        }
                        if memory:
                            row["peak_rss_mb"] = round(peak_rss_mb([name, impl, size, batch, dtype, False]))
                        rows.append(row)
                        print(format_row(row), flush=True)
    return rows


def train_rows(names, size, batch, memory: bool) -> list[dict]:
    rows = []
    for name in names:
        ours, reference, _ = build(name, img_size=size)
        if reference is None:
            continue
        x = torch.randn(batch, 3, size, size)
        steps = {"segzoo": train_step(ours, "segzoo"), "reference": train_step(reference.module, "reference")}
        times = {impl: median_latency(lambda: step(x), warmup=1, repeats=3) for impl, step in steps.items()}
        for impl in steps:
            row = {
                "model": name,
                "impl": impl,
                "size": size,
                "batch": batch,
                "dtype": "fp32",
                "step": "train",
                "latency_ms": round(times[impl] * 1e3, 1),
                "speedup_vs_ref": round(times["reference"] / times[impl], 2),
            }
            if memory:
                row["peak_rss_mb"] = round(peak_rss_mb([name, impl, size, batch, "fp32", True]))
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def checkpoint_rows(dtype: str) -> list[dict]:
    """Every segmentation checkpoint at its crop size, batch 1, fp32: for the speed / mIoU plot."""
    from segzoo.checkpoints._table import get_pretrained_cfg, list_pretrained

    rows = []
    for name in list_pretrained():
        cfg = get_pretrained_cfg(name)
        h, w = cfg.crop_size
        kwargs = {"img_size": h} if "img_size" in ARCHS[cfg.arch].encoder_args else {}
        model = segzoo.create_model(cfg.arch, num_classes=cfg.num_classes, aux_heads=False, **kwargs).eval()
        x = torch.randn(1, 3, h, w)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            seconds = median_latency(lambda: model(x), warmup=1, repeats=3)
        scores = cfg.metrics.get("publisher") or cfg.metrics.get("paper") or {}
        row = {
            "checkpoint": name,
            "arch": cfg.arch,
            "dataset": cfg.dataset,
            "crop": f"{h}x{w}",
            "dtype": dtype,
            "latency_ms": round(seconds * 1e3, 1),
            "miou_ss": scores.get("miou_ss"),
        }
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    return "| " + " | ".join("" if v is None else str(v) for v in row.values()) + " |"


def markdown(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join("" if row.get(k) is None else str(row.get(k)) for k in keys) + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    preload = os.environ.get("LD_PRELOAD", "")  # tcmalloc/jemalloc change timings a lot here (page faults)
    allocator = Path(preload).name if preload else "glibc malloc"
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, allocator: {allocator}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["segformer-b0", "segformer-b2", "vit-s16", "vit-b16"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512])
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--train", action="store_true", help="also time a training step (batch 2)")
    parser.add_argument("--checkpoints", action="store_true", help="time every checkpoint of checkpoints.yaml")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-configuration memory processes")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--csv", type=Path, default=None)
    parser.add_argument("--_memory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["SEGZOO_BENCH_THREADS"] = str(args.threads)
    if args._memory:
        return _memory_child(json.loads(args._memory))
    torch.manual_seed(0)
    print(f"machine: {machine()}")
    if args.checkpoints:
        rows = checkpoint_rows(args.dtypes[0])
    else:
        peaks = {"fp32": matmul_peak_gflops(torch.float32), "bf16": matmul_peak_gflops(torch.bfloat16)}
        print(f"measured matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
        rows = inference_rows(args.models, args.sizes, args.batches, args.dtypes, not args.no_memory, peaks)
        if args.train:
            rows += train_rows(
                [m for m in args.models if m.startswith("segformer-")], args.sizes[0], 2, not args.no_memory
            )
    print()
    print(markdown(rows))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
