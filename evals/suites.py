"""Suites: what to evaluate, declared in YAML (built-ins ship in specguard/evals/suites/).

```yaml
name: refusal
datasets:                        # items come from these, sampled deterministically
  - name: advbench               # a registered dataset, or `custom: my_data.yaml`
    subset: harmful_behaviors    # alias: split
    where: {label: unsafe}       # keep records whose fields equal these values
    n: 16                        # or fraction: 0.1
    seed: 0
    group: harmful               # a display name for the report (default: dataset name)
    transform: {name: jailbreak, options: {templates: slotted}}
    part: held_out               # all (default) | held_out | train: a hash split of the records
methods: [{name: raw}, {name: runtime}]
judges: [{name: refusal_match}]
metrics: [refusal_rate, over_refusal_rate, {name: safety_rate, judge: refusal_match}]
generation: {max_tokens: 128, temperature: 0.0, samples: 1}
```
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import random
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError
from specguard.data import Record, in_part, load, load_custom


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransformConfig(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class DatasetEntry(_Strict):
    name: str | None = None
    custom: str | None = None
    subset: str | list[str] | None = Field(None, validation_alias=AliasChoices("subset", "split"))
    where: dict[str, Any] = Field(default_factory=dict)
    n: int | None = Field(None, ge=1)
    fraction: float | None = Field(None, gt=0.0, le=1.0)
    seed: int = 0
    group: str | None = None
    transform: TransformConfig | None = None
    # Which part of the shared split (specguard.data.record_part) to keep: `held_out` is what
    # no trainer sees and no choice is made on; `validation` is where choices are made.
    part: Literal["all", "held_out", "validation", "train"] = "all"
    # The evaluation share of the split; None: the dataset's registered share.
    held_out_share: float | None = Field(None, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetEntry:
        if (self.name is None) == (self.custom is None):
            raise ValueError("a dataset entry needs exactly one of `name` or `custom`")
        if self.n is not None and self.fraction is not None:
            raise ValueError("give `n` or `fraction`, not both")
        return self

    @property
    def display(self) -> str:
        return self.group or self.name or Path(self.custom or "").stem


class MethodConfig(_Strict):
    name: str
    label: str | None = None  # how the report names it (default: name); must be unique
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def display(self) -> str:
        return self.label or self.name


class JudgeConfig(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class MetricConfig(_Strict):
    name: str
    judge: str | None = None  # which judge's labels it reads (default: the metric's choice)
    options: dict[str, Any] = Field(default_factory=dict)


class GenerationConfig(_Strict):
    max_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    samples: int = Field(1, ge=1)  # continuations per prompt (RTP uses 25)
    logprobs: bool = False


class Suite(_Strict):
    name: str
    description: str = ""
    datasets: list[DatasetEntry] = Field(min_length=1)
    methods: list[MethodConfig] = Field(min_length=1)
    judges: list[JudgeConfig] = Field(default_factory=list)
    metrics: list[MetricConfig] = Field(default_factory=list)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    seed: int = 0
    # Modules to import before the run: they register methods, judges or transforms
    # (e.g. specguard.evals.metasc_methods).
    plugins: list[str] = Field(default_factory=list)
    concurrency: int = Field(1, ge=1)
    bootstrap: int = Field(1000, ge=0)
    # item: every method on an item before the next item (an interrupted run compares methods
    # on the same items); method: each method over all items in turn (methods sharing a model
    # do not reuse each other's cached prompts, so per-item times are fair).
    order: Literal["item", "method"] = "item"
    # Leave out every item whose prompt one of these suites uses: a second, disjoint look at
    # a part after the first one has been read (the same text may sit in several datasets or
    # subsets, so this compares prompts, not positions).
    disjoint_from: list[str] = Field(default_factory=list)
    # Where a suite file was read from: custom dataset paths are relative to it.
    base_dir: str | None = Field(None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("methods", "judges", "metrics"):
                data[key] = [{"name": v} if isinstance(v, str) else v
                             for v in data.get(key) or []]
        return data

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        labels = [m.display for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ValueError(f"method labels must be unique, got {labels} (set `label:`)")
        judges = [j.name for j in self.judges]
        if len(set(judges)) != len(judges):
            raise ValueError(f"a judge appears twice: {judges}")
        return self

    def fingerprint(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def import_plugins(modules: list[str]) -> None:
    """Import plug-in modules (suite `plugins:`, --plugin, $SPECGUARD_EVAL_PLUGINS)."""
    import importlib

    for name in [*modules, *filter(None, os.environ.get("SPECGUARD_EVAL_PLUGINS", "").split(","))]:
        try:
            importlib.import_module(name.strip())
        except ImportError as exc:
            raise ConfigError(f"Cannot import the eval plug-in {name!r}: {exc}",
                              hint="Check the module name and that its package is installed.",
                              ) from exc


def builtin_suites() -> list[str]:
    folder = importlib.resources.files("specguard.evals") / "suites"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.name.endswith(".yaml"))


def load_suite(name_or_path: str | os.PathLike) -> Suite:
    """A built-in suite by name (`refusal`), or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"Suite file {path} does not exist.")
        text, base = path.read_text(encoding="utf-8"), str(path.parent.resolve())
    else:
        res = importlib.resources.files("specguard.evals") / "suites" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"Unknown suite {str(name_or_path)!r}.",
                hint=f"Built-in suites: {', '.join(builtin_suites())}; or pass a YAML path.",
            )
        text, base = res.read_text(encoding="utf-8"), None
    try:
        data = yaml.safe_load(text)
        suite = Suite.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"Suite {str(name_or_path)!r} is invalid: {exc}") from exc
    suite.base_dir = base
    return suite


# --- items ----------------------------------------------------------------------------------


class EvalItem(BaseModel):
    """One prompt to evaluate: where it came from, what it asks, and its expected label."""

    key: str  # unique within a suite: group/dataset/subset/id[/transform]
    group: str
    dataset: str
    subset: str | None = None
    record_id: str
    prompt: str  # the record's own text: what judges see as the request
    request: str  # what the method is sent (after the transformation)
    harmful: bool | None = None
    label: str | None = None
    categories: list[str] = Field(default_factory=list)
    profile: str | None = None  # a user profile (U-SafeBench), never shown to judges
    transform: str | None = None


def _matches(record: Record, where: dict[str, Any]) -> bool:
    for key, want in where.items():
        if not hasattr(record, key):
            raise ConfigError(f"`where: {key}` is not a field of {type(record).__name__}.")
        if getattr(record, key) != want:
            return False
    return True


def sample_records(records: list[Record], entry: DatasetEntry) -> list[Record]:
    """Deterministic: a seeded sample of positions, kept in the dataset's order."""
    chosen = [r for r in records if _matches(r, entry.where)]
    if entry.part != "all":
        chosen = in_part(chosen, entry.part, entry.held_out_share)
    k = entry.n if entry.n is not None else (
        round(len(chosen) * entry.fraction) if entry.fraction is not None else None)
    if k is not None and k < len(chosen):
        positions = sorted(random.Random(entry.seed).sample(range(len(chosen)), k))
        chosen = [chosen[i] for i in positions]
    return chosen


def build_items(suite: Suite, *, data_dir: str | os.PathLike | None = None,
                _within: tuple[str, ...] = ()) -> list[EvalItem]:
    """Every item of the suite, entries interleaved round-robin (so that `--limit` keeps a mix).
    `_within`: the suites whose `disjoint_from` led here (a cycle has no answer)."""
    from .transforms import apply_transform

    per_entry: list[list[EvalItem]] = []
    for entry in suite.datasets:
        if entry.custom:
            base = Path(suite.base_dir) if suite.base_dir else Path.cwd()
            custom = Path(entry.custom)
            records = load_custom(custom if custom.is_absolute() else base / custom)
        else:
            records = load(entry.name or "", subset=entry.subset, data_dir_override=data_dir)
        records = sample_records(records, entry)
        items = [
            EvalItem(
                key=f"{entry.display}/{r.source}/{r.subset or '-'}/{r.id}", group=entry.display,
                dataset=r.source, subset=r.subset, record_id=r.id, prompt=r.text,
                request=r.text, harmful=r.harmful, label=r.label, categories=r.categories,
                profile=getattr(r, "profile", None),
            )
            for r in records
        ]
        if entry.transform:
            items = apply_transform(items, entry.transform, data_dir=data_dir)
        per_entry.append(items)
    seen: set[str] = set()
    chain = (*_within, suite.name)

    def refuse_cycle(name: str) -> None:
        if name in chain:
            what = "itself" if chain == (name,) else " -> ".join((*chain, name))
            raise ConfigError(f"Suite {suite.name!r} cannot be disjoint from {what}.",
                              hint="Name the suite whose prompts this one must leave out; "
                                   "two suites cannot each leave out the other's.")

    for other in suite.disjoint_from:
        refuse_cycle(other)  # by name, before loading it
        if Path(other).suffix in (".yaml", ".yml") and suite.base_dir \
                and not Path(other).is_absolute():
            other = str(Path(suite.base_dir) / other)  # a suite file beside this one
        first = load_suite(other)
        refuse_cycle(first.name)
        seen |= {it.prompt for it in build_items(first, data_dir=data_dir, _within=chain)}
    per_entry = [[it for it in items if it.prompt not in seen] for items in per_entry]
    out: list[EvalItem] = []
    for i in range(max((len(x) for x in per_entry), default=0)):
        out.extend(x[i] for x in per_entry if i < len(x))
    keys = [it.key for it in out]
    if len(set(keys)) != len(keys):
        raise ConfigError("Two suite entries produce the same items.",
                          hint="Give the entries different `group:` names.")
    return out
