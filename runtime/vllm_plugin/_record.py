"""Recordings of the tap: per step, the hidden state of the row about to be sampled and the
token it is the state of (the last token of the context).

Files under the record root, for a request recorded as NAME:
    NAME.prompt.i32   the prompt's token ids (int32), written when the request arrives
    NAME.keys.f32     one row of `dim` float32 per decoding step, appended
    NAME.last.i32     per step, the context's last token id (int32), appended
Step t's context is prompt + output[:t]; step t's key is followed by output[t]
(= last[t + 1]), so a recording of n steps gives n - 1 (key, next token) pairs on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._switches import RECORD_ROOT_ENV

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TapRecord:
    prompt_ids: np.ndarray  # [p] int32
    keys: np.ndarray  # [n, dim] float32
    last_ids: np.ndarray  # [n] int32

    def context(self, step: int) -> list[int]:
        """The token ids whose final position produced `keys[step]`."""
        return [*self.prompt_ids.tolist(), *self.last_ids[1 : step + 1].tolist()]

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys [n-1, dim], next token ids [n-1]) for a datastore."""
        return self.keys[:-1], self.last_ids[1:]


def read_record(name: str, root: str | Path | None = None) -> TapRecord:
    import os

    import numpy as np

    from ..errors import ConfigError

    base = Path(root or os.environ.get(RECORD_ROOT_ENV, "")).expanduser()
    prompt = base / f"{name}.prompt.i32"
    if not prompt.is_file():
        raise ConfigError(
            f"No tap recording {name!r} under {base}.",
            hint=f"Record with TapSwitches(record={name!r}) on an engine whose {RECORD_ROOT_ENV} "
            "is that folder.",
        )
    last = np.fromfile(base / f"{name}.last.i32", dtype=np.int32)
    keys = np.fromfile(base / f"{name}.keys.f32", dtype=np.float32)
    dim = keys.size // max(len(last), 1)
    return TapRecord(
        prompt_ids=np.fromfile(prompt, dtype=np.int32),
        keys=keys.reshape(len(last), dim) if len(last) else keys.reshape(0, 0),
        last_ids=last,
    )
