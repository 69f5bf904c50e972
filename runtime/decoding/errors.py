"""Errors of the decoding package."""

from __future__ import annotations

from ..errors import ConfigError, NotFoundError


class DatastoreMismatchError(ConfigError):
    """A datastore was built with another model, hook or tokenizer than the one asking."""

    code = "datastore_mismatch"


class DatastoreNotFoundError(NotFoundError):
    code = "datastore_not_found"


__all__ = ["DatastoreMismatchError", "DatastoreNotFoundError"]
