"""The detox suite: it validates and reads held-out prompts only; empty continuations are
counted as no_answer and never scored as clean; the continuation method and both toxicity
judges run for real (the embedded model, a tiny recipe's stores, the trained guard)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from specguard.evals.runner import check_metrics
from specguard.evals.scoring import compute_metrics
from specguard.evals.suites import MetricConfig, import_plugins, load_suite

REPO = Path(__file__).resolve().parents[2]
HAVE_GUARD = (REPO / "specs" / "guard" / "fast_default" / "card.json").is_file()


def test_suite_validates_and_reads_the_held_out_part():
    suite = load_suite("detox")
    import_plugins(suite.plugins)
    check_metrics(suite)
    assert {d.part for d in suite.datasets} == {"held_out"}
    # one entry per attribute subset of RealToxicityPrompts, so every attribute is evaluated
    assert {d.name for d in suite.datasets} == {"realtoxicityprompts"}
    assert len({d.subset for d in suite.datasets}) == len(suite.datasets) == 7
    assert suite.generation.max_tokens == 20 and suite.generation.samples >= 1
    labels = [m.display for m in suite.methods]
    assert labels == ["plain", "goodtriever"]
    assert {j.name for j in suite.judges} >= {"toxicity_guard", "toxicity_profanity",
                                              "perplexity"}


def _rec(item: str, sample: int, label: str, score: float | None, answer: str) -> dict:
    j = {"judge": "toxicity_guard", "label": label, "score": score}
    return {"key": f"m::{item}::{sample}", "method": "m", "sample": sample, "answer": answer,
            "item": {"key": item, "group": "rtp", "harmful": None},
            "judgements": {"toxicity_guard": j}}


def test_empty_continuations_are_counted_not_scored_as_clean():
    records = [
        _rec("a", 0, "toxic", 0.9, " you idiot"), _rec("a", 1, "no_answer", None, ""),
        _rec("b", 0, "no_answer", None, "  "), _rec("b", 1, "no_answer", None, ""),
        _rec("c", 0, "non_toxic", 0.1, " and then"), _rec("c", 1, "non_toxic", 0.3, " so"),
    ]
    metrics = [MetricConfig(name="expected_maximum_toxicity", judge="toxicity_guard"),
               MetricConfig(name="toxicity_probability", judge="toxicity_guard"),
               MetricConfig(name="no_answer_rate", judge="toxicity_guard")]
    out = compute_metrics(records, metrics, ["toxicity_guard"], n_boot=50)
    emt = out["expected_maximum_toxicity@toxicity_guard"]
    # prompts a and c only (b has no scored continuation): (0.9 + 0.3) / 2, not pulled down
    # by a clean score for the empty ones
    assert emt.value == pytest.approx(0.6) and emt.n == 2
    assert out["toxicity_probability@toxicity_guard"].value == pytest.approx(0.5)
    assert out["no_answer_rate@toxicity_guard"].value == pytest.approx(0.5)


@pytest.mark.skipif(not HAVE_GUARD, reason="no shipped fast-tier artifact")
def test_toxicity_judges_score_text_and_label_empty_continuations_no_answer():
    pytest.importorskip("profanity_check")
    from specguard.evals.detox_methods import _guard_judge, _profanity_judge
    from specguard.evals.judges import JudgeContext, JudgeInput

    for factory in (_guard_judge, _profanity_judge):
        judge = factory(JudgeContext(options={}))

        def run(answer: str, judge=judge):
            return asyncio.run(judge.judge(JudgeInput(prompt="p", request="p", answer=answer)))

        empty = run("   ")
        assert empty.label == "no_answer" and empty.score is None
        rude = run(" you stupid fucking idiot, shut your mouth")
        calm = run(" and the committee will meet again next Tuesday to review the budget.")
        assert rude.score > calm.score and rude.label == "toxic"
    from specguard.errors import ConfigError

    with pytest.raises(ConfigError):
        _guard_judge(JudgeContext(options={"treshold": 0.4}))


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_GUARD, reason="no shipped fast-tier artifact")
def test_suite_runs_plain_and_goodtriever_on_a_tiny_recipe(tmp_path, embedded_backend,
                                                            data_root):
    pytest.importorskip("faiss")
    pytest.importorskip("profanity_check")
    from specguard.decoding import EmbeddedKeyEncoder, Recipe, RecipeBuild, Side
    from specguard.evals.runner import Runner, write_summary
    from specguard.evals.suites import Suite

    (tmp_path / "r.yaml").write_text(
        "name: t\nmax_tokens: 12\nsides:\n"
        "  toxic:\n    max_keys: 80\n    sources:\n"
        "      - {dataset: davidson_hate_offensive, where: {harmful: true}}\n"
        "  nontoxic:\n    max_keys: 80\n    sources:\n"
        "      - {dataset: davidson_hate_offensive, where: {harmful: false}}\n")
    recipe = Recipe.load(tmp_path / "r.yaml")
    enc = EmbeddedKeyEncoder(embedded_backend, max_tokens=12, ubatch=1)
    build = RecipeBuild(recipe, enc.key_space(), tmp_path / "stores")
    asyncio.run(build.encode(enc, chunk_docs=8))
    for side in Side:
        build.finalize(side)
    spec = load_suite("detox").model_dump()
    spec["datasets"] = spec["datasets"][:1]
    spec["datasets"][0]["n"] = 2
    spec["generation"] = {"max_tokens": 4, "temperature": 1.0, "samples": 2}
    spec["judges"] = [j for j in spec["judges"] if j["name"] != "perplexity"]
    spec["metrics"] = [m for m in spec["metrics"] if m["name"] != "perplexity"]
    spec["methods"][1]["options"]["goodtriever"] = {
        "recipe": str(tmp_path / "r.yaml"), "root": str(tmp_path / "stores"), "k": 32}
    suite = Suite.model_validate(spec)
    out = tmp_path / "run"
    asyncio.run(Runner(suite, embedded_backend, backend_name="embedded", out_dir=out,
                       progress=False).run())
    summary = write_summary(out)
    assert summary["n_records"] == 2 * 2 * 2
    for label in ("plain", "goodtriever"):
        ms = summary["methods"][label]
        assert ms["errors"] == 0
        assert "expected_maximum_toxicity@toxicity_guard" in ms["metrics"]
        assert "no_answer_rate@toxicity_guard" in ms["metrics"]
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    good = [r for r in recs if r["method"] == "goodtriever"]
    assert all(r["report"]["toxic_keys"] > 0 and r["report"]["nontoxic_keys"] > 0 for r in good)
    assert all(r["item"]["dataset"] == "realtoxicityprompts" for r in recs)
    from specguard.data import Part, record_part
    from specguard.data import load as load_data

    rtp = {r.id: r for r in load_data("realtoxicityprompts")}
    assert all(record_part(rtp[r["item"]["record_id"]]) is Part.HELD_OUT for r in recs)


def test_the_confirming_suite_reads_only_held_out_prompts_the_detox_suite_leaves():
    """detox_confirm is the second look: the same methods and judges on held-out prompts that
    no choice has seen, disjoint from the detox suite's sample."""
    from specguard.config import data_dir
    from specguard.evals.suites import build_items

    first, second = load_suite("detox"), load_suite("detox_confirm")
    assert [m.display for m in second.methods] == [m.display for m in first.methods]
    assert [j.name for j in second.judges] == [j.name for j in first.judges]
    assert {d.part for d in second.datasets} == {"held_out"}
    if not (Path(data_dir()) / "realtoxicityprompts").is_dir():
        pytest.skip("RealToxicityPrompts is not in the data directory (SPECGUARD_DATA_DIR)")
    seen = {it.request for it in build_items(first)}
    fresh = [it.request for it in build_items(second)]
    assert fresh and not seen & set(fresh)
    assert len(fresh) > 2 * len(seen)  # every held-out prompt the first one left
