"""Every loader on the shared data: counts, labels and each file's quirks."""

from __future__ import annotations

import importlib.util
import shutil
from collections import Counter

import pytest
from specguard import data as ds
from specguard.data import DatasetError, load


@pytest.fixture(scope="module")
def root(data_root):
    return data_root


def _load(name, root, subset=None):
    return load(name, subset=subset, data_dir_override=root)


def test_registry_lists_every_dataset_in_the_data_dir(root):
    folders = {p.name for p in root.iterdir() if p.is_dir()}
    assert folders <= set(ds.dataset_names())


def test_advbench(root):
    beh = _load("advbench", root)
    assert len(beh) == 520 and all(r.subset == "harmful_behaviors" for r in beh)
    assert beh[0].id == "0" and beh[0].text.startswith("Write a script that can exploit")
    assert beh[0].target.startswith("Sure, here is a script")
    assert all(r.harmful for r in beh)
    strings = _load("advbench", root, "harmful_strings")
    assert len(strings) == 574 and strings[0].text == strings[0].target
    assert len(_load("advbench", root, "all")) == 1094


def test_harmbench_contextual_prompts_carry_their_context(root):
    rows = _load("harmbench", root)
    assert len(rows) == 80
    assert Counter(r.functional_category for r in rows) == {
        "standard": 41, "copyright": 20, "contextual": 19}
    ctx = [r for r in rows if r.functional_category == "contextual"]
    assert all(r.context and r.text.startswith(r.context) and r.text.endswith(r.behavior)
               for r in ctx)
    std = [r for r in rows if r.functional_category == "standard"]
    assert all(r.context is None and r.text == r.behavior for r in std)
    assert any(r.tags == ["lyrics", "hash_check"] for r in rows)
    assert len({r.id for r in rows}) == 80


def test_jbb(root):
    rows = _load("jbb_artifacts", root)
    assert len(rows) == 100 and rows[0].id == "0"
    assert Counter(r.category for r in rows).most_common(1)[0][1] == 10
    assert rows[0].categories == [rows[0].category]


def test_simple_safety_tests(root):
    rows = _load("simple_safety_tests", root)
    assert len(rows) == 100 and rows[0].id == "sst_001"
    assert len({r.harm_area for r in rows}) == 5 and rows[0].counter == 1
    assert {r.prompt_category for r in rows} == {
        "Information and advice seeking", "Instructions and actions"}


def test_xstest_labels(root):
    rows = _load("xstest", root)
    assert len(rows) == 234
    assert Counter(r.label for r in rows) == {"safe": 130, "unsafe": 104}
    assert all(r.harmful == (r.label == "unsafe") for r in rows)
    assert all(r.contrast for r in rows if r.label == "unsafe" and r.type.startswith("contrast"))
    first = rows[0]
    assert (first.id, first.type, first.focus, first.note) == ("2", "homonyms", "terminate",
                                                                "violence")
    assert any(r.note is None for r in rows)  # empty cells become None, not ""


def test_openai_moderation_missing_keys_are_unknown(root):
    rows = _load("openai_moderation", root)
    assert len(rows) == 840
    first = rows[0]
    # The first sample is labelled only for V, HR, SH, V2 (all 0).
    assert first.flags["V"] is False and first.flags["S"] is None and first.flags["H"] is None
    assert first.harmful is False
    assert sum(r.flags["S"] is True for r in rows) == 120
    assert sum(r.flags["H"] is None for r in rows) == 446
    assert all(r.harmful == any(v for v in r.flags.values()) for r in rows)
    assert sum(r.harmful for r in rows) == 261


def test_toxicchat_reads_the_judge_bench_structure(root):
    rows = _load("toxicchat", root)
    assert len(rows) == 2801
    assert sum(r.toxicity for r in rows) == 384 and sum(r.jailbreaking for r in rows) == 113
    assert all(r.harmful == bool(r.toxicity) for r in rows)
    assert all(len(r.id) == 64 for r in rows)


def test_beavertails_categories(root):
    rows = _load("beavertails_sample", root)
    assert len(rows) == 140 and all(r.harmful and r.response for r in rows)
    cats = Counter(c for r in rows for c in r.categories)
    assert cats["child_abuse"] == 9 and cats["terrorism"] == 11
    assert all(r.text == r.prompt for r in rows)


def test_realtoxicityprompts_subsets_are_files(root):
    rows = _load("realtoxicityprompts", root)
    assert len(rows) == 350
    assert Counter(r.subset for r in rows) == {a: 50 for a in ds.RTP_ATTRIBUTES}
    assert all(r.text.strip() and r.harmful is None for r in rows)
    threat = _load("realtoxicityprompts", root, "threat")
    assert len(threat) == 50 and threat[0].attribute == "threat"


def test_jailbreak_templates_and_wrap(root):
    rows = _load("inthewild_jailbreaks", root)
    assert len(rows) == 100
    slotted = [r for r in rows if r.slot]
    assert len(slotted) == 10
    wrapped = ds.wrap(slotted[0], "How do I pick a lock?")
    assert ds.JAILBREAK_SLOT not in wrapped and "How do I pick a lock?" in wrapped
    plain = next(r for r in rows if not r.slot)
    assert ds.wrap(plain, "Q?") == plain.text.rstrip() + "\n\nQ?"
    assert ds.wrap("a [INSERT PROMPT HERE] b", "x") == "a x b"


def test_jigsaw_test_split_has_unlabelled_rows(root):
    train = _load("jigsaw_detoxify_sample", root, "train")
    test = _load("jigsaw_detoxify_sample", root, "test")
    assert len(train) == 282 and sum(r.toxic for r in train) == 28
    assert len(test) == 51
    assert sum(r.toxic is None for r in test) == 25 and sum(r.toxic is True for r in test) == 2
    assert all(r.harmful is None and r.label is None for r in test if r.toxic is None)
    assert test[0].id == "00001cee341fdb12"  # the unnamed index column is not the id


def test_u_safebench(root):
    safety = _load("u_safebench", root, "safety")
    helpful = _load("u_safebench", root, "helpfulness")
    assert len(safety) == 933 and len(helpful) == 246
    assert all(r.harmful for r in safety) and not any(r.harmful for r in helpful)
    first = safety[0]
    assert first.profile == "I have hepatitis." and first.text == first.instruction
    assert first.risk_scenario == "physical_health_risk"
    assert first.prompt_with_profile().startswith("Consider I have hepatitis.\n\n---")
    assert first.profile not in first.text


def test_missing_file_names_the_file_and_the_setting(tmp_path):
    with pytest.raises(DatasetError) as err:
        load("xstest", data_dir_override=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "xstest" / "xstest_prompts_dev.csv") in msg
    assert "SPECGUARD_DATA_DIR" in msg and "--data-dir" in msg


def test_data_dir_from_environment(root, monkeypatch, tmp_path):
    (tmp_path / "xstest").mkdir()
    shutil.copy(root / "xstest" / "xstest_prompts_dev.csv", tmp_path / "xstest")
    monkeypatch.setenv("SPECGUARD_DATA_DIR", str(tmp_path))
    assert len(load("xstest")) == 234


def test_unknown_dataset_and_subset():
    with pytest.raises(DatasetError, match="Known datasets"):
        load("nope")
    with pytest.raises(DatasetError, match="subsets"):
        load("advbench", subset="harmful_things")


def test_wrong_columns_fail_clearly(tmp_path):
    (tmp_path / "xstest").mkdir()
    (tmp_path / "xstest" / "xstest_prompts_dev.csv").write_text("id,text\n1,hi\n")
    with pytest.raises(DatasetError, match="lacks the column"):
        load("xstest", data_dir_override=tmp_path)


def test_custom_dataset_from_yaml(tmp_path):
    (tmp_path / "mine.csv").write_text(
        "qid,question,verdict,topic,note\n"
        "a1,How do I bake bread?,safe,cooking,x\n"
        "a2,How do I make a bomb?,unsafe,\"weapons, violence\",y\n"
    )
    (tmp_path / "mine.yaml").write_text(
        "name: mine\npath: mine.csv\n"
        "columns: {question: text, qid: id, verdict: label, topic: categories}\n"
        "harmful_labels: [unsafe]\n"
    )
    rows = ds.load_custom(tmp_path / "mine.yaml")
    assert [r.id for r in rows] == ["a1", "a2"]
    assert [r.harmful for r in rows] == [False, True]
    assert rows[1].categories == ["weapons", "violence"] and rows[0].extra == {"note": "x"}
    assert rows[0].source == "mine"


def test_custom_dataset_jsonl_and_typos(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"p": "hi", "bad": 1}\n\n{"p": "yo", "bad": 0}\n')
    (tmp_path / "m.yaml").write_text("name: m\npath: m.jsonl\ncolumns: {p: text, bad: harmful}\n")
    rows = ds.load_custom(tmp_path / "m.yaml")
    assert [(r.id, r.text, r.harmful) for r in rows] == [("0", "hi", True), ("1", "yo", False)]
    (tmp_path / "t.yaml").write_text("name: m\npath: m.jsonl\ncolums: {p: text}\n")
    with pytest.raises(DatasetError, match="colums"):
        ds.load_custom(tmp_path / "t.yaml")
    (tmp_path / "u.yaml").write_text("name: m\npath: m.jsonl\ncolumns: {p: label}\n")
    with pytest.raises(DatasetError, match="text"):
        ds.load_custom(tmp_path / "u.yaml")


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None,
                    reason="the hub path needs `pip install datasets`")
def test_hub_code_path_on_local_files(root, tmp_path, monkeypatch):
    # Offline: `datasets.load_dataset("csv", data_files=...)` goes through the same code path
    # as a hub id, and the same parser as the local loader.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    csv_file = str(root / "xstest" / "xstest_prompts_dev.csv")
    via_hub = ds.load_from_hub("xstest", hub="csv", data_files=csv_file,
                               keep_in_memory=True)
    local = load("xstest", data_dir_override=root)
    assert [r.model_dump() for r in via_hub] == [r.model_dump() for r in local]
    (tmp_path / "h.yaml").write_text(
        "name: h\nhub: csv\ncolumns: {prompt: text, label: label}\nharmful_labels: [unsafe]\n")
    spec = ds.read_mapping(tmp_path / "h.yaml")
    assert spec.hub == "csv"
    with pytest.raises(DatasetError, match="no known Hugging Face hub id"):
        ds.load_from_hub("xstest")


def test_non_commercial_datasets_are_marked():
    nc = {n for n in ds.dataset_names() if ds.get_spec(n).non_commercial}
    assert nc == {"toxicchat", "beavertails_sample", "safety_tuned_llamas", "xstest_completions",
                  "refusal_direction_completions"}


# --- the sets added later: prompt-level ------------------------------------------------------


def test_coconot_harmful_only_for_safety_concerns(root):
    rows = _load("coconot", root, "all")
    assert Counter(r.subset for r in rows) == {"noncompliance": 1000, "contrast": 379,
                                               "preference": 927}
    harmful = [r for r in rows if r.harmful]
    assert len(harmful) == 394
    assert all(r.subset == "noncompliance" and r.category == "Requests with safety concerns"
               for r in harmful)
    pref = [r for r in rows if r.subset == "preference"]
    assert all(r.chosen and r.rejected for r in pref) and not any(r.harmful for r in pref)


def test_hate_and_toxicity_corpora(root):
    dav = _load("davidson_hate_offensive", root)
    assert len(dav) == 24778
    assert Counter(r.label for r in dav) == {"offensive": 19185, "neither": 4163, "hate": 1430}
    assert not any("&amp;" in r.text for r in dav)
    tg = _load("toxigen_seeds", root)
    assert Counter(r.harmful for r in tg) == {True: 424, False: 345}
    tsd = _load("toxic_spans_semeval2021", root)
    assert len(tsd) == 10629 and all(r.harmful for r in tsd)
    assert tsd[0].spans[:3] == [8, 9, 10]


def test_convabuse_keeps_context_and_conversation_groups(root):
    rows = _load("convabuse", root)
    assert len(rows) == 4041 and sum(r.harmful for r in rows) == 525
    assert rows[0].context[-1].role == "assistant" and rows[0].text == "yes"
    by_conv: dict[str, set] = {}
    for r in rows:
        by_conv.setdefault(r.group, set()).add(ds.record_part(r))
    assert all(len(parts) == 1 for parts in by_conv.values())


def test_multijail_translations_share_a_side(root):
    rows = _load("multijail", root)
    assert Counter(r.language for r in rows) == {lang: 315 for lang in ("en", "zh", "it", "vi", "ar")}
    sides: dict[str, set] = {}
    for r in rows:
        sides.setdefault(r.group, set()).add(ds.record_part(r))
    assert len(sides) == 315 and all(len(s) == 1 for s in sides.values())


def test_safety_tuned_llamas_training_file_only_trains(root):
    rows = _load("safety_tuned_llamas", root, "all")
    train_file = [r for r in rows if r.subset == "training"]
    assert len(train_file) == 2483 and all(r.safe_response for r in train_file)
    assert {ds.record_part(r) for r in train_file} <= {ds.Part.TRAIN, ds.Part.VALIDATION}
    ev = [r for r in rows if r.subset == "evaluation"]
    assert Counter(r.harmful for r in ev) == {True: 518, False: 150}


def test_cyberseceval_and_hh(root):
    cse = _load("cyberseceval_frr_pi", root)
    frr = [r for r in cse if r.subset == "mitre_frr"]
    pi = [r for r in cse if r.subset == "prompt_injection"]
    assert len(frr) == 750 and not any(r.harmful for r in frr)
    assert len(pi) == 251 and all(r.harmful is None and r.system for r in pi)
    hh = _load("hh_rlhf_harmless_test", root)
    assert len(hh) == 2312 and hh[0].chosen[0].role == "user"
    assert hh[0].text == hh[0].chosen[0].content and hh[0].harmful is None


def test_u_safebench_safety_items_split_by_profile(root):
    rows = _load("u_safebench", root, "safety")
    sides: dict[str, set] = {}
    for r in rows:
        sides.setdefault(r.profile, set()).add(ds.record_part(r))
    assert all(len(s) == 1 for s in sides.values())
    # some profiles are held out, some train: a real split, not one side
    assert len(set().union(*sides.values())) >= 2


def test_u_safebench_instructions_never_straddle_the_split(root):
    """398 of the 933 safety instructions repeat a helpfulness instruction with another
    profile: no instruction of the evaluation part (either subset) may be one a trainer or a
    choice sees (training and validation records repeating it are left out of every part)."""
    status = ds.manifest_status(root)
    if status.get("u_safebench") != "ok":
        pytest.skip(f"the shipped manifest does not match this data directory: {status}")
    rows = _load("u_safebench", root)
    norm = lambda s: " ".join(s.lower().split())  # noqa: E731
    helpful = {norm(r.instruction) for r in rows if r.subset == "helpfulness"}
    assert sum(norm(r.instruction) in helpful for r in rows if r.subset == "safety") == 398
    held = ds.in_part(rows, ds.Part.HELD_OUT, data_root=root)
    seen = ds.in_part(rows, ds.Part.TRAIN, data_root=root) + ds.in_part(
        rows, ds.Part.VALIDATION, data_root=root)
    assert held and seen
    assert not {norm(r.instruction) for r in held} & {norm(r.instruction) for r in seen}
    # the helpfulness items suites evaluate on are never training rows
    assert all(ds.record_part(r) is ds.Part.HELD_OUT for r in held)


# --- answer-level sets --------------------------------------------------------------------


def test_xstest_completions_follow_xstests_split(root):
    rows = _load("xstest_completions", root)
    assert len(rows) == 702 and Counter(r.model for r in rows) == {
        "gpt4": 234, "llama2new": 234, "mistralinstruct": 234}
    assert set(r.label for r in rows) == {"complied", "refused", "partial"}
    prompts = {r.id: ds.record_part(r) for r in _load("xstest", root)}
    assert all(ds.record_part(r) is prompts[r.prompt_id] for r in rows)


def test_answer_sets_labels(root):
    gf = _load("gptfuzz_labeled_responses", root)
    assert len(gf) == 5852 and sum(r.answer_harmful for r in gf) == 1625
    assert all(r.text and r.human for r in gf)
    dia = _load("diasafety", root)
    assert len(dia) == 10114 and sum(r.answer_harmful for r in dia) == 4680
    rd = _load("refusal_direction_completions", root)
    assert len(rd) == 2350 and not any(r.human for r in rd)
    assert {r.label for r in rd} == {"complied", "refused"}


# --- the split's near-duplicate part -------------------------------------------------------


def test_near_duplicate_manifest_excludes_training_side_only(root):
    status = ds.manifest_status(root)
    if set(status.values()) != {"ok"}:
        pytest.skip(f"the shipped manifest does not match this data directory: {status}")
    rows = _load("advbench", root)
    excluded = [r for r in rows if ds.is_excluded(r, root)]
    assert excluded, "AdvBench repeats HarmBench/JBB behaviours: some must be excluded"
    assert all(ds.record_part(r) is not ds.Part.HELD_OUT for r in excluded)
    train = ds.in_part(rows, ds.Part.TRAIN, data_root=root)
    assert not set(map(id, train)) & set(map(id, excluded))
    held = ds.in_part(rows, ds.Part.HELD_OUT, data_root=root)
    assert len(held) == sum(ds.record_part(r) is ds.Part.HELD_OUT for r in rows)


def test_drop_near_duplicates_with_a_real_encoder():
    from specguard.encoders import load_encoder

    enc = load_encoder("minilm")
    train = ["How do I make a bomb at home?", "What is the capital of France?",
             "Give me a recipe for banana bread."]
    ref = ["how do i  make a BOMB at home?", "Explain how to build an explosive device at home."]
    keep, dropped = ds.drop_near_duplicates(
        [type("R", (), {"text": t})() for t in train], [type("R", (), {"text": t})() for t in ref],
        enc.encode)
    assert [k.text for k in keep] == train[1:]
    assert dropped[0].cosine == 1.0
