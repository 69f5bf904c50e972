"""Per-request switches for the specguard logits processor.

They travel flat in `SamplingParams.extra_args` (or `vllm_xargs` in an HTTP body, which takes
only strings and numbers), each key prefixed `specguard_`. Files are named relative to roots
the operator sets in the engine's environment, never by the request: a client can neither
write nor read outside them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, ValidationError, field_validator

from ..decoding.settings import GoodtrieverParams

XARG_PREFIX = "specguard_"
RECORD_ROOT_ENV = "SPECGUARD_VLLM_RECORD_ROOT"
DATASTORE_ROOT_ENV = "SPECGUARD_VLLM_DATASTORE_ROOT"
# Where the engine searches its datastores: auto (FAISS, on GPU when faiss has GPU support),
# cpu, or torch (exact search on the engine's GPU, no host round trip). The operator's choice.
SEARCH_ENV = "SPECGUARD_VLLM_SEARCH"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class TapSwitches(GoodtrieverParams):
    """What the processor does for one request.

    - record: a name; every step's hidden state (and the token it follows) is appended to
      `$SPECGUARD_VLLM_RECORD_ROOT/<record>.*` (see `read_record`).
    - toxic / nontoxic: datastore folder names under `$SPECGUARD_VLLM_DATASTORE_ROOT`; either
      one turns Goodtriever decoding on with alpha, k, temperature and top_p (the same fields
      and bounds as every other Goodtriever loop: specguard.decoding.GoodtrieverParams).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    record: str | None = None
    toxic: str | None = None
    nontoxic: str | None = None

    @field_validator("record", "toxic", "nontoxic")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError("must be a plain name (letters, digits, '_', '.', '-'), not a path")
        return v

    @property
    def decoding(self) -> bool:
        return self.toxic is not None or self.nontoxic is not None

    @property
    def active(self) -> bool:
        return self.record is not None or self.decoding

    def to_xargs(self) -> dict[str, str | int | float]:
        """The flat form for `SamplingParams(extra_args=...)` or `vllm_xargs`."""
        return {f"{XARG_PREFIX}{k}": v for k, v in self.model_dump(exclude_defaults=True).items()}

    @classmethod
    def from_xargs(cls, extra_args: dict[str, Any] | None) -> TapSwitches | None:
        """The switches in a request's extra args, or None when it has none. Raises ValueError
        (vLLM answers it with HTTP 400) on an unknown `specguard_` key or a bad value."""
        if not extra_args:
            return None
        mine = {k[len(XARG_PREFIX):]: v for k, v in extra_args.items() if k.startswith(XARG_PREFIX)}
        if not mine:
            return None
        try:
            switches = cls.model_validate(mine)
        except ValidationError as exc:
            raise ValueError(f"invalid specguard switches: {exc}") from None
        return switches if switches.active else None


def root(env: str, what: str) -> Path:
    value = os.environ.get(env)
    if not value:
        raise ValueError(
            f"this vLLM server does not allow specguard {what}: set {env} in its environment"
        )
    return Path(value).expanduser()
