"""A Goodtriever datastore on disk: a FAISS index of hidden-state keys, the next token of each
key, the document (source id) each key came from, and a manifest of the key space.

Layout of a datastore folder:
    manifest.json   key space (model, hook, dim, tokenizer), index kind, counts
    index.faiss     keys; FAISS ids are row numbers into the arrays below
    tokens.npy      int32 [rows]  next token id of each key
    docs.npy        int32 [rows]  index into documents.json, -1 once removed
    documents.json  source ids, in the order they were added

Removing a document removes its keys from the index and marks its rows -1; row numbers never
change, so appends and removals compose. Small stores use an exact flat L2 index; large ones
IVF-PQ (trained once at build time). Search returns squared L2 distances, as FAISS does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError, require
from .errors import DatastoreNotFoundError
from .keyspace import KeySpace
from .settings import SearchDevice

if TYPE_CHECKING:
    import numpy as np

FORMAT_VERSION = 1
FLAT_MAX_KEYS = 100_000  # "auto" picks IVF-PQ above this


class IndexKind(StrEnum):
    AUTO = "auto"
    FLAT = "flat"
    IVFPQ = "ivfpq"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    name: str
    label: str = ""  # e.g. "toxic" / "nontoxic"; informational
    key_space: KeySpace
    index_kind: IndexKind
    index_params: dict[str, Any] = Field(default_factory=dict)
    rows: int = 0  # keys ever added (row numbers in use)
    live_keys: int = 0  # keys searchable now
    created_at: str
    updated_at: str
    # Built from a recipe (specguard.decoding.recipe): the recipe itself, and what the build
    # took from it (digest, part, whether it finished, documents and keys per source).
    recipe: dict[str, Any] | None = None
    build: dict[str, Any] | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _ivfpq_params(n: int, dim: int) -> dict[str, int]:
    # about sqrt(n) lists (1024 at 1M keys): cheap to train and fill on a CPU
    nlist = int(min(65536, max(64, 2 ** round(math.log2(math.sqrt(max(n, 1)))))))
    m = next(m for m in (dim // 8, dim // 4, dim // 2, dim) if m > 0 and dim % m == 0)
    m = min(m, 96)
    while dim % m:
        m -= 1
    return {"nlist": nlist, "m": m, "nbits": 8, "nprobe": 32}


class Datastore:
    """One datastore folder. Create with `Datastore.create`, open with `Datastore.open`."""

    def __init__(
        self, path: Path, manifest: Manifest, index: Any, tokens: np.ndarray, docs: np.ndarray,
        documents: list[str],
    ) -> None:
        self.path = path
        self.manifest = manifest
        self._index = index
        self._tokens = tokens
        self._docs = docs
        self._documents = documents
        self._doc_pos = {d: i for i, d in enumerate(documents)}
        self._live = set(docs[docs >= 0].tolist())  # positions of documents present
        self._searcher: Any = None
        self._torch: Any = None  # a TorchKeySearch of the live keys, made on first use
        self._device = SearchDevice.AUTO

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        key_space: KeySpace,
        *,
        name: str | None = None,
        label: str = "",
        index_kind: IndexKind = IndexKind.AUTO,
        expected_keys: int = 0,
        training_keys: np.ndarray | None = None,
        overwrite: bool = False,
    ) -> Datastore:
        """An empty datastore. IVF-PQ needs `training_keys` (a sample of the keys to come)."""
        import numpy as np

        faiss = require("faiss", "faiss")
        path = Path(path).expanduser()
        if (path / "manifest.json").exists() and not overwrite:
            raise ConfigError(
                f"A datastore already exists at {path}.",
                hint="Use `specguard datastore add` to grow it, or pass --overwrite.",
            )
        path.mkdir(parents=True, exist_ok=True)
        dim = key_space.dim
        kind = index_kind
        if kind == IndexKind.AUTO:
            kind = IndexKind.IVFPQ if expected_keys > FLAT_MAX_KEYS else IndexKind.FLAT
        params: dict[str, Any] = {}
        if kind == IndexKind.FLAT:
            index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))
        else:
            if training_keys is None or len(training_keys) == 0:
                raise ConfigError("An IVF-PQ datastore needs training keys to build its index.")
            params = _ivfpq_params(max(expected_keys, len(training_keys)), dim)
            params["nlist"] = min(params["nlist"], max(1, len(training_keys) // 39))
            # PQ codebooks need 2^nbits training points; a small store gets smaller codebooks
            params["nbits"] = min(params["nbits"], max(1, int(math.log2(len(training_keys)))))
            quantizer = faiss.IndexFlatL2(dim)
            index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["m"], params["nbits"])
            index.train(np.ascontiguousarray(training_keys, dtype=np.float32))
            index.nprobe = params["nprobe"]
        now = _now()
        manifest = Manifest(
            name=name or path.name, label=label, key_space=key_space, index_kind=kind,
            index_params=params, created_at=now, updated_at=now,
        )
        store = cls(path, manifest, index, np.zeros(0, np.int32), np.zeros(0, np.int32), [])
        store.save()
        return store

    @classmethod
    def open(cls, path: str | Path, expect: KeySpace | None = None) -> Datastore:
        """Open a datastore; with `expect`, refuse it unless it was built for that key space."""
        import numpy as np

        faiss = require("faiss", "faiss")
        path = Path(path).expanduser()
        mf = path / "manifest.json"
        if not mf.is_file():
            raise DatastoreNotFoundError(
                f"No datastore at {path} (no manifest.json).",
                hint="Build one with `specguard datastore build`.",
            )
        manifest = Manifest.model_validate_json(mf.read_text())
        if manifest.format_version != FORMAT_VERSION:
            raise ConfigError(f"Datastore {path} has format {manifest.format_version}; rebuild it.")
        if expect is not None:
            manifest.key_space.check(expect, what=f"datastore {path}")
        index = faiss.read_index(str(path / "index.faiss"))
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = int(manifest.index_params.get("nprobe", 32))
        tokens = np.load(path / "tokens.npy")
        docs = np.load(path / "docs.npy")
        documents = json.loads((path / "documents.json").read_text())
        return cls(path, manifest, index, tokens, docs, documents)

    def save(self) -> None:
        import numpy as np

        faiss = require("faiss", "faiss")
        self.manifest.updated_at = _now()
        self.manifest.rows = len(self._tokens)
        self.manifest.live_keys = int(self._index.ntotal)
        faiss.write_index(self._index, str(self.path / "index.faiss.tmp"))
        (self.path / "index.faiss.tmp").replace(self.path / "index.faiss")
        np.save(self.path / "tokens.npy", self._tokens)
        np.save(self.path / "docs.npy", self._docs)
        (self.path / "documents.json").write_text(json.dumps(self._documents))
        (self.path / "manifest.json").write_text(self.manifest.model_dump_json(indent=2))

    # -- contents ----------------------------------------------------------------------------

    @property
    def key_space(self) -> KeySpace:
        return self.manifest.key_space

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def documents(self) -> list[str]:
        """Source ids of the documents present now."""
        return [d for i, d in enumerate(self._documents) if i in self._live]

    def add(self, source_id: str, keys: np.ndarray, next_tokens: np.ndarray) -> int:
        """Append one document's keys [n, dim] and next-token ids [n]. Returns keys added."""
        import numpy as np

        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2 or keys.shape[1] != self.key_space.dim:
            raise ConfigError(f"keys must be [n, {self.key_space.dim}], got {keys.shape}")
        if len(keys) != len(next_tokens):
            raise ConfigError("one next token per key is needed")
        if self._doc_pos.get(source_id, -1) in self._live:
            raise ConfigError(
                f"Document {source_id!r} is already in datastore {self.manifest.name}.",
                hint="Remove it first to replace it.",
            )
        if len(keys) == 0:
            return 0
        pos = self._doc_pos.get(source_id)
        if pos is None:
            pos = len(self._documents)
            self._documents.append(source_id)
            self._doc_pos[source_id] = pos
        start = len(self._tokens)
        ids = np.arange(start, start + len(keys), dtype=np.int64)
        self._index.add_with_ids(keys, ids)
        self._tokens = np.concatenate([self._tokens, np.asarray(next_tokens, np.int32)])
        self._docs = np.concatenate([self._docs, np.full(len(keys), pos, np.int32)])
        self._live.add(pos)
        self._searcher = self._torch = None
        return len(keys)

    def add_many(self, source_ids: Sequence[str], keys: np.ndarray, next_tokens: np.ndarray,
                 doc_of_row: np.ndarray) -> int:
        """Append many documents at once: keys [n, dim], next tokens [n], and for each key the
        position of its document in `source_ids` (documents must be new). Returns keys added."""
        import numpy as np

        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2 or keys.shape[1] != self.key_space.dim:
            raise ConfigError(f"keys must be [n, {self.key_space.dim}], got {keys.shape}")
        if not len(keys) == len(next_tokens) == len(doc_of_row):
            raise ConfigError("one next token and one document position per key are needed")
        clash = [s for s in source_ids if self._doc_pos.get(s, -1) in self._live]
        if clash or len(set(source_ids)) != len(source_ids):
            raise ConfigError(f"Documents already in datastore {self.manifest.name}: {clash[:3]}",
                              hint="Remove them first, or give each document once.")
        positions = []
        for sid in source_ids:
            pos = self._doc_pos.get(sid)
            if pos is None:
                pos = len(self._documents)
                self._documents.append(sid)
                self._doc_pos[sid] = pos
            positions.append(pos)
        pos_arr = np.asarray(positions, np.int32)[np.asarray(doc_of_row, np.int64)]
        start = len(self._tokens)
        self._index.add_with_ids(keys, np.arange(start, start + len(keys), dtype=np.int64))
        self._tokens = np.concatenate([self._tokens, np.asarray(next_tokens, np.int32)])
        self._docs = np.concatenate([self._docs, pos_arr])
        self._live.update(np.unique(pos_arr).tolist())
        self._searcher = self._torch = None
        return len(keys)

    def remove(self, source_ids: Iterable[str]) -> int:
        """Remove every key of these documents. Returns the number of keys removed."""
        import numpy as np

        faiss = require("faiss", "faiss")
        positions = [self._doc_pos[s] for s in source_ids if s in self._doc_pos]
        if not positions:
            return 0
        rows = np.flatnonzero(np.isin(self._docs, np.asarray(positions, np.int32)))
        if len(rows) == 0:
            return 0
        removed = int(self._index.remove_ids(faiss.IDSelectorBatch(rows.astype(np.int64))))
        self._docs[rows] = -1
        self._live.difference_update(positions)
        self._searcher = self._torch = None
        return removed

    def stats(self) -> dict[str, Any]:
        import numpy as np

        live = self._tokens[self._docs >= 0]
        return {
            "name": self.manifest.name,
            "label": self.manifest.label,
            "path": str(self.path),
            "model": self.key_space.model.name,
            "hook": str(self.key_space.hook),
            "dim": self.key_space.dim,
            "index": str(self.manifest.index_kind),
            "keys": len(self),
            "removed_rows": int(len(self._tokens) - len(live)),
            "documents": len(self.documents),
            "distinct_next_tokens": len(np.unique(live)) if len(live) else 0,
        }

    # -- search ------------------------------------------------------------------------------

    def use_device(self, device: SearchDevice) -> None:
        self._device = SearchDevice(device)
        self._searcher = None
        self._torch = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared L2 distances [B, k] (float32) and next-token ids [B, k] (int64; -1 where
        the store has fewer than k keys)."""
        import numpy as np

        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if self._searcher is None:
            self._searcher = self._make_searcher()
        dist, ids = self._searcher(q, k)
        tok = np.where(ids >= 0, self._tokens[np.clip(ids, 0, None)], -1).astype(np.int64)
        return dist.astype(np.float32), tok

    def _make_searcher(self):
        import faiss
        import numpy as np

        device = self._device
        if device == SearchDevice.TORCH:
            search = self.torch_search()

            def run_torch(q: np.ndarray, k: int):
                import torch

                dist, _, rows = search.search(torch.from_numpy(q), k)
                return dist.cpu().numpy(), rows.cpu().numpy()

            return run_torch
        index = self._index
        if device == SearchDevice.AUTO and hasattr(faiss, "StandardGpuResources"):
            if faiss.get_num_gpus() > 0:  # pragma: no cover - needs faiss-gpu and a GPU
                index = faiss.index_cpu_to_all_gpus(index)

        def run(q: np.ndarray, k: int):
            if index.ntotal == 0:
                return (np.full((len(q), k), np.inf, np.float32), np.full((len(q), k), -1))
            return index.search(q, k)

        return run

    def torch_search(self, device: str | None = None):
        """The store's live keys in a TorchKeySearch (exact search with torch, on CUDA when
        there is one). IVF-PQ stores hand over their keys as the index reconstructs them."""
        import torch

        from .torch_search import TorchKeySearch

        if self._torch is None or (device is not None and str(self._torch.device) != device):
            keys, ids = self.live_keys()
            self._torch = TorchKeySearch(
                torch.from_numpy(keys), torch.from_numpy(self._tokens[ids].astype("int64")),
                ids=torch.from_numpy(ids), device=device)
        return self._torch

    def live_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys [n, dim], row ids [n]) of the keys searchable now: exact for a flat store, the
        index's reconstruction (its PQ codes decoded) for IVF-PQ."""
        import faiss
        import numpy as np

        if self.manifest.index_kind == IndexKind.FLAT:
            flat = faiss.downcast_index(self._index.index)
            if flat.ntotal == 0:
                return np.zeros((0, self.key_space.dim), np.float32), np.zeros(0, np.int64)
            keys = flat.reconstruct_n(0, flat.ntotal)
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            return keys, ids
        ivf = faiss.extract_index_ivf(self._index)
        invlists = ivf.invlists
        ids_l = [faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
                 for lst in range(ivf.nlist) if invlists.list_size(lst)]
        if not ids_l:
            return np.zeros((0, self.key_space.dim), np.float32), np.zeros(0, np.int64)
        ids = np.concatenate(ids_l).astype(np.int64)
        ids.sort()
        mapped = faiss.clone_index(ivf)  # a copy with an id -> code map (the store's stays lean)
        mapped.set_direct_map_type(faiss.DirectMap.Hashtable)
        return mapped.reconstruct_batch(ids).astype(np.float32), ids


def open_stores(paths: Sequence[str | Path], expect: KeySpace | None = None) -> list[Datastore]:
    return [Datastore.open(p, expect) for p in paths]


__all__ = ["Datastore", "IndexKind", "Manifest", "SearchDevice", "open_stores"]
