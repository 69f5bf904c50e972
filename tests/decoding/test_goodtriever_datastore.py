"""Datastores: build from a corpus with the real model, search, append, remove by source id,
persist, refuse another model; IVF-PQ and torch exact search on synthetic keys."""

from __future__ import annotations

import asyncio

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")

from specguard.decoding import (
    Datastore,
    DatastoreMismatchError,
    Document,
    EmbeddedKeyEncoder,
    Hook,
    IndexKind,
    KeySpace,
    ModelId,
    SearchDevice,
    TokenizerId,
    add_documents,
    read_corpus,
)


def _synthetic_space(dim: int = 32) -> KeySpace:
    return KeySpace(
        model=ModelId(name="synthetic", sha256="a" * 64), hook=Hook.FINAL_NORM, dim=dim,
        tokenizer=TokenizerId(vocab_size=100, sample_hash="x"),
    )


def test_read_corpus_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\n")
    (tmp_path / "b.csv").write_text('id,text,toxic\n7,"hello, you",1\n8,fine,0\n')
    (tmp_path / "c.jsonl").write_text('{"body": "x y", "flag": true}\n{"body": "z", "flag": false}\n')
    assert list(read_corpus(tmp_path / "a.txt")) == [
        Document("a:0", "first line"), Document("a:2", "second line")
    ]
    assert list(read_corpus(tmp_path / "b.csv", id_column="id", where={"toxic": "1"})) == [
        Document("b:7", "hello, you")
    ]
    assert [d.text for d in read_corpus(tmp_path / "c.jsonl", column="body",
                                        where={"flag": "True"})] == ["x y"]


@pytest.mark.model
@pytest.mark.slow
def test_build_search_append_remove_and_refuse(tmp_path, embedded_backend):
    encoder = EmbeddedKeyEncoder(embedded_backend, max_tokens=64)
    space = encoder.key_space()
    assert space.dim == 576 and space.hook == Hook.FINAL_NORM
    corpus = tmp_path / "c.csv"
    corpus.write_text(
        "id,text\n"
        "a,You are a worthless idiot and everyone hates you.\n"
        "b,The weather in Lisbon is mild and sunny in spring.\n"
    )
    store = Datastore.create(tmp_path / "s", space, label="toxic")
    added = asyncio.run(add_documents(store, encoder, read_corpus(corpus, id_column="id")))
    assert added == len(store) > 10
    store.save()

    reopened = Datastore.open(tmp_path / "s", space)
    assert sorted(reopened.documents) == ["c:a", "c:b"]
    # a key of document a finds itself (distance ~0) and the token that followed it there
    (keys_a, next_a), = asyncio.run(encoder.encode(["You are a worthless idiot and everyone hates you."]))
    dist, tok = reopened.search(keys_a[2:3], 4)
    assert dist[0, 0] < 1e-2 and tok[0, 0] == next_a[2]
    # decoding one token per call gives the same keys up to llama.cpp's batching noise
    (keys_1, next_1), = asyncio.run(EmbeddedKeyEncoder(embedded_backend, ubatch=1).encode(
        ["You are a worthless idiot and everyone hates you."]))
    assert np.array_equal(next_1, next_a) and ((keys_1 - keys_a) ** 2).sum(-1).max() < 20.0
    # more neighbours than keys: the rest are -1
    _, tok_all = reopened.search(keys_a[:1], len(reopened) + 5)
    assert (tok_all[0, -5:] == -1).all() and (tok_all[0, :-5] >= 0).all()

    # remove document a: its keys are gone, b's stay; appending a again brings them back
    n_a = len(keys_a)
    assert reopened.remove(["c:a"]) == n_a
    assert reopened.documents == ["c:b"]
    dist, _ = reopened.search(keys_a[2:3], 1)
    assert dist[0, 0] > 1.0
    asyncio.run(add_documents(reopened, encoder, [Document("c:a", "You are a worthless idiot "
                                                            "and everyone hates you.")]))
    reopened.save()
    again = Datastore.open(tmp_path / "s", space)
    assert len(again) == added and again.stats()["removed_rows"] == n_a
    dist, tok = again.search(keys_a[2:3], 1)
    assert dist[0, 0] < 1e-2 and tok[0, 0] == next_a[2]

    # a store for another model (other weights) or another tokenizer is refused
    other = space.model_copy(update={"model": ModelId(name="gemma-3-270m", sha256="b" * 64)})
    with pytest.raises(DatastoreMismatchError, match="another model"):
        Datastore.open(tmp_path / "s", other)
    other_tok = space.model_copy(
        update={"tokenizer": TokenizerId(vocab_size=262144, sample_hash="y")}
    )
    with pytest.raises(DatastoreMismatchError, match="tokenizer"):
        Datastore.open(tmp_path / "s", other_tok)


def test_ivfpq_store_on_synthetic_keys(tmp_path):
    rng = np.random.default_rng(0)
    space = _synthetic_space(32)
    keys = rng.standard_normal((6000, 32)).astype(np.float32)
    store = Datastore.create(tmp_path / "ivf", space, index_kind=IndexKind.IVFPQ,
                             expected_keys=6000, training_keys=keys)
    for i in range(6):
        store.add(f"doc{i}", keys[i * 1000:(i + 1) * 1000], np.full(1000, i, np.int32))
    store.save()
    again = Datastore.open(tmp_path / "ivf", space)
    assert again.manifest.index_kind == IndexKind.IVFPQ and len(again) == 6000
    _, tok = again.search(keys[4500:4510], 1)
    assert (tok[:, 0] == 4).mean() >= 0.8  # PQ is approximate
    assert again.remove(["doc4"]) == 1000
    _, tok = again.search(keys[4500:4510], 8)
    assert not (tok == 4).any()


def test_torch_exact_search_matches_faiss_flat(tmp_path):
    pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    space = _synthetic_space(16)
    store = Datastore.create(tmp_path / "f", space)
    keys = rng.standard_normal((500, 16)).astype(np.float32)
    store.add("d0", keys[:250], rng.integers(0, 100, 250).astype(np.int32))
    store.add("d1", keys[250:], rng.integers(0, 100, 250).astype(np.int32))
    store.remove(["d0"])
    q = rng.standard_normal((3, 16)).astype(np.float32)
    d_faiss, t_faiss = store.search(q, 10)
    store.use_device(SearchDevice.TORCH)
    d_torch, t_torch = store.search(q, 10)
    assert np.array_equal(t_faiss, t_torch)
    assert np.allclose(d_faiss, d_torch, rtol=1e-4, atol=1e-3)
