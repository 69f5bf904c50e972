"""Republish every page that reads the shipped fast tier, in order, after the artifact in
specs/guard/fast_default changes (a retrain that won on validation). Each step is the command
that writes one summary in docs/results/; the accuracy steps run first and the timing ones
last, one at a time (two model-heavy jobs on two cores measure nothing), then the targets
table and the scoreboard. It stops at the first step that fails; `--from NAME` resumes there.

    python scripts/guard_publish.py --list
    python scripts/guard_publish.py                    # about an hour and a half on 2 cores
    python scripts/guard_publish.py --from guard_latency
    python scripts/guard_publish.py --dry-run

Every bench script that loads the shipped fast tier itself is a step (profile_check too: its
baseline is the profile-blind fast tier). guard_select (the candidates, each trained here) is
not a step: it chooses an artifact rather than measuring the shipped one. Pages that read the
guard through the whole runtime (refusal, U-SafeBench) are listed at the end, to rerun when
the decisions they count moved.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Step:
    name: str  # the summary it writes: docs/results/<name>.json (or what it does)
    argv: tuple[str, ...]
    timing: bool = False  # measures time: run alone, after the accuracy steps


def steps(stamp: str) -> list[Step]:
    py = sys.executable
    # The CLI installed beside this interpreter: run from a venv that is not activated, a bare
    # "specguard" is not on PATH.
    cli = Path(py).with_name("specguard")
    cli = str(cli) if cli.exists() else "specguard"
    suite = (cli, "eval", "run")
    quiet = ("--threads", "1", "--no-progress", "--publish")
    return [
        Step("guard_fast", (*suite, "guard_fast", *quiet, "--out", f"runs/guard_fast-{stamp}")),
        Step("card held-out figures", (cli, "guard", "attach-figures",
                                       "docs/results/guard_fast.json")),
        Step("guard_robustness", (*suite, "guard_robustness", *quiet,
                                  "--out", f"runs/guard_robustness-{stamp}")),
        Step("guard_operating_points", (py, "bench/guard_operating_points.py")),
        Step("guard_written", (py, "bench/guard_written.py")),
        Step("guard_categories", (py, "bench/guard_categories.py")),
        Step("guard_bands", (py, "bench/guard_bands.py")),
        Step("guard_output", (py, "bench/guard_output.py")),
        Step("guard_languages", (py, "bench/guard_languages.py")),
        Step("guard_latency", (py, "bench/guard_latency.py"), timing=True),
        Step("guard_batching", (py, "bench/guard_batching.py"), timing=True),
        Step("guard_concurrency", (py, "bench/guard_concurrency.py"), timing=True),
        Step("guard_hot_path", (py, "bench/guard_hot_path.py"), timing=True),
        Step("guard_long_documents", (py, "bench/guard_long_documents.py"), timing=True),
        # Its baseline is the profile-blind shipped fast tier, and it times a check in front
        # of it.
        Step("profile_check", (py, "bench/profile_check.py"), timing=True),
        Step("guard_targets", (py, "bench/guard_targets.py")),
        Step("scoreboard", (py, "-m", "specguard.evals.scoreboard")),
    ]


# Summaries that read the shipped guard through the runtime: rerun them when its decisions moved.
THROUGH_THE_RUNTIME = ("refusal", "usafebench", "usafebench_at_risk")
# Summaries in docs/results/ named guard_* that are not a step, and why.
NOT_A_STEP = {"guard_select": "chooses among candidates it trains; it does not read the "
                              "shipped artifact",
              "guard_passages": "the choice of the benign-passage training data, on "
                                "validation, the artifacts compared named on its command line"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="print the steps and exit")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--from", dest="start", default=None, metavar="NAME",
                    help="resume at this step (a name from --list)")
    args = ap.parse_args()

    plan = steps(dt.date.today().isoformat())
    names = [s.name for s in plan]
    if args.start is not None:
        if args.start not in names:
            print(f"--from {args.start!r} is not a step; the steps: {', '.join(names)}",
                  file=sys.stderr)
            return 2
        plan = plan[names.index(args.start):]
    if args.list:
        for s in plan:
            print(f"{s.name:24} {'timing  ' if s.timing else 'accuracy'} {shlex.join(s.argv)}")
        print(f"\nthrough the runtime, rerun when decisions moved: {', '.join(THROUGH_THE_RUNTIME)}")
        return 0
    started = time.perf_counter()
    for s in plan:
        print(f"== {s.name}: {shlex.join(s.argv)}", flush=True)
        if args.dry_run:
            continue
        t = time.perf_counter()
        code = subprocess.call(list(s.argv), cwd=ROOT)
        print(f"== {s.name}: exit {code} after {time.perf_counter() - t:.0f} s", flush=True)
        if code != 0:
            print(f"stopped at {s.name}; resume with --from {s.name}", file=sys.stderr)
            return code
    print(f"done in {(time.perf_counter() - started) / 60:.0f} min. Through the runtime, rerun "
          f"when the decisions moved: {', '.join(THROUGH_THE_RUNTIME)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
