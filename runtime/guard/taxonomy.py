"""Harm taxonomies as data (specs/taxonomies/*.yaml): BeaverTails' 14 categories and the
MLCommons hazard categories S1-S14. A policy picks one by name (PolicySettings.taxonomy)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = ""


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str = ""
    source: str = ""
    categories: tuple[Category, ...]

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.categories]

    def get(self, key: str) -> Category | None:
        """A category by id, or by its name (case-insensitive)."""
        k = key.strip().lower()
        for c in self.categories:
            if c.id.lower() == k or c.name.lower() == k:
                return c
        return None

    def normalise(self, labels: list[str]) -> list[str]:
        """Map what a checker wrote (ids or names) onto category ids; unknown labels are kept
        as written, so nothing a checker said is dropped silently."""
        out: list[str] = []
        for label in labels:
            c = self.get(label)
            key = c.id if c is not None else label.strip()
            if key and key not in out:
                out.append(key)
        return out

    def enabled(self, disabled: list[str]) -> list[Category]:
        off = {d.strip().lower() for d in disabled}
        return [c for c in self.categories if c.id.lower() not in off and c.name.lower() not in off]


def available_taxonomies() -> list[str]:
    folder = resources.files("specguard.specs") / "taxonomies"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


@lru_cache(maxsize=16)
def load_taxonomy(name: str = "beavertails") -> Taxonomy:
    """Load a built-in taxonomy by name ('beavertails' or 'mlcommons')."""
    path = resources.files("specguard.specs") / "taxonomies" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"Unknown taxonomy {name!r}.",
            hint=f"Use one of: {', '.join(available_taxonomies())}.",
        )
    try:
        return Taxonomy.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"taxonomies/{name}.yaml is invalid: {exc}") from exc
