"""Loaders for the answer-level sets: model completions with human (or automatic) refusal,
compliance and harm labels, for training and validating the judges: one `register` per dataset."""

from __future__ import annotations
