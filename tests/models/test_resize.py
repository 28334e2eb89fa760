"""The fast bilinear paths of ``segzoo.models._resize`` agree with F.interpolate and are taken only where they apply."""

import pytest
import torch
import torch.nn.functional as F

import segzoo
import segzoo.models._resize as rz


def channels_last(*shape, dtype=torch.bfloat16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)


def reference(x, size):
    """F.interpolate in fp32 on the same (already rounded) values."""
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize(
    "shape,size",
    [
        ((2, 5, 7, 9), (28, 36)),  # ×4 both axes, odd sizes
        ((1, 3, 4, 6), (8, 18)),  # ×2 and ×3
        ((1, 4, 1, 5), (8, 40)),  # a single row
        ((1, 150, 16, 16), (64, 64)),
    ],
)
def test_phases_match_interpolate(shape, size):
    x = channels_last(*shape)
    got = rz._upsample_by_phases(x, size[0] // shape[2], size[1] // shape[3])
    assert got.shape == (shape[0], shape[1], *size) and got.dtype == torch.bfloat16
    ref = reference(x, size)
    # two bf16 roundings (after the W pass and after the H pass), each at most 2^-8 of the values' magnitude
    assert (got.float() - ref).abs().max() <= 2 * 2**-8 * x.float().abs().max()
    # in fp32 the phases are the same arithmetic as the kernel, to the last bits
    x32 = x.float().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        rz._upsample_by_phases(x32, size[0] // shape[2], size[1] // shape[3]), ref, atol=1e-6, rtol=1e-6
    )


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_phases_only_where_they_apply(two_threads):
    x = channels_last(1, 4, 8, 8)
    assert rz._use_phases(x, (16, 32)) and rz._use_phases(x.float(), (16, 16))
    assert not rz._use_phases(x, (20, 20))  # not an integer factor
    assert not rz._use_phases(x, (4, 4))  # downsampling
    assert not rz._use_phases(channels_last(2, 4, 8, 8), (16, 16))  # an image per thread: PyTorch's kernel is as fast
    assert not rz._use_phases(x.contiguous(), (16, 16))  # NCHW rows are not contiguous
    assert not rz._use_phases(x.clone().requires_grad_(), (16, 16))  # lerp(out=) has no autograd
    # where they don't apply, resize is F.interpolate itself
    y = channels_last(1, 4, 8, 8).requires_grad_()
    rz.resize(y, (16, 16)).sum().backward()
    assert y.grad is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_resize_and_sum_matches_resize_then_add(dtype):
    base = channels_last(2, 6, 16, 20, dtype=dtype, seed=1)
    maps = [
        channels_last(2, 6, 8, 10, dtype=dtype, seed=2),
        channels_last(2, 6, 3, 7, dtype=dtype, seed=3),
        channels_last(2, 6, 16, 20, dtype=dtype, seed=4),
    ]  # one already at full size
    ref = base.float() + sum(reference(m, (16, 20)) for m in maps)
    got = rz.resize_and_sum(base.clone(), maps)
    assert got.shape == base.shape and got.is_contiguous(memory_format=torch.channels_last)
    tol = 1e-6 if dtype == torch.float32 else 2e-2  # bf16: the output rounding, |values| < 8
    torch.testing.assert_close(got.float(), ref, atol=tol, rtol=tol)


def test_interpolation_matrix_rows_are_bilinear_weights():
    m = rz.interpolation_matrix(4, 8, torch.float32, torch.device("cpu"))
    assert m.shape == (8, 4)
    torch.testing.assert_close(m.sum(1), torch.ones(8))
    assert m[0, 0] == 1 and m[1].tolist() == [0.75, 0.25, 0, 0]  # first output clamps, second is 3/4 · x0 + 1/4 · x1


def test_segformer_bf16_takes_the_fast_paths_and_matches_fp32(monkeypatch, two_threads):
    """A single image's logits upsample by phases; under bf16 autocast the head also sums by matrix product. The
    logits stay within bf16 error of the fp32 model's."""
    calls = []
    for name in ("resize_and_sum", "_upsample_by_phases"):
        original = getattr(rz, name)
        monkeypatch.setattr(rz, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    import segzoo.models.heads.segformer as segformer_module

    monkeypatch.setattr(segformer_module, "resize_and_sum", rz.resize_and_sum)
    torch.manual_seed(0)
    model = segzoo.create_model("segformer-test", num_classes=7).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        ref = model(x)
        assert calls == ["_upsample_by_phases"] * 4  # fp32: three stage maps and the logits, summed map by map
        calls.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(x)
    assert calls == ["resize_and_sum", "_upsample_by_phases"]
    assert got.dtype == torch.bfloat16 and got.shape == ref.shape
    assert (got.float() - ref).abs().max() < 0.05 * ref.abs().max()
