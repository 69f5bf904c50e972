"""The relational store: specs with their history, and the audit log.

SQLite (one file, WAL mode) by default; PostgreSQL by URL for a fleet of replicas.
"""

from ._engine import make_engine
from ._specs import SpecStore
from .store import Store

__all__ = ["Store", "SpecStore", "make_engine"]
