"""`specguard datastore build|add|remove|stats`: manage Goodtriever datastores.

Keys come from the embedded llama.cpp model (default: SmolLM2-135M-Instruct, or --model). A
datastore built from ToxicChat or BeaverTails inherits their non-commercial licence: keep it
outside the repository (the default root is ~/.cache/specguard/datastores).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import SpecguardError

app = typer.Typer(help="Build and manage Goodtriever datastores.", no_args_is_help=True)
console = Console(stderr=True)

DEFAULT_ROOT = Path(os.environ.get("SPECGUARD_DATASTORES", "~/.cache/specguard/datastores"))


def _resolve(path: str) -> Path:
    """A bare name lives under the default root; anything with a slash is a path."""
    p = Path(path).expanduser()
    return p if ("/" in path or p.exists()) else DEFAULT_ROOT.expanduser() / path


def _backend(model: str | None, threads: int | None):
    from ..backends.embedded import EmbeddedBackend

    return EmbeddedBackend(model, n_threads=threads)


def _documents(files, column, id_column, where, safety, toxic, data_dir, limit):
    from .corpora import read_corpus, safety_documents

    conds = dict(w.split("=", 1) for w in where or [])
    docs = []
    for f in files or []:
        docs.extend(read_corpus(f, column=column, id_column=id_column, where=conds))
    for name in safety or []:
        docs.extend(safety_documents(name, toxic=toxic, data_dir=data_dir))
    if limit:
        docs = docs[:limit]
    if not docs:
        raise typer.BadParameter("No documents: give --from FILE and/or --safety DATASET.")
    return docs


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[keys]} keys"), TimeElapsedColumn(), console=console,
    )


def _fail(exc: SpecguardError) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


FilesOpt = Annotated[list[Path] | None, typer.Option("--from", help="corpus file (.txt/.csv/.jsonl)")]
ColumnOpt = Annotated[str, typer.Option(help="text column of CSV/JSONL files")]
IdColOpt = Annotated[str | None, typer.Option(help="id column (default: row number)")]
WhereOpt = Annotated[list[str] | None, typer.Option(help="keep rows where COLUMN=VALUE")]
SafetyOpt = Annotated[
    list[str] | None,
    typer.Option(help="a safety dataset: jigsaw_detoxify_sample, toxicchat, openai_moderation, "
                 "beavertails_sample, advbench"),
]
ToxicOpt = Annotated[bool, typer.Option("--toxic/--nontoxic", help="which side of --safety")]
ModelOpt = Annotated[str | None, typer.Option(help="GGUF path (default: the embedded model)")]
ThreadsOpt = Annotated[int | None, typer.Option(help="llama.cpp (or --encoder torch) threads")]
MaxTokOpt = Annotated[int, typer.Option(help="tokens read per document")]
EncoderOpt = Annotated[
    str, typer.Option(help="--recipe: who reads the keys: llama (llama.cpp) or torch (the same "
                      "GGUF dequantized into transformers; about 10x faster per CPU second "
                      "here, needs the torch extra and gguf)")
]
UbatchOpt = Annotated[
    int, typer.Option(help="tokens per llama.cpp decode while encoding (0: whole document; "
                      "--recipe: 0 means 1, the fastest here)")
]


@app.command()
def build(
    path: Annotated[str | None, typer.Argument(
        help="datastore folder, or a name under the default root (not with --recipe)")] = None,
    recipe: Annotated[str | None, typer.Option(
        help="a recipe YAML (or a built-in recipe's name, e.g. detox): builds its toxic and "
             "non-toxic stores in the cache, resumably")] = None,
    root: Annotated[str | None, typer.Option(help="datastore root for --recipe")] = None,
    minutes: Annotated[float | None, typer.Option(
        help="--recipe: stop encoding after this long (run again to go on)")] = None,
    finalize_only: Annotated[bool, typer.Option(
        help="--recipe: build the stores from what is encoded so far, encode nothing")] = False,
    files: FilesOpt = None,
    column: ColumnOpt = "text",
    id_column: IdColOpt = None,
    where: WhereOpt = None,
    safety: SafetyOpt = None,
    toxic: ToxicOpt = True,
    label: Annotated[str | None, typer.Option(help="default: toxic/nontoxic")] = None,
    index: Annotated[str, typer.Option(help="auto | flat | ivfpq")] = "auto",
    data_dir: Annotated[str | None, typer.Option(help="safety data directory")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many documents")] = None,
    max_tokens: MaxTokOpt = 256,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    overwrite: bool = False,
    checkpoint: Annotated[int, typer.Option(help="save every N documents (flat)")] = 25,
    ubatch: UbatchOpt = 0,
    encoder: EncoderOpt = "llama",
) -> None:
    """Build a datastore from corpus files and/or the safety datasets, or both stores of a
    recipe (--recipe)."""
    from .datastore import Datastore, IndexKind

    if recipe is not None:
        if path is not None:
            raise typer.BadParameter("give a datastore PATH or --recipe, not both")
        try:
            _build_recipe(recipe, root, minutes, finalize_only, model, threads, ubatch,
                          encoder)
        except SpecguardError as exc:
            _fail(exc)
        return
    if path is None:
        raise typer.BadParameter("give a datastore PATH (or --recipe FILE)")
    try:
        docs = _documents(files, column, id_column, where, safety, toxic, data_dir, limit)
        encoder = _encoder(model, threads, max_tokens, ubatch)
        target = _resolve(path)
        kind = IndexKind(index)
        upper = len(docs) * max_tokens  # at most this many keys
        if kind == IndexKind.FLAT or (kind == IndexKind.AUTO and upper <= 100_000):
            # flat: append as documents are encoded, saving every `checkpoint` documents, so
            # an interrupted build (Ctrl-C) keeps what it did; `add` resumes it
            store = Datastore.create(
                target, encoder.key_space(), label=label or ("toxic" if toxic else "nontoxic"),
                index_kind=IndexKind.FLAT, overwrite=overwrite,
            )
            _fill(store, encoder, docs, checkpoint)
        else:
            store = _build_ivfpq(target, encoder, docs, kind, label, toxic, overwrite)
    except SpecguardError as exc:
        _fail(exc)
    console.print(f"built {target}: {len(store)} keys from {len(store.documents)} documents")


def _build_recipe(recipe_ref, root, minutes, finalize_only, model, threads, ubatch,
                  encoder_name: str = "llama") -> None:
    from .build import RecipeBuild, run_build
    from .recipe import Recipe

    recipe = Recipe.load(recipe_ref)
    if encoder_name == "torch":
        from ..backends.embedded import default_model_path
        from .encoders import TorchKeyEncoder

        encoder = TorchKeyEncoder(Path(model) if model else default_model_path(),
                                  max_tokens=recipe.max_tokens, threads=threads)
    elif encoder_name == "llama":
        encoder = _encoder(model, threads, recipe.max_tokens, ubatch if ubatch else 1)
    else:
        raise typer.BadParameter(f"--encoder {encoder_name!r}: use llama or torch")
    build = RecipeBuild(recipe, encoder.key_space(), root or DEFAULT_ROOT)
    console.print(f"recipe {recipe.name}: {build.folder}")
    if finalize_only:
        for side in recipe.sides:
            store = build.finalize(side)
            console.print(f"{side}: {len(store)} keys, {len(store.documents)} documents")
        return
    state = run_build(build, encoder, minutes=minutes, console=console)
    for side, p in state.items():
        done = "complete" if p.finished else "partial (run again to go on)"
        console.print(f"{side}: {p.keys:,} keys from {p.documents_done:,} of "
                      f"{p.documents_total:,} documents, {done}: {build.store_path(side)}")


def _build_ivfpq(target, encoder, docs, kind, label, toxic, overwrite):
    """Encode everything first (IVF-PQ trains on a sample of the keys), then fill the index."""
    import numpy as np

    from .datastore import Datastore

    encoded = asyncio.run(_encode_all(encoder, docs))
    n = sum(len(k) for _, k, _ in encoded)
    all_keys = np.concatenate([k for _, k, _ in encoded if len(k)])
    train = all_keys[np.random.default_rng(0).permutation(len(all_keys))[:100_000]]
    store = Datastore.create(
        target, encoder.key_space(), label=label or ("toxic" if toxic else "nontoxic"),
        index_kind=kind, expected_keys=n, training_keys=train, overwrite=overwrite,
    )
    for doc, keys, toks in encoded:
        store.add(doc.id, keys, toks)
    store.save()
    return store


def _encoder(model, threads, max_tokens: int, ubatch: int):
    from .encoders import EmbeddedKeyEncoder

    return EmbeddedKeyEncoder(_backend(model, threads), max_tokens=max_tokens, ubatch=ubatch or None)


def _fill(store, encoder, docs, checkpoint: int) -> None:
    """Encode and add `docs`, saving every `checkpoint` documents; Ctrl-C keeps what is done."""
    try:
        asyncio.run(_add_with_checkpoints(store, encoder, docs, checkpoint))
    except KeyboardInterrupt:
        pass  # saved by _add_with_checkpoints


async def _add_with_checkpoints(store, encoder, docs, checkpoint: int) -> None:
    from .corpora import add_documents

    with _progress() as bar:
        task = bar.add_task("encoding", total=len(docs), keys=0)
        done = 0
        try:
            for i in range(0, len(docs), checkpoint):
                part = docs[i : i + checkpoint]
                await add_documents(
                    store, encoder, part,
                    on_progress=lambda d, k: bar.update(task, completed=done + d, keys=len(store)),
                )
                done += len(part)
                store.save()
        except (KeyboardInterrupt, asyncio.CancelledError):
            console.print(f"interrupted: kept {len(store)} keys from {done} documents")
        finally:
            store.save()


async def _encode_all(encoder, docs):
    from .corpora import encode_documents

    out = []
    with _progress() as bar:
        task = bar.add_task("encoding", total=len(docs), keys=0)
        async for item in encode_documents(
            encoder, docs, on_progress=lambda d, k: bar.update(task, completed=d, keys=k)
        ):
            out.append(item)
    return out


@app.command()
def add(
    path: Annotated[str, typer.Argument(help="datastore folder or name")],
    files: FilesOpt = None,
    column: ColumnOpt = "text",
    id_column: IdColOpt = None,
    where: WhereOpt = None,
    safety: SafetyOpt = None,
    toxic: ToxicOpt = True,
    data_dir: Annotated[str | None, typer.Option(help="safety data directory")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many documents")] = None,
    max_tokens: MaxTokOpt = 256,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    checkpoint: Annotated[int, typer.Option(help="save every N documents")] = 25,
    ubatch: UbatchOpt = 0,
) -> None:
    """Append documents (skipping ones already present) to a datastore."""
    from .datastore import Datastore

    try:
        docs = _documents(files, column, id_column, where, safety, toxic, data_dir, limit)
        encoder = _encoder(model, threads, max_tokens, ubatch)
        store = Datastore.open(_resolve(path), encoder.key_space())
        present = set(store.documents)
        docs = [d for d in docs if d.id not in present]
        before = len(store)
        _fill(store, encoder, docs, checkpoint)
        added = len(store) - before
    except SpecguardError as exc:
        _fail(exc)
    console.print(f"added {added} keys; {len(store)} keys in {store.path}")


@app.command()
def remove(
    path: Annotated[str, typer.Argument(help="datastore folder or name")],
    source_ids: Annotated[list[str], typer.Argument(help="source ids of the documents to remove")],
    prefix: Annotated[bool, typer.Option(help="treat ids as prefixes (e.g. 'toxicchat:')")] = False,
) -> None:
    """Remove documents (all their keys) by source id."""
    from .datastore import Datastore

    try:
        store = Datastore.open(_resolve(path))
        ids = source_ids
        if prefix:
            ids = [d for d in store.documents if any(d.startswith(p) for p in source_ids)]
        removed = store.remove(ids)
        store.save()
    except SpecguardError as exc:
        _fail(exc)
    console.print(f"removed {removed} keys; {len(store)} keys left in {store.path}")


@app.command()
def stats(
    paths: Annotated[list[str], typer.Argument(help="datastore folders or names")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Size and key space of datastores."""
    from .datastore import Datastore

    try:
        rows = [Datastore.open(_resolve(p)).stats() for p in paths]
    except SpecguardError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("", *(r["name"] for r in rows))
    for field in rows[0]:
        table.add_row(field, *(str(r[field]) for r in rows))
    Console().print(table)


__all__ = ["app"]
