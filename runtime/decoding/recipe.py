"""A datastore recipe: which texts go into the toxic and the non-toxic store, read from the
project's datasets (specguard.data), always from their TRAIN parts, so that nothing a
datastore holds is ever evaluated on or chosen on.

A recipe is a strict YAML file (`specguard datastore build --recipe FILE`); its hash, with the
key space of the model that encodes it, names the cache folder the stores are built in, so the
same recipe on the same model rebuilds (or resumes) the same stores:

```yaml
name: detox
description: toxic vs non-toxic text for Goodtriever
max_tokens: 128                # tokens read per document
sides:
  toxic:
    max_keys: 500000
    sources:
      - {dataset: davidson_hate_offensive, where: {harmful: true}}
      - {dataset: beavertails_sample, where: {harmful: true}, field: response}
  nontoxic:
    max_keys: 500000
    sources:
      - {dataset: hh_rlhf_harmless_test, field: chosen, role: assistant}
```

Documents of a side are taken round-robin over its sources (each source in a seeded order), so
a store cut short at `max_keys`, or by an interrupted build, holds a mix of every source.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError
from .corpora import Document

BUILTIN_RECIPES = Path(__file__).with_name("recipes")


class Side(StrEnum):
    TOXIC = "toxic"
    NONTOXIC = "nontoxic"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """One dataset's contribution to a side.

    - `field`: the record field holding the text (`text`, `answer`, `response`, ...); a field
      holding a conversation (a list of {role, content}) gives one document per turn of `role`.
    - `where`: keep records whose fields equal these values (e.g. {harmful: true}).
    - `limit`: at most this many documents from this source.
    """

    dataset: str
    subset: str | list[str] | None = None
    field: str = "text"
    role: str | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(None, ge=1)

    @property
    def label(self) -> str:
        sub = self.subset if isinstance(self.subset, str) else "+".join(self.subset or [])
        return self.dataset + (f"/{sub}" if sub else "") + (
            f"[{','.join(f'{k}={v}' for k, v in sorted(self.where.items()))}]" if self.where
            else "") + (f".{self.field}" if self.field != "text" else "")


class SideRecipe(_Strict):
    max_keys: int = Field(500_000, ge=1)
    sources: list[Source] = Field(min_length=1)


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    max_tokens: int = Field(128, ge=2, le=4096, description="tokens read per document")
    seed: int = 0
    index: str = Field("auto", pattern="^(auto|flat|ivfpq)$")
    sides: dict[Side, SideRecipe]

    def digest(self, model_sha256: str | None = None) -> str:
        """A short hash of the recipe and the encoding model: the cache folder's suffix."""
        blob = json.dumps({"recipe": self.model_dump(mode="json", exclude={"description"}),
                           "model": model_sha256}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @classmethod
    def load(cls, path_or_name: str | Path) -> Recipe:
        """A recipe file, or the name of a built-in recipe (specguard/decoding/recipes/)."""
        path = Path(path_or_name).expanduser()
        if not path.is_file():
            builtin = BUILTIN_RECIPES / f"{path_or_name}.yaml"
            if not builtin.is_file():
                names = sorted(p.stem for p in BUILTIN_RECIPES.glob("*.yaml"))
                raise ConfigError(f"No recipe file {path}.",
                                  hint=f"Give a YAML path or a built-in recipe: {', '.join(names)}.")
            path = builtin
        import yaml

        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"Recipe {path} is invalid: {exc}",
                              hint="See specguard.decoding.recipe for the format.") from exc


def _value(record: Any, field: str) -> Any:
    if not hasattr(record, field):
        raise ConfigError(f"{type(record).__name__} ({record.source}) has no field {field!r}.",
                          hint=f"Fields: {', '.join(type(record).model_fields)}.")
    return getattr(record, field)


def source_documents(source: Source, *, data_dir: str | Path | None = None) -> list[Document]:
    """The TRAIN-part documents of one source, ids `<dataset>:<record id>[#turn]`."""
    from ..data import Part, in_part, load

    records = in_part(load(source.dataset, subset=source.subset, data_dir_override=data_dir),
                      Part.TRAIN)
    out: list[Document] = []
    for r in records:
        if any(_value(r, k) != v for k, v in source.where.items()):
            continue
        value = _value(r, source.field)
        rid = f"{source.dataset}:{r.subset + '/' if r.subset else ''}{r.id}"
        if isinstance(value, list):  # a conversation: one document per turn of `role`
            for i, turn in enumerate(value):
                turn = turn if isinstance(turn, dict) else getattr(turn, "__dict__", None)
                if not isinstance(turn, dict) or "content" not in turn:
                    raise ConfigError(f"{source.dataset}.{source.field} is not a list of turns.")
                if source.role is None or str(turn.get("role")) == source.role:
                    text = str(turn.get("content") or "").strip()
                    if text:
                        out.append(Document(f"{rid}#{i}", text))
        elif value:
            text = str(value).strip()
            if text:
                out.append(Document(rid, text))
        if source.limit is not None and len(out) >= source.limit:
            out = out[: source.limit]
            break
    return out


def side_documents(recipe: Recipe, side: Side, *, data_dir: str | Path | None = None
                   ) -> tuple[list[Document], dict[str, str]]:
    """A side's documents in build order (round-robin over its sources, each shuffled with the
    recipe's seed; duplicates of an id kept once) and each document's source label."""
    per_source: list[tuple[str, list[Document]]] = []
    for i, source in enumerate(recipe.sides[side].sources):
        docs = source_documents(source, data_dir=data_dir)
        random.Random(f"{recipe.seed}:{side}:{i}").shuffle(docs)
        per_source.append((source.label, docs))
    order: list[Document] = []
    label_of: dict[str, str] = {}
    for j in range(max((len(d) for _, d in per_source), default=0)):
        for label, docs in per_source:
            if j < len(docs) and docs[j].id not in label_of:
                order.append(docs[j])
                label_of[docs[j].id] = label
    return order, label_of


def iter_sources(recipe: Recipe) -> Iterator[tuple[Side, Source]]:
    for side, part in recipe.sides.items():
        for source in part.sources:
            yield side, source


__all__ = ["Recipe", "Side", "SideRecipe", "Source", "side_documents", "source_documents"]
