"""Train, validate, test and predict segzoo models with LightningCLI (the same as the ``segzoo train`` command).

    python train.py fit --config configs/quickstart.yaml
    python train.py fit --config configs/segformer/segformer-b0-ade.yaml --data.data_root data/ade
    python train.py validate --config configs/segformer/segformer-b0-ade.yaml --ckpt_path runs/.../last.ckpt
    python train.py fit --config configs/segformer/segformer-b0-ade.yaml --ckpt_path last  # resume

Everything is in :mod:`segzoo.training` (``SegzooCLI``): data→model links, the best-mIoU checkpoint, the rolling
``last.ckpt``, the SIGTERM watchdog (exit status 143) and the refusal of a checkpoint of another architecture.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from segzoo.training import main  # noqa: E402  (after the environment variable above)

if __name__ == "__main__":
    main()
