"""segzoo.runtime gives predict's labels from an exported ONNX file, without PyTorch.

Tiny models of each family (weights scaled up so that the labels vary over real photos), exported with the file's
metadata, run by onnxruntime (and OpenVINO) on skimage's photos, in whole, sliding-window and multi-scale + flip
modes, from both kinds of graph output (logits at the input size, or the decode head's low-resolution logits).
Labels must equal ``predict``'s on at least 99.99% of the pixels, and where they differ PyTorch's own top two
classes must be within 1e-4 of each other (a near-tie that float rounding decides).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import skimage.data
import torch
from PIL import Image

import segzoo
import segzoo.runtime as rt
from segzoo import EvalProtocol
from segzoo._cli import main
from segzoo.inference import export_onnx
from segzoo.inference._tensor import _resize, _run, merge_multiscale_flip

NUM_CLASSES = 7
PHOTOS = {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee()}
ADE = segzoo.get_pretrained_cfg("segformer-b0-ade").to_dict()
NAMES = {"class_names": ADE["class_names"][:NUM_CLASSES], "palette": ADE["palette"][:NUM_CLASSES]}
SMALL = {"test_scale": [2048, 128]}  # EvalProtocol arguments
SLIDE = {"mode": "slide", "crop": [64, 64], "stride": [48, 48]}

# Two exported graphs; the other cases are the same graphs with other metadata (protocol, how the head's logits
# reach the input size), which is all the runtime reads: exporting costs 15-40 s per model.
GRAPHS = {"segformer": ("segformer-test", "input"), "segmenter": ("segmenter-test-mask", "head")}
# case: (graph, unpad, test pipeline)
CASES_CFG = {
    "segformer-ade": ("segformer", "resize", ADE["eval"]),
    "segformer-nvlabs": ("segformer", "resize", {**SMALL, "size_divisor": 32}),
    "segformer-slide": ("segformer", "resize", {**SMALL, **SLIDE}),
    "segmenter-crop": ("segmenter", "crop", SMALL),
    "segmenter-slide": ("segmenter", "resize", {**SMALL, **SLIDE, "tta_style": "mmseg-1.x"}),
    "segmenter-slide-crop": ("segmenter", "crop", {**SMALL, **SLIDE}),
}


def tiny_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = segzoo.create_model(arch, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():  # random weights give one class everywhere; larger ones give regions and boundaries
        for param in model.parameters():
            if param.ndim > 1:
                param.mul_(3)
    return model


def set_metadata(source, target, **changes) -> None:
    """Copies an ONNX file with metadata keys changed; a new test pipeline (``segzoo.eval_protocol``) goes into the
    model config (``segzoo.config``) too, which the runtime reads first."""
    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({key: json.dumps(value) for key, value in changes.items()})
    if "segzoo.eval_protocol" in changes and "segzoo.config" in props:
        config = json.loads(props["segzoo.config"])
        config["pretrained_cfg"]["eval"] = changes["segzoo.eval_protocol"]
        props["segzoo.config"] = json.dumps(config)
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(target))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """case -> (PyTorch model, ONNX file): the graph export_onnx wrote, with the case's metadata."""
    folder = tmp_path_factory.mktemp("onnx")
    graphs = {}
    for graph, (arch, output) in GRAPHS.items():
        model = tiny_model(arch)
        model.pretrained_cfg = dict(NAMES)
        export_onnx(model, folder / f"{graph}.onnx", height=64, width=64, head_logits=output == "head")
        graphs[graph] = model
    cases = {}
    for case, (graph, unpad, pipeline) in CASES_CFG.items():
        model = graphs[graph]
        output = json.loads(rt.read_metadata(folder / f"{graph}.onnx")["segzoo.output"])
        if output["logits"] == "head":
            output["unpad"] = unpad
        protocol = EvalProtocol(**pipeline).to_dict()
        cfg = {**NAMES, "eval": protocol}
        set_metadata(
            folder / f"{graph}.onnx",
            folder / f"{case}.onnx",
            **{"segzoo.eval_protocol": protocol, "segzoo.output": output},
        )
        cases[case] = (model, folder / f"{case}.onnx", unpad, cfg)
    return cases


@pytest.fixture
def case(exported):
    """The PyTorch model configured as a case says, and the case's file."""

    def configure(name):
        model, path, unpad, cfg = exported[name]
        model.unpad, model.pretrained_cfg = unpad, dict(cfg)
        return model, path

    return configure


def torch_logits(model, image: np.ndarray, tta: bool) -> torch.Tensor:
    """PyTorch's logits (or MS+flip log-probabilities) at the original size, to tell near-ties apart."""
    protocol = model.eval_protocol
    size = image.shape[:2]
    with torch.no_grad():
        if tta:
            return merge_multiscale_flip(
                model, protocol.tta_inputs(image), size, True, protocol.mode, protocol.crop, protocol.stride
            )[0]
        return _resize(_run(model, protocol(image), protocol.mode, protocol.crop, protocol.stride, 4), size)[0]


def assert_same_labels(labels: np.ndarray, expected: np.ndarray, model, image, tta: bool) -> None:
    assert labels.shape == expected.shape == image.shape[:2]
    assert labels.dtype == np.int64
    assert len(np.unique(expected)) >= 3, "the test model predicts too few classes to compare anything"
    differ = labels != expected
    assert differ.mean() <= 1e-4, f"{differ.sum()} of {differ.size} labels differ from predict's"
    if differ.any():
        top2 = torch_logits(model, image, tta).topk(2, dim=0).values
        assert (top2[0] - top2[1]).numpy()[differ].max() < 1e-4, "labels differ where PyTorch's top two are apart"


CASES = [
    ("segformer-ade", False),
    ("segformer-nvlabs", True),
    ("segformer-slide", False),
    ("segmenter-crop", False),
    ("segmenter-crop", True),
    ("segmenter-slide", False),
    pytest.param("segmenter-slide", True, marks=pytest.mark.slow),
    ("segmenter-slide-crop", False),
]


@pytest.mark.parametrize(("name", "tta"), CASES)
def test_runtime_labels_equal_predict_on_photos(case, name, tta):
    model, path = case(name)
    runtime = rt.load(path)
    assert runtime.protocol == model.eval_protocol
    photos = list(PHOTOS.values())[: 1 if tta else 2]
    for photo, labels in zip(photos, runtime.predict(photos, tta=tta)):
        assert_same_labels(labels, model.predict(photo, tta=tta), model, photo, tta)


def test_openvino_gives_the_same_labels(case):
    model, path = case("segformer-ade")
    photo = PHOTOS["coffee"]
    labels = rt.load(path, backend="openvino").predict(photo)
    assert_same_labels(labels, model.predict(photo), model, photo, tta=False)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_recurring_size_gets_an_engine_of_its_own_with_the_same_output(case, backend):
    """The second image of a size runs on an engine compiled for that size (faster), whose output is the any-size
    engine's; only the first ``static_shapes`` recurring sizes get one, and ``static_shapes=0`` gives none."""
    _, path = case("segformer-ade")
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    engine = rt.load(path, backend=backend, static_shapes=1).backend
    first = engine.run(x)
    assert engine.fixed_shapes() == []  # a size seen once is not compiled for
    np.testing.assert_allclose(engine.run(x), first, rtol=1e-5, atol=1e-5)
    assert engine.fixed_shapes() == [(1, 3, 64, 96)]
    other = np.ascontiguousarray(x[..., :64])
    engine.run(other), engine.run(other)
    assert engine.fixed_shapes() == [(1, 3, 64, 96)]  # no room: the newer size runs on the any-size engine
    never = rt.load(path, backend=backend, static_shapes=0).backend
    never.run(x), never.run(x)
    assert never.fixed_shapes() == []


def test_folder_and_stream(case, tmp_path):
    model, path = case("segmenter-crop")
    for name, photo in PHOTOS.items():
        Image.fromarray(photo).save(tmp_path / f"{name}.png")
    runtime = rt.load(path)
    found = list(runtime.predict_folder(tmp_path))
    assert [p.name for p, _ in found] == ["chelsea.png", "coffee.png"]
    streamed = list(runtime.predict_stream(iter(PHOTOS.values())))
    for (_, labels), again, photo in zip(found, streamed, PHOTOS.values()):
        np.testing.assert_array_equal(labels, again)
        np.testing.assert_array_equal(labels, model.predict(photo))


NO_TORCH = """
import sys
import segzoo.runtime as rt
from segzoo._cli import main
model = rt.load(sys.argv[1])
labels = model.predict(sys.argv[2])
assert main(["predict", "--onnx", sys.argv[1], sys.argv[2], "--out", sys.argv[3]]) == 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "timm", "lightning", "pytorch_lightning",
                                                          "torchvision", "transformers"})
print(heavy, labels.shape)
"""


@pytest.mark.timeout(600)  # above its subprocess's own limit
def test_runtime_never_imports_torch(case, tmp_path):
    _, path = case("segformer-ade")
    photo = tmp_path / "chelsea.png"
    Image.fromarray(PHOTOS["chelsea"]).save(photo)
    out = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(path), str(photo), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[] (300, 451)"


def test_predict_onnx_command_writes_predicts_labels(case, tmp_path, capsys):
    model, path = case("segformer-ade")
    (tmp_path / "photos").mkdir()
    Image.fromarray(PHOTOS["coffee"]).save(tmp_path / "photos" / "coffee.png")
    assert main(["predict", "--onnx", str(path), str(tmp_path / "photos"), "--out", str(tmp_path / "out")]) == 0
    written = np.asarray(Image.open(tmp_path / "out" / "coffee.png"))
    assert_same_labels(written.astype(np.int64), model.predict(PHOTOS["coffee"]), model, PHOTOS["coffee"], False)
    assert (tmp_path / "out" / "coffee_overlay.png").is_file()
    assert "onnxruntime, fp32" in capsys.readouterr().out


def test_bf16_is_compared_with_fp32_and_refused_below_the_threshold(case, capsys):
    _, path = case("segformer-ade")
    photos = list(PHOTOS.values())
    model = rt.load(path, precision="bf16", check_images=photos, min_agreement=0.5)
    assert model.backend.name == "openvino" and model.backend.precision == "bf16"
    assert model.checked.images == 2 and 0.5 <= model.checked.fraction <= 1.0
    # another model's labels as the "fp32" reference: far below any threshold, refused
    other = rt.load(case("segmenter-crop")[1])
    with pytest.raises(segzoo.AgreementError, match="below the 99% asked for"):
        rt.check_agreement(model, other, photos[:1], 0.99, what="bf16")


def test_int8_file_records_its_agreement_or_is_not_written(case, tmp_path):
    _, path = case("segmenter-crop")
    for name, photo in PHOTOS.items():
        Image.fromarray(photo).save(tmp_path / f"{name}.png")
    result = rt.quantize_int8(path, tmp_path / "int8.onnx", tmp_path, min_agreement=0.5)
    record = json.loads(
        {p.key: p.value for p in onnx.load(str(tmp_path / "int8.onnx")).metadata_props}["segzoo.precision"]
    )
    assert record["precision"] == "int8" and record["agreement"] == round(result.fraction, 6)
    assert rt.load(tmp_path / "int8.onnx").precision_record == record
    assert result.fraction < 1.0  # int8 does change some labels of this model: the check below can refuse
    with pytest.raises(segzoo.AgreementError, match="int8: labels agree with fp32 on"):
        rt.quantize_int8(path, tmp_path / "refused.onnx", tmp_path, min_agreement=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chelsea.png", "coffee.png", "int8.onnx"]


def _with_protocol(path, tmp_path, **changes):
    protocol = {**json.loads(rt.read_metadata(path)["segzoo.eval_protocol"]), **changes}
    set_metadata(path, tmp_path / "changed.onnx", **{"segzoo.eval_protocol": protocol})
    return tmp_path / "changed.onnx"


def test_files_the_runtime_cannot_run_are_refused_clearly(case, tmp_path):
    _, path = case("segformer-ade")
    with pytest.raises(segzoo.RuntimeModelError, match="inference mode 'official' is not implemented"):
        rt.load(_with_protocol(path, tmp_path, mode="official"))
    with pytest.raises(segzoo.RuntimeModelError, match="newer segzoo.*resize_back"):
        rt.load(_with_protocol(path, tmp_path, resize_back="nearest"))
    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(segzoo.RuntimeModelError, match="no segzoo.config metadata with a test pipeline"):
        rt.load(tmp_path / "bare.onnx")
    with pytest.raises(FileNotFoundError):
        rt.load(tmp_path / "missing.onnx")


def test_a_file_exported_before_segzoo_config_runs_from_its_separate_keys(case, tmp_path):
    """Files exported before the model config was one ``segzoo.config`` entry hold the test pipeline, class names
    and palette under keys of their own, as the exporter wrote them then."""
    model, path = case("segformer-slide")
    graph = onnx.load(str(path))
    output = {p.key: p.value for p in graph.metadata_props}["segzoo.output"]
    del graph.metadata_props[:]
    old_props = {
        "segzoo.output": output,
        "segzoo.eval_protocol": json.dumps(EvalProtocol(**SMALL, **SLIDE).to_dict()),
        "segzoo.class_names": json.dumps(NAMES["class_names"]),
        "segzoo.palette": json.dumps([list(map(int, color)) for color in NAMES["palette"]]),
    }
    onnx.helper.set_model_props(graph, old_props)
    onnx.save(graph, str(tmp_path / "old.onnx"))
    runtime = rt.load(tmp_path / "old.onnx")
    assert runtime.protocol == model.eval_protocol and runtime.protocol.mode == "slide"
    assert runtime.class_names == NAMES["class_names"]
    assert runtime.palette == [list(color) for color in NAMES["palette"]]
    assert runtime.config.eval_protocol == runtime.protocol and runtime.config.num_classes == NUM_CLASSES
    photo = PHOTOS["coffee"]
    assert_same_labels(runtime.predict(photo), model.predict(photo), model, photo, tta=False)


def test_predict_onnx_in_bf16_prints_its_agreement_first(case, tmp_path, capsys):
    _, path = case("segformer-ade")
    Image.fromarray(PHOTOS["chelsea"]).save(tmp_path / "chelsea.png")
    args = [
        "predict",
        "--onnx",
        str(path),
        str(tmp_path / "chelsea.png"),
        "--out",
        str(tmp_path / "out"),
        "--precision",
        "bf16",
        "--min-agreement",
        "0.5",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "bf16: labels agree with fp32 on" in printed and "openvino, bf16" in printed
    with pytest.raises(SystemExit):  # argparse refuses a share above 1
        main([*args[:-1], "1.5"])


def test_predict_onnx_refuses_model_options_and_bad_files(tmp_path, capsys):
    Image.fromarray(PHOTOS["chelsea"]).save(tmp_path / "chelsea.png")
    (tmp_path / "not.onnx").write_bytes(b"not an onnx file")
    base = [str(tmp_path / "chelsea.png"), "--out", str(tmp_path / "out")]
    assert main(["predict", "--onnx", str(tmp_path / "not.onnx"), *base]) == 2
    assert "is not an ONNX file" in capsys.readouterr().err
    assert main(["predict", "--onnx", str(tmp_path / "not.onnx"), "--model", "segformer-b0-ade", *base]) == 2
    assert "give --onnx or --model/--arch, not both" in capsys.readouterr().err
