"""`SpecguardLogitsProcessor`: the vLLM logits processor that reads the tap.

Loaded by vLLM inside its engine process (`logits_processors=[PROCESSOR]`, or
`--logits-processors specguard.vllm_plugin.processor:SpecguardLogitsProcessor`). It maps
batch rows to requests only through `update_state` and acts only on requests that carry
specguard switches; the others pass through untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from ..decoding.settings import GoodtrieverParams
from . import _tap
from ._switches import DATASTORE_ROOT_ENV, RECORD_ROOT_ENV, SEARCH_ENV, TapSwitches, root

if TYPE_CHECKING:
    from vllm.config import VllmConfig



class _Recorder:
    """Appends one key row and one token id per decoding step (format in _record.py)."""

    def __init__(self, name: str, prompt_ids: list[int], kept: int = 0) -> None:
        import numpy as np

        base = root(RECORD_ROOT_ENV, "recording")
        base.mkdir(parents=True, exist_ok=True)
        keys, last = base / f"{name}.keys.f32", base / f"{name}.last.i32"
        self._row_bytes = 0
        self._steps_at_write: int | None = None
        if kept and last.is_file():
            # A preempted request coming back with `kept` tokens already sampled: keep the
            # rows of those steps, drop any later one, and go on appending.
            rows = last.stat().st_size // 4
            self._row_bytes = keys.stat().st_size // rows if rows else 0
            self._keys = open(keys, "r+b")  # noqa: SIM115 - closed on removal
            self._last = open(last, "r+b")  # noqa: SIM115
            self._keys.truncate(min(rows, kept) * self._row_bytes)
            self._last.truncate(min(rows, kept) * 4)
            self._keys.seek(0, 2)
            self._last.seek(0, 2)
            return
        np.asarray(prompt_ids, dtype=np.int32).tofile(base / f"{name}.prompt.i32")
        self._keys = open(keys, "wb")  # noqa: SIM115 - closed on removal
        self._last = open(last, "wb")  # noqa: SIM115

    def write(self, hidden: torch.Tensor, last_token: int, n_output: int) -> None:
        import numpy as np

        if self._steps_at_write == n_output:
            # No token was kept since the last write: that step was a partial prefill whose
            # sample vLLM discarded. Its row is replaced by this one.
            self._keys.seek(-self._row_bytes, 1)
            self._keys.truncate()
            self._last.seek(-4, 1)
            self._last.truncate()
        row = hidden.detach().to(torch.float32).cpu().numpy().tobytes()
        self._row_bytes = len(row)
        self._keys.write(row)
        self._last.write(np.int32(last_token).tobytes())
        self._keys.flush()
        self._last.flush()
        self._steps_at_write = n_output

    def close(self) -> None:
        self._keys.close()
        self._last.close()


class _Row:
    def __init__(self, switches: TapSwitches, prompt_ids: list[int] | None, output_ids: list[int]):
        self.switches = switches
        self.prompt_ids = list(prompt_ids or [])
        self.output_ids = output_ids  # vLLM's live list: grows as tokens are sampled
        self.recorder = (
            _Recorder(switches.record, self.prompt_ids, kept=len(output_ids))
            if switches.record else None
        )

    def last_token(self) -> int:
        return self.output_ids[-1] if self.output_ids else (self.prompt_ids or [-1])[-1]

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()


class SpecguardLogitsProcessor(LogitsProcessor):
    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool):
        self._rows: dict[int, _Row] = {}
        self._stores: dict[str, Any] = {}
        self._retrievers: dict[TapSwitches, Any] = {}
        self._vocab = vllm_config.model_config.get_vocab_size()

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams):
        switches = TapSwitches.from_xargs(sampling_params.extra_args)
        if switches is None:
            return
        if switches.record:
            root(RECORD_ROOT_ENV, "recording")
        for name in (switches.toxic, switches.nontoxic):
            if name and not (root(DATASTORE_ROOT_ENV, "datastores") / name / "manifest.json").is_file():
                raise ValueError(f"no datastore named {name!r} on this server")

    def is_argmax_invariant(self) -> bool:
        return False  # Goodtriever moves the argmax

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if not batch_update:
            return
        for index in batch_update.removed:
            self._drop(index)
        for index, params, prompt_ids, output_ids in batch_update.added:
            self._drop(index)
            switches = TapSwitches.from_xargs(params.extra_args)
            if switches is not None:
                self._rows[index] = _Row(switches, prompt_ids, output_ids)
        for a, b, direction in batch_update.moved:
            row_a, row_b = self._rows.pop(a, None), self._rows.pop(b, None)
            if direction == MoveDirectionality.SWAP:
                if row_b is not None:
                    self._rows[a] = row_b
            elif row_b is not None:
                row_b.close()
            if row_a is not None:
                self._rows[b] = row_a

    def _drop(self, index: int) -> None:
        row = self._rows.pop(index, None)
        if row is not None:
            row.close()

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._rows:
            return logits
        hidden = _tap.last()
        if hidden is None or hidden.shape[0] != logits.shape[0]:
            from ..errors import ConfigError

            raise ConfigError(
                "specguard switches need the hidden-state tap, and this engine has none.",
                hint="Start the engine with specguard.vllm_plugin.tap_engine_args(model) "
                "(hf_overrides architectures SpecguardTap<Arch>), with specguard installed in "
                "the engine's environment so its vllm.general_plugins entry point loads.",
            )
        groups: dict[TapSwitches, list[int]] = {}
        for index, row in self._rows.items():
            if index >= logits.shape[0]:
                continue
            if row.recorder is not None:
                row.recorder.write(hidden[index], row.last_token(), len(row.output_ids))
            if row.switches.decoding:
                groups.setdefault(row.switches.model_copy(update={"record": None}), []).append(index)
        for switches, indices in groups.items():
            idx = torch.tensor(indices, dtype=torch.long, device=logits.device)
            logits[idx] = self._goodtriever(switches, hidden[idx], logits[idx])
        return logits

    def _goodtriever(self, sw: TapSwitches, hidden: torch.Tensor, logits: torch.Tensor):
        """The shared Goodtriever step (specguard.decoding.Retriever: search both sides, then
        the one combination) on this batch's rows."""
        # a tensor: with search `torch` the stores are searched on the engine's GPU
        queries = hidden.detach().to(torch.float32)
        return self._retriever(sw, queries.shape[1]).step(logits, queries).to(logits.dtype)

    def _retriever(self, sw: TapSwitches, dim: int):
        key = sw.model_copy(update={"record": None})
        retriever = self._retrievers.get(key)
        if retriever is None:
            from ..decoding import DetoxSettings, Retriever

            import os

            settings = DetoxSettings(**sw.model_dump(include=set(GoodtrieverParams.model_fields)),
                                     search=os.environ.get(SEARCH_ENV, "auto"))
            retriever = Retriever(
                settings,
                [self._store(sw.toxic, dim)] if sw.toxic else [],
                [self._store(sw.nontoxic, dim)] if sw.nontoxic else [],
            )
            self._retrievers[key] = retriever
        return retriever

    def _store(self, name: str, dim: int):
        store = self._stores.get(name)
        if store is None:
            from ..decoding import Datastore, DatastoreMismatchError

            path: Path = root(DATASTORE_ROOT_ENV, "datastores") / name
            store = Datastore.open(path)
            space = store.key_space
            if space.dim != dim or space.tokenizer.vocab_size > self._vocab:
                raise DatastoreMismatchError(
                    f"datastore {path} holds {space.dim}-dim keys for a {space.tokenizer.vocab_size}"
                    f"-token vocabulary; this model has {dim} and {self._vocab}.",
                    hint="Build the datastore with this model (same hook: final norm).",
                )
            self._stores[name] = store
        return store


__all__ = ["SpecguardLogitsProcessor"]
