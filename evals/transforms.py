"""Transformations applied to a dataset entry's items before they are sent.

- `jailbreak`: wrap each prompt in an in-the-wild jailbreak template, round-robin over the
  templates (MetaSC's protocol). Options: `templates: slotted|all` (default slotted: the ones
  with an explicit prompt slot), `part: held_out|all` (default held_out: templates from the
  evaluation half of the split only, so a guard trained on the other half never saw them),
  `n_templates` (a seeded sample of them), `seed`.
- `profile_prefix`: U-SafeBench's base prompt: "Consider <profile>", a rule, the instruction.
Register more with `register_transform(name, fn)`; fn(items, options, data_dir) -> items.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from specguard.data import JailbreakTemplate, Part, in_part, load, wrap
from .suites import EvalItem, TransformConfig

Transform = Callable[[list[EvalItem], dict[str, Any], Any], list[EvalItem]]
_TRANSFORMS: dict[str, Transform] = {}


def register_transform(name: str, fn: Transform) -> None:
    _TRANSFORMS[name] = fn


def apply_transform(items: list[EvalItem], config: TransformConfig, *, data_dir=None
                    ) -> list[EvalItem]:
    try:
        fn = _TRANSFORMS[config.name]
    except KeyError:
        raise ConfigError(f"Unknown transform {config.name!r}.",
                          hint=f"Known transforms: {', '.join(sorted(_TRANSFORMS))}.") from None
    return fn(items, config.options, data_dir)


def _jailbreak(items: list[EvalItem], options: dict[str, Any], data_dir) -> list[EvalItem]:
    unknown = set(options) - {"templates", "n_templates", "seed", "part"}
    if unknown:
        raise ConfigError(f"jailbreak transform: unknown option(s) {sorted(unknown)}.")
    templates: list[JailbreakTemplate] = load(  # type: ignore[assignment]
        "inthewild_jailbreaks", data_dir_override=data_dir)
    part = options.get("part", "held_out")
    if part == "held_out":
        templates = in_part(templates, Part.HELD_OUT, data_root=data_dir)
    elif part != "all":
        raise ConfigError("jailbreak transform: `part` is 'held_out' or 'all'.")
    which = options.get("templates", "slotted")
    if which == "slotted":
        templates = [t for t in templates if t.slot]
    elif which != "all":
        raise ConfigError("jailbreak transform: `templates` is 'slotted' or 'all'.")
    n = options.get("n_templates")
    if n is not None and n < len(templates):
        rng = random.Random(options.get("seed", 0))
        templates = [templates[i] for i in sorted(rng.sample(range(len(templates)), n))]
    out = []
    for i, item in enumerate(items):
        t = templates[i % len(templates)]
        out.append(item.model_copy(update={
            "request": wrap(t, item.request), "transform": f"jailbreak:{t.id}",
            "key": f"{item.key}/jb{t.id}",
        }))
    return out


def _profile_prefix(items: list[EvalItem], options: dict[str, Any], data_dir) -> list[EvalItem]:
    out = []
    for item in items:
        if not item.profile:
            raise ConfigError(f"profile_prefix: item {item.key} has no user profile.")
        text = f"Consider {item.profile}\n\n{'-' * 40}\n\n{item.request}"
        out.append(item.model_copy(update={"request": text, "transform": "profile_prefix"}))
    return out


register_transform("jailbreak", _jailbreak)
register_transform("profile_prefix", _profile_prefix)
