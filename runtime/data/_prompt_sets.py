"""Loaders for the prompt-level safety sets added to the data directory later (harmful requests,
look-alikes, hate and toxicity corpora, multilingual requests): one `register` per dataset."""

from __future__ import annotations
