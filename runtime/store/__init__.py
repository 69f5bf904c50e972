"""The relational store: specs with their history, users, profiles, API keys (hashed), derived
profile guidelines, and the audit log.

SQLite (one file, WAL mode) by default; PostgreSQL by URL for a fleet of replicas.
"""

from ._engine import make_engine
from ._guidelines import GuidelineSet, GuidelineStatus, GuidelineStore
from ._specs import SpecStore
from ._users import DirectoryChange, DirectorySnapshot, UserStore
from .store import Store

__all__ = [
    "DirectoryChange",
    "DirectorySnapshot",
    "GuidelineSet",
    "GuidelineStatus",
    "GuidelineStore",
    "SpecStore",
    "Store",
    "UserStore",
    "make_engine",
]
