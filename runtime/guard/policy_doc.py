"""A spec as a policy document: the sectioned shape policy-following guard models read, and
the shape the meta-critic writes specs in.

    INSTRUCTIONS   what the policy is for, how to decide (prose)
    DEFINITIONS    - Term: meaning
    VIOLATES       - content that violates the policy
    SAFE           - content that does not, although it may look like it does
    EXAMPLES       - [violates] an example  /  - [safe] an example

`parse_policy(text)` reads a spec written that way (headings may carry `#`s and a trailing
colon; text before the first heading is INSTRUCTIONS, so an old one-paragraph spec is a policy
with instructions only). `render_policy(doc)` writes it back. `guard_policy(spec_text,
categories)` is what a deliberative check uses as its policy: the scope's active spec, with the
tenant's taxonomy categories as definitions and violations, and the shipped SAFE side and
examples (specs/guard/policy_defaults.yaml) where the spec has none. Each guard format renders
it in its model's own shape (specguard.guard.formats); `fit(doc, low, high)` brings a rendering
into a token budget (gpt-oss-safeguard's guide recommends 400-600 tokens).

Token counts are an estimate (words and runs of punctuation; close to BPE counts on English
prose), enough to keep a policy inside a budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

import yaml

from .taxonomy import Category

SECTIONS = ("INSTRUCTIONS", "DEFINITIONS", "VIOLATES", "SAFE", "EXAMPLES")
_HEADING = re.compile(r"^[ \t]*(?:#{1,4}[ \t]*)?(INSTRUCTIONS|DEFINITIONS|VIOLATES|SAFE|EXAMPLES)"
                      r"\b[^\n:]{0,40}:?[ \t]*$", re.M)
_BULLET = re.compile(r"^[ \t]*(?:[-*\u2022]|\d+[.)])[ \t]+(.+)$")
_TERM = re.compile(r"^\**([^:*]{1,60}?)\**[ \t]*:[ \t]*(.+)$")
_EXAMPLE = re.compile(r"^\[?(violates|safe|1|0)\]?[ \t]*[:\-]?[ \t]*(.+)$", re.I)
_TOKEN = re.compile(r"\w+|[^\w\s]+")


def tokens(text: str) -> int:
    """An estimate of the text's length in model tokens."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class Example:
    violates: bool
    text: str


@dataclass(frozen=True)
class PolicyDoc:
    instructions: tuple[str, ...] = ()  # paragraphs
    definitions: tuple[tuple[str, str], ...] = ()
    violates: tuple[str, ...] = ()
    safe: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()

    def bullets(self) -> set[tuple[str, str]]:
        """(section, text) of every rule it states (what a learned spec adds to its base)."""
        out = {("INSTRUCTIONS", p) for p in self.instructions}
        out |= {("DEFINITIONS", f"{t}: {m}") for t, m in self.definitions}
        out |= {("VIOLATES", v) for v in self.violates}
        out |= {("SAFE", s) for s in self.safe}
        return out

    def add(self, section: str, text: str) -> PolicyDoc:
        """The policy with one more rule in `section`."""
        text = " ".join(text.split())
        if section == "INSTRUCTIONS":
            return replace(self, instructions=(*self.instructions, text))
        if section == "VIOLATES":
            return replace(self, violates=(*self.violates, text))
        if section == "SAFE":
            return replace(self, safe=(*self.safe, text))
        if section == "DEFINITIONS":
            m = _TERM.match(text)
            term, meaning = (m.group(1).strip(), m.group(2).strip()) if m else ("Term", text)
            return replace(self, definitions=(*self.definitions, (term, meaning)))
        raise ValueError(f"unknown policy section {section!r}")

    def remove(self, section: str, text: str) -> PolicyDoc:
        if section == "INSTRUCTIONS":
            return replace(self, instructions=tuple(p for p in self.instructions if p != text))
        if section == "VIOLATES":
            return replace(self, violates=tuple(v for v in self.violates if v != text))
        if section == "SAFE":
            return replace(self, safe=tuple(s for s in self.safe if s != text))
        if section == "DEFINITIONS":
            return replace(self, definitions=tuple(d for d in self.definitions
                                                   if f"{d[0]}: {d[1]}" != text))
        return self

    @property
    def sectioned(self) -> bool:
        return bool(self.definitions or self.violates or self.safe or self.examples)


def parse_policy(text: str) -> PolicyDoc:
    """A spec text as a PolicyDoc (see the module docstring for the shape)."""
    parts: dict[str, list[str]] = {s: [] for s in SECTIONS}
    heads = list(_HEADING.finditer(text))
    parts["INSTRUCTIONS"].append(text[: heads[0].start()] if heads else text)
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        parts[m.group(1)].append(text[m.end():end])
    instructions = tuple(p for chunk in parts["INSTRUCTIONS"] for p in _paragraphs(chunk))
    definitions = []
    for item in _items(parts["DEFINITIONS"]):
        m = _TERM.match(item)
        definitions.append((m.group(1).strip(), m.group(2).strip()) if m else ("Term", item))
    examples = []
    for item in _items(parts["EXAMPLES"]):
        m = _EXAMPLE.match(item)
        if m:
            examples.append(Example(m.group(1).lower() in ("violates", "1"),
                                    m.group(2).strip().strip('"')))
    return PolicyDoc(instructions=instructions, definitions=tuple(definitions),
                     violates=tuple(_items(parts["VIOLATES"])), safe=tuple(_items(parts["SAFE"])),
                     examples=tuple(examples))


def render_policy(doc: PolicyDoc) -> str:
    """The spec text of a PolicyDoc (what the store holds and `parse_policy` reads back)."""
    out: list[str] = []
    if doc.instructions:  # paragraphs, a blank line apart (each reads back as itself)
        out += ["INSTRUCTIONS", "\n\n".join(doc.instructions), ""]
    if doc.definitions:
        out += ["DEFINITIONS", *(f"- {t}: {m}" for t, m in doc.definitions), ""]
    if doc.violates:
        out += ["VIOLATES", *(f"- {v}" for v in doc.violates), ""]
    if doc.safe:
        out += ["SAFE", *(f"- {s}" for s in doc.safe), ""]
    if doc.examples:
        out += ["EXAMPLES", *(f"- [{'violates' if e.violates else 'safe'}] {e.text}"
                              for e in doc.examples), ""]
    return "\n".join(out).strip()


@lru_cache(maxsize=1)
def _defaults() -> tuple[tuple[str, ...], tuple[Example, ...]]:
    path = resources.files("specguard.specs") / "guard" / "policy_defaults.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return (tuple(data["safe"]),
            tuple(Example(e["label"] == "violates", e["text"]) for e in data["examples"]))


def guard_policy(spec_text: str, categories: Sequence[Category]) -> PolicyDoc:
    """The policy a deliberative check applies: the scope's spec, with the tenant's taxonomy
    categories as violations (named in DEFINITIONS by id), and the shipped SAFE side and
    examples where the spec has none."""
    doc = parse_policy(spec_text or "")
    safe, examples = _defaults()
    cats = tuple((c.id, f"{c.name}: {c.description}".rstrip(": ")) for c in categories)
    return replace(
        doc,
        definitions=(*doc.definitions, *cats),
        safe=doc.safe or safe,
        examples=doc.examples or examples,
    )


def fit(doc: PolicyDoc, render: Callable[[PolicyDoc], str], low: int, high: int) -> str:
    """`render(doc)` brought inside [low, high] estimated tokens where it can be: over the
    budget, the definitions' descriptions shorten step by step, then examples and then the
    default SAFE items drop (the spec's own rules are never cut); under it, nothing is invented
    (the text is returned as it is, and `tokens()` tells the caller)."""
    text = render(doc)
    if tokens(text) <= high:
        return text
    steps = [replace(doc, definitions=tuple((t, _clip(m, n)) for t, m in doc.definitions))
             for n in (16, 12, 10, 8, 6)]
    short = steps[-1]
    steps += [replace(short, examples=short.examples[:2]), replace(short, examples=()),
              replace(short, examples=(), safe=short.safe[:2])]
    for step in steps:
        text = render(step)
        if tokens(text) <= high:
            return text
    return text


def _clip(text: str, words: int) -> str:
    w = text.split()
    return text if len(w) <= words else " ".join(w[:words]).rstrip(",;") + " ..."


def _paragraphs(chunk: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n[ \t]*\n", chunk) if p.strip()]


def _items(chunks: list[str]) -> list[str]:
    """Bullets of a section (a line that is not a bullet continues the previous one)."""
    items: list[str] = []
    for chunk in chunks:
        for line in chunk.splitlines():
            if not line.strip():
                continue
            m = _BULLET.match(line)
            if m:
                items.append(m.group(1).strip())
            elif items:
                items[-1] += " " + line.strip()
            else:
                items.append(line.strip())
    return [" ".join(i.split()) for i in items]


__all__ = ["Example", "PolicyDoc", "SECTIONS", "fit", "guard_policy", "parse_policy",
           "render_policy", "tokens"]
