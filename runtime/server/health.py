"""Liveness and readiness.

`/healthz` says the process answers. `/readyz` says whether it should get traffic: 200 when the
serving model (and every role's model) is loaded, the guard has loaded and answered its warm-up
checks (or the runtime has no guard), and the store answers a query within `STORE_TIMEOUT_S`;
else 503 with what is missing:

    {"status": "ready", "model": "...", "checks": {"model": "ok", "guard": "ok", "store": "ok"}}
    {"status": "loading", "checks": {"model": "ok", "guard": "loading", "store": "ok"}}
    {"status": "unavailable", "checks": {..., "store": "error: OperationalError"}}
    {"status": "draining", ...}  (shutting down: in-flight requests finish, none are taken)

The store is asked at most once a second (`STORE_TTL_S`), so a probe storm costs one query.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sqlalchemy import text

STORE_TIMEOUT_S = 2.0
STORE_TTL_S = 1.0


@dataclass
class Health:
    model: str = "loading"
    guard: str = "loading"
    draining: bool = False
    _store: tuple[float, str] = field(default=(0.0, "unknown"))

    async def load(self, runtime) -> None:
        """Load what the runtime serves with, marking each part as it becomes ready."""
        await runtime.backend.load()
        await runtime.roles.load()
        self.model = "ok"
        await runtime.load()  # idempotent for the models; warms the guard's fast tier
        self.guard = "ok" if runtime.guard is not None else "off"

    async def store(self, runtime) -> str:
        at, state = self._store
        if time.monotonic() - at < STORE_TTL_S:
            return state
        try:
            await asyncio.wait_for(runtime.store.run(_ping, runtime.store), STORE_TIMEOUT_S)
            state = "ok"
        except TimeoutError:
            state = f"error: no answer within {STORE_TIMEOUT_S:.0f} s"
        except Exception as exc:  # noqa: BLE001 (any failure of the store: not ready, never a 500)
            state = f"error: {type(exc).__name__}"
        self._store = (time.monotonic(), state)
        return state

    async def readiness(self, runtime) -> tuple[int, dict]:
        checks = {"model": self.model, "guard": self.guard, "store": await self.store(runtime)}
        ok = all(v in ("ok", "off") for v in checks.values())
        if self.draining:
            status = "draining"
        elif ok:
            return 200, {"status": "ready", "model": runtime.backend.name, "checks": checks}
        elif "loading" in checks.values():
            status = "loading"
        else:
            status = "unavailable"
        return 503, {"status": status, "checks": checks}


def _ping(store) -> None:
    with store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


__all__ = ["Health"]
