"""`specguard data`: the datasets, their splits, and the near-duplicate manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Datasets, splits and the near-duplicate manifest.")
console = Console()
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Data directory (default: $SPECGUARD_DATA_DIR or ../shared/data).")]


@app.command("list")
def list_cmd(data_dir: DataDirOpt = None) -> None:
    """Every registered dataset with its records per part (train / validation / held_out,
    and training-side records excluded as near-duplicates of evaluation records)."""
    from ..errors import SpecguardError
    from . import Part, dataset_names, get_spec, is_excluded, load, record_part

    table = Table("dataset", "records", "train", "validation", "held_out", "excluded", "licence")
    for name in dataset_names():
        spec = get_spec(name)
        try:
            records = load(name, subset="all", data_dir_override=data_dir)
        except SpecguardError as exc:  # a missing folder is a row, not a crash
            table.add_row(name, f"[red]{type(exc).__name__}[/]", "", "", "", "", spec.license)
            continue
        parts = Counter(record_part(r) for r in records)
        excluded = sum(1 for r in records if record_part(r) is not Part.HELD_OUT
                       and is_excluded(r, data_dir))
        table.add_row(name, str(len(records)), str(parts[Part.TRAIN]),
                      str(parts[Part.VALIDATION]), str(parts[Part.HELD_OUT]), str(excluded),
                      spec.license + (" (non-commercial)" if spec.non_commercial else ""))
    console.print(table)


@app.command("dedupe")
def dedupe_cmd(
    data_dir: DataDirOpt = None,
    threshold: Annotated[Optional[float], typer.Option(help="Cosine at or above which two texts are one item (default: NEAR_DUPLICATE_COSINE).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the manifest (default: the packaged near_duplicates.json).")] = None,
) -> None:
    """Rebuild the near-duplicate manifest: training and validation records that repeat an
    evaluation record (MiniLM cosine for English, multilingual e5 for other languages, or
    equal text) are excluded from training."""
    from ..encoders import EmbeddingCache, load_encoder
    from ._dedupe import MANIFEST, build_manifest, write_manifest

    cache = EmbeddingCache()

    def embedder(name: str):
        encoder = load_encoder(name)

        def embed(texts):
            with typer.progressbar(length=len(texts), label=f"encoding ({name})") as bar:
                last = [0]

                def tick(done, total):
                    bar.update(done - last[0])
                    last[0] = done

                return cache.encode(encoder, texts, progress=tick)

        return embed

    manifest = build_manifest(embedder("minilm"), embed_multilingual=embedder("e5"),
                              root=data_dir, threshold=threshold, progress=console.print)
    path = write_manifest(manifest, out or MANIFEST)
    n = sum(v["excluded"] for v in manifest["datasets"].values())
    console.print(f"{n} training/validation records excluded; wrote {path}")


@app.command("status")
def status_cmd(data_dir: DataDirOpt = None) -> None:
    """Whether the shipped near-duplicate manifest matches this data directory's files."""
    from ._dedupe import manifest_status

    for name, state in manifest_status(data_dir).items():
        colour = {"ok": "green", "stale": "yellow", "missing": "red"}[state]
        console.print(f"{name:32} [{colour}]{state}[/]")
