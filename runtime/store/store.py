from __future__ import annotations

from sqlalchemy import Engine

from ..spec import builtin_specs
from . import _audit
from ._engine import make_engine
from ._schema import metadata
from ._guidelines import GuidelineStore
from ._specs import SpecStore
from ._users import UserStore


class Store:
    """All persistent state of one deployment. Create once per process and share."""

    def __init__(self, url: str = "specguard.db", *, seed_builtin: bool = True) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        metadata.create_all(self.engine)
        self.specs = SpecStore(self.engine)
        self.users = UserStore(self.engine)
        self.guidelines = GuidelineStore(self.engine)
        if seed_builtin:
            self.specs.seed(builtin_specs())

    def audit(self, limit: int = 100) -> list[dict]:
        with self.engine.connect() as conn:
            return _audit.read(conn, limit)

    def close(self) -> None:
        self.engine.dispose()
