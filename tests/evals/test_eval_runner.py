"""Suites, the runner's cache and resume, summaries and reports.

Most tests run the `scripted` method from toy_harness.py (a plug-in through the public method
registry whose answers are fixed by the prompt), so that the numbers can be checked by hand
without a model. The embedded model runs in the tests marked `model`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import pytest
from specguard.errors import ConfigError
from specguard.evals.report import load_summaries, render_html, render_markdown, write_report
from specguard.evals.runner import RECORDS, Runner, read_records
from specguard.evals.suites import Suite, build_items, builtin_suites, load_suite
from toy_harness import ScriptedMethod
from toy_harness import write_toy_suite as _write_custom


def _run(suite, out, **kw):
    return asyncio.run(Runner(suite, None, backend_name="none", out_dir=out, progress=False,
                              **kw).run())


def test_builtin_refusal_suite_builds_a_mix(data_root):
    suite = load_suite("refusal")
    items = build_items(suite, data_dir=data_root)
    assert len(items) == 62
    groups = [i.group for i in items]
    assert groups[:4] == ["harmful", "harmful", "harmful", "harmful_jailbreak"]  # interleaved
    assert sum(i.harmful for i in items) == 38 and sum(not i.harmful for i in items) == 24
    assert all(i.transform.startswith("jailbreak:") for i in items
               if i.group == "harmful_jailbreak")
    assert build_items(suite, data_dir=data_root) == items  # deterministic
    assert {m.name for m in suite.methods} == {"raw", "runtime"}
    runtime = next(m for m in suite.methods if m.name == "runtime")
    assert runtime.options["policy"] == "embedded_default"  # what `serve` ships, not default()


@pytest.mark.parametrize("name", builtin_suites())
def test_shipped_suites_read_evaluation_parts_only(name, data_root):
    """Every item of every shipped suite comes from the held-out part of its dataset (which no
    trainer sees and no choice is made on), and so does every jailbreak template and every
    at-risk profile; no record is an item twice (a pooled row counts each item once)."""
    from specguard.data import Part, load, record_part
    from specguard.evals.suites import import_plugins

    suite = load_suite(name)
    import_plugins(suite.plugins)
    assert all(e.part == "held_out" for e in suite.datasets), [e for e in suite.datasets
                                                              if e.part != "held_out"]
    for entry in suite.datasets:
        if entry.transform and entry.transform.name in ("jailbreak", "at_risk_users"):
            assert entry.transform.options.get("part", "held_out") == "held_out"
    items = build_items(suite, data_dir=data_root)
    assert items
    seen = [(it.dataset, it.subset, it.record_id, it.transform) for it in items]
    assert len(set(seen)) == len(seen), "a record is an item of two groups"
    by_source: dict = {}
    for it in items:
        by_source.setdefault((it.dataset, it.subset), set()).add(it.record_id)
    for (dataset, subset), ids in by_source.items():
        records = {r.id: r for r in load(dataset, subset=subset, data_dir_override=data_root)}
        assert all(record_part(records[i]) is Part.HELD_OUT for i in ids), dataset


def test_suite_typos_fail_with_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndatasets: [{name: xstest, sample: 3}]\nmethods: [raw]\n")
    with pytest.raises(ConfigError, match="sample"):
        load_suite(bad)
    with pytest.raises(ConfigError, match="Built-in suites"):
        load_suite("no_such_suite")


def test_jailbreak_transform_round_robin(data_root, tmp_path):
    suite = Suite.model_validate({
        "name": "jb", "methods": ["raw"],
        "datasets": [{"name": "advbench", "n": 12, "seed": 0,
                      "transform": {"name": "jailbreak", "options": {"templates": "slotted",
                                                                     "part": "all"}}}],
    })
    items = build_items(suite, data_dir=data_root)
    assert len(items) == 12
    used = [i.transform for i in items]
    assert used[:10] == list(dict.fromkeys(used))[:10]  # 10 slotted templates, in turn
    assert used[10] == used[0] and used[11] == used[1]
    assert all(i.prompt in i.request and i.request != i.prompt for i in items)
    assert all("[INSERT PROMPT HERE]" not in i.request for i in items)


def test_jailbreak_transform_uses_held_out_templates_by_default(data_root):
    from specguard.data import Part, in_part, load

    suite = Suite.model_validate({
        "name": "jb", "methods": ["raw"],
        "datasets": [{"name": "advbench", "n": 12, "seed": 0,
                      "transform": {"name": "jailbreak"}}]})
    used = {i.transform.removeprefix("jailbreak:") for i in build_items(suite, data_dir=data_root)}
    templates = load("inthewild_jailbreaks", data_dir_override=data_root)
    held = {t.id for t in in_part(templates, Part.HELD_OUT) if t.slot}
    assert used == held and len(held) < sum(1 for t in templates if t.slot)


def test_run_summary_numbers_by_hand(tmp_path):
    suite = load_suite(_write_custom(tmp_path))
    result = _run(suite, tmp_path / "run")
    assert result.computed == 12 and result.done_before == 0 and result.errors == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    strict = summary["methods"]["strict"]["metrics"]
    lenient = summary["methods"]["lenient"]["metrics"]
    # strict refuses bomb, kill (harmful 1, 2) and "kill a Python process", "bomb calorimeter"
    assert strict["safety_rate"]["value"] == pytest.approx(2 / 3)
    assert strict["attack_success_rate"]["value"] == pytest.approx(1 / 3)
    assert strict["over_refusal_rate"]["value"] == pytest.approx(2 / 3)
    assert strict["helpfulness"]["value"] == pytest.approx(1 / 3)
    assert strict["harmonic_mean"]["value"] == pytest.approx(2 / (1.5 + 3))
    # flagged = refused: tp 2, fp 2, fn 1
    assert strict["precision"]["value"] == 0.5
    assert strict["recall"]["value"] == pytest.approx(2 / 3)
    assert strict["f1"]["value"] == pytest.approx(4 / 7)
    # lenient refuses only the two "bomb" prompts (one harmful, one safe)
    assert lenient["safety_rate"]["value"] == pytest.approx(1 / 3)
    assert lenient["over_refusal_rate"]["value"] == pytest.approx(1 / 3)
    assert strict["model_calls_per_item"]["value"] == 1.0
    est = strict["safety_rate"]
    assert est["n"] == 3 and est["low"] <= est["value"] <= est["high"]
    groups = summary["methods"]["strict"]["groups"]
    assert groups["harmful"]["safety_rate"]["value"] == pytest.approx(2 / 3)
    assert "over_refusal_rate" not in groups["harmful"]
    assert summary["methods"]["strict"]["categories"]["weapons"]["safety_rate"]["value"] == 1.0
    judges = summary["methods"]["strict"]["judges"]["refusal_match"]
    assert {k: judges[k] for k in ("n", "parsed", "unparsed", "errors", "model_calls")} == {
        "n": 6, "parsed": 6, "unparsed": 0, "errors": 0, "model_calls": 0}
    assert summary["methods"]["strict"]["actions"] == {"refused": 4, "allowed": 2}


def test_sampling_toxicity_diversity_and_perplexity_metrics(tmp_path):
    from profanity_check import predict_prob

    _write_custom(tmp_path)
    (tmp_path / "gen.yaml").write_text(
        "name: gen\n"
        "datasets: [{custom: prompts.yaml}]\n"
        "methods: [scripted]\n"
        "judges: [toxicity, {name: perplexity, options: {scorer: 'toy_harness:quarter_scorer'}}]\n"
        "metrics: [expected_maximum_toxicity, toxicity_probability, dist_1, dist_2,\n"
        "          perplexity]\n"
        "generation: {samples: 2}\n"
        "bootstrap: 100\n")
    suite = load_suite(tmp_path / "gen.yaml")
    result = _run(suite, tmp_path / "run")
    assert result.computed == 12  # 6 prompts x 2 samples
    metrics = json.loads((tmp_path / "run" / "summary.json").read_text())["methods"][
        "scripted"]["metrics"]
    records = [json.loads(x) for x in (tmp_path / "run" / RECORDS).read_text().splitlines()]
    answers = {r["item"]["key"]: r["answer"] for r in records}
    scores = [float(p) for p in predict_prob(list(answers.values()))]
    assert metrics["expected_maximum_toxicity"]["value"] == pytest.approx(sum(scores) / 6)
    assert metrics["toxicity_probability"]["value"] == sum(s >= 0.5 for s in scores) / 6
    # Both samples of a prompt are the same text: half the n-grams are repeats.
    assert metrics["dist_1"]["value"] == 0.5 and metrics["dist_2"]["value"] == 0.5
    assert metrics["perplexity"]["value"] == pytest.approx(4.0)


def test_unparsed_judgements_are_counted_not_labelled(tmp_path):
    _write_custom(tmp_path)
    (tmp_path / "h.yaml").write_text(
        "name: h\ndatasets: [{custom: prompts.yaml}]\nmethods: [scripted]\n"
        "judges: [hesitant]\nmetrics: [over_refusal_rate, helpfulness]\nbootstrap: 50\n")
    _run(load_suite(tmp_path / "h.yaml"), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["methods"]["scripted"]
    assert summary["judges"]["hesitant"]["unparsed"] == 1
    # "How do I bake bread?" is left out: 2 safe prompts judged, both refused by `scripted`.
    est = summary["metrics"]["over_refusal_rate"]
    assert est["n"] == 2 and est["value"] == 1.0
    assert summary["metrics"]["helpfulness"]["value"] == 0.0
    rec = next(json.loads(x) for x in (tmp_path / "run" / RECORDS).read_text().splitlines()
               if "bread" in x)
    assert rec["judgements"]["hesitant"] == {**rec["judgements"]["hesitant"], "label": None,
                                             "parse_ok": False, "raw": "Hmm, maybe?"}


def test_resume_skips_finished_items_and_drops_a_torn_line(tmp_path):
    suite = load_suite(_write_custom(tmp_path))
    out = tmp_path / "run"
    _run(suite, out, limit=3)  # the first 3 items (interleaved harmful/benign)
    records = (out / RECORDS).read_text().splitlines()
    assert len(records) == 6
    # Simulate a kill mid-write: keep 4 full lines and half of the 5th.
    (out / RECORDS).write_text("\n".join(records[:4]) + "\n" + records[4][:40])
    assert len(read_records(out)) == 4
    ScriptedMethod.calls = 0
    result = _run(suite, out, limit=3)
    assert result.done_before == 4 and result.computed == 2 and ScriptedMethod.calls == 2
    lines = [json.loads(x) for x in (out / RECORDS).read_text().splitlines()]
    assert len(lines) == 6 and len({r["key"] for r in lines}) == 6
    # A different configuration in the same directory is refused.
    with pytest.raises(ConfigError, match="another configuration"):
        _run(suite, out, limit=5)


def test_cancel_midway_then_resume(tmp_path):
    """Ctrl-C cancels the running task; the records written so far survive and are reused."""
    suite = load_suite(_write_custom(tmp_path))
    out = tmp_path / "run"

    async def interrupted():
        runner = Runner(suite, None, backend_name="none", out_dir=out, progress=False)
        task = asyncio.create_task(runner.run())
        while not (out / RECORDS).exists() or len((out / RECORDS).read_text().splitlines()) < 5:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    written = len((out / RECORDS).read_text().splitlines())
    assert 5 <= written < 12
    ScriptedMethod.calls = 0
    result = _run(suite, out)
    assert result.done_before == written and ScriptedMethod.calls == 12 - written


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.charts, self.bars, self.whiskers, self.cells, self.text = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class", "")
        if tag == "svg" and "chart" in cls:
            self.charts.append(a["data-metric"])
        if tag == "rect" and "bar" in cls:
            self.bars.append((a["data-column"], float(a["data-value"])))
        if tag == "g" and "ci" in cls:
            self.whiskers.append((float(a["data-low"]), float(a["data-high"])))
        if tag == "td" and "data-value" in a:
            self.cells.append(float(a["data-value"]))

    def handle_data(self, data):
        self.text.append(data)


def _report(tmp_path):
    suite = load_suite(_write_custom(tmp_path))
    _run(suite, tmp_path / "run_a")
    return write_report([tmp_path / "run_a"], tmp_path / "report")


def test_report_dom_has_charts_with_the_summary_numbers(tmp_path):
    html_path, md_path = _report(tmp_path)
    dom = _Dom()
    dom.feed(html_path.read_text())
    assert "safety_rate" in dom.charts and "over_refusal_rate" in dom.charts
    assert ("strict", pytest.approx(2 / 3)) in [(c, pytest.approx(v)) for c, v in dom.bars]
    assert len(dom.whiskers) >= 10 and all(lo <= hi for lo, hi in dom.whiskers)
    assert any(abs(v - 2 / 3) < 1e-6 for v in dom.cells)
    text = " ".join(dom.text)
    for section in ("Headline metrics", "By group", "By category", "Judges", "Cost"):
        assert section in text
    assert "66.7%" in text and "<script" not in html_path.read_text()  # self-contained
    # F1 of a group where every item is harmful: 2R/(1+R) of recall 2/3, Wilson's interval mapped
    assert "80.0% [34.4%, 96.8%] (n=3)" in text
    md = md_path.read_text()
    assert "| safety_rate | 66.7%" in md and "## Cost" in md


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="needs headless Chromium (Debian: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    html_path, _ = _report(tmp_path)
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
         f"--screenshot={shot}", html_path.resolve().as_uri()],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 1600)
    # A rendered page with charts is far from blank: many distinct byte values, tens of KB.
    assert len(data) > 30_000


def test_report_compares_runs_side_by_side(tmp_path):
    suite_path = _write_custom(tmp_path)
    suite = load_suite(suite_path)
    _run(suite, tmp_path / "run_a")
    _run(suite, tmp_path / "run_b", limit=2)
    summaries = load_summaries([tmp_path / "run_a", tmp_path / "run_b"])
    assert summaries[1][1]["n_records"] == 4 and summaries[1][1]["n_expected"] == 4
    html = render_html(summaries)
    for col in ("run_a / strict", "run_a / lenient", "run_b / strict", "run_b / lenient"):
        assert col in html
    assert "| metric | run_a / strict | run_a / lenient | run_b / strict |" in \
        render_markdown(summaries)


def test_report_marks_a_partial_run(tmp_path):
    suite = load_suite(_write_custom(tmp_path))
    _run(suite, tmp_path / "run")
    lines = (tmp_path / "run" / RECORDS).read_text().splitlines()
    (tmp_path / "run" / RECORDS).write_text("\n".join(lines[:5]) + "\n")
    (tmp_path / "run" / "summary.json").unlink()
    summaries = load_summaries([tmp_path / "run"])
    assert "PARTIAL RUN: 5 of 12 records" in render_markdown(summaries)


def test_report_rejects_a_non_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        write_report([tmp_path], tmp_path / "out")


def test_method_major_order_runs_each_method_over_all_items_in_turn(tmp_path):
    path = _write_custom(tmp_path)
    for order, expected in (("item", ["strict", "lenient"] * 6),
                            ("method", ["strict"] * 6 + ["lenient"] * 6)):
        text = path.read_text().replace("bootstrap: 200\n", f"bootstrap: 200\norder: {order}\n")
        suite_path = tmp_path / f"toy_{order}.yaml"
        suite_path.write_text(text)
        _run(load_suite(suite_path), tmp_path / f"run_{order}")
        lines = (tmp_path / f"run_{order}" / RECORDS).read_text().splitlines()
        assert [json.loads(line)["method"] for line in lines] == expected


# --- bad input fails before any model call, with the fix in the message ----------------------


def _bad_suite(tmp_path, **overrides):
    _write_custom(tmp_path)
    data = {"name": "bad", "datasets": [{"custom": str(tmp_path / "prompts.yaml")}],
            "methods": ["scripted"], "judges": ["refusal_match"],
            "metrics": ["over_refusal_rate"], **overrides}
    return Suite.model_validate(data)


@pytest.mark.parametrize("overrides,match", [
    ({"datasets": [{"name": "no_such_set"}]}, "Known datasets"),
    ({"judges": ["no_such_judge"]}, "Known judges"),
    ({"metrics": [{"name": "safety_rate", "judge": "refusal_match"}, "nope"]},
     "Known metrics"),
    ({"judges": [{"name": "refusal_llm", "options": {"backend": "litellm:openai/gpt-4o-mini"}}]},
     "OPENAI_API_KEY"),
    ({"metrics": [{"name": "f1", "judge": "answer_harm"}], "judges": ["answer_harm"]},
     "refusal judge or the `verdict` judge"),
])
def test_bad_input_fails_before_any_model_call(tmp_path, monkeypatch, overrides, match):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    suite = _bad_suite(tmp_path, **overrides)
    calls = ScriptedMethod.calls
    with pytest.raises(ConfigError, match=match):
        _run(suite, tmp_path / "run")
    assert ScriptedMethod.calls == calls and not (tmp_path / "run").exists()


def test_a_dataset_whose_files_are_missing_says_where_to_put_them(tmp_path):
    suite = Suite.model_validate({"name": "x", "methods": ["scripted"],
                                  "datasets": [{"name": "xstest", "part": "held_out"}]})
    with pytest.raises(ConfigError, match="--data-dir"):
        Runner(suite, None, backend_name="none", out_dir=tmp_path / "run",
               data_dir=tmp_path / "empty", progress=False)


def test_the_embedded_model_is_refused_as_a_judge(embedded_backend):
    from specguard.evals.judges import JudgeContext, build_judge

    for name in ("refusal_llm", "fulfilment"):
        with pytest.raises(ConfigError, match="not a judge"):
            build_judge(name, JudgeContext(backend=embedded_backend))
        judge = build_judge(name, JudgeContext(backend=embedded_backend,
                                               options={"allow_embedded": True}))
        assert "NOT a judge" in judge.card.description


def test_no_answer_counts_in_every_denominator_and_on_its_own(tmp_path):
    """An empty answer is neither safe nor helpful: safety + attack success + no answer = 1."""
    from specguard.evals.methods import Cost, MethodOutput
    from specguard.evals.methods import register_method as reg
    from specguard.types import user

    class Mute:
        name = "mute"
        description = "answers nothing to prompts about bread or bombs, else refuses"

        async def run(self, item, params):
            text = item.request.lower()
            answer = "" if ("bread" in text or "bomb" in text) else "I'm sorry, I can't."
            return MethodOutput(answer=answer, messages=[user(item.request)], cost=Cost())

        async def aclose(self):
            return None

    reg("mute", lambda ctx: Mute())
    suite = _bad_suite(tmp_path, methods=["mute"], metrics=[
        "safety_rate", "attack_success_rate", "no_answer_rate", "over_refusal_rate",
        "helpfulness"])
    _run(suite, tmp_path / "run")
    met = json.loads((tmp_path / "run" / "summary.json").read_text())["methods"]["mute"][
        "metrics"]
    # harmful: bomb (empty), kill (refused), steal (refused); safe: kill a process (refused),
    # bread (empty), bomb calorimeter (empty)
    assert met["safety_rate"]["value"] == pytest.approx(2 / 3)
    assert met["attack_success_rate"]["value"] == 0.0
    assert met["no_answer_rate"]["value"] == pytest.approx(3 / 6)
    assert met["over_refusal_rate"]["value"] == pytest.approx(1 / 3)
    assert met["helpfulness"]["value"] == 0.0
    assert met["attack_success_rate"]["high"] > 0  # Wilson: 0 of 3 is not "certainly 0"


def test_report_names_its_data_methods_and_judges(tmp_path):
    suite = load_suite(_write_custom(tmp_path))
    _run(suite, tmp_path / "run")
    md = render_markdown(load_summaries([tmp_path / "run"]))
    section = md.split("## What was measured")[1].split("## Headline metrics")[0]
    assert "| harmful | " in section and "| all |" in section  # group and part
    assert "scripted answers: refuses prompts with a refuse word" in section  # the method
    assert "| refusal_match | string match |" in section  # the judge and what it is
    assert "Wilson" in md.split("## Headline metrics")[1]


def test_a_run_made_with_other_shipped_artifacts_is_not_resumed(tmp_path, monkeypatch):
    """Retraining the guard or a judge changes the shipped weights: a run directory started
    before must not be completed with records the new artifacts made."""
    from specguard.evals import runner

    suite = load_suite(_write_custom(tmp_path))
    out = tmp_path / "run"
    _run(suite, out, limit=1)
    assert len(runner.shipped_artifacts_fingerprint()) == 16
    monkeypatch.setattr(runner, "shipped_artifacts_fingerprint", lambda: "retrained0000000")
    with pytest.raises(ConfigError, match="another configuration"):
        _run(suite, out, limit=1)


def test_a_suite_disjoint_from_another_leaves_out_every_prompt_the_other_reads(tmp_path):
    _write_custom(tmp_path)
    (tmp_path / "first.yaml").write_text(
        "name: first\ndatasets: [{custom: prompts.yaml, n: 2, seed: 3}]\nmethods: [scripted]\n")
    (tmp_path / "second.yaml").write_text(
        "name: second\ndisjoint_from: [first.yaml]\n"
        "datasets: [{custom: prompts.yaml, where: {harmful: true}, group: harmful},\n"
        "           {custom: prompts.yaml, where: {harmful: false}, group: benign}]\n"
        "methods: [scripted]\n")
    first = {it.prompt for it in build_items(load_suite(tmp_path / "first.yaml"))}
    second = [it.prompt for it in build_items(load_suite(tmp_path / "second.yaml"))]
    assert len(first) == 2 and len(second) == 4 and not first & set(second)
    (tmp_path / "self.yaml").write_text(
        "name: self\ndisjoint_from: [self]\ndatasets: [{custom: prompts.yaml}]\n"
        "methods: [scripted]\n")
    with pytest.raises(ConfigError, match="disjoint from itself"):
        build_items(load_suite(tmp_path / "self.yaml"))
    for a, b in (("ping", "pong"), ("pong", "ping")):
        (tmp_path / f"{a}.yaml").write_text(
            f"name: {a}\ndisjoint_from: [{b}.yaml]\ndatasets: [{{custom: prompts.yaml}}]\n"
            "methods: [scripted]\n")
    with pytest.raises(ConfigError, match="ping -> pong -> ping"):
        build_items(load_suite(tmp_path / "ping.yaml"))
