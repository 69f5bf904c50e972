"""VLLMEngineBackend (vLLM in process) through the Backend protocol: greedy text equal to
transformers', streaming, batching, logprobs, and hidden states read by the tap.

vllm lives in its own venv, so the backend runs there (engine_check.py, a subprocess) and this
test compares what it printed with transformers here."""

from __future__ import annotations

import pytest
from _vllm_common import PROMPT, reference, run_check

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine_result(vllm_env):
    return run_check(vllm_env, "engine_check.py", "ENGINE_CHECK", timeout=600)


def test_engine_text_stream_and_batch(engine_result, hf_model):
    text = engine_result["complete"]["text"]
    assert text == reference(hf_model, PROMPT, 12)
    assert engine_result["stream_text"] == text
    assert engine_result["stream_last"]["usage"]["completion_tokens"] == (
        engine_result["complete"]["usage"]["completion_tokens"]
    )
    assert engine_result["batch"][0] == text  # batched with others, the same greedy answer
    assert all(engine_result["batch"][1:])
    lps = engine_result["logprobs"]
    assert len(lps) == engine_result["complete"]["usage"]["completion_tokens"]
    assert all(lp["logprob"] <= 0 and lp["top"] for lp in lps)


def test_engine_hidden_states_equal_transformers(engine_result, hf_model):
    import numpy as np
    import torch

    tok, lm = hf_model
    ids = tok(engine_result["hidden_text"], add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        expected = lm(**ids, output_hidden_states=True).hidden_states[-1][0, -1].numpy()
    got = np.asarray(engine_result["hidden"], dtype=np.float32)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-3 * np.abs(expected).max())
