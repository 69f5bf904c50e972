"""Users' own datasets: a CSV, JSONL or JSON file plus a small YAML mapping, no code.

```yaml
name: my_prompts            # becomes the records' `source`
path: my_prompts.csv        # relative to the YAML file (or absolute)
columns:                    # file column -> record field
  question: text            # required: one column maps to `text`
  qid: id                   # optional (default: row number)
  verdict: label            # optional: the dataset's own label
  topic: categories         # optional: split on `category_separator`
harmful_labels: [unsafe]    # optional: label values meaning harmful (others: not harmful)
category_separator: ","
```
Columns not named in `columns` are kept in the record's `extra`. Instead of `path`, `hub:
owner/name` (+ `split`, `config`) reads the rows with Hugging Face `datasets` when online.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._files import DatasetError, read_csv, read_json, read_jsonl
from ._records import CustomRecord, Record
from ._registry import import_hf_datasets

FieldName = Literal["text", "id", "label", "categories", "harmful", "subset"]


class CustomDataset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str | None = None
    format: Literal["csv", "jsonl", "json"] | None = None  # default: from the file suffix
    hub: str | None = None
    split: str = "train"
    config: str | None = None
    columns: dict[str, FieldName]
    harmful_labels: list[str] = Field(default_factory=list)
    category_separator: str = ","

    @model_validator(mode="after")
    def _check(self) -> CustomDataset:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` (a local file) or `hub` (a hub id)")
        targets = list(self.columns.values())
        if targets.count("text") != 1:
            raise ValueError("exactly one column must map to `text`")
        dupes = {t for t in targets if targets.count(t) > 1}
        if dupes:
            raise ValueError(f"several columns map to {sorted(dupes)}")
        return self


def read_mapping(path: str | os.PathLike) -> CustomDataset:
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"Dataset mapping {file} does not exist.")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        return CustomDataset.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise DatasetError(f"Dataset mapping {file} is invalid: {exc}") from exc


def _rows(spec: CustomDataset, base: Path) -> list[dict[str, Any]]:
    if spec.hub:
        hf = import_hf_datasets()
        return [dict(r) for r in hf.load_dataset(spec.hub, spec.config, split=spec.split)]
    file = Path(spec.path or "")
    file = file if file.is_absolute() else base / file
    if not file.is_file():
        raise DatasetError(
            f"Dataset {spec.name!r}: the file {file} does not exist.",
            hint="`path` is relative to the folder of the YAML mapping.",
        )
    fmt = spec.format or file.suffix.lstrip(".").lower()
    if fmt == "csv":
        return read_csv(file)
    if fmt == "jsonl":
        return list(read_jsonl(file))
    if fmt == "json":
        data = read_json(file)
        if not isinstance(data, list):
            raise DatasetError(f"{file}: a JSON dataset must be a list of objects.")
        return data
    raise DatasetError(f"{file}: unknown format {fmt!r}.", hint="Set `format: csv|jsonl|json`.")


def _truthy(value: Any) -> bool | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "unsafe", "harmful"):
        return True
    if text in ("0", "false", "no", "safe", "harmless", "benign"):
        return False
    raise DatasetError(f"harmful column value {value!r} is not a yes/no value.")


def records_from_rows(spec: CustomDataset, rows: list[dict[str, Any]]) -> list[Record]:
    by_field = {target: column for column, target in spec.columns.items()}
    harmful_set = {h.lower() for h in spec.harmful_labels}
    out: list[Record] = []
    for i, row in enumerate(rows):
        missing = [c for c in spec.columns if c not in row]
        if missing:
            raise DatasetError(
                f"Dataset {spec.name!r} row {i}: no column(s) {missing} (has {sorted(row)})."
            )
        def get(name: str, row: dict[str, Any] = row) -> Any:
            return row.get(by_field[name]) if name in by_field else None

        label = get("label")
        label = None if label is None or str(label) == "" else str(label)
        if "harmful" in by_field:
            harmful = _truthy(get("harmful"))
        elif harmful_set and label is not None:
            harmful = label.lower() in harmful_set
        else:
            harmful = None
        cats = get("categories")
        if isinstance(cats, list):
            categories = [str(c) for c in cats]
        else:
            categories = [c.strip() for c in str(cats or "").split(spec.category_separator)
                          if c.strip()]
        rid = get("id")
        out.append(
            CustomRecord(
                id=str(i if rid is None else rid), text=str(get("text")), source=spec.name,
                subset=None if get("subset") is None else str(get("subset")), harmful=harmful,
                label=label, categories=categories,
                extra={k: str(v) for k, v in row.items() if k not in spec.columns},
            )
        )
    return out


def load_custom(mapping: str | os.PathLike | CustomDataset, *, base: Path | None = None
                ) -> list[Record]:
    """Load a user's dataset described by a YAML mapping (a path) or a `CustomDataset`."""
    if isinstance(mapping, CustomDataset):
        spec, folder = mapping, base or Path.cwd()
    else:
        spec, folder = read_mapping(mapping), Path(mapping).parent
    return records_from_rows(spec, _rows(spec, folder))
