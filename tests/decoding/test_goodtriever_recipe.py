"""Datastore recipes: strict YAML, TRAIN parts only, sources interleaved; the resumable build
with the real embedded model (interrupted after one chunk, resumed, the same store as an
uninterrupted build), finalize's manifest, a changed document order refused, the CLI."""

from __future__ import annotations

import asyncio
import json

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")

from specguard.data import Part, in_part, load
from specguard.decoding import Datastore, EmbeddedKeyEncoder, IndexKind, Recipe, RecipeBuild, Side
from specguard.decoding.recipe import side_documents, source_documents
from specguard.errors import ConfigError

TINY = """
name: tiny
max_tokens: 12
sides:
  toxic:
    max_keys: 60
    sources:
      - {dataset: davidson_hate_offensive, where: {harmful: true}}
      - {dataset: beavertails_sample, where: {harmful: true}, field: response}
  nontoxic:
    max_keys: 60
    sources:
      - {dataset: davidson_hate_offensive, where: {harmful: false}}
      - {dataset: hh_rlhf_harmless_test, field: chosen, role: assistant}
"""


def _recipe(tmp_path, text: str = TINY, name: str = "tiny.yaml") -> Recipe:
    path = tmp_path / name
    path.write_text(text)
    return Recipe.load(path)


def test_recipe_is_strict_and_hashed(tmp_path):
    r = _recipe(tmp_path)
    assert r.sides[Side.TOXIC].max_keys == 60
    with pytest.raises(ConfigError, match="invalid"):
        _recipe(tmp_path, TINY.replace("max_tokens: 12", "max_tokens: 12\nmax_token: 3"), "b.yaml")
    with pytest.raises(ConfigError, match="invalid"):
        _recipe(tmp_path, TINY.replace("field: response", "field: response, wher: {}"), "c.yaml")
    other = _recipe(tmp_path, TINY.replace("max_keys: 60", "max_keys: 61", 1), "d.yaml")
    assert r.digest("a" * 64) != other.digest("a" * 64)
    assert r.digest("a" * 64) != r.digest("b" * 64)  # another model: another folder
    assert r.digest("a" * 64) == _recipe(tmp_path, TINY + "\n# a comment\n", "e.yaml").digest("a" * 64)
    builtin = Recipe.load("detox")
    assert set(builtin.sides) == {Side.TOXIC, Side.NONTOXIC}
    with pytest.raises(ConfigError, match="built-in recipe"):
        Recipe.load("no_such_recipe")


def test_documents_come_from_train_parts_only_and_interleave(tmp_path, data_root):
    r = _recipe(tmp_path)
    source = r.sides[Side.TOXIC].sources[0]
    docs = source_documents(source)
    records = load("davidson_hate_offensive")
    train_ids = {f"davidson_hate_offensive:{x.subset}/{x.id}"
                 for x in in_part(records, Part.TRAIN) if x.harmful}
    other_ids = {f"davidson_hate_offensive:{x.subset}/{x.id}"
                 for p in (Part.VALIDATION, Part.HELD_OUT) for x in in_part(records, p)}
    assert docs and {d.id for d in docs} == train_ids
    assert not {d.id for d in docs} & other_ids
    order, labels = side_documents(r, Side.NONTOXIC)
    first = [labels[d.id] for d in order[:4]]
    assert first[0] != first[1] and first[:2] == first[2:4]  # round-robin over the sources
    turns = [d for d in order if d.id.startswith("hh_rlhf")]
    assert turns and all("#" in d.id for d in turns)  # one document per assistant turn
    with pytest.raises(ConfigError, match="no field"):
        source_documents(source.model_copy(update={"field": "nope"}))


@pytest.mark.model
@pytest.mark.slow
def test_build_resumes_and_matches_an_uninterrupted_build(tmp_path, embedded_backend):
    recipe = _recipe(tmp_path)
    encoder = EmbeddedKeyEncoder(embedded_backend, max_tokens=recipe.max_tokens, ubatch=1)
    space = encoder.key_space()

    straight = RecipeBuild(recipe, space, tmp_path / "a")
    asyncio.run(straight.encode(encoder, chunk_docs=4))

    resumed = RecipeBuild(recipe, space, tmp_path / "b")
    assert resumed.folder.name == straight.folder.name  # the same recipe and model: same name

    class Stop(Exception):
        pass

    def stop(side, progress):
        raise Stop

    with pytest.raises(Stop):  # interrupted right after the first chunk is written
        asyncio.run(resumed.encode(encoder, chunk_docs=4, on_chunk=stop))
    first = {s: resumed.progress(s) for s in Side}
    assert sum(p.documents_done for p in first.values()) == 4
    state = asyncio.run(resumed.encode(encoder, chunk_docs=4))
    assert all(p.finished for p in state.values())

    for side in Side:
        a, b = straight.finalize(side), resumed.finalize(side)
        assert a.documents == b.documents and len(a) == len(b) <= 60 + 12
        ka, _ = a.live_keys()
        kb, _ = b.live_keys()
        assert np.allclose(ka, kb, atol=1e-4)
        manifest = json.loads((resumed.store_path(side) / "manifest.json").read_text())
        assert manifest["recipe"]["name"] == "tiny"
        build = manifest["build"]
        assert build["part"] == "train" and build["complete"] is True
        assert sum(s["keys"] for s in build["sources"].values()) == len(b)
        assert len(build["sources"]) == 2  # both sources made it into a store cut at 60 keys

    # the stores serve the decoding loop: a store search returns next tokens of the keys
    store = Datastore.open(resumed.store_path(Side.TOXIC), space)
    keys, _ = store.live_keys()
    dist, tok = store.search(keys[:2], 3)
    assert dist[0, 0] == pytest.approx(0.0, abs=1e-3) and (tok >= 0).all()

    # IVF-PQ from the same shards (few keys: a handful of lists)
    ivf = resumed.finalize(Side.TOXIC, index=IndexKind.IVFPQ)
    assert ivf.manifest.index_kind == IndexKind.IVFPQ and len(ivf) == len(store)

    # the recipe's documents changed order since (another seed, same folder): refused
    rows = (resumed.folder / ".work" / "toxic" / "shards.jsonl").read_text().splitlines()
    row = json.loads(rows[0])
    row["first"] = ["somewhere:else"]
    (resumed.folder / ".work" / "toxic" / "shards.jsonl").write_text(
        "\n".join([json.dumps(row), *rows[1:]]) + "\n")
    with pytest.raises(ConfigError, match="no longer match"):
        asyncio.run(resumed.encode(encoder, chunk_docs=4))


@pytest.mark.model
@pytest.mark.slow
def test_cli_finalizes_a_recipe_build(tmp_path, embedded_backend):
    from specguard.decoding.cli import app
    from typer.testing import CliRunner

    recipe = _recipe(tmp_path)
    encoder = EmbeddedKeyEncoder(embedded_backend, max_tokens=recipe.max_tokens, ubatch=1)
    build = RecipeBuild(recipe, encoder.key_space(), tmp_path / "root")

    def stop(side, progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(build.encode(encoder, chunk_docs=4, on_chunk=stop))
    runner = CliRunner()
    out = runner.invoke(app, ["build", "--recipe", str(tmp_path / "tiny.yaml"), "--root",
                              str(tmp_path / "root"), "--finalize-only", "--threads", "1"])
    # one side has a chunk, the other none yet: the CLI says so and exits 1
    assert out.exit_code == 1 and "Nothing encoded yet" in out.output
    partial = Datastore.open(build.store_path(Side.TOXIC))
    assert partial.manifest.build["complete"] is False and len(partial) > 0
    bad = runner.invoke(app, ["build", "somewhere", "--recipe", str(tmp_path / "tiny.yaml")])
    assert bad.exit_code != 0


def test_settings_find_a_recipes_stores_or_say_how_to_build_them(tmp_path):
    from specguard.decoding import (
        DatastoreNotFoundError,
        DetoxSettings,
        Hook,
        KeySpace,
        ModelId,
        Retriever,
        TokenizerId,
    )

    space = KeySpace(model=ModelId(name="synthetic", sha256="d" * 64), hook=Hook.FINAL_NORM,
                     dim=8, tokenizer=TokenizerId(vocab_size=50, sample_hash="x"))
    recipe = _recipe(tmp_path)
    settings = DetoxSettings(recipe=str(tmp_path / "tiny.yaml"), root=tmp_path / "root")
    with pytest.raises(DatastoreNotFoundError, match="datastore build --recipe"):
        Retriever.open(settings, space)
    build = RecipeBuild(recipe, space, tmp_path / "root")
    rng = np.random.default_rng(0)
    for side in Side:
        store = Datastore.create(build.store_path(side), space)
        store.add(f"{side}:1", rng.standard_normal((5, 8)).astype(np.float32),
                  np.arange(5, dtype=np.int32))
        store.save()
    r = Retriever.open(settings, space)
    assert len(r.toxic) == len(r.nontoxic) == 1
    assert r.describe()["recipe"] == str(tmp_path / "tiny.yaml") and r.describe()["gate"] == 0.0
