#!/usr/bin/env bash
# One-shot GPU measurement: WRN-28-10 epochs across precision/layout/compile, the suite's
# step/update/data-path ratios at batch 128, packing of 1/2/4 trials, lam_max on WRN-28-10.
# About 8 minutes on one H200; writes benchmarks/perf/results/<gpu-name>/ (Parquet,
# figures/, summary.md). Commit that folder and put the numbers in benchmarks/deep/README.md.
#
#   benchmarks/gpu/run.sh            # on a machine with one CUDA GPU
#   benchmarks/gpu/run.sh --tiny     # CPU check of the script end to end (numbers mean nothing)
#   benchmarks/gpu/run.sh --out DIR  # elsewhere
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
export MPLBACKEND=Agg
exec "$PYTHON" benchmarks/gpu/measure.py "$@"
