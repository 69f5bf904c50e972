"""Documents for datastores: from text files (plain text, CSV, JSONL) or from the project's
safety datasets (read through specguard.data), and the loop that encodes them."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ConfigError
from .datastore import Datastore
from .encoders import KeyEncoder

if TYPE_CHECKING:
    import numpy as np


class Document(NamedTuple):
    id: str  # the source id keys are removed by
    text: str


def _matches(row: dict, where: dict[str, str] | None) -> bool:
    return not where or all(str(row.get(k)) == v for k, v in where.items())


def read_corpus(
    path: str | Path,
    *,
    column: str = "text",
    id_column: str | None = None,
    where: dict[str, str] | None = None,
) -> Iterator[Document]:
    """Documents of a file. .txt: one document per non-empty line. .csv / .jsonl: the text in
    `column`, the id in `id_column` (default: the row number), rows kept when every
    `where` column equals its value (as a string)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"Corpus file {path} does not exist.")
    stem = path.stem
    suffix = path.suffix.lower()
    if suffix in (".txt", ".text", ".md"):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                yield Document(f"{stem}:{i}", line.strip())
        return
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows: Iterable[dict] = csv.DictReader(f)
            yield from _rows(rows, stem, column, id_column, where, path)
        return
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            rows = (json.loads(line) for line in f if line.strip())
            yield from _rows(rows, stem, column, id_column, where, path)
        return
    raise ConfigError(f"Unknown corpus format {suffix!r} ({path}).", hint="Use .txt, .csv or .jsonl.")


def _rows(rows, stem, column, id_column, where, path) -> Iterator[Document]:
    for i, row in enumerate(rows):
        if column not in row:
            raise ConfigError(
                f"{path} has no column {column!r}.", hint=f"Columns: {', '.join(map(str, row))}"
            )
        if not _matches(row, where):
            continue
        text = str(row[column] or "").strip()
        if text:
            doc_id = f"{stem}:{row[id_column]}" if id_column else f"{stem}:{i}"
            yield Document(doc_id, text)


async def encode_documents(
    encoder: KeyEncoder,
    documents: Iterable[Document],
    *,
    batch: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
) -> AsyncIterator[tuple[Document, np.ndarray, np.ndarray]]:
    """(document, keys, next tokens) per document, encoded `batch` at a time. Calls
    on_progress(documents_done, keys_so_far) after each batch."""
    done = keys = 0
    buf: list[Document] = []
    seen: set[str] = set()

    async def flush():
        nonlocal done, keys
        encoded = await encoder.encode([d.text for d in buf])
        out = [(d, k, t) for d, (k, t) in zip(buf, encoded, strict=True)]
        done += len(buf)
        keys += sum(len(k) for _, k, _ in out)
        buf.clear()
        if on_progress:
            on_progress(done, keys)
        return out

    for doc in documents:
        if doc.id in seen:
            continue
        seen.add(doc.id)
        buf.append(doc)
        if len(buf) >= batch:
            for item in await flush():
                yield item
    if buf:
        for item in await flush():
            yield item


async def add_documents(
    store: Datastore,
    encoder: KeyEncoder,
    documents: Iterable[Document],
    *,
    batch: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Encode documents and append their keys; documents already present are skipped.
    Returns the number of keys added."""
    present = set(store.documents)
    todo = (d for d in documents if d.id not in present)
    total = 0
    async for doc, keys, toks in encode_documents(
        encoder, todo, batch=batch, on_progress=on_progress
    ):
        total += store.add(doc.id, keys, toks)
    return total


# The project's safety datasets, split into toxic and non-toxic text. Each entry names the
# dataset, its loader's subset and which field holds the text datastores learn from.
SAFETY_SOURCES: dict[str, dict] = {
    "jigsaw_detoxify_sample": {"subset": None},  # Wikipedia comments, `toxic` flag
    "toxicchat": {"subset": None},  # user prompts, human `toxicity` label (non-commercial)
    "openai_moderation": {"subset": None},  # any category flag set
    "beavertails_sample": {"subset": None},  # unsafe responses only (non-commercial)
    "advbench": {"subset": "harmful_strings"},  # harmful target strings only
}


def safety_documents(
    dataset: str, *, toxic: bool, data_dir: str | Path | None = None, limit: int | None = None
) -> list[Document]:
    """Toxic (or non-toxic) documents of one of SAFETY_SOURCES, read through the evaluation
    datasets' loaders. Ids are `<dataset>:<record id>`, the source ids removal works by."""
    from ..data import load  # type: ignore[import-not-found]

    if dataset not in SAFETY_SOURCES:
        raise ConfigError(
            f"Unknown safety corpus {dataset!r}.", hint=f"Use one of: {', '.join(SAFETY_SOURCES)}"
        )
    subset = SAFETY_SOURCES[dataset]["subset"]
    records = load(dataset, subset=subset, data_dir_override=data_dir)
    out: list[Document] = []
    for r in records:
        if r.harmful is None or r.harmful != toxic:
            continue
        text = getattr(r, "response", None) if dataset == "beavertails_sample" else None
        text = text or (getattr(r, "target", None) if dataset == "advbench" else None) or r.text
        out.append(Document(f"{dataset}:{r.subset + '/' if r.subset else ''}{r.id}", text))
        if limit is not None and len(out) >= limit:
            break
    return out


__all__ = [
    "SAFETY_SOURCES",
    "Document",
    "add_documents",
    "encode_documents",
    "read_corpus",
    "safety_documents",
]
