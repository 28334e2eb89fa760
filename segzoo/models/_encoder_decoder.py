"""The network every segzoo architecture is: an encoder, an optional neck, a decode head and auxiliary heads, built
from a registry row by :meth:`EncoderDecoder.from_arch`.

Top-level attribute names follow mmsegmentation and the official SegFormer code (``backbone``, ``neck``,
``decode_head``, ``auxiliary_head``) so their checkpoints need few renames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from segzoo._preprocessing import EvalProtocol
from segzoo.models._registry import ARCHS, DECODERS, ENCODERS, NECKS, check_num_classes, get_arch
from segzoo.models._resize import resize

if TYPE_CHECKING:
    from typing_extensions import Self


class EncoderDecoder(nn.Module):
    """Semantic segmentation model: ``model(x)`` maps B×3×H×W images to B×K×H×W logits.

    Auxiliary heads only run through :meth:`forward_with_aux`, which training code calls; ``model(x)`` never
    returns them, in train or eval mode.

    Args:
        backbone: Encoder returning a list of NCHW feature maps (``backbone.out_channels`` describes them).
        decode_head: Head taking that list (or the neck's) and returning logits at some stride.
        neck: Optional module between backbone and heads (SETR-MLA).
        auxiliary_heads: Extra heads used for auxiliary losses during training.
        aux_weights: Loss weight of each auxiliary head.
        pad_to_multiple: Pad the input (right and bottom, zeros) to a multiple of this before the backbone; ViT
            encoders need whole patches. 1 means no padding.
        unpad: How logits computed on a padded input return to the input size. ``"resize"``: the padded grid's
            logits are resized to the input size (mmsegmentation's ``predict_by_feat``, a slight stretch; what every
            mmseg-trained checkpoint was scored with). ``"crop"``: they are upsampled to the padded size and cropped
            (the official Segmenter code).
        in_chans: Expected number of input channels.
    """

    UNPAD_MODES = ("resize", "crop")

    @classmethod
    def from_arch(
        cls,
        name: str,
        *,
        num_classes: int = 150,
        encoder: str | None = None,
        img_size: int | None = None,
        drop_path_rate: float | None = None,
        aux_heads: bool = True,
        in_chans: int = 3,
        encoder_args: dict[str, Any] | None = None,
        decoder_args: dict[str, Any] | None = None,
        neck_args: dict[str, Any] | None = None,
        unpad: str | None = None,
        freeze_encoder: bool = False,
        grad_checkpointing: bool = False,
        device=None,
        dtype=None,
    ) -> Self:
        """Architecture ``name`` (a registry row) with fresh weights, as an instance of this class.

        Args:
            name: An architecture name from ``segzoo.list_models()``.
            num_classes: Number of output classes.
            encoder: For the architectures on any timm ViT (``segmenter-linear``, ``segmenter-mask``, ``setr-naive``,
                ``setr-pup``, ``setr-mla``, ``linear-probe``, ``linear-probe-4``): the timm model name, e.g.
                ``"vit_base_patch14_reg4_dinov2.lvd142m"`` (default DINOv2-S/14 with registers; known to work:
                ``segzoo.models.KNOWN_TIMM_ENCODERS``).
            img_size: Crop size the ViT position embeddings are stored for (other sizes are resampled on the fly).
            drop_path_rate: Encoder stochastic depth.
            aux_heads: Build the auxiliary heads (SETR). They only run through :meth:`forward_with_aux`.
            in_chans: Input channels.
            encoder_args, decoder_args, neck_args: Overrides merged into the registry row (e.g. a narrower
                ``embed_dim`` for tests).
            unpad: ``"resize"`` or ``"crop"``: how logits of an input padded to whole patches return to the input
                size (default: the registry row's, mmsegmentation's ``"resize"``; the official Segmenter code crops).
            freeze_encoder, grad_checkpointing: Training switches (:meth:`configure_training`).
            device: Build on this device (``"meta"`` builds without allocating memory).
            dtype: Parameter dtype.

        Returns:
            The model in training mode; ``model.arch_name`` and ``model.build_args`` (the overrides given) say how to
            build it again.
        """
        arch = get_arch(name)
        check_num_classes(num_classes)
        dd = {"device": device, "dtype": dtype}
        enc_args = dict(arch.encoder_args, **(encoder_args or {}), in_chans=in_chans)
        if encoder is not None:
            if arch.encoder != "timm_vit":
                timm_rows = ", ".join(a.name for a in ARCHS.values() if a.encoder == "timm_vit")
                raise ValueError(f"{name} has its own encoder; encoder= names a timm ViT for {timm_rows}")
            enc_args["model_name"] = encoder
        if img_size is not None:
            if "img_size" not in enc_args:
                raise ValueError(f"{name} has no position embeddings to size; img_size does not apply")
            enc_args["img_size"] = img_size
        if drop_path_rate is not None:
            enc_args["drop_path_rate"] = drop_path_rate
        backbone = ENCODERS[arch.encoder](**enc_args, **dd)
        channels = list(backbone.out_channels)
        neck = None
        if arch.neck:
            neck = NECKS[arch.neck](channels, **dict(arch.neck_args, **(neck_args or {})), **dd)
            channels = list(neck.out_channels)

        def build_head(kind: str, args: dict[str, Any]) -> nn.Module:
            head_cls, takes_all = DECODERS[kind]
            index = args.get("in_index", -1)
            in_channels = (
                channels
                if takes_all
                else (sum(channels[i] for i in index) if isinstance(index, (list, tuple)) else channels[index])
            )
            return head_cls(in_channels, num_classes, **args, **dd)

        decode_head = build_head(arch.decoder, dict(arch.decoder_args, **(decoder_args or {})))
        aux = [build_head(kind, args) for kind, args in arch.aux_heads] if aux_heads else []
        model = cls(
            backbone,
            decode_head,
            neck=neck,
            auxiliary_heads=aux,
            aux_weights=[arch.aux_weight] * len(aux),
            pad_to_multiple=arch.pad_to_multiple or backbone.patch_size,
            unpad=unpad or arch.unpad,
            in_chans=in_chans,
        )
        model.arch_name = name
        overrides = dict(
            encoder=encoder,
            img_size=img_size,
            drop_path_rate=drop_path_rate,
            encoder_args=encoder_args,
            decoder_args=decoder_args,
            neck_args=neck_args,
            unpad=unpad,
        )
        model.build_args = {k: v for k, v in overrides.items() if v is not None}
        if in_chans != 3:
            model.build_args["in_chans"] = in_chans
        return model.configure_training(freeze_encoder=freeze_encoder, grad_checkpointing=grad_checkpointing)

    def __init__(
        self,
        backbone: nn.Module,
        decode_head: nn.Module,
        neck: nn.Module | None = None,
        auxiliary_heads: list[nn.Module] | None = None,
        aux_weights: list[float] | None = None,
        pad_to_multiple: int = 1,
        unpad: str = "resize",
        in_chans: int = 3,
    ):
        super().__init__()
        if unpad not in self.UNPAD_MODES:
            raise ValueError(f"unpad must be one of {self.UNPAD_MODES}, got {unpad!r}")
        self.backbone = backbone
        self.neck = neck
        self.decode_head = decode_head
        self.auxiliary_head = nn.ModuleList(auxiliary_heads or [])
        self.aux_weights = list(aux_weights or [0.4] * len(self.auxiliary_head))
        if len(self.aux_weights) != len(self.auxiliary_head):
            raise ValueError(f"got {len(self.aux_weights)} aux weights for {len(self.auxiliary_head)} auxiliary heads")
        self.pad_to_multiple = pad_to_multiple
        self.unpad = unpad
        self.in_chans = in_chans
        self.encoder_frozen = False  # see freeze_encoder
        self.arch_name: str | None = None  # set by from_arch, with the overrides it used in build_args
        self.build_args: dict[str, Any] = {}
        self.pretrained_cfg: dict[str, Any] = {}

    @property
    def num_classes(self) -> int:
        return self.decode_head.num_classes

    @property
    def eval_protocol(self) -> EvalProtocol:
        """The checkpoint's test pipeline and inference mode (:class:`segzoo.EvalProtocol`), kept in
        ``pretrained_cfg["eval"]``: the one object ``predict``, training's validation and ``segzoo eval`` build
        inputs with. A model without one (fresh weights) gets ImageNet statistics, the whole image, no resize.
        Setting it writes ``pretrained_cfg["eval"]`` (and the ``mean``/``std`` beside it)."""
        values = self.pretrained_cfg.get("eval")
        return EvalProtocol.from_dict(values) if values else EvalProtocol()

    @eval_protocol.setter
    def eval_protocol(self, protocol: EvalProtocol) -> None:
        self.pretrained_cfg = {
            **self.pretrained_cfg, "eval": protocol.to_dict(), "mean": list(protocol.mean), "std": list(protocol.std),
        }  # fmt: skip

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected a 4-D float tensor B×{self.in_chans}×H×W, got {shape}")
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected {self.in_chans} input channels (B×{self.in_chans}×H×W), got {x.shape[1]} in shape "
                f"{tuple(x.shape)}; convert grayscale/RGBA images to RGB first"
            )
        if not x.is_floating_point():
            raise ValueError(f"expected a float tensor (normalised image), got dtype {x.dtype}")
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"expected at least one image of at least 1×1 pixels, got shape {tuple(x.shape)}")
        weight = next(self.parameters())
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(
                f"the input is {x.dtype} but the model's weights are {weight.dtype}: cast the input with "
                f"x.to({weight.dtype}), or run under torch.autocast('{x.device.type}', dtype=...) for mixed precision"
            )

    def extract_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.backbone(x)
        return self.neck(feats) if self.neck is not None else feats

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps the decode head reads (encoder, then neck), for an input padded to whole patches: the
        feature API of timm's models. The encoder's own ``forward_intermediates(x, indices=...)`` gives any blocks
        (ViT) or stages (MiT)."""
        self.check_input(x)
        return self.extract_features(self._pad(x))

    def configure_training(self, *, freeze_encoder: bool = False, grad_checkpointing: bool = False) -> Self:
        """Sets the switches that say how the model trains; they change no weight and no output. Returns the model.

        Args:
            freeze_encoder: Freeze the encoder (:meth:`freeze_encoder`).
            grad_checkpointing: Recompute the encoder's blocks in the backward pass instead of storing activations
                (:meth:`set_grad_checkpointing`; ViT-L/g at 512–1024 crops).
        """
        if freeze_encoder:
            self.freeze_encoder()
        if grad_checkpointing:
            self.set_grad_checkpointing()
        return self

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Freeze the encoder (linear probing, frozen-feature training): its parameters take no gradients, so
        ``param_groups`` leaves them out of the optimizer, and it stays in eval mode (dropout, drop path and
        BatchNorm statistics off) when the model is put in training mode. ``frozen=False`` undoes it."""
        self.encoder_frozen = frozen
        self.backbone.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> EncoderDecoder:
        super().train(mode)
        if self.encoder_frozen:
            self.backbone.eval()
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the encoder's blocks in the backward pass instead of storing their activations (timm's switch):
        less memory for ViT-L/g at large crops, about a third more compute."""
        if not hasattr(self.backbone, "set_grad_checkpointing"):
            raise ValueError(f"{type(self.backbone).__name__} has no gradient checkpointing switch")
        self.backbone.set_grad_checkpointing(enable)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_to_multiple == 1:
            return x
        m = self.pad_to_multiple
        # Always pad (possibly by 0): a Python branch on the size would be frozen by torch.export / ONNX tracing.
        return F.pad(x, (0, (-x.shape[3]) % m, 0, (-x.shape[2]) % m))

    def _to_input_size(self, logits: torch.Tensor, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        if self.unpad == "resize":
            # skip a same-size resize in eager mode only: an exported graph must resize at every other size
            if logits.shape[-2:] == size and not torch.compiler.is_compiling():
                return logits
            return resize(logits, size)
        if logits.shape[-2:] != padded:
            logits = resize(logits, padded)
        return logits[..., : size[0], : size[1]]

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Main logits and one logits map per auxiliary head, all at the input size."""
        self.check_input(x)
        size = (x.shape[2], x.shape[3])
        x = self._pad(x)
        padded = (x.shape[2], x.shape[3])
        feats = self.extract_features(x)
        logits = self._to_input_size(self.decode_head(feats), padded, size)
        aux = [self._to_input_size(head(feats), padded, size) for head in self.auxiliary_head]
        return logits, aux

    def forward_head(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The decode head's logits at its own (low) resolution, and the padded input size they cover.

        ``model(x)`` is these logits brought to the input size as :attr:`unpad` says; ``predict`` starts from them to
        produce full-resolution labels strip by strip, without a full-resolution logits tensor.
        """
        self.check_input(x)
        x = self._pad(x)
        return self.decode_head(self.extract_features(x)), (x.shape[2], x.shape[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, padded = self.forward_head(x)
        return self._to_input_size(logits, padded, (x.shape[2], x.shape[3]))

    def __prepare_scriptable__(self):
        # torch.jit.script calls this first: say what works instead of failing deep inside timm or torch
        raise RuntimeError(
            "torch.jit.script does not support segzoo models: use torch.export.export or "
            "segzoo.export_onnx(model, path) "
            "(any input size), or torch.jit.trace(model, example) (valid at the traced size only)"
        )

    def drop_auxiliary_heads(self) -> None:
        """Remove the auxiliary heads (they only serve training losses)."""
        self.auxiliary_head = nn.ModuleList()
        self.aux_weights = []

    def class_specific_parameters(self) -> list[str]:
        """Names of the parameters and buffers whose shape depends on the number of classes.

        Each head lists the submodules or parameters that hold its classes in ``head.classifier_names``.
        """
        heads = {"decode_head": self.decode_head}
        heads |= {f"auxiliary_head.{i}": head for i, head in enumerate(self.auxiliary_head)}
        prefixes = tuple(f"{p}.{c}" for p, h in heads.items() for c in h.classifier_names)
        state = self.state_dict(keep_vars=True)
        return [k for k in state if k.startswith(prefixes)]

    def no_weight_decay(self) -> set[str]:
        """Parameter names that take no weight decay (position embeddings, tokens), as timm models report them."""
        names = set()
        if hasattr(self.backbone, "no_weight_decay"):
            names |= {f"backbone.{n}" for n in self.backbone.no_weight_decay()}
        if hasattr(self.decode_head, "no_weight_decay"):
            names |= {f"decode_head.{n}" for n in self.decode_head.no_weight_decay()}
        return names & {n for n, _ in self.named_parameters()}  # timm also lists tokens this ViT does not have
