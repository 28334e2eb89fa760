"""The architecture registry: every variant is a row of plain data (:class:`Arch`), which
:meth:`EncoderDecoder.from_arch <segzoo.models.EncoderDecoder.from_arch>` turns into a model with fresh weights.

Architecture names (``segformer-b2``, ``segmenter-s16-mask``, ``setr-pup-l16``) name the rows; checkpoint names
(``segformer-b2-ade``) live in ``checkpoints.yaml`` and each names its architecture. The two name spaces are never
parsed into each other.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from segzoo._errors import UnknownModelError
from segzoo.models.encoders.mit import MixTransformer
from segzoo.models.encoders.timm_vit import TimmViTEncoder
from segzoo.models.encoders.vit import ViTEncoder, hybrid_vit_encoder
from segzoo.models.heads.segformer import MmsegSegformerHead, SegformerHead
from segzoo.models.heads.segmenter import LinearHead, MaskTransformer
from segzoo.models.heads.setr import MlaNeck, SetrMlaHead, SetrUpHead

ENCODERS = {"vit": ViTEncoder, "hybrid_vit": hybrid_vit_encoder, "mit": MixTransformer, "timm_vit": TimmViTEncoder}
NECKS = {"mla": MlaNeck}
# decoder name -> (class, whether it reads all feature maps rather than one selected by ``in_index``)
DECODERS = {
    "segformer": (SegformerHead, True),
    "segformer_mmseg": (MmsegSegformerHead, True),
    "setr_up": (SetrUpHead, False),
    "setr_mla": (SetrMlaHead, True),
    "linear": (LinearHead, False),
    "mask_transformer": (MaskTransformer, False),
}


@dataclass(frozen=True)
class Arch:
    """One architecture: which encoder, neck, decode head and auxiliary heads, with their arguments."""

    name: str
    family: str
    encoder: str
    encoder_args: dict[str, Any]
    decoder: str
    decoder_args: dict[str, Any] = field(default_factory=dict)
    neck: str | None = None
    neck_args: dict[str, Any] = field(default_factory=dict)
    aux_heads: tuple[tuple[str, dict[str, Any]], ...] = ()
    aux_weight: float = 0.4
    pad_to_multiple: int = 1  # 0: the encoder's patch size (timm encoders, whose patch size the row does not fix)
    unpad: str = "resize"  # logits of a padded input are resized to the input size, as mmseg does (see EncoderDecoder)
    paper: str = ""
    # The checkpoint format whose publisher's own code this row reproduces, where that code differs from the shared
    # rows in ways the weights do not show (official SETR): files of that format are matched to these rows only.
    checkpoint_format: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# SegFormer: MiT-B0…B5 + All-MLP head (official code's hyperparameters; MLP ratio 4 everywhere, see mit.py).
MIT_SIZES = {
    "b0": dict(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
    "b1": dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 2, 2)),
    "b2": dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3)),
    "b3": dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3)),
    "b4": dict(embed_dims=(64, 128, 320, 512), depths=(3, 8, 27, 3)),
    "b5": dict(embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3)),
}
SEGFORMER_DECODER_WIDTH = {"b0": 256, "b1": 256, "b2": 768, "b3": 768, "b4": 768, "b5": 768}
# mmsegmentation's SegFormer (``segformer-bN-mmseg``): its own head (see MmsegSegformerHead) with C = 256 for every
# size, and every MiT LayerNorm built with eps 1e-6 (the official code uses 1e-5 after the patch embeddings and the SR
# convs).
SEGFORMER_MMSEG_DECODER_WIDTH = 256
MIT_MMSEG_NORM_EPS = {"norm_eps": 1e-6, "patch_norm_eps": 1e-6, "sr_norm_eps": 1e-6}

# ViT sizes (width, depth, heads) used by SETR and Segmenter.
VIT_SIZES = {"t": (192, 12, 3), "s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16)}
SEGMENTER_PATCHES = (8, 16, 32)

# mmsegmentation's Segmenter Mask head (SegmenterMaskTransformerHead in its configs): no dropout, stochastic depth
# 0.1 (its default) rising over the 2 blocks, on the feed-forward branch only, as in mmseg's ViT (the encoder rows
# leave ViTEncoder's drop_path_branches="mlp"). Official Segmenter files get the official code's noise instead
# (checkpoints/_checkpoint.py FORMAT_MODEL_ARGS).
SEGMENTER_MMSEG_MASK_NOISE = dict(dropout=0.0, drop_path_rate=0.1, drop_path_branches="mlp")

# SETR heads as in the mmsegmentation ADE20K configs (channels 256; aux heads read layers 10, 15, 20 for Naive/PUP,
# the four neck outputs for MLA).
SETR_OUT_INDICES = {"naive": (9, 14, 19, 23), "pup": (9, 14, 19, 23), "mla": (5, 11, 17, 23)}
SETR_UP_HEADS = {  # (decode head args, aux head args)
    "naive": (dict(num_convs=1, kernel_size=1, up_scale=4), dict(num_convs=2, kernel_size=1, up_scale=4)),
    "pup": (dict(num_convs=4, kernel_size=3, up_scale=2), dict(num_convs=2, kernel_size=3, up_scale=4)),
}


def _segformer_arch(size: str) -> Arch:
    return Arch(
        name=f"segformer-{size}",
        family="segformer",
        encoder="mit",
        encoder_args=dict(MIT_SIZES[size]),
        decoder="segformer",
        decoder_args=dict(channels=SEGFORMER_DECODER_WIDTH[size]),
        paper="SegFormer (arXiv 2105.15203)",
    )


def _segformer_mmseg_arch(size: str) -> Arch:
    return Arch(
        name=f"segformer-{size}-mmseg",
        family="segformer",
        encoder="mit",
        encoder_args={**MIT_SIZES[size], **MIT_MMSEG_NORM_EPS},
        decoder="segformer_mmseg",
        decoder_args={"channels": SEGFORMER_MMSEG_DECODER_WIDTH},
        paper="SegFormer (arXiv 2105.15203), as implemented in mmsegmentation (head: convs + fusion_conv)",
    )


def _segmenter_arch(size: str, patch: int, decoder: str, img_size: int = 512) -> Arch:
    width, depth, heads = VIT_SIZES[size]
    vit = dict(
        img_size=img_size,
        patch_size=patch,
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        out_indices=(depth - 1,),
        final_norm=True,
        drop_path_rate=0.1,
        pos_embed_interp="bicubic",  # mmseg's Segmenter configs (the official code: bilinear, set per format)
    )
    head = (
        ("linear", {})
        if decoder == "linear"
        else ("mask_transformer", dict(depth=2, num_heads=width // 64, **SEGMENTER_MMSEG_MASK_NOISE))
    )
    return Arch(
        name=f"segmenter-{size}{patch}-{decoder}",
        family="segmenter",
        encoder="vit",
        encoder_args=vit,
        decoder=head[0],
        decoder_args=head[1],
        pad_to_multiple=patch,
        paper="Segmenter (arXiv 2105.05633)",
    )


def _segmenter_deit_arch(decoder: str) -> Arch:
    """Segmenter on DeiT-B/16 distilled (the official Seg-B†/16 models): ViT-B with DeiT's distillation token."""
    base = _segmenter_arch("b", 16, decoder)
    return dataclasses.replace(
        base,
        name=f"segmenter-deit-b16-{decoder}",
        encoder_args=dict(base.encoder_args, dist_token=True),
        paper="Segmenter (arXiv 2105.05633) on DeiT-B/16 distilled (arXiv 2012.12877)",
    )


def _setr_arch(head: str, size: str, img_size: int = 512) -> Arch:
    width, depth, heads = VIT_SIZES[size]
    # T-Base (12 blocks) reads the same relative depths as T-Large; no public T-Base config or checkpoint fixes them
    out_indices = SETR_OUT_INDICES[head] if depth == 24 else tuple(i // 2 for i in SETR_OUT_INDICES[head])
    vit = dict(
        img_size=img_size,
        patch_size=16,
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        out_indices=out_indices,
        class_token=head != "mla",  # mmseg's SETR-MLA drops the class token before the blocks
        pos_embed_interp="bilinear",  # interpolate_mode='bilinear' in every mmseg SETR config
    )
    if head == "mla":
        return Arch(
            name=f"setr-mla-{size}16",
            family="setr",
            encoder="vit",
            encoder_args=vit,
            neck="mla",
            neck_args=dict(out_channels=256),
            decoder="setr_mla",
            decoder_args=dict(mla_channels=128),
            aux_heads=tuple(("linear", dict(in_index=i)) for i in range(4)),
            pad_to_multiple=16,
            paper="SETR (arXiv 2012.15840)",
        )
    main, aux = SETR_UP_HEADS[head]
    return Arch(
        name=f"setr-{head}-{size}16",
        family="setr",
        encoder="vit",
        encoder_args=vit,
        decoder="setr_up",
        decoder_args=dict(channels=256, in_index=3, **main),
        aux_heads=tuple(("setr_up", dict(channels=256, in_index=i, **aux)) for i in range(3)),
        pad_to_multiple=16,
        paper="SETR (arXiv 2012.15840)",
    )


def _setr_official_arch(head: str, size: str) -> Arch:
    """SETR as the authors' code (fudan-zvg/SETR) computes it, for their released files (format ``setr-official``).

    Naive: LayerNorm, 1×1 conv + BN + ReLU, 1×1 classifier, one bilinear ×16 to the input (mmseg: ×4 twice);
    PUP: mmseg's head (the official classifier runs before the last ×2, with which a 1×1 conv commutes); MLA: the
    same neck as mmseg's, a head upsampling with ``align_corners=True`` and classifying with a 3×3 conv. Conv biases
    before a BatchNorm are folded into its running mean by the converter. No auxiliary heads: the official ones
    (one conv + BN + classifier) are not mmseg's; they only serve training and are not loaded.
    """
    mmseg_style = _setr_arch(head, size)
    vit = dict(mmseg_style.encoder_args)
    if head == "mla":
        decoder_args = dict(mmseg_style.decoder_args, align_corners=True, kernel_size=3)
    else:
        vit["out_indices"] = (vit["depth"] - 1,)
        decoder_args = dict(mmseg_style.decoder_args, in_index=-1, up_scale=16 if head == "naive" else 2)
    return dataclasses.replace(
        mmseg_style,
        name=f"setr-{head}-{size}16-official",
        encoder_args=vit,
        decoder_args=decoder_args,
        aux_heads=(),
        checkpoint_format="setr-official",
        paper="SETR (arXiv 2012.15840), official code (fudan-zvg/SETR)",
    )


# ---------------------------------------------------------------------------------------------------------------
# The ViT heads on any timm ViT (``create_model("segmenter-mask", encoder="vit_base_patch14_reg4_dinov2.lvd142m")``):
# the rows name the head only; the encoder is a timm model name, DINOv2-S/14 with registers unless given.
TIMM_DEFAULT_ENCODER = "vit_small_patch14_reg4_dinov2.lvd142m"
# SETR reads blocks 10, 15, 20 and 24 of 24 (Naive, PUP) or 6, 12, 18, 24 (MLA): the same fractions of any depth.
SETR_OUT_FRACTIONS = {
    "naive": (10 / 24, 15 / 24, 20 / 24, 1.0),
    "pup": (10 / 24, 15 / 24, 20 / 24, 1.0),
    "mla": (0.25, 0.5, 0.75, 1.0),
}


def _timm_archs() -> list[Arch]:
    def vit(**args) -> dict[str, Any]:
        return dict(model_name=TIMM_DEFAULT_ENCODER, img_size=None, drop_path_rate=0.0, **args)

    archs = [
        Arch(
            name="segmenter-linear",
            family="segmenter",
            encoder="timm_vit",
            encoder_args=vit(final_norm=True),
            decoder="linear",
            pad_to_multiple=0,
            paper="Segmenter (arXiv 2105.05633) on a timm ViT",
        ),
        Arch(
            name="segmenter-mask",
            family="segmenter",
            encoder="timm_vit",
            encoder_args=vit(final_norm=True),
            decoder="mask_transformer",
            decoder_args=dict(depth=2),
            pad_to_multiple=0,
            paper="Segmenter (arXiv 2105.05633) on a timm ViT",
        ),
        # DINOv2's linear evaluation (arXiv 2304.07193, §7.3): BatchNorm + 1×1 conv on the normalised patch tokens
        # of the last block ("lin"), or of the last four concatenated (the "+ms" setting's head).
        Arch(
            name="linear-probe",
            family="probe",
            encoder="timm_vit",
            encoder_args=vit(final_norm=True),
            decoder="linear",
            decoder_args=dict(batch_norm=True),
            pad_to_multiple=0,
            paper="DINOv2 linear evaluation (arXiv 2304.07193)",
        ),
        Arch(
            name="linear-probe-4",
            family="probe",
            encoder="timm_vit",
            encoder_args=vit(final_norm=True, out_indices=(-4, -3, -2, -1)),
            decoder="linear",
            decoder_args=dict(batch_norm=True, in_index=(0, 1, 2, 3)),
            pad_to_multiple=0,
            paper="DINOv2 linear evaluation (arXiv 2304.07193), last four blocks",
        ),
    ]
    for head in ("naive", "pup", "mla"):
        real = _setr_arch(head, "l")
        encoder_args = vit(out_fractions=SETR_OUT_FRACTIONS[head], final_norm=False)
        archs.append(
            dataclasses.replace(
                real,
                name=f"setr-{head}",
                encoder="timm_vit",
                encoder_args=encoder_args,
                pad_to_multiple=0,
                paper="SETR (arXiv 2012.15840) on a timm ViT",
            )
        )
    return archs


def _setr_hybrid_arch(img_size: int = 512) -> Arch:
    naive = _setr_arch("naive", "b", img_size)
    return Arch(
        name="setr-hybrid-naive",
        family="setr",
        encoder="hybrid_vit",
        encoder_args={k: v for k, v in naive.encoder_args.items() if k != "patch_size"},
        decoder=naive.decoder,
        decoder_args=naive.decoder_args,
        aux_heads=naive.aux_heads,
        pad_to_multiple=16,
        paper="SETR (arXiv 2012.15840), Hybrid: ResNet-50 (output stride 16) + T-Base",
    )


# Tiny variants with the real topologies, for fast tests (timm registers test_vit the same way).
_TINY_VIT = dict(img_size=64, embed_dim=32, num_heads=2)


def _test_archs() -> list[Arch]:
    segformer = Arch(
        name="segformer-test",
        family="segformer",
        encoder="mit",
        encoder_args=dict(embed_dims=(8, 16, 24, 32), depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2)),
        decoder="segformer",
        decoder_args=dict(channels=16),
        paper="tiny test variant",
    )
    segmenter = [
        Arch(
            name=f"segmenter-test-{d}",
            family="segmenter",
            encoder="vit",
            encoder_args=dict(_TINY_VIT, patch_size=8, depth=2, out_indices=(1,), final_norm=True),
            decoder="linear" if d == "linear" else "mask_transformer",
            decoder_args={} if d == "linear" else dict(depth=2, num_heads=2, **SEGMENTER_MMSEG_MASK_NOISE),
            pad_to_multiple=8,
            paper="tiny test variant",
        )
        for d in ("linear", "mask")
    ]
    setr = []
    for head in ("naive", "pup", "mla"):
        real = _setr_arch(head, "l")
        small_head = dict(real.decoder_args, channels=16) if head != "mla" else dict(mla_channels=8)
        aux = tuple((kind, dict(args, channels=16) if kind == "setr_up" else args) for kind, args in real.aux_heads)
        setr.append(
            Arch(
                name=f"setr-test-{head}",
                family="setr",
                encoder="vit",
                encoder_args=dict(real.encoder_args, **_TINY_VIT, depth=4, out_indices=(0, 1, 2, 3)),
                neck=real.neck,
                neck_args=dict(out_channels=16) if real.neck else {},
                decoder=real.decoder,
                decoder_args=small_head,
                aux_heads=aux,
                pad_to_multiple=16,
                paper="tiny test variant",
            )
        )
    segformer_mmseg = Arch(
        name="segformer-test-mmseg",
        family="segformer",
        encoder="mit",
        encoder_args={**segformer.encoder_args, **MIT_MMSEG_NORM_EPS},
        decoder="segformer_mmseg",
        decoder_args={"channels": 16},
        paper="tiny test variant",
    )
    return [segformer, segformer_mmseg, *segmenter, *setr]


def _all_archs() -> dict[str, Arch]:
    archs = [_segformer_arch(s) for s in MIT_SIZES] + [_segformer_mmseg_arch(s) for s in MIT_SIZES]
    archs += [
        _segmenter_arch(size, patch, decoder)
        for size in VIT_SIZES
        for patch in SEGMENTER_PATCHES
        for decoder in ("linear", "mask")
    ]
    archs += [_segmenter_deit_arch(decoder) for decoder in ("linear", "mask")]
    archs += [_setr_arch(head, size) for head in ("naive", "pup", "mla") for size in ("b", "l")]
    archs += [
        _setr_official_arch(head, size) for head, size in (("naive", "l"), ("naive", "b"), ("pup", "l"), ("mla", "l"))
    ]
    archs += [_setr_hybrid_arch(), *_timm_archs(), *_test_archs()]
    return {a.name: a for a in archs}


ARCHS: dict[str, Arch] = _all_archs()


def list_models(pattern: str | None = None, *, include_test: bool = False) -> list[str]:
    """Architecture names, optionally filtered by an fnmatch pattern (``"segformer-*"``); tiny ``*-test*``
    variants are listed only with ``include_test=True`` or a pattern that mentions ``test``."""
    names = sorted(ARCHS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if not include_test and not (pattern and "test" in pattern):
        names = [n for n in names if "-test" not in n]
    return names


def get_arch(name: str) -> Arch:
    """The registry row for ``name``; an unknown name raises ``KeyError`` listing the closest names."""
    if name not in ARCHS:
        close = difflib.get_close_matches(name, ARCHS, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown architecture {name!r}.{hint} See segzoo.list_models() for all names.")
    return ARCHS[name]


def check_num_classes(num_classes: object) -> int:
    """``num_classes`` if it is a positive int; the one check (and message) behind every way of building a model."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer (e.g. 19), got {num_classes!r}")
    return num_classes
