"""Settings and the per-step retrieval + combination every decoding loop calls.

`Retriever.step(base_logits, hidden)` is the whole of Goodtriever for one decoding step of a
batch: search the toxic and non-toxic datastores with the hidden states at the store's hook,
then combine. A loop (llama.cpp, torch, vLLM) only has to hand it the base logits [B, V] and
the hidden states [B, dim] it already computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._threads import one_thread_if_small
from .combine import Neighbours, goodtriever_logprobs, goodtriever_step
from .datastore import Datastore
from .keyspace import KeySpace
from .settings import DetoxSettings, SearchDevice

if TYPE_CHECKING:
    import numpy as np
    import torch


class Retriever:
    """Opened datastores (both sides) and the settings; one `step` per decoding step."""

    def __init__(
        self, settings: DetoxSettings, toxic: Sequence[Datastore], nontoxic: Sequence[Datastore]
    ) -> None:
        self.settings = settings
        self.toxic = list(toxic)
        self.nontoxic = list(nontoxic)
        for s in (*self.toxic, *self.nontoxic):
            s.use_device(settings.search)
        self.rows = 0  # rows stepped
        self.shifted = 0  # rows whose distribution the kNN shift moved (the gate let through)

    @classmethod
    def open(cls, settings: DetoxSettings, expect: KeySpace | None) -> Retriever:
        """Open the settings' datastores (its folders, and its recipe's stores), refusing any
        built for another key space."""
        toxic, nontoxic = list(settings.toxic), list(settings.nontoxic)
        if settings.recipe is not None:
            t, n = recipe_stores(settings.recipe, expect, settings.root)
            toxic.append(t)
            nontoxic.append(n)
        return cls(
            settings,
            [Datastore.open(p, expect) for p in toxic],
            [Datastore.open(p, expect) for p in nontoxic],
        )

    def _side(self, stores: Sequence[Datastore], hidden: np.ndarray) -> Neighbours | None:
        import numpy as np
        import torch

        if not stores:
            return None
        k = self.settings.k
        found = [s.search(hidden, k) for s in stores]
        dist = np.concatenate([d for d, _ in found], axis=1)
        tok = np.concatenate([t for _, t in found], axis=1)
        if len(found) > 1:  # keep the k nearest over all stores of this side
            order = np.argsort(dist, axis=1, kind="stable")[:, :k]
            dist = np.take_along_axis(dist, order, 1)
            tok = np.take_along_axis(tok, order, 1)
        dist = np.where(tok >= 0, dist, 0.0).astype(np.float32)  # missing: ignored, finite
        return Neighbours(torch.from_numpy(dist), torch.from_numpy(tok))

    def _side_torch(self, stores: Sequence[Datastore], hidden: torch.Tensor,
                    device: torch.device) -> Neighbours | None:
        """The same on the search device with torch: no host round trip on a GPU."""
        import torch

        if not stores:
            return None
        k = self.settings.k
        found = [s.torch_search(str(device)).search(hidden, k) for s in stores]
        dist = torch.cat([d for d, _, _ in found], dim=1)
        tok = torch.cat([t for _, t, _ in found], dim=1)
        if len(found) > 1:
            dist, order = torch.sort(dist, dim=1, stable=True)
            dist, tok = dist[:, :k], torch.gather(tok, 1, order)[:, :k]
        dist = torch.where(tok >= 0, dist, torch.zeros_like(dist))
        return Neighbours(dist.to(device), tok.to(device))

    def neighbours(self, hidden: np.ndarray) -> tuple[Neighbours | None, Neighbours | None]:
        """(toxic, non-toxic) neighbours of hidden states [B, dim] (FAISS, on the host)."""
        return self._side(self.toxic, hidden), self._side(self.nontoxic, hidden)

    def step(self, base_logits: torch.Tensor, hidden: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Goodtriever next-token log-probs [B, V] for one decoding step. `hidden` [B, dim] is
        a numpy array or a tensor; with search `torch` the stores are searched on the logits'
        device (the GPU path), else FAISS searches on the host."""
        with one_thread_if_small(base_logits.shape[0], base_logits.device.type == "cpu"):
            return self._step(base_logits, hidden)

    def _step(self, base_logits: torch.Tensor, hidden: np.ndarray | torch.Tensor) -> torch.Tensor:
        import numpy as np
        import torch

        s = self.settings
        device = base_logits.device
        if s.search == SearchDevice.TORCH:
            h = torch.as_tensor(hidden) if isinstance(hidden, np.ndarray) else hidden
            toxic = self._side_torch(self.toxic, h, device)
            nontoxic = self._side_torch(self.nontoxic, h, device)
        else:
            h = hidden if isinstance(hidden, np.ndarray) else (
                hidden.detach().to(torch.float32).cpu().numpy())
            toxic, nontoxic = self.neighbours(h)
            if toxic is not None:
                toxic = Neighbours(toxic.distances.to(device), toxic.tokens.to(device))
            if nontoxic is not None:
                nontoxic = Neighbours(nontoxic.distances.to(device), nontoxic.tokens.to(device))
        out, applied = goodtriever_step(
            base_logits, toxic=toxic, nontoxic=nontoxic, alpha=s.alpha,
            temperature=s.temperature, top_p=s.top_p, gate=s.gate,
            penalize_only=s.penalize_only,
        )
        self.rows += int(applied.shape[0])
        self.shifted += int(applied.sum())
        return out

    def describe(self) -> dict[str, Any]:
        d = self.settings.describe()
        d["toxic_datastores"] = [s.manifest.name for s in self.toxic]
        d["nontoxic_datastores"] = [s.manifest.name for s in self.nontoxic]
        d["toxic_keys"] = sum(len(s) for s in self.toxic)
        d["nontoxic_keys"] = sum(len(s) for s in self.nontoxic)
        if self.rows:
            d["shifted_share"] = round(self.shifted / self.rows, 4)
        return d


def recipe_stores(recipe: str | Path, key_space: KeySpace | None,
                  root: str | Path | None = None) -> tuple[Path, Path]:
    """The (toxic, non-toxic) store folders a recipe builds for this key space."""
    from .build import RecipeBuild
    from .errors import DatastoreNotFoundError
    from .recipe import Recipe, Side

    if key_space is None:
        from ..errors import ConfigError

        raise ConfigError("A recipe's stores are found by the model's key space; none was given.")
    rec = Recipe.load(recipe)
    build = RecipeBuild(rec, key_space, root or default_root())
    paths = build.store_path(Side.TOXIC), build.store_path(Side.NONTOXIC)
    for p in paths:
        if not (p / "manifest.json").is_file():
            raise DatastoreNotFoundError(
                f"Recipe {rec.name!r} has no {p.name} store for this model yet ({p}).",
                hint=f"Build it with `specguard datastore build --recipe {recipe}`.")
    return paths


def default_root() -> Path:
    """$SPECGUARD_DATASTORES, else ~/.cache/specguard/datastores."""
    import os

    return Path(os.environ.get("SPECGUARD_DATASTORES", "~/.cache/specguard/datastores")).expanduser()


def plain_step(base_logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The baseline on the same path: top-p-filtered base log-probs (alpha = 0)."""
    with one_thread_if_small(base_logits.shape[0], base_logits.device.type == "cpu"):
        return goodtriever_logprobs(base_logits, alpha=0.0, top_p=top_p)


def sample(logprobs: torch.Tensor, temperature: float, generator: torch.Generator | None):
    """Token ids [B] from log-probs [B, V]: argmax at temperature 0, else a draw."""
    import torch

    with one_thread_if_small(logprobs.shape[0], logprobs.device.type == "cpu"):
        if temperature == 0.0:
            return logprobs.argmax(dim=-1)
        probs = torch.softmax(logprobs / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


__all__ = ["DetoxSettings", "Retriever", "default_root", "plain_step", "recipe_stores", "sample"]
