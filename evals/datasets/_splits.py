"""Deterministic held-out splits: a record's part is a hash of its dataset and id, so a trainer
and an evaluator agree on what is held out without storing a list of items."""

from __future__ import annotations

import hashlib

HELD_OUT_SHARE = 0.5


def held_out(source: str, record_id: str, share: float = HELD_OUT_SHARE) -> bool:
    """Whether the record `source:record_id` is in the held-out part (`share` of each dataset)."""
    h = int(hashlib.sha256(f"{source}:{record_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < share
