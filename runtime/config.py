"""Process-wide settings read from the environment (flags override them in the CLI)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "SPECGUARD_DATA_DIR"
STORE_URL_ENV = "SPECGUARD_STORE"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Where the public safety datasets live: the flag, else $SPECGUARD_DATA_DIR, else
    ../shared/data relative to the working directory."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path("..") / "shared" / "data"


def store_url(override: str | None = None) -> str:
    return override or os.environ.get(STORE_URL_ENV) or "specguard.db"
