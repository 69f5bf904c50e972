"""Building the toxic and non-toxic datastores of a recipe: resumable, with a progress bar.

Layout under the datastore root (default ~/.cache/specguard/datastores):

    <recipe name>-<hash of recipe and model>/
        recipe.json            the recipe as built, and the model's key space
        toxic/  nontoxic/      the finished stores (Datastore folders; manifest has the recipe
                               and the keys and documents of every source)
        .work/<side>/shard-00000.npz ...   encoded documents, written one chunk at a time

Encoding writes a shard per chunk of documents (atomically: a temporary file renamed), the two
sides in turn, so an interrupted build loses at most one chunk and resumes where it stopped;
the documents' order is fixed by the recipe's seed and checked on resume. `finalize` turns a
side's shards into an index (flat up to FLAT_MAX_KEYS keys, IVF-PQ above) at any time, so a
store cut short is usable (its manifest says `complete: false`) while encoding goes on.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError
from .corpora import Document
from .datastore import Datastore, IndexKind
from .encoders import KeyEncoder
from .keyspace import KeySpace
from .recipe import Recipe, Side, side_documents

if TYPE_CHECKING:
    import numpy as np

CHUNK_DOCS = 32  # documents per shard
IVFPQ_TRAIN_KEYS = 100_000


class SideProgress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    side: Side
    documents_total: int  # documents the recipe offers this side
    documents_done: int  # encoded (in shards)
    keys: int  # encoded keys
    max_keys: int

    @property
    def finished(self) -> bool:
        return self.keys >= self.max_keys or self.documents_done >= self.documents_total


def recipe_folder(root: str | Path, recipe: Recipe, key_space: KeySpace) -> Path:
    return Path(root).expanduser() / f"{recipe.name}-{recipe.digest(key_space.model.sha256)}"


class RecipeBuild:
    """One recipe's build in its cache folder."""

    def __init__(self, recipe: Recipe, key_space: KeySpace, root: str | Path, *,
                 data_dir: str | Path | None = None) -> None:
        self.recipe = recipe
        self.key_space = key_space
        self.folder = recipe_folder(root, recipe, key_space)
        self.data_dir = data_dir
        self._docs: dict[Side, tuple[list[Document], dict[str, str]]] = {}

    def store_path(self, side: Side) -> Path:
        return self.folder / str(side)

    def _work(self, side: Side) -> Path:
        return self.folder / ".work" / str(side)

    def documents(self, side: Side) -> tuple[list[Document], dict[str, str]]:
        if side not in self._docs:
            self._docs[side] = side_documents(self.recipe, side, data_dir=self.data_dir)
        return self._docs[side]

    def _shards(self, side: Side) -> list[Path]:
        return sorted(self._work(side).glob("shard-*.npz"))

    def _shard_meta(self, side: Side) -> list[dict[str, Any]]:
        meta = self._work(side) / "shards.jsonl"
        if not meta.is_file():
            return []
        rows = [json.loads(line) for line in meta.read_text().splitlines() if line.strip()]
        present = {p.name for p in self._shards(side)}
        return [r for r in rows if r["file"] in present]

    def progress(self, side: Side) -> SideProgress:
        docs, _ = self.documents(side)
        meta = self._shard_meta(side)
        return SideProgress(
            side=side, documents_total=len(docs),
            documents_done=sum(r["documents"] for r in meta),
            keys=sum(r["keys"] for r in meta), max_keys=self.recipe.sides[side].max_keys)

    def _start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        info = {"recipe": self.recipe.model_dump(mode="json"),
                "key_space": self.key_space.model_dump(mode="json"),
                "digest": self.recipe.digest(self.key_space.model.sha256)}
        path = self.folder / "recipe.json"
        if path.is_file():
            old = json.loads(path.read_text())
            if old.get("digest") != info["digest"]:
                raise ConfigError(f"{self.folder} holds another recipe's build.",
                                  hint="Remove the folder or use another datastore root.")
        else:
            path.write_text(json.dumps(info, indent=2))

    def _check_order(self, side: Side) -> None:
        """The documents already encoded must be the first ones of the recipe's order (the data
        or the loader changed otherwise, and resuming would mix two orders)."""
        docs, _ = self.documents(side)
        pos = 0
        for row in self._shard_meta(side):
            n = row["documents"]
            if [d.id for d in docs[pos:pos + n]][:1] != row["first"][:1]:
                raise ConfigError(
                    f"The {side} documents encoded in {self._work(side)} no longer match the "
                    "recipe's order (the datasets changed?).",
                    hint=f"Remove {self.folder} and build again.")
            pos += n

    async def encode(
        self, encoder: KeyEncoder, *, sides: list[Side] | None = None,
        deadline: float | None = None, chunk_docs: int = CHUNK_DOCS,
        on_chunk: Callable[[Side, SideProgress], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> dict[Side, SideProgress]:
        """Encode documents into shards, alternating sides, until each side reaches its
        max_keys or runs out of documents (or `deadline`, a time.monotonic() value, passes, or
        `stop()` says so: checked between chunks)."""
        import numpy as np

        encoder.key_space().check(self.key_space, what=f"recipe build {self.folder}")
        self._start()
        sides = sides or list(self.recipe.sides)
        for side in sides:
            self._work(side).mkdir(parents=True, exist_ok=True)
            self._check_order(side)
        state = {s: self.progress(s) for s in sides}
        while True:
            active = [s for s in sides if not state[s].finished]
            if not active or (deadline is not None and time.monotonic() >= deadline) or (
                    stop is not None and stop()):
                return state
            # the side with fewer keys goes next: the two stores grow matched in size
            side = min(active, key=lambda s: state[s].keys)
            docs, labels = self.documents(side)
            p = state[side]
            chunk = docs[p.documents_done:p.documents_done + chunk_docs]
            encoded = await encoder.encode([d.text for d in chunk])
            keys = [k for k, _ in encoded]
            toks = [t for _, t in encoded]
            n = [len(k) for k in keys]
            dim = self.key_space.dim
            index = len(self._shards(side))
            name = f"shard-{index:05d}.npz"
            tmp = self._work(side) / f".{name}.tmp.npz"
            np.savez(tmp,
                     keys=np.concatenate(keys) if sum(n) else np.zeros((0, dim), np.float32),
                     tokens=np.concatenate(toks) if sum(n) else np.zeros(0, np.int32),
                     counts=np.asarray(n, np.int64))
            tmp.replace(self._work(side) / name)
            row = {"file": name, "documents": len(chunk), "keys": int(sum(n)),
                   "first": [chunk[0].id], "ids": [d.id for d in chunk],
                   "sources": [labels[d.id] for d in chunk],
                   "encoder": getattr(encoder, "name", type(encoder).__name__)}
            with (self._work(side) / "shards.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
            state[side] = self.progress(side)
            if on_chunk:
                on_chunk(side, state[side])

    def finalize(self, side: Side, *, index: IndexKind | None = None) -> Datastore:
        """Build the side's store from every shard so far (at most max_keys keys, whole
        documents). Replaces the previous store of this recipe and side."""
        import numpy as np

        meta = self._shard_meta(side)
        if not meta:
            raise ConfigError(f"Nothing encoded yet for the {side} side of {self.folder}.",
                              hint="Run `specguard datastore build --recipe ...` first.")
        cap = self.recipe.sides[side].max_keys
        keys_l, toks_l, ids, doc_of_row, per_source = [], [], [], [], Counter()
        per_source_docs: Counter = Counter()
        per_encoder: Counter = Counter()  # keys read by llama.cpp / torch (one key space)
        total = 0
        for row in meta:
            with np.load(self._work(side) / row["file"]) as z:
                keys, toks, counts = z["keys"], z["tokens"], z["counts"]
            start = 0
            for doc_id, label, c in zip(row["ids"], row["sources"], counts.tolist(), strict=True):
                if total >= cap:
                    break
                if c:
                    keys_l.append(keys[start:start + c])
                    toks_l.append(toks[start:start + c])
                    doc_of_row.append(np.full(c, len(ids), np.int32))
                    ids.append(doc_id)
                    per_source[label] += c
                    per_source_docs[label] += 1
                    per_encoder[row.get("encoder", "llama.cpp")] += c
                    total += c
                start += c
        all_keys = np.ascontiguousarray(np.concatenate(keys_l), dtype=np.float32)
        progress = self.progress(side)
        kind = IndexKind(index or self.recipe.index)
        training = None
        if kind != IndexKind.FLAT:
            rng = np.random.default_rng(self.recipe.seed)
            training = all_keys[rng.permutation(len(all_keys))[:IVFPQ_TRAIN_KEYS]]
        target = self.store_path(side)
        tmp = target.with_name(f".{side}.building")
        if tmp.exists():
            shutil.rmtree(tmp)
        store = Datastore.create(
            tmp, self.key_space, name=f"{self.recipe.name}-{side}", label=str(side),
            index_kind=kind, expected_keys=len(all_keys), training_keys=training)
        store.add_many(ids, all_keys, np.concatenate(toks_l), np.concatenate(doc_of_row))
        store.manifest.recipe = self.recipe.model_dump(mode="json")
        store.manifest.build = {
            "recipe_digest": self.recipe.digest(self.key_space.model.sha256),
            "part": "train",
            "complete": progress.finished,
            "documents_offered": progress.documents_total,
            "documents_encoded": progress.documents_done,
            "sources": {label: {"documents": per_source_docs[label], "keys": per_source[label]}
                        for label in sorted(per_source)},
            "encoders": dict(sorted(per_encoder.items())),
        }
        store.save()
        if target.exists():
            shutil.rmtree(target)
        tmp.replace(target)
        return Datastore.open(target, self.key_space)


def run_build(build: RecipeBuild, encoder: KeyEncoder, *, minutes: float | None = None,
              finalize: bool = True, console: Any = None) -> dict[Side, SideProgress]:
    """Encode with a progress bar (both sides), then finalize each side. Ctrl-C (or SIGTERM)
    stops after the chunk in flight is written and still finalizes; a second Ctrl-C stops at
    once. Run again to resume."""
    import signal
    import threading
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    deadline = time.monotonic() + minutes * 60 if minutes else None
    sides = list(build.recipe.sides)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("docs, {task.fields[keys]:,} / {task.fields[cap]:,} keys"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        tasks = {}
        for side in sides:
            p = build.progress(side)
            tasks[side] = bar.add_task(str(side), total=p.documents_total,
                                       completed=p.documents_done, keys=p.keys, cap=p.max_keys)

        def on_chunk(side: Side, p: SideProgress) -> None:
            bar.update(tasks[side], completed=p.documents_done, keys=p.keys)

        stopping = threading.Event()
        previous = {}

        def on_signal(signum, frame):  # first: finish the chunk in flight; second: stop now
            if stopping.is_set():
                raise KeyboardInterrupt
            stopping.set()
            bar.console.print("stopping after the chunk in flight (again to stop now)")

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
        try:
            state = asyncio.run(build.encode(encoder, deadline=deadline, on_chunk=on_chunk,
                                             stop=stopping.is_set))
        except KeyboardInterrupt:
            state = {s: build.progress(s) for s in sides}
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if finalize:
        for side in sides:
            if state[side].documents_done:
                build.finalize(side)
    return state


__all__ = ["CHUNK_DOCS", "RecipeBuild", "SideProgress", "recipe_folder", "run_build"]
