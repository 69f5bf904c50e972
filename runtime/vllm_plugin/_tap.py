"""The hidden states of the current step, handed from the model to the logits processor.

vLLM's model runner calls `compute_logits` and then the sampler (which runs the logits
processors) in the same process and thread, once per step, so one slot is enough."""

from __future__ import annotations

from typing import Any

_last: Any = None


def keep(hidden_states) -> None:
    global _last
    _last = hidden_states


def last():
    """The [rows, hidden] tensor of the last `compute_logits` call, or None before the first."""
    return _last
