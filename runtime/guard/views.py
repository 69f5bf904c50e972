"""Obfuscated text, read the way the model it is aimed at will read it: base64 blobs decoded,
leetspeak digits read as letters, character-spaced words joined.

A request hidden that way is a request a check that reads only the surface can be walked
around with: the served model decodes it, the fast tier's n-grams and encoders mostly do not.
The input check scores each such view as well as the text itself, and the riskier counts.
Views are derived text, never a replacement: the surface is always scored too.
"""

from __future__ import annotations

import base64
import binascii
import re

from ..encoders import deleet, looks_english
from .textcache import TextCache

# A run of base64 (standard or URL-safe alphabet) long enough to hide a sentence.
_B64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
MAX_BLOBS = 16  # decoded per text: the cost of a check stays bounded
MIN_PRINTABLE = 0.9  # share of a decoded blob's characters that must be printable text
MIN_SPACED_TOKENS = 8
SPACED_SHARE = 0.8  # of the space-separated tokens that are single characters
# Every check re-reads a conversation's earlier turns: their views are remembered (textcache).
_cache: TextCache[tuple[tuple[str, str], ...]] = TextCache()


def views(text: str) -> list[tuple[str, str]]:
    """(kind, text) for each reading of `text` that differs from it: "base64", "leetspeak",
    "spaced". Empty for ordinary text."""
    return list(_cache.get(text, lambda t: tuple(read_views(t))))


def clear_cache() -> None:
    _cache.clear()


def read_views(text: str) -> list[tuple[str, str]]:
    """`views` without the cache."""
    out = []
    decoded = _decode_base64(text)
    if decoded is not None:
        out.append(("base64", decoded))
    if not looks_english(text):
        plain = deleet(text)
        if plain != text and looks_english(plain):
            out.append(("leetspeak", plain))
    joined = _unspaced(text)
    if joined is not None:
        out.append(("spaced", joined))
    return out


def _decode_base64(text: str) -> str | None:
    """`text` with each base64 blob that decodes to printable UTF-8 text replaced by that
    text (the instruction around it kept), or None when none does."""
    found = 0

    def replace(m: re.Match[str]) -> str:
        nonlocal found
        if found >= MAX_BLOBS:
            return m.group(0)
        blob = m.group(0)
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4),
                                   altchars=b"-_" if ("-" in blob or "_" in blob) else None,
                                   validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            return blob
        printable = sum(c.isprintable() or c in "\n\t" for c in decoded)
        if not decoded.strip() or printable < MIN_PRINTABLE * len(decoded) \
                or not any(c.isalpha() for c in decoded):
            return blob
        found += 1
        return decoded

    out = _B64.sub(replace, text)
    return out if found else None


def _unspaced(text: str) -> str | None:
    """"H o w   d o   I" -> "How do I": words of single characters joined, words kept apart
    where two or more spaces stood."""
    tokens = text.split()
    if len(tokens) < MIN_SPACED_TOKENS:
        return None
    if sum(len(t) == 1 for t in tokens) < SPACED_SHARE * len(tokens):
        return None
    words = [w.replace(" ", "") for w in re.split(r"\s{2,}", text.strip())]
    joined = " ".join(w for w in words if w)
    return joined if joined != text else None
