"""A bounded memory of what was derived from a text (its decoded views, its windows), keyed by
a digest of the text.

A chat server checks a conversation again after every turn, so the same earlier turns come
back on every request; the checker's unit scores are remembered (fast.py), and so is the work
before them, which otherwise cost most of a check whose scores were all remembered.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


def text_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TextCache(Generic[T]):
    """Least-recently-used, at most `size` texts; a text longer than `max_chars` is derived
    again each time rather than held (a 1 MB document would crowd out a thousand turns).
    Values are shared between callers: derive immutable ones (tuples)."""

    def __init__(self, size: int = 4096, max_chars: int = 65_536) -> None:
        self.size = size
        self.max_chars = max_chars
        self._items: OrderedDict[bytes, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, derive: Callable[[str], T]) -> T:
        return self.get_many([text], lambda batch: [derive(batch[0])])[0]

    def _key(self, text: str) -> bytes | None:
        """The text's key, or None for a text derived again each time."""
        return text_digest(text) if len(text) <= self.max_chars and self.size > 0 else None

    def get_many(self, texts: Sequence[str],
                 derive_many: Callable[[list[str]], Sequence[T]]) -> list[T]:
        """`get` for many texts: the ones not remembered are derived in one call (a batch),
        each distinct text once."""
        out: list[T | None] = [None] * len(texts)
        todo: dict[str, tuple[bytes | None, list[int]]] = {}  # text -> (its key, where)
        with self._lock:
            for i, text in enumerate(texts):
                key = self._key(text)
                if key is not None and key in self._items:
                    self._items.move_to_end(key)
                    out[i] = self._items[key]
                else:
                    todo.setdefault(text, (key, []))[1].append(i)
        if todo:
            values = list(derive_many(list(todo)))
            with self._lock:
                for (key, where), value in zip(todo.values(), values, strict=True):
                    for i in where:
                        out[i] = value
                    if key is not None:
                        self._items[key] = value
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return out  # type: ignore[return-value]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["TextCache", "text_digest"]
