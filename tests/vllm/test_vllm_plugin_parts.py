"""The parts of the vLLM integration that need no engine (they run in the fast suite): the
switches' wire form and validation, the recording format, the tap's engine and server
arguments, and how `vllm:` URIs and guided decoding map onto the server backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

from specguard.backends import load_backend
from specguard.errors import ConfigError
from specguard.types import GenerationParams, user
from specguard.vllm_plugin import (
    PROCESSOR,
    TapSwitches,
    read_record,
    tap_engine_args,
    tap_server_args,
)


def test_switches_travel_flat_and_come_back():
    sw = TapSwitches(toxic="tox", nontoxic="clean", alpha=1.5, k=64)
    xargs = sw.to_xargs()
    assert xargs == {"specguard_toxic": "tox", "specguard_nontoxic": "clean",
                     "specguard_alpha": 1.5, "specguard_k": 64}
    assert all(isinstance(v, (str, int, float)) for v in xargs.values())  # vllm_xargs types
    assert TapSwitches.from_xargs({**xargs, "other_plugin": 1}) == sw
    assert TapSwitches.from_xargs({"other_plugin": 1}) is None
    assert TapSwitches.from_xargs({"specguard_alpha": 3.0}) is None  # nothing to do


@pytest.mark.parametrize("xargs", [
    {"specguard_alhpa": 2.0},  # a typo is an error, not a silent default
    {"specguard_toxic": "../etc"},  # names only, never paths
    {"specguard_record": "/tmp/x"},
    {"specguard_k": 0},
])
def test_bad_switches_are_rejected(xargs):
    with pytest.raises(ValueError, match="specguard"):
        TapSwitches.from_xargs(xargs)


def test_read_record_reconstructs_contexts_and_pairs(tmp_path):
    # The layout the processor writes (see specguard.vllm_plugin._record).
    np.asarray([5, 6, 7], np.int32).tofile(tmp_path / "r.prompt.i32")
    keys = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
    keys.tofile(tmp_path / "r.keys.f32")
    np.asarray([7, 10, 11], np.int32).tofile(tmp_path / "r.last.i32")  # prompt end, then outputs
    rec = read_record("r", tmp_path)
    assert rec.keys.shape == (3, 4) and np.array_equal(rec.keys, keys)
    assert [rec.context(t) for t in range(3)] == [[5, 6, 7], [5, 6, 7, 10], [5, 6, 7, 10, 11]]
    k, nxt = rec.pairs()
    assert np.array_equal(k, keys[:2]) and nxt.tolist() == [10, 11]
    with pytest.raises(ConfigError, match="No tap recording"):
        read_record("missing", tmp_path)


def test_tap_arguments_follow_the_model_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    args = tap_engine_args(str(tmp_path))
    assert args == {"hf_overrides": {"architectures": ["SpecguardTapQwen2ForCausalLM"]},
                    "logits_processors": [PROCESSOR]}
    flags = tap_server_args(str(tmp_path))
    assert json.loads(flags[flags.index("--hf-overrides") + 1]) == args["hf_overrides"]
    assert flags[flags.index("--logits-processors") + 1] == PROCESSOR
    with pytest.raises(ConfigError, match="config.json"):
        tap_engine_args(str(tmp_path / "nowhere"))


def test_vllm_uris(monkeypatch):
    monkeypatch.delenv("SPECGUARD_VLLM_URL", raising=False)
    server = load_backend("vllm:Qwen/Qwen2.5-7B-Instruct", api_base="http://gpu:8000/v1")
    assert server.name == "vllm:Qwen/Qwen2.5-7B-Instruct"
    assert server.capabilities.constrained_output and server.capabilities.streaming
    assert load_backend("vllm:server:qwen", api_base="http://gpu:8000/v1").name == "vllm:qwen"
    engine = load_backend("vllm:engine:/models/qwen", dtype="bfloat16")
    assert engine.name == "vllm-engine:qwen" and engine.capabilities.hidden_states
    with pytest.raises(ConfigError, match="URL"):
        load_backend("vllm:qwen")
    with pytest.raises(ConfigError, match="needs a model"):
        load_backend("vllm:")


def test_server_request_body_uses_vllm_structured_outputs_and_xargs():
    schema = {"type": "object", "properties": {"label": {"enum": ["safe", "unsafe"]}}}
    backend = load_backend("vllm:qwen", api_base="http://gpu:8000/v1").with_switches(
        TapSwitches(toxic="tox", alpha=2.5)
    )
    kw = backend._kwargs([user("hi")], GenerationParams(json_schema=schema))
    assert "response_format" not in kw
    assert kw["extra_body"]["structured_outputs"] == {"json": schema}
    assert kw["extra_body"]["vllm_xargs"] == {"specguard_toxic": "tox", "specguard_alpha": 2.5}
    assert backend.with_switches(None)._kwargs([user("hi")], GenerationParams()).get(
        "extra_body", {}
    ).get("vllm_xargs") is None
