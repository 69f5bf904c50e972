"""`specguard datastore remove|stats` on a real (synthetic-key) store through Typer's runner."""

from __future__ import annotations

import json

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")

from specguard.decoding import Datastore, Hook, KeySpace, ModelId, TokenizerId
from specguard.decoding.cli import app
from typer.testing import CliRunner


def test_remove_by_prefix_and_stats(tmp_path):
    space = KeySpace(model=ModelId(name="synthetic", sha256="a" * 64), hook=Hook.FINAL_NORM,
                     dim=8, tokenizer=TokenizerId(vocab_size=50, sample_hash="x"))
    store = Datastore.create(tmp_path / "s", space)
    rng = np.random.default_rng(0)
    for doc in ("toxicchat:1", "toxicchat:2", "jigsaw:1"):
        store.add(doc, rng.standard_normal((5, 8)).astype(np.float32), np.arange(5, dtype=np.int32))
    store.save()
    runner = CliRunner()
    out = runner.invoke(app, ["remove", str(tmp_path / "s"), "toxicchat:", "--prefix"])
    assert out.exit_code == 0, out.output
    stats = json.loads(runner.invoke(app, ["stats", str(tmp_path / "s"), "--json"]).stdout)
    assert stats[0]["keys"] == 5 and stats[0]["documents"] == 1 and stats[0]["removed_rows"] == 10
    missing = runner.invoke(app, ["stats", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1
