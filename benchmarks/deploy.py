"""Photo → labels at the photo's size, end to end (decode, preprocess, model, labels), every way segzoo ships beside
the ways a CPU user would otherwise take, with the same weights, in one process, interleaved.

Paths per model:

- ``transformers``: ``SegformerImageProcessor`` + ``SegformerForSemanticSegmentation`` +
  ``post_process_semantic_segmentation`` (SegFormer only), fp32 eager;
- ``transformers-onnx``: the same processor and post-processing around onnxruntime on transformers' model exported
  with ``torch.onnx.export`` (dynamic batch, height and width);
- ``segzoo-eager`` (fp32) and ``segzoo-eager-bf16`` (weights in bf16): ``model.predict(path)``;
- ``runtime-ort`` (fp32), ``runtime-ort-int8`` (``segzoo.runtime.quantize_int8``, calibrated on the photos),
  ``runtime-ov`` (fp32), ``runtime-ov-bf16`` and ``runtime-ov-int8`` (the int8 file on OpenVINO):
  :mod:`segzoo.runtime` on ``segzoo export --head-logits``.

Latency is per image over a folder of real photos (skimage's, JPEG), the median over rounds of each path's mean
(within a round every path runs on a photo before the next photo), after two warm-up passes (the runtime's engines
fixed to an input size are compiled on the second image of that size: the steady state of a folder of same-size
photos or a video; ``--static-shapes 0`` gives what a size's first image gets: the engine for any size);
images/s is its inverse (a folder run one image at a time). Agreement is the share of pixels whose labels equal
segzoo's fp32 eager ``predict`` (transformers' paths: its own fp32 eager labels; the two protocols differ: transformers
squeezes every photo to 512×512, segzoo keeps the aspect ratio as mmseg's test pipeline does). Peak memory is that of
a fresh process running only that path over the folder (``--memory``). Random weights (the speed does not depend on
them; agreement is pessimistic with them, see README).

    python benchmarks/deploy.py                                   # SegFormer-B0/B2, Segmenter-S, 2 threads
    python benchmarks/deploy.py --models segformer-b0 --rounds 5 --memory
    python benchmarks/deploy.py --models runs/quickstart/version_0/checkpoints/last.ckpt   # trained weights
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import segzoo  # noqa: E402
import segzoo.runtime as rt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import _peak_rss_mb, _reset_peak_rss, markdown, transformers_segformer  # noqa: E402

CHECKPOINTS = {
    "segformer-b0": "segformer-b0-ade",
    "segformer-b2": "segformer-b2-ade",
    "segmenter-s16-mask": "segmenter-s16-mask-ade",
    "segformer-test": "segformer-b0-ade",
}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
BASELINES = ("transformers", "transformers-onnx")


def write_photos(folder: Path, names=PHOTOS) -> list[Path]:
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}.jpg"
        if not path.exists():
            Image.fromarray(getattr(skimage.data, name)()).save(path, quality=95)
        paths.append(path)
    return paths


def _weights_key(model: torch.nn.Module) -> str:
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.float().flatten()[:64].numpy().tobytes())
    return digest.hexdigest()[:12]


PATHS = (
    "transformers",
    "transformers-onnx",
    "segzoo-eager",
    "segzoo-eager-bf16",
    "runtime-ort",
    "runtime-ort-int8",
    "runtime-ov",
    "runtime-ov-bf16",
    "runtime-ov-int8",
)
RUNTIME_PATHS = {  # path -> (file, backend, precision)
    "runtime-ort": ("head", "onnxruntime", "fp32"),
    "runtime-ort-int8": ("int8", "onnxruntime", "fp32"),
    "runtime-ov": ("head", "openvino", "fp32"),
    "runtime-ov-bf16": ("head", "openvino", "bf16"),
    "runtime-ov-int8": ("int8", "openvino", "fp32"),  # int8 kernels for the quantised ops (bf16 hint: no kernel)
}


def build(arch: str, cache: Path, photos: list[Path], wanted=PATHS, seed: int = 0, static_shapes: int = 4) -> dict:
    """Each wanted path as a callable photo -> labels, all with the same weights (files exported once, cached).
    ``arch`` is an architecture (random weights, the checkpoint table's protocol) or a trained checkpoint's path."""
    torch.manual_seed(seed)
    if Path(arch).exists():  # trained weights: segzoo's paths only
        model, reference = segzoo.load(arch), None
        if not model.eval_protocol.test_scale:  # photos at ADE20K's test scale
            model.eval_protocol = dataclasses.replace(model.eval_protocol, test_scale=(2048, 512))
    else:
        model = segzoo.create_model(arch, num_classes=150).eval()
        reference = transformers_segformer(model) if arch.startswith("segformer") else None
        model.pretrained_cfg = segzoo.get_pretrained_cfg(CHECKPOINTS[arch]).to_dict()
    key = f"{Path(arch).stem}-{_weights_key(model)}"
    cache.mkdir(parents=True, exist_ok=True)
    files = {"head": cache / f"{key}-head.onnx", "int8": cache / f"{key}-head-int8.onnx"}
    needed = {RUNTIME_PATHS[p][0] for p in wanted if p in RUNTIME_PATHS}
    if needed and not files["head"].exists():
        model.export_onnx(files["head"], head_logits=True)
    if "int8" in needed and not files["int8"].exists():
        rt.quantize_int8(files["head"], files["int8"], photos, min_agreement=0.0)
    paths = {}
    if reference is not None and {"transformers", "transformers-onnx"} & set(wanted):
        paths.update(transformers_paths(reference, cache / f"{key}-transformers.onnx", wanted))
    paths["segzoo-eager"] = model.predict  # the reference of every agreement figure: always run
    if "segzoo-eager-bf16" in wanted:
        paths["segzoo-eager-bf16"] = copy.deepcopy(model).to(torch.bfloat16).predict
    for name, (file, backend, precision) in RUNTIME_PATHS.items():
        if name in wanted:
            paths[name] = rt.load(
                files[file],
                backend=backend,
                precision=precision,
                threads=torch.get_num_threads(),
                static_shapes=static_shapes,
            ).predict
    return paths


def transformers_paths(reference: torch.nn.Module, onnx_path: Path, wanted=PATHS) -> dict:
    """transformers' own pipeline, eager and on onnxruntime."""
    import onnxruntime
    from PIL import Image
    from transformers import SegformerImageProcessor

    processor = SegformerImageProcessor()  # the nvidia/segformer-*-ade-512-512 processor: 512×512, ImageNet stats

    def eager(path):
        image = Image.open(path).convert("RGB")
        inputs = processor(images=image, return_tensors="pt")
        with torch.inference_mode():
            outputs = reference(**inputs)
        return processor.post_process_semantic_segmentation(outputs, target_sizes=[image.size[::-1]])[0].numpy()

    if "transformers-onnx" not in wanted:
        return {"transformers": eager}
    if not onnx_path.exists():

        class Logits(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, pixel_values):
                return self.model(pixel_values=pixel_values).logits

        dim = torch.export.Dim.DYNAMIC
        torch.onnx.export(
            Logits(reference),
            (torch.randn(2, 3, 512, 512),),
            str(onnx_path),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_shapes=({0: dim, 2: dim, 3: dim},),
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    class Outputs:  # what post_process_semantic_segmentation reads
        def __init__(self, logits):
            self.logits = logits

    def ort(path):
        image = Image.open(path).convert("RGB")
        pixels = processor(images=image, return_tensors="np")["pixel_values"]
        logits = torch.from_numpy(session.run(None, {"pixel_values": pixels})[0])
        return processor.post_process_semantic_segmentation(Outputs(logits), target_sizes=[image.size[::-1]])[0].numpy()

    return {"transformers": eager, "transformers-onnx": ort} if "transformers" in wanted else {"transformers-onnx": ort}


def measure(paths: dict, photos: list[Path], rounds: int) -> tuple[dict, dict]:
    """Median over rounds of each path's mean seconds per photo, and the labels of the warm-up round. Interleaved
    finely: within a round, every path runs on a photo before the next photo, so a change of machine load reaches
    every path alike."""
    times = {name: [] for name in paths}
    with torch.inference_mode():
        labels = {name: [np.asarray(fn(p)) for p in photos] for name, fn in paths.items()}  # warm-up
        for fn in paths.values():  # a second pass: segzoo.runtime compiles an engine for each recurring input size
            for photo in photos:
                fn(photo)
        for _ in range(rounds):
            spent = dict.fromkeys(paths, 0.0)
            for photo in photos:
                for name, fn in paths.items():
                    start = time.perf_counter()
                    fn(photo)
                    spent[name] += time.perf_counter() - start
            for name in paths:
                times[name].append(spent[name] / len(photos))
    return {name: statistics.median(t) for name, t in times.items()}, labels


def agreement(labels: list[np.ndarray], reference: list[np.ndarray]) -> float:
    equal = sum(int((a == b).sum()) for a, b in zip(labels, reference))
    return equal / sum(b.size for b in reference)


def memory(arch: str, path: str, cache: Path, photos: list[Path]) -> float:
    """Peak RSS of a fresh process that builds only this path and runs it over the photos."""
    args = [
        sys.executable,
        __file__,
        "--_memory",
        json.dumps([arch, path, str(cache), [str(p) for p in photos], torch.get_num_threads()]),
    ]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def _memory_child(spec: list) -> None:
    arch, path, cache, photos, threads = spec
    torch.set_num_threads(threads)
    photos = [Path(p) for p in photos]
    fn = build(arch, Path(cache), photos, wanted=(path,))[path]
    import gc

    gc.collect()
    _reset_peak_rss()
    with torch.inference_mode():
        for photo in photos:
            fn(photo)
    print(_peak_rss_mb())


def rows_for(
    arch: str, cache: Path, photos: list[Path], rounds: int, with_memory: bool, wanted=PATHS, static_shapes: int = 4
) -> list[dict]:
    paths = build(arch, cache, photos, wanted, static_shapes=static_shapes)
    seconds, labels = measure(paths, photos, rounds)
    baselines = [seconds[b] for b in BASELINES if b in seconds]
    fastest_baseline = min(baselines) if baselines else None
    rows = []
    for name in paths:
        reference = labels.get("transformers") if name.startswith("transformers") else labels["segzoo-eager"]
        row = {
            "model": arch,
            "path": name,
            "ms_per_image": round(1000 * seconds[name], 1),
            "images_per_s": round(1 / seconds[name], 2),
            "vs_fastest_baseline": round(fastest_baseline / seconds[name], 2) if fastest_baseline else None,
            "agree_vs_fp32_eager": f"{100 * agreement(labels[name], reference):.3f}%" if reference else None,
        }
        if with_memory:
            row["peak_rss_mb"] = round(memory(arch, name, cache, photos))
        rows.append(row)
    return rows


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
        cpu += " (" + ", ".join(f for f in ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16") if f in flags) + ")"
    except (OSError, StopIteration):
        pass
    import onnxruntime
    import openvino

    return (
        f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, openvino {openvino.__version__}, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["segformer-b0", "segformer-b2", "segmenter-s16-mask"],
        help="architectures (random weights) or paths of trained checkpoints",
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (after a warm-up round)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), help="skimage.data photo names")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="which paths to run")
    parser.add_argument("--memory", action="store_true", help="peak RSS of a fresh process per path")
    parser.add_argument(
        "--static-shapes",
        type=int,
        default=4,
        help="segzoo.runtime's engines fixed to a recurring input size (0: one engine for any size)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/segzoo-bench"),
        help="exported ONNX files, reused while the weights are the same",
    )
    parser.add_argument("--_memory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._memory:
        return _memory_child(json.loads(args._memory))
    photos = write_photos(args.cache / "photos", args.photos)
    print(f"machine: {machine()}", flush=True)
    rows = []
    for arch in args.models:
        rows += rows_for(arch, args.cache, photos, args.rounds, args.memory, args.paths, args.static_shapes)
        print(markdown([r for r in rows if r["model"] == arch]), flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print()
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
