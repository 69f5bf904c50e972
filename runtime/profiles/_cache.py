from __future__ import annotations

import time

from ..policy import GuidelineUse
from ..store import Store


class GuidelineCache:
    """The guidelines a profile's requests use, read from the store with a short cache (the
    same process sees an approval at once; other replicas within `ttl_s`)."""

    def __init__(self, store: Store, ttl_s: float = 2.0) -> None:
        self.store = store
        self._ttl = ttl_s
        self._hits: dict[tuple[str, GuidelineUse], tuple[int, float, tuple[str, ...]]] = {}

    def get(self, profile_id: str | None, use: GuidelineUse = GuidelineUse.APPROVED) -> tuple[str, ...]:
        if profile_id is None or use is GuidelineUse.OFF:
            return ()
        revision, now = self.store.guidelines.revision, time.monotonic()
        hit = self._hits.get((profile_id, use))
        if hit is not None and hit[0] == revision and now - hit[1] < self._ttl:
            return hit[2]
        current = self.store.guidelines.current(profile_id, use)
        items = tuple(current.items) if current is not None else ()
        self._hits[(profile_id, use)] = (revision, now, items)
        return items
