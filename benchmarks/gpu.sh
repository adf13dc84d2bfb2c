#!/usr/bin/env bash
# The GPU tier of lesson 05: train the MNIST U-Net from scratch on one GPU (bf16 autocast,
# torch.compile, batch 512, the train set on the device), then write benchmarks/gpu.md and gpu.json:
# classifier FID at n = 10 000 with its floor, images/s, and the minutes of training to each FID / floor level.
#
#     bash benchmarks/gpu.sh                     # the measurement; target: ≤ 5 min on one H100 to FID ≤ 2× floor
#     bash benchmarks/gpu.sh --steps 6000        # any flag of benchmarks/gpu_tier.py (python benchmarks/gpu_tier.py --help)
#
# The same code runs tiny on a CPU: python benchmarks/gpu_tier.py --device cpu ... (tests/test_gpu_tier.py does).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "benchmarks/gpu.sh: torch sees no CUDA GPU (install a CUDA build of PyTorch, see README 'GPU')." >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# MNIST: the four official files, checksums verified; fetched once when missing
"$PYTHON" -m minidiff.data.mnist verify >/dev/null || "$PYTHON" -m minidiff.data.mnist download
exec "$PYTHON" benchmarks/gpu_tier.py "$@"
