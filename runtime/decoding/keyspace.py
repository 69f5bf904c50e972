"""What a datastore's keys mean: the model, the hook where the hidden state is read, the
dimension and the tokenizer. Two key spaces must match before a store can be queried."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .errors import DatastoreMismatchError


class Hook(StrEnum):
    # The last layer's output after the final norm: the input of the LM head. llama.cpp's
    # embeddings with pooling none; transformers' hidden_states[-1] for Llama-type models.
    FINAL_NORM = "final_norm"


class ModelId(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    path: str | None = None
    sha256: str | None = None  # of the weights file, when there is one


class TokenizerId(BaseModel):
    model_config = ConfigDict(frozen=True)

    vocab_size: int
    sample_hash: str  # sha256 of a fixed sample of token strings


class KeySpace(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: ModelId
    hook: Hook
    dim: int
    tokenizer: TokenizerId

    def check(self, other: KeySpace, *, what: str = "datastore") -> None:
        """Raise DatastoreMismatchError unless `other` (the asking model) matches this one."""
        problems = []
        if self.model.sha256 and other.model.sha256:
            if self.model.sha256 != other.model.sha256:
                problems.append(
                    f"model {self.model.name} (sha256 {self.model.sha256[:12]}) vs "
                    f"{other.model.name} (sha256 {other.model.sha256[:12]})"
                )
        elif self.model.name != other.model.name:
            problems.append(f"model {self.model.name} vs {other.model.name}")
        if self.hook != other.hook:
            problems.append(f"hook {self.hook} vs {other.hook}")
        if self.dim != other.dim:
            problems.append(f"dimension {self.dim} vs {other.dim}")
        if self.tokenizer != other.tokenizer:
            problems.append(
                f"tokenizer (vocab {self.tokenizer.vocab_size}) vs (vocab "
                f"{other.tokenizer.vocab_size}) or different token strings"
            )
        if problems:
            raise DatastoreMismatchError(
                f"The {what} was built for another model: " + "; ".join(problems) + ".",
                hint="Rebuild it for this model with `specguard datastore build`, or load the "
                "model it was built with.",
            )


# token ids sampled for the tokenizer fingerprint (clipped to the vocabulary)
_SAMPLE_IDS = (0, 1, 2, 3, 10, 100, 256, 1000, 5000, 10000, 30000, 49151)


def tokenizer_id(vocab_size: int, token_text: Callable[[int], bytes | str]) -> TokenizerId:
    h = hashlib.sha256()
    for i in sorted({min(i, vocab_size - 1) for i in _SAMPLE_IDS} | {vocab_size - 1}):
        t = token_text(i)
        h.update(t if isinstance(t, bytes) else t.encode("utf-8"))
        h.update(b"\x00")
    return TokenizerId(vocab_size=vocab_size, sample_hash=h.hexdigest()[:16])


_HASHES: dict[tuple[str, int, float], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, cached per (path, size, mtime) for the process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime)
    if key not in _HASHES:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


__all__ = ["Hook", "KeySpace", "ModelId", "TokenizerId", "file_sha256", "tokenizer_id"]
