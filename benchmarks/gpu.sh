#!/usr/bin/env bash
# Every benchmark and the parity report on a machine with a CUDA GPU.
#
# Assumes jax with CUDA support and a CUDA build of torch are installed already
# (nothing is downloaded). Prints the machine and the date first, so the output can
# go into benchmarks/RESULTS.md as it is.
#
#   bash benchmarks/gpu.sh [--quick]      # --quick is passed on to the benchmarks
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# jax and torch share the GPU in the parity report: allocate on demand rather than
# letting jax take 75% of the memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

date -u '+%Y-%m-%d %H:%M UTC'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python - <<'PY'
import jax
import torch

print(f"jax {jax.__version__}: {jax.devices()}")
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"torch {torch.__version__}: {gpu}")
if jax.default_backend() != "gpu" or not torch.cuda.is_available():
    raise SystemExit("jax and torch must both see the GPU")
PY

python -m benchmarks "$@"
python -m parity_tests
