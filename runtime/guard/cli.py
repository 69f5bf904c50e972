"""`specguard guard ...`: build the fast tier's artifact and look at it.

    specguard guard train                                  # TF-IDF baseline -> ./fast_guard.joblib
    specguard guard train --features fusion --no-chat --classifier mlp --out probe.joblib
    specguard guard train --features combined --model my.gguf --out my_guard.joblib
    specguard guard info specs/guard/fast_default.joblib
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

app = typer.Typer(help="The guard: train and inspect fast-tier classifiers.", no_args_is_help=True)


@app.command()
def train(
    out: Path = typer.Option(Path("fast_guard.joblib"), help="Where to write the artifact (.joblib + .json record)."),
    features: str = typer.Option("tfidf", help="tfidf | hidden | combined | fusion (hidden states need a model)."),
    model: Path | None = typer.Option(None, help="A local GGUF for hidden-state features (default: the embedded model)."),
    chat: bool = typer.Option(True, help="Wrap texts in the model's chat template before reading hidden states."),
    pooling: str = typer.Option("last", help="last | mean: the last token's hidden state or the token mean."),
    max_tokens: int = typer.Option(256, min=8, help="Hidden states read at most this many tokens of each text (its end); the pass costs time per token."),
    classifier: str = typer.Option("logreg", help="logreg | mlp: the hidden-state classifier (mlp: features hidden or fusion)."),
    c: float = typer.Option(4.0, "--C", help="Inverse regularisation of the logistic regression over TF-IDF."),
    hidden_c: float = typer.Option(0.05, "--hidden-C", help="... of a logistic probe over hidden states alone."),
    hidden_weight: float = typer.Option(0.15, help="Scale of the hidden-state block next to TF-IDF (combined)."),
    output_stage: bool = typer.Option(True, help="Also train the output check on prompt+response pairs."),
    data_dir: Path | None = typer.Option(None, help="The datasets (default: $SPECGUARD_DATA_DIR or ../shared/data)."),
    name: str = typer.Option("fast_default", help="The artifact's name (shown as the checker's name)."),
    hidden_cache: Path | None = typer.Option(None, help="A folder to keep hidden states in between runs (derived from dataset rows: do not commit it)."),
) -> None:
    """Train the fast tier on the training splits and report its held-out scores."""
    from .train import FastConfig, train_artifact

    cfg = FastConfig(features=features, chat=chat, pooling=pooling, classifier=classifier, C=c, hidden_C=hidden_c,
                     max_tokens=max_tokens,
                     hidden_weight=hidden_weight)
    backend = None
    if cfg.uses_hidden:
        from ..backends.embedded import EmbeddedBackend

        backend = EmbeddedBackend(model)
    art = asyncio.run(train_artifact(cfg, backend=backend, data_root=data_dir, name=name,
                                     output_stage=output_stage, hidden_cache=hidden_cache))
    path = art.save(out)
    typer.echo(f"wrote {path} and {path.with_suffix('.json')} ({path.stat().st_size / 1e6:.1f} MB)")
    _print_record(art.record)


@app.command()
def info(path: Path = typer.Argument(..., help="An artifact (.joblib) or its record (.json).")) -> None:
    """Print an artifact's training record: data, configuration, held-out scores."""
    record_path = path.with_suffix(".json")
    if not record_path.is_file():
        raise typer.BadParameter(f"{record_path} does not exist.")
    _print_record(json.loads(record_path.read_text()))


def _print_record(record: dict) -> None:
    typer.echo(f"{record.get('name')}: {record.get('label')}  (trained {record.get('created')})")
    for stage, s in record.get("stages", {}).items():
        for group, m in s.get("held_out", {}).items():
            typer.echo(
                f"  {stage:6s} {group:18s} n={m['n']:4d}  P={_f(m['precision'])} R={_f(m['recall'])} "
                f"F1={_f(m['f1'])} AUPRC={_f(m['auprc'])} benign flagged={_f(m['benign_flagged_rate'])}"
            )


def _f(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)
