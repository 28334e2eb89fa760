"""Print the README's architecture table (parameter counts on the meta device, 150 classes, 512 crop).

Usage: python scripts/arch_table.py   (tests/test_readme.py checks the README holds its output)
"""

import torch

import segzoo
from segzoo.registry import ARCHS


def arch_table() -> str:
    rows = ["| architecture | family | encoder | decoder | aux heads | params (M) |", "|---|---|---|---|---|---|"]
    for name in segzoo.list_models():
        arch = ARCHS[name]
        model = segzoo.create_model(name, num_classes=150, device=torch.device("meta"))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        encoder = f"{arch.encoder} " + ",".join(
            f"{k}={v}" for k, v in arch.encoder_args.items() if k in ("embed_dims", "embed_dim", "depth", "depths", "patch_size")
        ).replace(" ", "")
        rows.append(f"| `{name}` | {arch.family} | {encoder} | {arch.decoder} | {len(arch.aux_heads)} | {params:.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(arch_table())
