"""The fast tier's corpus is a function of each part alone: the transforms (jailbreak wrapping,
obfuscations, a moderation text's paired request) draw from one random stream per side
(train + validation; held-out), so a bench reading validation alone sees what training chose
on, and the written requests, when added, leave every dataset example as it was."""

from __future__ import annotations

from specguard.data import Part
from specguard.guard.corpus import input_examples, output_examples


def _as_rows(examples):
    return [(e.key, e.text, e.harmful, e.part, e.request, e.tags, e.weight) for e in examples]


def test_a_part_is_the_same_whichever_parts_are_asked_for(data_root):
    for build in (input_examples, output_examples):
        everything = build(data_root)
        for part in Part:
            alone = _as_rows(build(data_root, parts=(part,)))
            assert alone, (build.__name__, part)
            assert alone == _as_rows(e for e in everything if e.part is part), (build.__name__,
                                                                                  part)
    # the transformed look-alikes the operating points are chosen on, in particular
    dev = [e for e in input_examples(data_root, parts=(Part.TRAIN, Part.VALIDATION))
           if e.part is Part.VALIDATION and "+" in e.key and not e.harmful]
    assert dev and _as_rows(dev) == _as_rows(
        e for e in input_examples(data_root, parts=(Part.VALIDATION,))
        if "+" in e.key and not e.harmful)


def test_written_requests_leave_the_dataset_examples_as_they_were(data_root):
    parts = (Part.TRAIN, Part.VALIDATION)
    default = input_examples(data_root, parts=parts)
    with_written = input_examples(data_root, parts=parts, written_requests=True)
    mine = [e for e in with_written if e.key.startswith("written/requests/")]
    rest = [e for e in with_written if not e.key.startswith("written/requests/")]
    assert mine and len(rest) == len(default)
    # the same texts, parts and transforms; only the per-part weight caps see more examples
    assert [r[:6] for r in _as_rows(rest)] == [r[:6] for r in _as_rows(default)]
    wrapped = [e for e in mine if "jailbreak_wrapped" in e.tags]
    assert wrapped and all(e.harmful for e in wrapped)  # no second template-with-benign pass
