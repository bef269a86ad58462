#!/usr/bin/env bash
# Fetch, on a machine with PyPI, the wheels scripts/gpu_check.sh installs on a CUDA machine that
# has only torch, torchvision and the usual scientific stack (no network there):
#     scripts/gpu_wheels.sh DIR [PYTHON_VERSION]      (default 3.12; the x86-64 manylinux wheels)
# About 35 MB. faiss-cpu, not faiss-gpu: the GPU wheels with their CUDA libraries weigh ~1 GB;
# without them xmr searches on the GPU through torch (indexer.gpu.TorchCopy).
set -euo pipefail
dir=${1:?usage: scripts/gpu_wheels.sh DIR [PYTHON_VERSION]}
py=${2:-3.12}
mkdir -p "$dir"
platforms=()
for n in 2_17 2_27 2_28 2_31 2_34; do platforms+=(--platform "manylinux_${n}_x86_64"); done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 -d "$dir" \
    'open_clip_torch>=3.0' ftfy wcwidth 'sqlalchemy>=2.0' greenlet 'faiss-cpu>=1.8' platformdirs
ls -la "$dir"
