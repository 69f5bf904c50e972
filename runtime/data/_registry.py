"""The dataset registry: a name -> how to read its rows and turn them into records."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import data_dir
from ..errors import MissingDependencyError
from ._files import DatasetError
from ._records import Record

# read(root, subset) -> rows; parse(rows, subset) -> records. Split so that the same parser
# turns rows from the local files and rows from the Hugging Face hub into the same records.
Reader = Callable[[Path, str], Iterable[dict[str, Any]]]
Parser = Callable[[Iterable[dict[str, Any]], str], list[Record]]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    subsets: tuple[str, ...]
    default_subsets: tuple[str, ...]
    files: dict[str, str]  # subset -> file, relative to the data directory
    record_type: type[Record]
    read: Reader
    parse: Parser
    license: str = ""
    non_commercial: bool = False
    # Hugging Face hub id users can pull the same rows from when online (None: none known).
    hub: str | None = None
    # Share of the dataset's groups in the evaluation part (0: the dataset only trains).
    held_out_share: float = 0.5
    # Subsets that only ever train (a dataset's own training file): no evaluation part.
    train_only_subsets: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _REGISTRY:
        raise DatasetError(f"A dataset named {spec.name!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DatasetError(
            f"Unknown dataset {name!r}.",
            hint=f"Known datasets: {', '.join(sorted(_REGISTRY))}; or describe your own file "
            "with a YAML mapping (see specguard.data.load_custom).",
        ) from None


def registered_share(name: str, subset: str | None = None) -> float:
    """The evaluation share of a registered dataset (0 for its train-only subsets); the
    default for a user's own files."""
    from ._splits import HELD_OUT_SHARE

    spec = _REGISTRY.get(name)
    if spec is None:
        return HELD_OUT_SHARE
    return 0.0 if subset in spec.train_only_subsets else spec.held_out_share


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def _subsets(spec: DatasetSpec, subset: str | list[str] | None) -> list[str]:
    if subset is None:
        return list(spec.default_subsets)
    chosen = [subset] if isinstance(subset, str) else list(subset)
    if chosen == ["all"]:
        return list(spec.subsets)
    unknown = [s for s in chosen if s not in spec.subsets]
    if unknown:
        raise DatasetError(
            f"Dataset {spec.name!r} has no subset(s) {unknown}.",
            hint=f"Its subsets: {', '.join(spec.subsets)} (or 'all').",
        )
    return chosen


def load(
    name: str,
    *,
    subset: str | list[str] | None = None,
    data_dir_override: str | os.PathLike | None = None,
) -> list[Record]:
    """Load a registered dataset from the data directory (flag, else $SPECGUARD_DATA_DIR, else
    ../shared/data). `subset=None` loads the dataset's default subsets, "all" every subset."""
    spec = get_spec(name)
    root = data_dir(data_dir_override)
    records: list[Record] = []
    for sub in _subsets(spec, subset):
        records.extend(spec.parse(spec.read(root, sub), sub))
    return records


def import_hf_datasets() -> Any:
    try:
        import datasets as hf
    except ImportError as exc:
        raise MissingDependencyError(
            "Loading from the Hugging Face hub needs the `datasets` package.",
            hint="Install it with: pip install datasets (and be online), or use the local files.",
        ) from exc
    return hf


def load_from_hub(
    name: str,
    *,
    hub: str | None = None,
    subset: str | None = None,
    split: str = "train",
    config: str | None = None,
    rename: dict[str, str] | None = None,
    **load_kwargs: Any,
) -> list[Record]:
    """Load a registered dataset's rows with `datasets.load_dataset` (online users), then parse
    them with the same parser as the local files. `hub` overrides the registered hub id; a
    builder name with `data_files=` ("csv", "json") reads local files the same way. `rename`
    maps the hub's column names onto the local file's (hub copies often differ)."""
    spec = get_spec(name)
    source = hub or spec.hub
    if not source:
        raise DatasetError(
            f"Dataset {name!r} has no known Hugging Face hub id.", hint="Pass hub='owner/name'."
        )
    hf = import_hf_datasets()
    rows = hf.load_dataset(source, config, split=split, **load_kwargs)
    sub = subset or spec.default_subsets[0]
    mapping = rename or {}
    return spec.parse(({mapping.get(k, k): v for k, v in r.items()} for r in rows), sub)
