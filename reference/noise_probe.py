"""The train-time noise probe that both sides of the training-parity test apply (mmseg_train_side.py to mmseg's model,
test_training_parity.py to segzoo's): one rule, so the two lists of calls are comparable. Needs only torch."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def noise_calls(model: nn.Module, run: Callable[[], object]) -> list[list]:
    """(scope, branch, kind, p) of every dropout / drop-path call with p > 0 while ``run()`` runs. The branch is the
    residual branch being computed: "attn" or "mlp" from the moment a block's attention or feed-forward (mmseg:
    ``ffn``, timm: ``mlp``) module starts until the block ends, else "other"."""
    calls, state, hooks = [], {"branch": "other"}, []
    for name, module in model.named_modules():
        children = dict(module.named_children())
        if "attn" in children and ("mlp" in children or "ffn" in children):  # a transformer block
            hooks.append(module.register_forward_hook(lambda *_: state.update(branch="other")))
            for child, branch in (("attn", "attn"), ("mlp", "mlp"), ("ffn", "mlp")):
                if child in children:
                    hooks.append(children[child].register_forward_pre_hook(lambda *_, b=branch: state.update(branch=b)))
        if isinstance(module, nn.modules.dropout._DropoutNd):
            kind, prob = "dropout", (lambda m: m.p)
        elif hasattr(module, "drop_prob"):
            kind, prob = "drop_path", (lambda m: m.drop_prob)
        else:
            continue
        scope = name.split(".")[0]

        def record(m, _, scope=scope, kind=kind, prob=prob):
            if prob(m) > 0:
                calls.append([scope, state["branch"], kind, prob(m)])

        hooks.append(module.register_forward_pre_hook(record))
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return calls
