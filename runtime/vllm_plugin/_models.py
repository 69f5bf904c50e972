"""Tap subclasses of vLLM's model classes, made on first use: `SpecguardTapLlamaForCausalLM`
is `LlamaForCausalLM` whose `compute_logits` keeps the hidden states it was given.

Only the engine's processes import this module (vLLM resolves a registered architecture by
importing `specguard.vllm_plugin._models` and reading the class name from it)."""

from __future__ import annotations

from . import _tap

_PREFIX = "SpecguardTap"


def __getattr__(name: str):
    if not name.startswith(_PREFIX):
        raise AttributeError(name)
    from vllm import ModelRegistry

    base_arch = name[len(_PREFIX):]
    registered = ModelRegistry.models.get(base_arch)
    if registered is None:
        raise AttributeError(f"vLLM knows no architecture {base_arch!r} to tap")
    base = registered.load_model_cls()

    def compute_logits(self, hidden_states):
        # The rows vLLM is about to sample, after the final norm, in the sampler's row order.
        _tap.keep(hidden_states)
        return base.compute_logits(self, hidden_states)

    cls = type(name, (base,), {"compute_logits": compute_logits, "__module__": __name__})
    globals()[name] = cls
    return cls
