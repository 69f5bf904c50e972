"""Reading the data directory: paths that fail with the file and the setting to change."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import DATA_DIR_ENV
from ..errors import ConfigError


class DatasetError(ConfigError):
    """A dataset file is missing or does not have the shape its loader expects."""

    code = "dataset_error"


def require_file(root: Path, relative: str, dataset: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise DatasetError(
            f"Dataset {dataset!r} needs {path}, which does not exist.",
            hint=(
                f"Put the file there, or point the data directory elsewhere with --data-dir or "
                f"${DATA_DIR_ENV} (the data directory is now {root})."
            ),
        )
    return path


def read_csv(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(
                f"{path} lacks the column(s) {missing}; its header is {reader.fieldnames}.",
                hint="Is this the right file (or version) of the dataset?",
            )
        return list(reader)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number} is not valid JSON: {exc}") from exc


def read_lines(path: Path) -> list[str]:
    """Non-empty lines, trailing newline and carriage returns stripped (spaces kept)."""
    text = path.read_text(encoding="utf-8")
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def field(row: dict[str, Any], key: str, where: str) -> Any:
    try:
        return row[key]
    except KeyError:
        raise DatasetError(f"{where}: a row lacks the field {key!r} (keys: {sorted(row)}).") from None
