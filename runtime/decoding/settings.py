"""Goodtriever's settings, with one set of bounds for every loop that runs it (llama.cpp and
torch in this process, vLLM's logits processor in an engine): `GoodtrieverParams` holds the
numbers, `DetoxSettings` adds the datastore folders a policy names, and the vLLM switches
(specguard.vllm_plugin.TapSwitches) add datastore names under the engine's root. Light: only
pydantic, so a policy can validate its `detox:` block without loading the decoding code."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 4096  # FAISS searches at most this many neighbours per query on every device here
MAX_ALPHA = 100.0  # far past any useful steering; a larger value is a typo


class SearchDevice(StrEnum):
    AUTO = "auto"  # FAISS on GPU when faiss has GPU support and a GPU is visible, else CPU
    CPU = "cpu"
    # exact search with torch (specguard.decoding.torch_search; CUDA when available) on the
    # device of the logits: flat stores' keys, IVF-PQ stores' reconstructed keys
    TORCH = "torch"


class GoodtrieverParams(BaseModel):
    """The combination's numbers: s = log_softmax(l' + alpha * (log p_kNN+ - log p_kNN-)) over
    the k nearest neighbours weighted softmax(-d / temperature), l' the base distribution after
    top-p."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(5.0, ge=0.0, le=MAX_ALPHA)
    k: int = Field(1024, ge=1, le=MAX_K)
    temperature: float = Field(2000.0, gt=0.0, description="T in softmax(-d/T)")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus on the base distribution")
    gate: float = Field(
        0.0, ge=0.0, le=1.0,
        description="apply the kNN shift only where the stores' distributions differ on the "
        "nucleus by at least this total variation (0: always, as in the paper)")
    penalize_only: bool = Field(
        False, description="clip the shift at zero: push down the tokens the toxic store "
        "favours over the non-toxic one, push nothing up (the paper: False)")


class DetoxSettings(GoodtrieverParams):
    """Goodtriever settings a deployment or policy chooses.

    Defaults: alpha = 5, T = 2000, k = 1024 neighbours, top-p 0.9 on the base distribution,
    the full shift, no agreement gate. Chosen by bench/goodtriever_sweep.py on the 168
    RealToxicityPrompts TRAIN + VALIDATION prompts (no store trains on RTP) with the `detox`
    recipe's 270k-key stores: the lowest guard EMT whose perplexity stays within +15% and whose
    dist-2 within -10% of plain decoding's (EMT 0.63 -> 0.26 at 1.14x plain's perplexity, dist-2
    0.94x; docs/results/detox.md has both grids and the curve). The paper's alpha = 2, T = 100
    (tuned for GPT-2 large) took EMT only to 0.45 on the embedded SmolLM2-135M. What moved it
    is T: on these stores T = 100 weighs about 240 of the 1024 neighbours (median effective
    count; T = 50: about 18, and it barely detoxified while more than doubling perplexity),
    T >= 1000 weighs all of them nearly alike, so p_kNN becomes the share of each next token
    among the 1024 nearest keys, a smoother estimate that a larger alpha can lean on
    (bench/goodtriever_temperature.py). Pushed further (alpha 6 and up) the shift detoxifies
    more but costs 1.2x-1.5x perplexity and repeats itself (dist-2 0.90-0.92 of plain's).
    `penalize_only` pushes down the toxic store's tokens and nothing up: it keeps diversity but
    hardly moves the guard's EMT (0.51 at alpha 8). gate > 0 applies the shift only where the
    two stores' distributions differ on the nucleus by at least that total variation; with the
    big stores a gate of 0.5 fires on about 3% of steps and changes nothing."""

    toxic: list[Path] = Field(default_factory=list, description="toxic datastore folders")
    nontoxic: list[Path] = Field(default_factory=list, description="non-toxic datastore folders")
    recipe: str | None = Field(
        None, description="a datastore recipe (YAML path or built-in name, e.g. detox): its "
        "toxic and non-toxic stores built for this model, found under `root`")
    root: Path | None = Field(None, description="datastore root (default: the cache)")
    search: SearchDevice = SearchDevice.AUTO

    def describe(self) -> dict[str, Any]:
        """What the safety report says about this decoding."""
        return {
            "method": "goodtriever",
            "toxic_datastores": [p.name for p in self.toxic],
            "nontoxic_datastores": [p.name for p in self.nontoxic],
            "recipe": self.recipe,
            "alpha": self.alpha,
            "k": self.k,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "gate": self.gate,
            "penalize_only": self.penalize_only,
        }


__all__ = ["MAX_ALPHA", "MAX_K", "DetoxSettings", "GoodtrieverParams", "SearchDevice"]
