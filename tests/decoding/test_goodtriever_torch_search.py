"""The torch search path (the GPU path, run on CPU here): exact top-k with torch against FAISS
on the same keys, block merging, short stores, IVF-PQ stores searched on their reconstructed
keys, and a Retriever step that gives the same distribution with either search."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
faiss = pytest.importorskip("faiss")
np = pytest.importorskip("numpy")

from specguard.decoding import Datastore, Hook, IndexKind, KeySpace, ModelId, TokenizerId
from specguard.decoding.retrieval import DetoxSettings, Retriever
from specguard.decoding.torch_search import TorchKeySearch

DIM, VOCAB = 16, 50


def _space() -> KeySpace:
    return KeySpace(model=ModelId(name="synthetic", sha256="c" * 64), hook=Hook.FINAL_NORM,
                    dim=DIM, tokenizer=TokenizerId(vocab_size=VOCAB, sample_hash="x"))


def _keys(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, DIM)) * 3).astype(np.float32), rng.integers(
        0, VOCAB, n).astype(np.int32)


@pytest.mark.parametrize("block", [1 << 18, 37])  # one block, and many with a running top-k
def test_exact_topk_matches_faiss_flat(block):
    keys, toks = _keys(500)
    queries = np.random.default_rng(1).standard_normal((7, DIM)).astype(np.float32) * 3
    search = TorchKeySearch(torch.from_numpy(keys), torch.from_numpy(toks), device="cpu",
                            block=block)
    dist, tok, rows = search.search(torch.from_numpy(queries), 20)
    index = faiss.IndexFlatL2(DIM)
    index.add(keys)
    fd, fi = index.search(queries, 20)
    assert (rows.numpy() == fi).all()
    assert np.allclose(dist.numpy(), fd, rtol=1e-4, atol=1e-3)
    assert (tok.numpy() == toks[fi]).all()


def test_fewer_keys_than_k_are_padded():
    keys, toks = _keys(3)
    search = TorchKeySearch(torch.from_numpy(keys), torch.from_numpy(toks), device="cpu")
    dist, tok, rows = search.search(torch.from_numpy(keys[:2]), 5)
    assert dist.shape == (2, 5) and torch.isinf(dist[:, 3:]).all()
    assert (tok[:, 3:] == -1).all() and (rows[:, 3:] == -1).all()
    assert dist[0, 0].item() == pytest.approx(0.0, abs=1e-3) and rows[0, 0].item() == 0
    with pytest.raises(ValueError):
        TorchKeySearch(torch.zeros(4, DIM), torch.zeros(3, dtype=torch.long))


def _store(path, kind: IndexKind, n: int = 400):
    keys, toks = _keys(n, seed=2)
    store = Datastore.create(path, _space(), index_kind=kind, expected_keys=n,
                             training_keys=keys if kind == IndexKind.IVFPQ else None)
    ids = [f"doc:{i}" for i in range(n // 10)]
    store.add_many(ids, keys, toks, np.repeat(np.arange(n // 10), 10))
    store.save()
    return store


def test_removed_documents_are_not_found_by_torch_search(tmp_path):
    store = _store(tmp_path / "flat", IndexKind.FLAT)
    keys, _ = _keys(400, seed=2)
    store.remove(["doc:0"])  # rows 0-9
    search = store.torch_search("cpu")
    assert len(search) == 390
    _, _, rows = search.search(torch.from_numpy(keys[:3]), 5)
    assert (rows >= 10).all()


def test_ivfpq_store_is_searched_on_its_reconstructed_keys(tmp_path):
    store = _store(tmp_path / "ivf", IndexKind.IVFPQ)
    keys, ids = store.live_keys()
    assert keys.shape == (400, DIM) and sorted(ids.tolist()) == list(range(400))
    queries, _ = _keys(5, seed=3)
    ivf = faiss.extract_index_ivf(store._index)
    ivf.nprobe = ivf.nlist  # exhaustive: FAISS scores every code, as torch scores every key
    fd, fi = store._index.search(queries, 10)
    d, _, rows = store.torch_search("cpu").search(torch.from_numpy(queries), 10)
    assert (rows.numpy()[:, :3] == fi[:, :3]).all()
    assert np.allclose(d.numpy(), fd, rtol=1e-3, atol=1e-2)


def test_retriever_step_is_the_same_with_torch_or_faiss_search(tmp_path):
    _store(tmp_path / "tox", IndexKind.FLAT)  # the toxic side, read back from its folder below
    keys, _ = _keys(400, seed=4)
    non = Datastore.create(tmp_path / "non", _space(), index_kind=IndexKind.FLAT)
    non.add("n", keys, np.random.default_rng(5).integers(0, VOCAB, 400).astype(np.int32))
    non.save()
    hidden = np.random.default_rng(6).standard_normal((3, DIM)).astype(np.float32) * 3
    logits = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(0))
    out = {}
    for device in ("cpu", "torch"):
        s = DetoxSettings(toxic=[tmp_path / "tox"], nontoxic=[tmp_path / "non"], alpha=1.0,
                          k=32, temperature=20.0, top_p=0.95, search=device)
        r = Retriever.open(s, _space())
        out[device] = r.step(logits, torch.from_numpy(hidden))
        assert r.rows == 3
    assert torch.allclose(out["cpu"], out["torch"], atol=1e-4)
    assert not torch.allclose(out["cpu"], torch.log_softmax(logits, -1), atol=1e-2)
