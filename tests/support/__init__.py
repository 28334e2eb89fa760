"""Helpers shared by segzoo's tests, imported as ``support.<module>`` (pytest puts ``tests/`` on ``sys.path``:
``pythonpath`` in pyproject.toml; the subprocess workers get it through ``PYTHONPATH``, see :mod:`support.processes`).

- :mod:`support.fakehub`: a local Hugging Face Hub (the ``fake_hub`` fixture, made available to every test by
  ``tests/conftest.py``)
- :mod:`support.checkpoint_formats`: segzoo weights written in foreign checkpoint layouts; a transformers SegFormer
  served as the nvidia/* Hub repos hold it
- :mod:`support.official_weights`: seeded weights of the official Segmenter / SETR module layouts
- :mod:`support.fake_datasets`: tiny datasets in the official folder layouts
- :mod:`support.inference_toys`: toy models with known logits
- :mod:`support.lit_helpers`: a tiny network, data and callbacks for the training tests
- :mod:`support.processes`: subprocesses killed as a whole on overrun (multi-process and signal tests)
- :mod:`support.recipes`: what each training recipe resolves to, parsed once per test session
- ``ddp_worker.py``, ``nan_ddp_worker.py``: scripts run by path (``python tests/support/ddp_worker.py``), never
  imported by pytest's collection
"""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
ASSETS = TESTS / "assets"  # recorded test data: resolved recipes, photos, the official codes' recordings
