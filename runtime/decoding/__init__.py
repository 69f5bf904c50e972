"""Goodtriever (Pozzobon et al. 2023): retrieval-augmented detoxified decoding.

At each step the current hidden state is looked up in a toxic and a non-toxic datastore and
the next-token distribution moves away from what toxic text says next (combine.py). Datastores
are FAISS indexes on disk (datastore.py); loops run the combination on the embedded llama.cpp
model (loop_llama.py), on torch/transformers (loop_torch.py) and inside vLLM (vllm.py);
DetoxBackend serves it. torch, faiss and llama.cpp are imported only when used.
"""

from __future__ import annotations

from .backend import DetoxBackend
from .combine import Neighbours, goodtriever_logprobs, knn_logprobs, top_p_mask
from .corpora import Document, add_documents, read_corpus
from .datastore import Datastore, IndexKind, Manifest, SearchDevice, open_stores
from .encoders import EmbeddedKeyEncoder, KeyEncoder, embedded_key_space
from .errors import DatastoreMismatchError, DatastoreNotFoundError
from .keyspace import Hook, KeySpace, ModelId, TokenizerId
from .loop_llama import LlamaDetoxGenerator
from .loop_torch import TorchDetoxGenerator
from .retrieval import DetoxSettings, Retriever, plain_step, sample

__all__ = [
    "Datastore",
    "DatastoreMismatchError",
    "DatastoreNotFoundError",
    "DetoxBackend",
    "DetoxSettings",
    "Document",
    "EmbeddedKeyEncoder",
    "Hook",
    "IndexKind",
    "KeyEncoder",
    "KeySpace",
    "LlamaDetoxGenerator",
    "Manifest",
    "ModelId",
    "Neighbours",
    "Retriever",
    "SearchDevice",
    "TokenizerId",
    "TorchDetoxGenerator",
    "add_documents",
    "embedded_key_space",
    "goodtriever_logprobs",
    "knn_logprobs",
    "open_stores",
    "plain_step",
    "read_corpus",
    "sample",
    "top_p_mask",
]
