"""Published figures: the pages are generated from the committed JSON summaries (and a test
fails when they drift), smoke summaries are never published, and no committed summary or judge
card carries rows of the non-commercial sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from specguard.evals.results import Readme, Result, Table, write_result
from specguard.evals.scoreboard import EXPECTED, load_results, main, render, sync

REPO = Path(__file__).resolve().parents[2]


def test_published_pages_are_in_sync_with_their_summaries():
    stale = sync(REPO, check=True)
    assert not stale, f"run `python -m specguard.evals.scoreboard`: {stale}"


def test_every_committed_summary_is_a_real_run_with_its_script():
    results = load_results(REPO)
    for name, r in results.items():
        assert not r.smoke, name
        script = r.script.split()[0]
        if script.endswith(".py"):
            assert (REPO / script).is_file(), f"{name}: {r.script} is not committed"
        assert r.tables and all(t.rows for t in r.tables if t.id != "specs"), name


def _page(root: Path, text: str) -> Path:
    page = root / "docs" / "results" / "demo.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
    return page


def test_blocks_are_rewritten_from_the_summary_and_drift_is_caught(tmp_path):
    (tmp_path / "README.md").write_text("# x\n<!-- scoreboard:readme -->\n<!-- /scoreboard -->\n")
    page = _page(tmp_path, "intro\n<!-- scoreboard:demo:main -->\nold numbers\n"
                           "<!-- /scoreboard -->\nprose stays\n")
    result = Result(name="demo", title="Demo", script="bench/demo.py", command="python demo",
                    readme=Readme(what="demo thing", where="docs/results/demo.md",
                                  headline="3.0x faster"),
                    tables=[Table(id="main", title="T", columns=["a", "b|c"],
                                  rows=[[1, "x|y"]])])
    write_result(result, tmp_path / "docs" / "results")
    assert sync(tmp_path, check=True) == [tmp_path / "README.md", page]
    assert main(["--root", str(tmp_path), "--check"]) == 1
    sync(tmp_path)
    text = page.read_text()
    assert "old numbers" not in text and "prose stays" in text
    assert "| a | b\\|c |" in text and "| 1 | x\\|y |" in text  # pipes escaped
    readme = (tmp_path / "README.md").read_text()
    assert "| demo thing | `docs/results/demo.md` | 3.0x faster |" in readme
    # Expected results without a summary say which command produces them.
    assert f"not regenerated yet: `{EXPECTED[0].command}`" in readme
    assert main(["--root", str(tmp_path), "--check"]) == 0


def test_a_block_without_its_summary_says_how_to_measure_it():
    text = "<!-- scoreboard:refusal:headline -->\n<!-- /scoreboard -->\n"
    assert "run `specguard eval run refusal --publish`" in render(text, {})


def test_smoke_summaries_are_refused(tmp_path):
    write_result(Result(name="demo", title="d", script="s", command="c", smoke=True,
                        tables=[Table(id="t", columns=["a"], rows=[[1]])]),
                 tmp_path / "docs" / "results")
    with pytest.raises(SystemExit, match="smoke"):
        sync(tmp_path, check=True)


def test_no_committed_summary_or_card_holds_non_commercial_texts(data_root):
    """Rows of the non-commercial sets (model outputs, BeaverTails, Safety-Tuned LLaMAs,
    ToxicChat) never appear in a committed JSON file."""
    from specguard.data import get_spec, load

    texts: set[str] = set()
    for name in ("xstest_completions", "refusal_direction_completions", "beavertails_sample",
                 "safety_tuned_llamas", "toxicchat"):
        assert get_spec(name).non_commercial or name == "toxicchat"
        for r in load(name, subset="all", data_dir_override=data_root):
            for t in (r.text, getattr(r, "answer", None), getattr(r, "response", None),
                      getattr(r, "safe_response", None)):
                if t and len(t) >= 40:
                    texts.add(t[:40])
    files = [*(REPO / "docs" / "results").glob("*.json"),
             *(REPO / "specs" / "judges").glob("*.json")]
    for f in files:
        blob = json.dumps(json.loads(f.read_text()))  # one escaping, as the texts compare
        raw = f.read_text()
        leaked = [t for t in texts if t in raw or json.dumps(t)[1:-1] in blob]
        assert not leaked, f"{f.name} holds dataset text: {leaked[:2]}"
