"""What the vLLM tests share: the engine's environment, running a check script in the vLLM
venv, the prompt, the transformers reference."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from specguard.types import user

# The engine on a small CPU box: 1 GiB of KV cache, OpenMP on cores 0-1, nothing online.
ENGINE_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "0-1",
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "TRANSFORMERS_OFFLINE": "1",
}



def run_check(vllm_env, script: str, tag: str, timeout: int) -> dict:
    """Run tests/vllm/<script> with the vLLM venv's python on the converted model and return the
    JSON it printed after `tag` on its last tagged line (the script's stderr on failure)."""
    python, model = vllm_env
    proc = subprocess.run(
        [str(python), str(Path(__file__).with_name(script)), str(model)],
        env={**os.environ, **ENGINE_ENV}, capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(tag + " ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1].removeprefix(tag + " "))


PROMPT = [user("Name the capital of France in one short sentence.")]


def reference(hf_model, messages, max_new_tokens: int) -> str:
    """transformers' greedy answer for the same chat and weights."""
    import torch

    tok, lm = hf_model
    text = tok.apply_chat_template(
        [m.model_dump(mode="json") for m in messages], tokenize=False, add_generation_prompt=True
    )
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = lm.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
