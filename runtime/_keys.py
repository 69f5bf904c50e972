from __future__ import annotations

import hashlib


def hash_key(key: str) -> str:
    """What a policy file stores for an API key (its SHA-256, never the key): light on purpose,
    so `specguard hash-key` loads nothing else."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
