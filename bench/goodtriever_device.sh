#!/usr/bin/env bash
# The device check of issue 18, prepared for a lent GPU machine (torch + transformers, no
# FAISS, no vLLM, no network): Goodtriever's torch path at 10k, 100k and 1M keys a store,
# batch 1 and 16, plain decoding measured in the same run. About 2-3 minutes on an H100; the
# timeout keeps it under 8. Its summary comes back under $OUT; publish it with
#   cp <files_at>/goodtriever_device_gpu.json docs/results/ && python -m specguard.evals.scoreboard
# Run through the device tool from the repository root:
#   bash bench/goodtriever_device.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-/tmp/goodtriever_device}"
mkdir -p "$OUT"
python - <<'PY'
import torch, transformers
print("torch", torch.__version__, "transformers", transformers.__version__,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")
PY
timeout 420 python bench/goodtriever_device.py --device cuda --tokens 64 --repeats 3 \
    --out "$OUT/goodtriever_device_gpu.json" 2>&1 | tee "$OUT/goodtriever_device_gpu.log"
