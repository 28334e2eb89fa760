"""Seeded random weights for the publishers' own module layouts (official Segmenter, official SETR).

A *recipe* lists every parameter and buffer of a publisher's model as its code names it (recorded from their module
definitions by ``reference/segmenter_official_side.py`` and ``reference/setr_official_side.py``), each with how to
draw it, and one seed. The recording scripts fill the official models with :func:`weights_from_recipe` and record
what the official code computes; the tests regenerate the same weights from the recipe (no weights are stored).

Recipe JSON: ``{"seed": int, "keys": [[name, shape, kind, a, b], ...]}``, drawn in that order from one
``numpy.random.default_rng(seed)``: ``normal`` is ``a + b·N(0, 1)``, ``uniform`` is ``U(a, b)``, ``zeros`` draws
nothing. Float64 draws, stored as float32 (int64 for ``num_batches_tracked``).
"""

from __future__ import annotations

import numpy as np
import torch


def weights_from_recipe(recipe: dict) -> dict[str, torch.Tensor]:
    """The state dict a recipe describes, in the recipe's key order."""
    rng = np.random.default_rng(recipe["seed"])
    state = {}
    for name, shape, kind, a, b in recipe["keys"]:
        if kind == "normal":
            value = a + b * rng.standard_normal(shape)
        elif kind == "uniform":
            value = rng.uniform(a, b, shape)
        elif kind == "zeros":
            integer = name.endswith("num_batches_tracked")
            state[name] = torch.zeros(shape, dtype=torch.int64 if integer else torch.float32)
            continue
        else:
            raise ValueError(f"unknown draw {kind!r} for {name} in the recipe")
        state[name] = torch.from_numpy(np.asarray(value, dtype=np.float32).reshape(shape))
    return state


def meta_state_dict(layout: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """A module layout (key name -> shape) as meta-device tensors: what a file of that layout looks like to segzoo's
    architecture inference, without its weights."""
    return {name: torch.empty(shape, device="meta") for name, shape in layout.items()}
