"""`specguard guard ...`: train the fast tier, read its model card, score a text.

    specguard guard train                                   # the built-in corpus -> ./fast_guard/
    specguard guard train --data my_prompts.yaml --out my_guard   # plus your own labelled file
    specguard guard info                                    # the shipped artifact's card
    specguard guard check "How do I kill a Python process?"
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="The guard: train and inspect the fast tier.", no_args_is_help=True)
console = Console()


@app.command()
def train(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="The artifact folder to write (card.json + weights.npz).")] = Path("fast_guard"),
    members: Annotated[str, typer.Option(help="The input check's feature blocks: tfidf plus any of minilm (English encoder), minilm_ft (MiniLM fine-tuned as a classifier; needs the training extra's torch), e5 (multilingual).")] = "tfidf,minilm,e5",
    output_members: Annotated[str, typer.Option(help="The output check's feature blocks (tfidf plus any of minilm, e5).")] = "tfidf,minilm",
    workdir: Annotated[Optional[Path], typer.Option(help="Where a fine-tuned classifier is written before it joins the artifact; a rerun with the same data and settings reuses it.")] = None,
    output_from: Annotated[Optional[Path], typer.Option(help="Keep the output stage of this artifact (a folder, or a shipped name such as fast_default) instead of training one: retrain the input check alone.")] = None,
    reuse_finetune: Annotated[bool, typer.Option(help="Reuse the fine-tuned classifier in --workdir even if the training data changed since it was fitted (saves the fine-tune's hour on a CPU; the card says so).")] = False,
    encoder_head: Annotated[str, typer.Option(help="mlp | linear: the head over each encoder's vectors.")] = "mlp",
    finetune_max_tokens: Annotated[int, typer.Option(help="Tokens of each training text the MiniLM fine-tune reads, 16-256 (serving reads 256-token windows; longer costs time).")] = 96,
    finetune_epochs: Annotated[int, typer.Option(help="Epochs of the MiniLM fine-tune (the one with the best validation AUPRC is kept; about 20 minutes each on one core).")] = 1,
    data: Annotated[Optional[list[Path]], typer.Option(help="Your own labelled data: a dataset mapping YAML (see specguard.data.load_custom); repeat for several. Its records split like the built-in ones (hash of dataset and id).")] = None,
    builtin: Annotated[bool, typer.Option(help="Also train on the built-in public datasets.")] = True,
    written_requests: Annotated[bool, typer.Option(help="Also train and choose on the requests written for specguard (their training and validation parts; see docs/results/guard.md for what it trades).")] = False,
    passages: Annotated[bool, typer.Option(help="Also train on benign passages of answers (their training and validation parts), so that an ordinary pasted document is not read as harm.")] = False,
    output_stage: Annotated[bool, typer.Option(help="Also train the output check (request + answer).")] = True,
    placed_presets: Annotated[bool, typer.Option(help="Bound the presets on the validation look-alikes placed everywhere a request can sit (last user turn, system turn, earlier turn, end of a long document), each placement held to the bound; --no-placed-presets bounds them as the last user turn only.")] = True,
    cascade: Annotated[bool, typer.Option(help="Let TF-IDF decide alone when it is sure (choose the band on validation).")] = True,
    category_exemplars: Annotated[bool, typer.Option(help="Name a flagged text's categories from its nearest labelled training texts (see `specguard guard categories`); without, the TF-IDF category head names them.")] = True,
    data_dir: Annotated[Optional[Path], typer.Option(help="The datasets (default: $SPECGUARD_DATA_DIR or ../shared/data).")] = None,
    name: Annotated[str, typer.Option(help="The artifact's name (the checker is called fast:<name>).")] = "fast_guard",
    seed: int = 0,
) -> None:
    """Train the fast tier on the training part, choose calibration, operating points and the
    cascade on the validation part, and write the artifact with its model card. The held-out
    part is never read: measure it with `specguard eval run guard_fast`."""
    from .train import TrainConfig, train_artifact

    def blocks(text: str) -> tuple[str, ...]:
        return tuple(m.strip() for m in text.split(",") if m.strip())

    cfg = TrainConfig(members=blocks(members), output_members=blocks(output_members),
                      encoder_head=encoder_head, cascade=cascade, output_stage=output_stage,
                      category_exemplars=category_exemplars, placed_presets=placed_presets,
                      workdir=workdir, reuse_finetune=reuse_finetune,
                      output_from=output_from, seed=seed, written_requests=written_requests,
                      passages=passages,
                      finetune_max_tokens=finetune_max_tokens, finetune_epochs=finetune_epochs)
    inputs = _custom_examples(data or [], data_dir)
    if builtin:
        from .corpus import input_examples
        from ..data import Part

        inputs = input_examples(data_dir, seed=seed, parts=(Part.TRAIN, Part.VALIDATION),
                                written_requests=written_requests, passages=passages) + inputs
    elif not inputs:
        raise typer.BadParameter("--no-builtin needs at least one --data file.")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def say(message: str) -> None:
            if message.strip().startswith("encoding "):
                label, _, count = message.strip().removeprefix("encoding ").rpartition(": ")
                done, total = (int(x) for x in count.split("/"))
                if label not in tasks:
                    tasks[label] = bar.add_task(f"encoding {label}", total=total)
                bar.update(tasks[label], completed=done)
            else:
                bar.console.print(message)

        art = train_artifact(cfg, data_root=data_dir, name=name, input_data=inputs,
                             output_data=None if builtin else [], say=say)
    # The card says how it was built (paths as given on this machine).
    art.card["command"] = command_line(ctx)
    path = art.save(out)
    console.print(f"wrote {path}/ ({sum(f.stat().st_size for f in path.iterdir()) / 1e6:.1f} MB)")
    print_card(art.card)


def command_line(ctx: typer.Context) -> str:
    """The command as the user gave it, rebuilt from what click parsed (not from sys.argv,
    which belongs to whatever process runs the command: a test runner, a notebook)."""
    names, c = [], ctx
    while c.parent is not None:  # the sub-command names below the program (however it ran)
        names.insert(0, c.info_name)
        c = c.parent
    words = ["specguard", *names] if names else (ctx.info_name or "").split()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)  # typer's own click: compare by name
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            words.append(param.opts[0] if value else param.secondary_opts[0])
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            words += [param.opts[0], str(v)] if param.opts[0].startswith("-") else [str(v)]
    return shlex.join(words)


def _custom_examples(paths: list[Path], data_dir: Path | None):
    from ..data import Part, in_part, load_custom
    from .corpus import Example

    out = []
    for p in paths:
        records = load_custom(p)
        labelled = [r for r in records if r.harmful is not None]
        if not labelled:
            raise typer.BadParameter(f"{p}: no record has a harmful label; map a column to "
                                     "`label` and list `harmful_labels`, or map one to `harmful`.")
        for part in (Part.TRAIN, Part.VALIDATION):
            out += [Example(r.text, bool(r.harmful), r.source, part, key=f"{r.source}/{r.id}")
                    for r in in_part(labelled, part, data_root=data_dir)]
    return out


@app.command()
def info(artifact: Annotated[Optional[str], typer.Argument(help="A shipped artifact's name or an artifact folder (default: the shipped one).")] = None,
         as_json: Annotated[bool, typer.Option("--json", help="Print the whole card as JSON.")] = False) -> None:
    """Print an artifact's model card: data, licences, operating points, validation figures."""
    from .fast import DEFAULT_ARTIFACT, load_artifact

    art = load_artifact(artifact or DEFAULT_ARTIFACT)
    if as_json:
        typer.echo(json.dumps(art.card, indent=2, sort_keys=True))
        return
    print_card(art.card)


def print_card(card: dict) -> None:
    console.print(f"[bold]{card.get('name')}[/] (format {card.get('format')}, created "
                  f"{card.get('created')}); members {', '.join(card.get('config', {}).get('members', []))}")
    console.print(card.get("intended_use", ""))
    for stage, fig in card.get("validation", {}).items():
        table = Table("operating point", "threshold", "look-alikes flagged", "harmful requests caught",
                      "recall (all)", "FPR (all)", title=f"{stage} check, validation part")
        for preset, f in fig.get("operating_points", {}).items():
            table.add_row(preset, _f(f.get("threshold")), _f(f.get("lookalike_fpr")),
                          _f(f.get("harmful_request_recall")), _f(f.get("recall")), _f(f.get("fpr")))
        console.print(table)
        groups = Table("group", "n", "recall", "FPR", "F1", "AUPRC",
                       title=f"{stage} check by group at 'balanced' (validation part)")
        for g, m in fig.get("validation", {}).items():
            groups.add_row(g, str(m.get("n")), _f(m.get("recall")), _f(m.get("fpr")),
                           _f(m.get("f1")), _f(m.get("auprc")))
        console.print(groups)
        casc = fig.get("cascade", {})
        console.print(f"cascade band {casc.get('band')}: TF-IDF alone decides "
                      f"{_f(casc.get('decided_by_tfidf'))} of validation units")
    ex = card.get("stages", {}).get("input", {}).get("category_exemplars")
    if ex:
        val = "; ".join(f"{d}: a right one {_f(f.get('right'))}, only wrong {_f(f.get('wrong'))}"
                        for d, f in ex.get("validation", {}).items())
        console.print(f"categories of a flagged input: the {ex.get('k')} nearest of "
                      f"{ex.get('n_exemplars')} labelled training texts, named at "
                      f"{_f(ex.get('confidence'))} ({', '.join(ex.get('encoders', []))}); "
                      f"validation: {val}")
    held = card.get("held_out")
    if held:
        groups = held.get("tables", {}).get("groups")
        if groups:
            table = Table(*groups["columns"], title=f"held-out part ({held.get('command')}, "
                          f"{held.get('created')})")
            for row in groups["rows"]:
                table.add_row(*[str(c) for c in row])
            console.print(table)
    console.print("licences: " + "; ".join(f"{k}: {v}" for k, v in card.get("licences", {}).items()))


def _f(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else ("-" if x is None else str(x))


@app.command()
def check(text: Annotated[str, typer.Argument(help="The text to score as a user turn.")],
          artifact: Annotated[Optional[str], typer.Option(help="Artifact name or folder.")] = None,
          operating_point: Annotated[str, typer.Option(help="strict | balanced | permissive")] = "balanced") -> None:
    """Score one text with the fast tier and print the verdict."""
    from ..types import user
    from .fast import load_fast_checker
    from .verdict import CheckRequest, Stage

    checker = load_fast_checker(artifact)
    if checker is None:
        raise typer.BadParameter("no fast-tier artifact is installed; train one first.")
    v = checker.verdicts([CheckRequest(stage=Stage.INPUT, messages=[user(text)],
                                       operating_point=operating_point)])[0]
    console.print_json(v.model_dump_json(include={"label", "score", "threshold", "categories",
                                                  "explanation"}))


@app.command()
def categories(
    ctx: typer.Context,
    artifact: Annotated[Optional[Path], typer.Option(help="The artifact folder to give category exemplars (default: the shipped one). Written in place.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="The datasets (default: $SPECGUARD_DATA_DIR or ../shared/data).")] = None,
) -> None:
    """Fit the input check's category exemplars: the labelled training texts (requests, and a
    sample of the toxicity corpora) whose nearest neighbours name a flagged text's categories,
    with k and the naming confidence chosen on the validation part. Scores and verdicts do
    not change; only the categories a flagged verdict names do."""
    from ..data import Part
    from .artifact import GuardArtifact
    from .corpus import input_examples
    from .fast import DEFAULT_ARTIFACT, shipped_artifact_path
    from .train import fit_category_exemplars
    from .verdict import Stage

    folder = artifact or shipped_artifact_path(DEFAULT_ARTIFACT)
    if folder is None or not (folder / "card.json").is_file():
        raise typer.BadParameter(f"no artifact folder at {folder}")
    art = GuardArtifact.load(folder)
    examples = input_examples(data_dir, augment=False, parts=(Part.TRAIN, Part.VALIDATION))
    ex = fit_category_exemplars(art, examples, say=console.print)
    art.stages[Stage.INPUT].category_exemplars = ex
    ex.record["command"] = command_line(ctx)
    art.save(folder)
    console.print(f"category exemplars written to {folder}")


@app.command("add-written")
def add_written(
    files: Annotated[list[Path], typer.Argument(help="JSONL files, one request per line: text, harmful (true/false), topic, style.")],
    data_dir: Annotated[Optional[Path], typer.Option(help="The datasets whose validation and held-out records written text must not repeat (default: ../shared/data).")] = None,
) -> None:
    """Add requests to the set written for specguard (a development command: it writes
    runtime/guard/written_requests.jsonl in the source tree; `guard train --written-requests`
    trains on it). Repeats are folded, any text near a validation or held-out record (MiniLM
    cosine, the split's threshold) is dropped, and the counts go to written_requests.json."""
    from ..data._splits import NEAR_DUPLICATE_COSINE
    from ..encoders import EmbeddingCache, load_encoder
    from ..errors import ConfigError
    from . import written

    candidates = []
    for f in files:
        if not f.is_file():
            raise ConfigError(f"{f} does not exist", hint="pass JSONL files of written requests")
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{f}:{n}: not JSON ({e.msg})",
                                  hint="one JSON object per line") from None
            candidates.append(written.parse(obj, f"{f}:{n}"))
    reference = written.evaluation_texts(data_dir)
    if not reference:
        raise ConfigError("no validation or held-out records were found to check against",
                          hint="point --data-dir at the datasets (../shared/data)")
    encoder, cache = load_encoder("minilm"), EmbeddingCache()
    console.print(f"{len(candidates)} candidates against {len(reference)} evaluation texts")

    def embed(texts):
        return cache.encode(encoder, texts)

    admitted, counts = written.admit(candidates, reference, embed,
                                     threshold=NEAR_DUPLICATE_COSINE, existing=written.load())
    path, record = written.write(admitted, counts, embed=embed, threshold=NEAR_DUPLICATE_COSINE)
    console.print(json.dumps(counts))
    console.print(f"wrote {path} and {record}")


@app.command("attach-figures")
def attach_figures(
    summary: Annotated[Path, typer.Argument(help="A published suite summary (docs/results/guard_fast.json).")],
    artifact: Annotated[Optional[Path], typer.Option(help="The artifact folder whose card gets them (default: the shipped one).")] = None,
) -> None:
    """Copy a suite's held-out figures into an artifact's model card (`held_out`), with the
    command and date they came from."""
    from .fast import DEFAULT_ARTIFACT, shipped_artifact_path

    folder = artifact or shipped_artifact_path(DEFAULT_ARTIFACT)
    if folder is None or not (folder / "card.json").is_file():
        raise typer.BadParameter(f"no artifact folder at {folder}")
    result = json.loads(summary.read_text(encoding="utf-8"))
    card_path = folder / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["held_out"] = {
        "source": str(summary), "command": result.get("command"), "created": result.get("created"),
        "machine": result.get("machine"),
        "tables": {t["id"]: {"columns": t["columns"], "rows": t["rows"]}
                   for t in result.get("tables", []) if t["id"] in ("headline", "groups")},
    }
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    console.print(f"held-out figures from {summary} attached to {card_path}")
