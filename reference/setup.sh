#!/usr/bin/env bash
# Builds the reference environment for the mmsegmentation parity tests (reference/README.md) from scratch:
# a fresh venv with the CPU torch 2.13.0 wheel, then mmsegmentation 1.2.2 on mmcv-lite 2.1.0 (mmseg 1.2.2 asserts
# mmcv < 2.2.0) and mmengine 0.10.7, with torch pinned by reference/constraints.txt; ftfy and regex are imported by
# mmseg unconditionally; scikit-image provides the test photo (skimage.data's rocket.jpg).
#   bash reference/setup.sh [VENV]     (default: .venv-mmseg at the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-mmseg}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
start=$SECONDS
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q -c reference/constraints.txt \
    mmcv-lite==2.1.0 mmengine==0.10.7 mmsegmentation==1.2.2 ftfy regex scikit-image
"$VENV/bin/python" - <<'PY'
import torch, mmengine, mmcv, skimage.data, os
print("reference env: torch", torch.__version__, "mmengine", mmengine.__version__, "mmcv", mmcv.__version__,
      "rocket.jpg" if os.path.exists(os.path.join(os.path.dirname(skimage.data.__file__), "rocket.jpg")) else "NO PHOTO")
PY
"$VENV/bin/python" -c "import runpy, sys; sys.argv = ['mmseg_side.py', '--help']; runpy.run_path('reference/mmseg_side.py', run_name='__main__')" > /dev/null
echo "reference env $VENV ready in $((SECONDS - start)) s"
