"""GPU figures: inference and a training step for SegFormer B0–B5 and the ViT-B/L Segmenter and SETR models.

Inference (batch 1 and 8 at 512², random weights): fp32, fp16 and bf16 autocast, bf16 with channels-last memory, and
bf16 under ``torch.compile``; latency (median, CUDA-synchronised), images/s and peak memory
(``torch.cuda.max_memory_allocated``). Training (batch 8 at 512², AdamW, bf16 autocast, 150 classes): images/s and
peak memory of a forward + backward + optimiser step, with and without gradient checkpointing (ViT encoders; MiT has
no checkpointing switch).

    python benchmarks/gpu.py                       # on a CUDA machine: prints the table, writes it into README.md
    python benchmarks/gpu.py --models segformer-b0 setr-pup-l16 --no-write
    python benchmarks/gpu.py --smoke               # tiny models on the CPU in seconds: checks the script itself

The table goes between the ``gpu-table`` markers of ``benchmarks/README.md`` (``--readme`` for another file), with
the device, driver and library versions named.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import segzoo  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import markdown  # noqa: E402

MODELS = [
    "segformer-b0",
    "segformer-b1",
    "segformer-b2",
    "segformer-b3",
    "segformer-b4",
    "segformer-b5",
    "segmenter-b16-mask",
    "segmenter-l16-mask",
    "setr-pup-b16",
    "setr-pup-l16",
]
SMOKE_MODELS = ["segformer-test", "segmenter-test-mask", "setr-test-pup"]
INFERENCE_MODES = ("fp32", "fp16", "bf16", "bf16+channels_last", "bf16+compile")
MARKERS = ("<!-- gpu-table:start -->", "<!-- gpu-table:end -->")


class Device:
    """Timing and memory on the device the script runs on (CUDA, or the CPU for --smoke)."""

    def __init__(self, name: str):
        self.device = torch.device(name)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda else None

    def time(self, fn, warmup: int, repeats: int) -> float:
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def describe(self) -> str:
        if not self.cuda:
            return f"CPU (smoke run), torch {torch.__version__}"
        props = torch.cuda.get_device_properties(self.device)
        return (
            f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, "
            f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}"
        )


def autocast(device: Device, mode: str):
    dtype = torch.float16 if mode.startswith("fp16") else torch.bfloat16
    if mode == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.device.type, dtype=dtype)


def build(name: str, device: Device, mode: str = "fp32", compile_backend: str = "inductor"):
    model = segzoo.create_model(name, num_classes=150).eval().to(device.device)
    if "channels_last" in mode:
        model = model.to(memory_format=torch.channels_last)
    if "compile" in mode:
        model = torch.compile(model, backend=compile_backend)
    return model


def inference_row(
    name: str, device: Device, mode: str, batch: int, size: int, warmup: int, repeats: int, compile_backend: str
) -> dict:
    row = {"model": name, "step": "inference", "mode": mode, "batch": batch, "size": size}
    try:
        model = build(name, device, mode, compile_backend)
        x = torch.randn(batch, 3, size, size, device=device.device)
        if "channels_last" in mode:
            x = x.to(memory_format=torch.channels_last)
        device.reset_peak()

        def step():
            with torch.inference_mode(), autocast(device, mode):
                model(x)

        seconds = device.time(step, warmup, repeats)
        row.update(ms=round(1000 * seconds, 2), images_per_s=round(batch / seconds, 1), peak_mb=_mb(device))
    except Exception as err:  # noqa: BLE001 -- an out-of-memory or a compile failure is a result of its own
        row.update(ms=None, images_per_s=None, peak_mb=None, note=f"{type(err).__name__}: {str(err)[:80]}")
    return row


def train_row(name: str, device: Device, checkpointing: bool, batch: int, size: int, warmup: int, repeats: int) -> dict:
    row = {
        "model": name,
        "step": "train",
        "mode": "bf16" + ("+checkpointing" if checkpointing else ""),
        "batch": batch,
        "size": size,
    }
    try:
        model = segzoo.create_model(name, num_classes=150, grad_checkpointing=checkpointing).train().to(device.device)
    except ValueError as err:  # MiT has no gradient checkpointing switch
        row.update(ms=None, images_per_s=None, peak_mb=None, note=str(err)[:80])
        return row
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device.device)
    target = torch.randint(0, 150, (batch, size, size), device=device.device)

    def step():
        with autocast(device, "bf16"):
            loss = F.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    try:
        device.reset_peak()
        seconds = device.time(step, warmup, repeats)
        row.update(ms=round(1000 * seconds, 1), images_per_s=round(batch / seconds, 1), peak_mb=_mb(device))
    except Exception as err:  # noqa: BLE001 -- out of memory at this batch is a result
        row.update(ms=None, images_per_s=None, peak_mb=None, note=f"{type(err).__name__}: {str(err)[:80]}")
    return row


def _mb(device: Device) -> int | None:
    peak = device.peak_mb()
    return None if peak is None else round(peak)


def _release(device: Device) -> None:
    """Free the last configuration's model and compiled graphs before the next one (called once they are gone)."""
    import gc

    gc.collect()
    if device.cuda:
        torch.cuda.empty_cache()
    torch._dynamo.reset()


def write_table(readme: Path, text: str) -> None:
    """Replace what lies between the gpu-table markers (added at the end when missing)."""
    content = readme.read_text() if readme.exists() else ""
    block = f"{MARKERS[0]}\n{text}\n{MARKERS[1]}"
    if MARKERS[0] in content and MARKERS[1] in content:
        before, rest = content.split(MARKERS[0], 1)
        content = before + block + rest.split(MARKERS[1], 1)[1]
    else:
        content = content.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(content)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="inference batch sizes")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny models at 64² on the CPU, compile with the eager backend: checks the script",
    )
    parser.add_argument("--readme", type=Path, default=Path(__file__).resolve().parent / "README.md")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)

    if args.smoke:
        device, models, size, warmup, repeats, backend = Device("cpu"), SMOKE_MODELS, 64, 1, 1, "eager"
        args.batches, args.train_batch = [2], 2
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device: run it on a GPU machine, or use --smoke to check the script on the CPU")
        device, models, size, warmup, repeats, backend = Device("cuda"), MODELS, args.size, 3, args.repeats, "inductor"
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 in the table
        torch.backends.cudnn.allow_tf32 = False
    models = args.models or models
    print(f"device: {device.describe()}", flush=True)
    rows = []
    for name in models:
        for batch in args.batches:
            for mode in INFERENCE_MODES:
                rows.append(inference_row(name, device, mode, batch, size, warmup, repeats, backend))
                _release(device)
                print(markdown(rows[-1:]).splitlines()[-1], flush=True)
        for checkpointing in (False, True):
            rows.append(train_row(name, device, checkpointing, args.train_batch, size, warmup, repeats))
            _release(device)
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    table = f"Device: {device.describe()}; measured {time.strftime('%Y-%m-%d')}.\n\n{markdown(rows)}"
    print()
    print(table)
    if not args.no_write:
        write_table(args.readme, table)
        print(f"\nwrote the table into {args.readme}")
    return rows


if __name__ == "__main__":
    main()
