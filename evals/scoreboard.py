"""Regenerate every published table from the JSON summaries in docs/results/.

    python -m specguard.evals.scoreboard            # rewrite README.md and docs/results/*.md
    python -m specguard.evals.scoreboard --check    # exit 1 if any of them is out of date

A page embeds a generated block between two markers, and only the block is rewritten:

    <!-- scoreboard:judges:headline -->          (table `headline` of docs/results/judges.json)
    <!-- /scoreboard -->
    <!-- scoreboard:judges:meta -->              (the command, date and machine behind it)
    <!-- scoreboard:readme -->                   (README.md: the "Measured results" table)

The README table lists the expected results in order; one without a summary yet says which
command produces it instead of showing an old number.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .results import RESULTS_DIR, Result, read_result

_BLOCK = re.compile(r"(<!-- scoreboard:(?P<key>[\w.:-]+) -->\n)(?P<body>.*?)(<!-- /scoreboard -->)",
                    re.DOTALL)


@dataclass(frozen=True)
class Expected:
    name: str
    what: str
    where: str
    command: str


# The README's rows, in order. Owners regenerate their own: the guard's pages and the suites of
# other issues join here as their scripts start writing summaries.
EXPECTED = (
    Expected("splits", "the shared split (evaluation / validation / train)",
             "docs/results/splits.md", "python bench/splits.py"),
    Expected("judges", "answer judges vs human labels", "docs/results/judges.md",
             "python bench/judge_accuracy.py"),
    Expected("refusal", "refusal suite, raw vs guarded (embedded model)",
             "docs/results/refusal.md", "specguard eval run refusal --publish"),
    Expected("guard_fast", "guard fast tier on every held-out item", "docs/results/guard.md",
             "specguard eval run guard_fast --publish"),
    Expected("guard_output", "guard output check on held-out exchanges", "docs/results/guard.md",
             "python bench/guard_output.py"),
    Expected("guard_written", "guard on written requests (held-out)", "docs/results/guard.md",
             "python bench/guard_written.py"),
    Expected("metasc", "MetaSC spec optimization", "docs/results/metasc.md",
             "python bench/metasc_suite.py"),
    Expected("engines", "revision gate and gated MetaSC (issue 16)", "docs/results/engines.md",
             "python bench/engines.py"),
    Expected("usafebench", "U-SafeBench, per-user safety", "docs/results/usafebench.md",
             "specguard eval run usafebench --publish"),
    Expected("usafebench_at_risk", "U-SafeBench benign requests from at-risk users",
             "docs/results/usafebench.md", "specguard eval run usafebench_at_risk --publish"),
    Expected("profile_check", "profile-aware check (issue 17)", "docs/results/usafebench.md",
             "python bench/profile_check.py"),
    Expected("detox", "Goodtriever detoxified decoding", "docs/results/detox.md",
             "specguard eval run detox --threads 1 --publish"),
    Expected("detox_confirm", "Goodtriever, the other held-out prompts",
             "docs/results/detox.md", "specguard eval run detox_confirm --threads 1 --publish"),
    Expected("goodtriever_sweep", "Goodtriever settings sweep (choice data)",
             "docs/results/detox.md", "python bench/goodtriever_sweep.py"),
    Expected("goodtriever_sweep_fine", "Goodtriever settings sweep, finer grid (choice data)",
             "docs/results/detox.md",
             "python bench/goodtriever_sweep.py --name goodtriever_sweep_fine --agreement-n 0 "
             "--what 'Goodtriever settings sweep, finer grid (choice data)' "
             "--png docs/results/goodtriever_tradeoff_fine.png "
             "--configs 'a=4 T=1000,a=5 T=1000,a=5 T=2000'"),
    Expected("proxy_overhead", "proxy overhead (pass-through policy, loopback upstream)",
             "docs/results/performance.md", "python bench/proxy_overhead.py"),
    Expected("proxy", "specguard vs the LiteLLM proxy (loopback upstream)",
             "docs/results/proxy.md", "python bench/proxy_vs_litellm.py"),
    Expected("observability_overhead", "observability overhead (metrics, access log, traces)",
             "docs/results/performance.md", "python bench/observability_overhead.py"),
    Expected("embedded_concurrency", "embedded model under concurrency",
             "docs/results/performance.md", "python bench/embedded_concurrency.py"),
    Expected("eval_runner", "eval runner overhead", "docs/results/performance.md",
             "python bench/eval_runner.py"),
    Expected("goodtriever_throughput", "Goodtriever decoding throughput",
             "docs/results/detox.md", "python bench/goodtriever_throughput.py"),
    Expected("goodtriever_device_cpu", "Goodtriever torch path (CPU)", "docs/results/detox.md",
             "python bench/goodtriever_device.py --device cpu"),
    Expected("goodtriever_device_gpu", "Goodtriever torch path (GPU)", "docs/results/detox.md",
             "bash bench/goodtriever_device.sh (on a GPU machine)"),
    Expected("vllm_vs_llamacpp", "vLLM server vs embedded llama.cpp (same weights)",
             "docs/results/performance.md", "python bench/vllm_vs_llamacpp.py"),
    Expected("reliability", "soak: streams held open against the guarded server",
             "docs/results/reliability.md", "python bench/soak.py"),
    Expected("garak", "garak scan: are specguard's refusals recognised?",
             "docs/results/garak.md", "python bench/garak_scan.py"),
)


def load_results(root: Path) -> dict[str, Result]:
    folder = root / RESULTS_DIR
    out = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        result = read_result(path)
        if result.name != path.stem:
            raise SystemExit(f"{path}: its name is {result.name!r}; rename one of them")
        out[result.name] = result
    return out


def _cell(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def md_table(columns: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command_for(name: str, root: Path | None) -> str | None:
    """How a missing result is produced: the EXPECTED entry, else bench/<name>.py, else the
    built-in suite <name> (published with --publish)."""
    exp = next((e for e in EXPECTED if e.name == name), None)
    if exp:
        return exp.command
    if root is not None and (root / "bench" / f"{name}.py").is_file():
        return f"python bench/{name}.py"
    if root is not None and (root / "evals" / "suites" / f"{name}.yaml").is_file():
        return f"specguard eval run {name} --publish"
    return None


def _missing(name: str, root: Path | None = None) -> str:
    command = command_for(name, root)
    how = f": run `{command}`" if command else ""
    return f"*Not measured yet (no docs/results/{name}.json){how}.*"


def render_block(key: str, results: dict[str, Result], root: Path | None = None) -> str:
    if key == "readme":
        return readme_table(results)
    name, _, table_id = key.partition(":")
    result = results.get(name)
    if result is None:
        return _missing(name, root)
    if table_id == "meta":
        m = result.machine
        load = f", load {m.get('load_1min')}" if m.get("load_1min") is not None else ""
        return (f"Measured with `{result.command}` ({result.script}) on {result.created[:10]}; "
                f"{m.get('cpus')} CPUs{load}, Python {m.get('python')}, {m.get('platform')}.")
    table = result.table(table_id)
    out = []
    if table.title:
        out.append(f"**{table.title}**\n")
    out.append(md_table(table.columns, table.rows))
    if table.note:
        out.append(f"\n{table.note}")
    return "\n".join(out)


def readme_table(results: dict[str, Result]) -> str:
    rows = []
    seen = set()
    for exp in EXPECTED:
        seen.add(exp.name)
        r = results.get(exp.name)
        if r is not None and r.readme is not None:
            rows.append([r.readme.what, f"`{r.readme.where}`", r.readme.headline])
        else:
            rows.append([exp.what, f"`{exp.where}`", f"not regenerated yet: `{exp.command}`"])
    for name, r in results.items():
        if name not in seen and r.readme is not None:
            rows.append([r.readme.what, f"`{r.readme.where}`", r.readme.headline])
    return md_table(["what", "where", "headline"], rows)


def render(text: str, results: dict[str, Result], root: Path | None = None) -> str:
    def sub(m: re.Match) -> str:
        return f"{m.group(1)}{render_block(m.group('key'), results, root)}\n{m.group(4)}"

    return _BLOCK.sub(sub, text)


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / RESULTS_DIR).glob("*.md"))]


def sync(root: Path, *, check: bool = False) -> list[Path]:
    """Rewrite (or with `check`, only compare) every page; returns the pages out of date.
    Raises SystemExit for a smoke run's summary in docs/results (never publish those)."""
    results = load_results(root)
    smoke = [n for n, r in results.items() if r.smoke]
    if smoke:
        raise SystemExit(f"docs/results holds smoke-run summaries ({', '.join(smoke)}): their "
                         "numbers mean nothing. Rerun the scripts without --smoke.")
    stale = []
    for page in pages(root):
        if not page.is_file():
            continue
        old = page.read_text(encoding="utf-8")
        new = render(old, results, root)
        if new != old:
            stale.append(page)
            if not check:
                page.write_text(new, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root")
    ap.add_argument("--check", action="store_true", help="exit 1 when a page is out of date")
    args = ap.parse_args(argv)
    stale = sync(args.root, check=args.check)
    for page in stale:
        print(f"{'out of date' if args.check else 'rewrote'}: {page.relative_to(args.root)}")
    if args.check and stale:
        print("run: python -m specguard.evals.scoreboard", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
