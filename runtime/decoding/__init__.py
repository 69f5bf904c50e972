"""Goodtriever (Pozzobon et al. 2023): retrieval-augmented detoxified decoding.

At each step the current hidden state is looked up in a toxic and a non-toxic datastore and
the next-token distribution moves away from what toxic text says next (combine.py: the one
combination every loop uses, with the bounds of settings.py). Datastores are FAISS indexes on
disk (datastore.py); loops run the combination on a backend's public token-step interface
(loop_llama.py: the embedded llama.cpp model), on torch/transformers (loop_torch.py) and
inside vLLM (specguard.vllm_plugin); DetoxBackend serves it. torch, faiss and llama.cpp are
imported only when used, and names load on first use (a policy validating its `detox:` block
imports settings.py alone).
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "DetoxBackend": "backend",
    "Neighbours": "combine",
    "goodtriever_logprobs": "combine",
    "goodtriever_step": "combine",
    "knn_logprobs": "combine",
    "knn_probs": "combine",
    "top_p_mask": "combine",
    "Document": "corpora",
    "add_documents": "corpora",
    "read_corpus": "corpora",
    "Datastore": "datastore",
    "IndexKind": "datastore",
    "Manifest": "datastore",
    "open_stores": "datastore",
    "EmbeddedKeyEncoder": "encoders",
    "KeyEncoder": "encoders",
    "TorchKeyEncoder": "encoders",
    "embedded_key_space": "encoders",
    "DatastoreMismatchError": "errors",
    "DatastoreNotFoundError": "errors",
    "Hook": "keyspace",
    "KeySpace": "keyspace",
    "ModelId": "keyspace",
    "TokenizerId": "keyspace",
    "LlamaDetoxGenerator": "loop_llama",
    "TorchDetoxGenerator": "loop_torch",
    "Recipe": "recipe",
    "RecipeBuild": "build",
    "Side": "recipe",
    "Retriever": "retrieval",
    "recipe_stores": "retrieval",
    "plain_step": "retrieval",
    "sample": "retrieval",
    "DetoxSettings": "settings",
    "GoodtrieverParams": "settings",
    "SearchDevice": "settings",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
