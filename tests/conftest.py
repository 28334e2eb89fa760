"""Settings for every test: albumentations, W&B and the Hub telemetry offline, torch seeded before each test, and the
local fake Hugging Face Hub as the ``fake_hub`` fixture. Shared helpers live in ``tests/support`` (imported as
``support.<module>``); the layout of tests/ and the markers are in the README's "Development" section."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


from support.fakehub import fake_hub  # noqa: E402,F401  (the local fake Hugging Face Hub fixture)
