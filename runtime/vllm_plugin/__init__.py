"""specguard inside a vLLM engine: a hidden-state tap and a logits processor.

vLLM computes the final normalised hidden state of every row it is about to sample and hands
it to the model's `compute_logits`. The tap is a subclass of the model class whose
`compute_logits` keeps that tensor for the current step; `SpecguardLogitsProcessor` reads it,
maps rows to requests through `update_state` only, and per request (switches in
`SamplingParams.extra_args`, or `vllm_xargs` in an HTTP body) records the states to disk or
steers the next token with Goodtriever retrieval (specguard.decoding).

How it is wired (nothing here imports vllm or torch):
- `register` is the `vllm.general_plugins` entry point: vLLM calls it in every process it
  spawns, and it registers `SpecguardTap<Arch>` for each architecture vLLM knows (lazily, by
  name; nothing is imported until the engine resolves one).
- The engine selects the tap with `hf_overrides={"architectures": [tap_architecture(arch)]}`
  (`tap_engine_args` builds both settings) and loads the processor by `PROCESSOR`.
"""

from __future__ import annotations

from typing import Any

from ._record import TapRecord, read_record
from ._switches import DATASTORE_ROOT_ENV, RECORD_ROOT_ENV, SEARCH_ENV, XARG_PREFIX, TapSwitches

TAP_PREFIX = "SpecguardTap"
PROCESSOR = "specguard.vllm_plugin.processor:SpecguardLogitsProcessor"


def tap_architecture(arch: str) -> str:
    """The tap's architecture name for one of vLLM's, e.g. LlamaForCausalLM."""
    return arch if arch.startswith(TAP_PREFIX) else f"{TAP_PREFIX}{arch}"


def model_architecture(model: str) -> str:
    """The architecture a local Hugging Face folder declares in its config.json."""
    import json
    from pathlib import Path

    from ..errors import ConfigError

    config = Path(model) / "config.json"
    if not config.is_file():
        raise ConfigError(
            f"{model} has no config.json, so the tap cannot tell its architecture.",
            hint="Pass the architecture explicitly, e.g. tap_engine_args(model, 'LlamaForCausalLM').",
        )
    archs = json.loads(config.read_text()).get("architectures") or []
    if not archs:
        raise ConfigError(f"{config} names no architectures.")
    return archs[0]


def tap_engine_args(model: str, arch: str | None = None) -> dict[str, Any]:
    """Engine arguments that turn the tap on: the overridden architecture and the processor.
    Pass them to `vllm.LLM(...)`/`AsyncEngineArgs(...)`; for `vllm serve` use
    `--hf-overrides` and `--logits-processors` with the same values."""
    return {
        "hf_overrides": {"architectures": [tap_architecture(arch or model_architecture(model))]},
        "logits_processors": [PROCESSOR],
    }


def tap_server_args(model: str, arch: str | None = None) -> list[str]:
    """The same settings as `tap_engine_args`, as flags for `vllm serve` (or
    `python -m vllm.entrypoints.openai.api_server`)."""
    import json

    args = tap_engine_args(model, arch)
    return [
        "--hf-overrides", json.dumps(args["hf_overrides"]),
        "--logits-processors", *args["logits_processors"],
    ]


def register() -> None:
    """Entry point of the `vllm.general_plugins` group (runs in every vLLM process)."""
    from vllm import ModelRegistry

    for arch in sorted(ModelRegistry.get_supported_archs()):
        if arch.startswith(TAP_PREFIX) or not arch.endswith("ForCausalLM"):
            continue
        name = tap_architecture(arch)
        if name not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(name, f"specguard.vllm_plugin._models:{name}")


def __getattr__(name: str):  # the processor class needs vllm: import it only when asked
    if name == "SpecguardLogitsProcessor":
        from .processor import SpecguardLogitsProcessor

        return SpecguardLogitsProcessor
    raise AttributeError(name)


__all__ = [
    "DATASTORE_ROOT_ENV",
    "SEARCH_ENV",
    "PROCESSOR",
    "RECORD_ROOT_ENV",
    "TAP_PREFIX",
    "XARG_PREFIX",
    "SpecguardLogitsProcessor",
    "TapRecord",
    "TapSwitches",
    "model_architecture",
    "read_record",
    "register",
    "tap_architecture",
    "tap_engine_args",
    "tap_server_args",
]
