"""The curated guideline library (specs/profiles/library.yaml and activities.yaml): for common
profile attributes (age bands, pregnancy, health conditions and medications, addiction and
recovery, mental health, disabilities, legal situations, jurisdictions, occupations with
duties), the activities to decline and why, with the reasoning or a source, and a safe
alternative to offer.

    lib = load_library()
    ids = lib.attributes_for(profile.attributes)      # what the admin picked
    items = lib.draft(ids)                             # a draft guideline list to edit and approve

Attributes an admin did not pick are suggested from the profile text by the profile check's
encoder (specguard.profiles.ProfileCheck.suggest_attributes); nothing here loads an encoder.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError
from ..policy import AgeBand, ProfileAttributes

LIBRARY_FILE = "library.yaml"
ACTIVITIES_FILE = "activities.yaml"


class AttributeKind(StrEnum):
    AGE = "age"
    PREGNANCY = "pregnancy"
    HEALTH_CONDITION = "health_condition"
    MEDICATION = "medication"
    ADDICTION_RECOVERY = "addiction_recovery"
    MENTAL_HEALTH = "mental_health"
    DISABILITY = "disability"
    LEGAL_SITUATION = "legal_situation"
    JURISDICTION = "jurisdiction"
    OCCUPATION = "occupation"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LibraryGuideline(_Strict):
    activity: str  # an id of activities.yaml
    decline: str = Field(min_length=3, max_length=300)  # the guideline text an admin approves
    why: str = Field(min_length=3)  # the reasoning
    source: str | None = None  # a public reference, where one is well known
    alternative: str | None = None  # the safe alternative a refusal may offer


class LibraryAttribute(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: AttributeKind
    name: str
    # How the structured ProfileAttributes fields map here (case-insensitive).
    aliases: list[str] = Field(default_factory=list)  # health_conditions entries
    age_bands: list[AgeBand] = Field(default_factory=list)
    jurisdictions: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    # Example first-person self-descriptions: what suggests the attribute from a profile text.
    profiles: list[str] = Field(min_length=1)
    guidelines: list[LibraryGuideline] = Field(min_length=1)


class Activity(_Strict):
    description: str
    requests: list[str] = Field(min_length=3)  # exemplar requests that engage in it


class _LibraryFile(_Strict):
    version: int
    attributes: list[LibraryAttribute]


class _ActivityFile(_Strict):
    version: int
    activities: dict[str, Activity]
    benign: list[str]
    general_profiles: list[str]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".")


class GuidelineLibrary:
    """The library, validated: every guideline names a known activity, ids are unique."""

    def __init__(self, attributes: list[LibraryAttribute], activities: dict[str, Activity],
                 benign: list[str], general_profiles: list[str], *, version: int = 1,
                 source: str = "<library>") -> None:
        self.version = version
        self.source = source
        self.attributes = {a.id: a for a in attributes}
        if len(self.attributes) != len(attributes):
            raise ConfigError(f"{source}: attribute ids must be unique.")
        self.activities = activities
        self.benign = list(benign)
        self.general_profiles = list(general_profiles)
        unknown = sorted({g.activity for a in attributes for g in a.guidelines} - set(activities))
        if unknown:
            raise ConfigError(f"{source}: guidelines name unknown activities {unknown}.",
                              hint="Add them to activities.yaml.")
        self._by_text: dict[str, tuple[LibraryAttribute, LibraryGuideline]] = {}
        for a in attributes:
            for g in a.guidelines:
                self._by_text.setdefault(_norm(g.decline), (a, g))

    @classmethod
    def load(cls, folder: str | Path | None = None) -> GuidelineLibrary:
        """The library in `folder` (library.yaml + activities.yaml); default: the shipped one."""
        base = Path(folder) if folder else Path(str(resources.files("specguard.specs") / "profiles"))
        lib, act = base / LIBRARY_FILE, base / ACTIVITIES_FILE
        for path in (lib, act):
            if not path.is_file():
                raise ConfigError(f"The guideline library file {path} is missing.",
                                  hint="Reinstall specguard, or pass a folder with library.yaml "
                                       "and activities.yaml.")
        try:
            lf = _LibraryFile.model_validate(yaml.safe_load(lib.read_text(encoding="utf-8")))
            af = _ActivityFile.model_validate(yaml.safe_load(act.read_text(encoding="utf-8")))
        except (yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"The guideline library in {base} is invalid: {exc}") from exc
        return cls(lf.attributes, af.activities, af.benign, af.general_profiles,
                   version=lf.version, source=str(base))

    # -- lookups ---------------------------------------------------------------------------

    def attribute(self, attribute_id: str) -> LibraryAttribute:
        try:
            return self.attributes[attribute_id]
        except KeyError:
            raise ConfigError(f"The guideline library has no attribute {attribute_id!r}.",
                              hint="Known attributes: " + ", ".join(sorted(self.attributes))
                              ) from None

    def guideline(self, text: str) -> tuple[LibraryAttribute, LibraryGuideline] | None:
        """The library entry whose text this is (case and spacing aside), if any."""
        return self._by_text.get(_norm(text))

    def attributes_for(self, attrs: ProfileAttributes) -> list[str]:
        """The library attributes an admin picked through a profile's structured attributes:
        `library_attributes` by id, then age band, health conditions (by alias), jurisdiction
        and role. Unknown library ids raise; free-text fields without a match are ignored (the
        profile text can still suggest attributes)."""
        picked: list[str] = []
        for aid in attrs.library_attributes:
            picked.append(self.attribute(aid).id)
        conditions = {_norm(c) for c in attrs.health_conditions}
        jurisdiction = _norm(attrs.jurisdiction) if attrs.jurisdiction else None
        role = _norm(attrs.role) if attrs.role else None
        for a in self.attributes.values():
            if attrs.age_band is not None and attrs.age_band in a.age_bands:
                picked.append(a.id)
            if conditions & {_norm(x) for x in a.aliases}:
                picked.append(a.id)
            if jurisdiction and jurisdiction in {_norm(x) for x in a.jurisdictions}:
                picked.append(a.id)
            if role and role in {_norm(x) for x in a.roles}:
                picked.append(a.id)
        return list(dict.fromkeys(picked))

    def draft(self, attribute_ids: list[str], max_items: int = 50) -> list[str]:
        """The guideline texts of these attributes, in order, each once."""
        items: list[str] = []
        for aid in attribute_ids:
            items.extend(g.decline for g in self.attribute(aid).guidelines)
        return list(dict.fromkeys(items))[:max_items]

    def alternative(self, text: str) -> str | None:
        found = self.guideline(text)
        return found[1].alternative if found else None

    def fingerprint(self) -> str:
        """A hash of everything the profile check's vectors depend on."""
        h = hashlib.sha256()
        for a in self.attributes.values():
            h.update(a.model_dump_json().encode())
        for k in sorted(self.activities):
            h.update(k.encode() + self.activities[k].model_dump_json().encode())
        h.update("\n".join(self.benign + self.general_profiles).encode())
        return h.hexdigest()[:16]


@lru_cache(maxsize=4)
def load_library(folder: str | None = None) -> GuidelineLibrary:
    """The shipped library (or the one in `folder`), loaded once per process."""
    return GuidelineLibrary.load(folder)
