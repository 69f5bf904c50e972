"""Ways of reaching a model, behind one `Backend` protocol.

`load_backend("embedded")` gives the in-process default model; `load_backend("litellm:<model>",
api_base=...)` any model litellm reaches. Heavy libraries are imported only when used.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import Backend, HiddenStateBackend, TokenStepBackend, TokenStepper


def load_backend(uri: str = "embedded", **options: Any) -> Backend:
    """Build a backend from a short URI.

    - ``embedded`` or ``embedded:/path/model.gguf``: llama.cpp in process
    - ``openai:<model>`` with ``api_base=``: any OpenAI-compatible server, lean httpx client
    - ``litellm:<litellm model>``, e.g. ``litellm:hosted_vllm/Qwen/Qwen2.5-7B-Instruct``
    - ``vllm:<served model>`` (or ``vllm:server:<served model>``): a vLLM server, with
      ``api_base=`` or $SPECGUARD_VLLM_URL; ``vllm:engine:/path/to/hf-folder``: vLLM in process
    """
    kind, _, rest = uri.partition(":")
    if kind == "embedded":
        from .embedded import EmbeddedBackend

        return EmbeddedBackend(rest or None, **options)
    if kind == "litellm":
        if not rest:
            raise ConfigError("litellm backend needs a model: litellm:<provider>/<model>")
        from .litellm import LiteLLMBackend

        return LiteLLMBackend(rest, **options)
    if kind == "vllm":
        mode, _, target = rest.partition(":")
        if mode not in ("server", "engine"):
            mode, target = "server", rest
        if not target:
            raise ConfigError("vllm backend needs a model: vllm:<served model> or vllm:engine:<path>")
        from .vllm import VLLMEngineBackend, VLLMServerBackend

        if mode == "engine":
            return VLLMEngineBackend(target, **options)
        return VLLMServerBackend(target, **options)
    if kind == "openai":
        if not rest or "api_base" not in options:
            raise ConfigError(
                "openai backend needs a model and api_base: openai:<model> with --api-base URL",
                hint="For hosted providers use litellm:<provider>/<model> instead.",
            )
        from .openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(rest, **options)
    if kind == "scripted":
        from .scripted import ScriptedBackend

        return ScriptedBackend(options.pop("script", [rest or "ok"]), **options)
    raise ConfigError(
        f"Unknown backend {uri!r}.",
        hint="Use 'embedded', 'embedded:/path/to/model.gguf' or 'litellm:<provider>/<model>'.",
    )


__all__ = ["Backend", "HiddenStateBackend", "TokenStepBackend", "TokenStepper", "load_backend"]
