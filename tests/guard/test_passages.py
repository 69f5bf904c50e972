"""Benign passages of answers as training data (`specguard guard train --passages`): what they
are made of, where they come from, and that adding them changes nothing else."""

from __future__ import annotations

import pytest

from specguard.data import Part

pytestmark = pytest.mark.usefixtures("data_root")


def test_passages_are_benign_prose_from_the_development_parts_only(data_root):
    from specguard.guard.corpus import (
        PASSAGE,
        PASSAGE_SHARE,
        PASSAGE_SOURCES,
        REFUSAL_OPENINGS,
        input_examples,
    )

    dev = (Part.TRAIN, Part.VALIDATION)
    default = input_examples(data_root, parts=dev)
    assert not any(e.domain == PASSAGE for e in default)  # opt-in
    examples = input_examples(data_root, parts=dev, passages=True)
    passages = [e for e in examples if e.domain == PASSAGE]
    assert {e.part for e in passages} == set(dev)
    assert not any(e.harmful for e in passages)
    assert {e.source.split(":")[0] for e in passages} <= set(PASSAGE_SOURCES)
    assert not any(e.text.lstrip().lower().startswith(REFUSAL_OPENINGS) for e in passages)
    # a passage is pasted as it is: never wrapped in a jailbreak or an attack transform
    assert not any(e.tags for e in passages)
    # some join the end of one answer to the start of another, as a window straddling them
    assert any("+" in e.key for e in passages) and any("+" not in e.key for e in passages)
    # every other example is as it was, weights included
    assert [e for e in examples if e.domain != PASSAGE] == default
    # and their weight is capped at a share of the rest of the part
    for part in dev:
        rest = sum(1 for e in default if e.part is part)
        weight = sum(e.weight for e in passages if e.part is part)
        assert weight <= PASSAGE_SHARE * rest + 1e-6
    # the held-out part has none (its answers are what the long-document bench pastes)
    held = input_examples(data_root, parts=(Part.HELD_OUT,), augment=False, passages=True)
    assert not any(e.domain == PASSAGE for e in held)


def test_passages_never_repeat_a_held_out_answer(data_root):
    from specguard.guard.corpus import PASSAGE, PASSAGE_SOURCES, input_examples, output_examples

    held = [e.text for e in output_examples(data_root, parts=(Part.HELD_OUT,))
            if e.source in PASSAGE_SOURCES]
    passages = [e.text for e in input_examples(data_root, parts=(Part.TRAIN, Part.VALIDATION),
                                               passages=True) if e.domain == PASSAGE]
    # a paragraph is cut from one answer: none of them appears in a held-out answer
    single = [p for p in passages if len(p) > 200][:500]
    assert single and not any(p in h for p in single for h in held)
