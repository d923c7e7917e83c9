#!/usr/bin/env bash
# The whole GPU check in one command (issue #23): gpu-marked tests, CUDA kernels against their CPU twins, the
# resident path's no-sync test, rtseg bench tiers a/b/c for Fast-SCNN and BiSeNetV1 at 1024x2048 on CUDA; one JSON
# and one Markdown summary under benchmarks/results/. Within 8 minutes; refuses to start where there is no GPU.
#   bash benchmarks/gpu_acceptance.sh          # on a machine with an NVIDIA GPU
#   bash benchmarks/gpu_acceptance.sh --dry    # anywhere (CI): checks that every step it names exists
# What each step runs: benchmarks/gpu_acceptance.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_acceptance.py "$@"
