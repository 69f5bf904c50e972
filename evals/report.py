"""Reports: one self-contained HTML page (tables, inline SVG bar charts with 95% interval
whiskers, per-group and per-category breakdowns, judge parse status, cost) and a Markdown
summary, for one run or several side by side."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .runner import write_summary
from .scoring import RATE_METRICS

Column = tuple[str, str, dict[str, Any]]  # (column label, run name, the method's summary)


def load_summaries(runs: list[str | Path]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for run in runs:
        folder = Path(run)
        # Recomputed from the records: right for runs still in progress or interrupted.
        summary = write_summary(folder)  # fails clearly when this is not a run directory
        out.append((folder.name, summary))
    return out


def _columns(summaries: list[tuple[str, dict[str, Any]]]) -> list[Column]:
    cols = []
    many = len(summaries) > 1
    for run_name, summary in summaries:
        for method, ms in summary["methods"].items():
            cols.append((f"{run_name} / {method}" if many else method, run_name, ms))
    return cols


def _metric_order(summaries) -> list[str]:
    order: list[str] = []
    for _, s in summaries:
        order += [m for m in s.get("metric_order", []) if m not in order]
    return order


def _help(summaries) -> dict[str, str]:
    out: dict[str, str] = {}
    for _, s in summaries:
        out.update(s.get("metric_help", {}))
    return out


def _fmt(est: dict[str, Any] | None, metric: str) -> str:
    if not est or est.get("value") is None:
        return "—"
    pct = metric.split("@")[0] in RATE_METRICS
    v = est["value"]

    def f(x: float) -> str:
        if pct:
            return f"{100 * x:.1f}%"
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"

    ci = ""
    if est.get("low") is not None and est.get("high") is not None:
        ci = f" [{f(est['low'])}, {f(est['high'])}]"
    excluded = est.get("excluded") or 0
    left_out = f", {excluded} unparsed left out" if excluded else ""
    return f"{f(v)}{ci} (n={est.get('n', 0)}{left_out})"


INTERVALS = ("value [95% interval: Wilson for proportions, bootstrap over items otherwise] "
             "(n = the items the figure reads; unparsed judgements are counted, not hidden)")


def _accuracy(card: dict[str, Any]) -> str:
    acc = card.get("accuracy")
    if not acc or acc.get("value") is None:
        return "not measured"
    lo, hi = acc.get("low"), acc.get("high")
    ci = f" [{100 * lo:.1f}%, {100 * hi:.1f}%]" if lo is not None and hi is not None else ""
    return f"{100 * acc['value']:.1f}%{ci} (n={acc.get('n')})"


def provenance(summaries: list[tuple[str, dict[str, Any]]]) -> dict[str, list[list[str]]]:
    """What a report must name: the data (dataset, subset, part), the methods (and policy),
    and the judges (and how far they agree with people). Rows of cells."""
    data, methods, judges = [], [], []
    seen: set[tuple] = set()
    for run, s in summaries:
        for d in s.get("data", []):
            row = [d["group"], str(d["dataset"]), str(d.get("subset") or "—"), d["part"],
                   str(d.get("where") or "—"), str(d.get("transform") or "—"),
                   str(d.get("items_in_group", "—"))]
            if tuple(row) not in seen:
                seen.add(tuple(row))
                data.append(row)
        for label, ms in s.get("methods", {}).items():
            methods.append([label if len(summaries) == 1 else f"{run} / {label}",
                            ms.get("description") or ms.get("method", "")])
        for name, card in s.get("judges", {}).items():
            row = [name, card.get("kind", ""), _accuracy(card),
                   (card.get("accuracy") or {}).get("metric") or "—",
                   card.get("description", ""), card.get("source") or "—"]
            if tuple(row) not in seen:
                seen.add(tuple(row))
                judges.append(row)
    return {"data": data, "methods": methods, "judges": judges}


_PROV_HEAD = {
    "data": ["group", "dataset", "subset", "part", "filter", "transform", "items"],
    "methods": ["column", "what it is"],
    "judges": ["judge", "kind", "agreement with people", "measured as", "what it does",
               "source"],
}


def _partial(summary: dict[str, Any]) -> str:
    done, expected = summary.get("n_records"), summary.get("n_expected")
    if done is None or expected is None or done >= expected:
        return ""
    return f" (PARTIAL RUN: {done} of {expected} records)"


def _cell(est: dict[str, Any] | None, metric: str) -> str:
    text = _fmt(est, metric)
    value, _, rest = text.partition(" ")
    return f"<b>{_e(value)}</b>" + (f'<br><span class="ci">{_e(rest)}</span>' if rest else "")


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1d232a;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #dde;
padding-bottom:.3rem}h3{margin-bottom:.4rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d5d9e0;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.meta{color:#5a6472;font-size:.9rem}.charts{display:flex;flex-wrap:wrap;gap:1rem}
.chart-box{border:1px solid #e2e5ea;border-radius:6px;padding:.5rem}
.chart-box h4{margin:.2rem 0 .4rem;font-size:.85rem}.legend span{display:inline-block;
margin-right:1rem;font-size:.85rem}.swatch{display:inline-block;width:.8rem;height:.8rem;
margin-right:.3rem;vertical-align:middle}.ci{color:#5a6472;font-size:.8rem}details{margin:.5rem 0}summary{cursor:pointer}
"""
_COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6",
           "#9d755d"]


def _e(x: Any) -> str:
    return html.escape(str(x))


def _short(x: float) -> str:
    """A compact axis number: 0.25, 12.5, 853, 1.52k, 2.1M."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _bar_chart(metric: str, cols: list[Column], help_text: str) -> str:
    ests = [c[2]["metrics"].get(metric) for c in cols]
    if not any(e and e.get("value") is not None for e in ests):
        return ""
    rate = metric.split("@")[0] in RATE_METRICS
    top = 1.0 if rate else max(
        max(e.get("high") or e["value"], e["value"]) for e in ests if e and e.get("value")
        is not None) * 1.1 or 1.0
    width, height, left, bottom, pad = 330, 200, 44, 24, 10
    plot_h = height - bottom - pad
    bw = (width - left - pad) / max(len(cols), 1)
    parts = [f'<svg class="chart" data-metric="{_e(metric)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(metric)}" '
             'xmlns="http://www.w3.org/2000/svg">']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = pad + plot_h * (1 - frac)
        label = f"{100 * frac * top:.0f}%" if rate else _short(frac * top)
        parts.append(f'<line x1="{left}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#e5e8ec"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end" '
                     f'fill="#5a6472">{label}</text>')

    def ypos(v: float) -> float:
        return pad + plot_h * (1 - min(max(v / top, 0.0), 1.0))

    for i, (label, _, _) in enumerate(cols):
        est = ests[i]
        x = left + i * bw + bw * 0.15
        w = bw * 0.7
        if not est or est.get("value") is None:
            continue
        v = est["value"]
        y = ypos(v)
        parts.append(
            f'<rect class="bar" data-column="{_e(label)}" data-value="{v:.6g}" x="{x:.1f}" '
            f'y="{y:.1f}" width="{w:.1f}" height="{max(pad + plot_h - y, 0.5):.1f}" '
            f'fill="{_COLORS[i % len(_COLORS)]}"><title>{_e(label)}: '
            f'{_e(_fmt(est, metric))}</title></rect>')
        if est.get("low") is not None and est.get("high") is not None:
            cx, y1, y2 = x + w / 2, ypos(est["low"]), ypos(est["high"])
            parts.append(f'<g class="ci" data-low="{est["low"]:.6g}" data-high="{est["high"]:.6g}"'
                         f' stroke="#1d232a" stroke-width="1.5">'
                         f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y1:.1f}" y2="{y2:.1f}"/>'
                         f'<line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" y1="{y1:.1f}" y2="{y1:.1f}"/>'
                         f'<line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" y1="{y2:.1f}" y2="{y2:.1f}"/>'
                         '</g>')
        text = f"{100 * v:.0f}%" if rate else _short(v)
        parts.append(f'<text x="{x + w / 2:.1f}" y="{height - 8}" font-size="10" '
                     f'text-anchor="middle" fill="#1d232a">{_e(text)}</text>')
    parts.append("</svg>")
    return (f'<div class="chart-box"><h4 title="{_e(help_text)}">{_e(metric)}</h4>'
            + "".join(parts) + "</div>")


def _metric_table(metrics: list[str], cols: list[Column], pick, css: str = "metrics") -> str:
    head = "".join(f"<th>{_e(c[0])}</th>" for c in cols)
    rows = []
    for metric in metrics:
        cells = []
        any_value = False
        for col in cols:
            est = pick(col[2]).get(metric)
            any_value |= bool(est and est.get("value") is not None)
            val = "" if not est or est.get("value") is None else f' data-value="{est["value"]:.6g}"'
            cells.append(f'<td class="num"{val}>{_cell(est, metric)}</td>')
        if any_value:
            rows.append(f"<tr><th>{_e(metric)}</th>{''.join(cells)}</tr>")
    if not rows:
        return ""
    return f'<table class="{css}"><tr><th>metric</th>{head}</tr>{"".join(rows)}</table>'


def _keys(cols: list[Column], section: str) -> list[str]:
    seen: list[str] = []
    for c in cols:
        seen += [k for k in c[2].get(section, {}) if k not in seen]
    return seen


def render_html(summaries: list[tuple[str, dict[str, Any]]], title: str | None = None) -> str:
    cols = _columns(summaries)
    metrics = _metric_order(summaries)
    helps = _help(summaries)
    title = title or "specguard evaluation: " + ", ".join(
        dict.fromkeys(s["suite"] for _, s in summaries))
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}"
           f"</title><style>{_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>"]
    out.append('<p class="meta">' + "<br>".join(
        f"<b>{_e(name)}</b>: suite {_e(s['suite'])}, backend {_e(s.get('backend'))}, "
        f"{_e(s.get('n_items'))} items, started {_e(s.get('created'))}{_e(_partial(s))}"
        for name, s in summaries) + f"<br>generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}</p>")
    for _, s in summaries:
        if s.get("description"):
            out.append(f'<p>{_e(s["description"])}</p>')
            break
    out.append('<div class="legend">' + "".join(
        f'<span><i class="swatch" style="background:{_COLORS[i % len(_COLORS)]}"></i>'
        f'{_e(c[0])}</span>' for i, c in enumerate(cols)) + "</div>")
    prov = provenance(summaries)
    out.append("<h2>What was measured</h2>")
    for key, title_ in (("data", "Data"), ("methods", "Methods"), ("judges", "Judges")):
        if prov[key]:
            out.append(f"<h3>{title_}</h3><table class='{key}'><tr>" + "".join(
                f"<th>{_e(h)}</th>" for h in _PROV_HEAD[key]) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
                for row in prov[key]) + "</table>")
    out.append(f"<h2>Headline metrics</h2><p class='meta'>{_e(INTERVALS)}</p>")
    out.append(_metric_table(metrics, cols, lambda ms: ms["metrics"], "headline"))
    charts = [_bar_chart(m, cols, helps.get(m, "")) for m in metrics]
    out.append('<div class="charts">' + "".join(c for c in charts if c) + "</div>")
    if helps:
        out.append("<details><summary>What the metrics mean</summary><ul>" + "".join(
            f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in helps.items()) + "</ul></details>")
    groups = _keys(cols, "groups")
    if groups:
        out.append("<h2>By group</h2>")
        for g in groups:
            table = _metric_table(metrics, cols, lambda ms, g=g: ms["groups"].get(g, {}))
            if table:
                out.append(f"<h3>{_e(g)}</h3>{table}")
    cats = _keys(cols, "categories")
    if cats:
        out.append(f"<h2>By category</h2><details><summary>{len(cats)} categories</summary>")
        for c in cats:
            table = _metric_table(metrics, cols, lambda ms, c=c: ms["categories"].get(c, {}))
            if table:
                out.append(f"<h3>{_e(c)}</h3>{table}")
        out.append("</details>")
    out.append("<h2>Judge parse status</h2><table class='judge-status'><tr><th>column</th><th>judge</th>"
               "<th>judged</th><th>parsed</th><th>unparsed</th><th>errors</th>"
               "<th>model calls</th><th>seconds</th></tr>")
    for label, _, ms in cols:
        for judge, st in ms.get("judges", {}).items():
            out.append(f"<tr><td>{_e(label)}</td><td>{_e(judge)}</td>" + "".join(
                f'<td class="num">{st.get(k, "—")}</td>'
                for k in ("n", "parsed", "unparsed", "errors", "model_calls", "seconds"))
                + "</tr>")
    out.append("</table>")
    out.append("<h2>Cost</h2><table class='cost'><tr><th>column</th><th>records</th>"
               "<th>errors</th><th>model calls</th><th>prompt tokens</th>"
               "<th>completion tokens</th><th>seconds</th><th>s / item</th><th>actions</th></tr>")
    for label, _, ms in cols:
        c = ms["cost"]
        actions = ", ".join(f"{k}: {v}" for k, v in sorted(ms.get("actions", {}).items())) or "—"
        out.append(
            f"<tr><td>{_e(label)}</td><td class='num'>{ms['n_records']}</td>"
            f"<td class='num'>{ms['errors']}</td><td class='num'>{c['model_calls']}</td>"
            f"<td class='num'>{c['prompt_tokens']}</td><td class='num'>{c['completion_tokens']}"
            f"</td><td class='num'>{c['seconds']:.1f}</td>"
            f"<td class='num'>{c['per_item_seconds'] if c['per_item_seconds'] is not None else '—'}"
            f"</td><td>{_e(actions)}</td></tr>")
    out.append("</table></body></html>")
    return "\n".join(out)


# --- Markdown -------------------------------------------------------------------------------


def _md_table(metrics: list[str], cols: list[Column], pick) -> str:
    rows = []
    for metric in metrics:
        cells = [_fmt(pick(c[2]).get(metric), metric) for c in cols]
        if any(x != "—" for x in cells):
            rows.append(f"| {metric} | " + " | ".join(cells) + " |")
    if not rows:
        return ""
    head = "| metric | " + " | ".join(c[0] for c in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    return "\n".join([head, sep, *rows])


def md_rows(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (pipes in cells escaped)."""
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def render_markdown(summaries: list[tuple[str, dict[str, Any]]], title: str | None = None) -> str:
    cols = _columns(summaries)
    metrics = _metric_order(summaries)
    title = title or "specguard evaluation: " + ", ".join(
        dict.fromkeys(s["suite"] for _, s in summaries))
    lines = [f"# {title}", ""]
    for name, s in summaries:
        lines.append(f"- **{name}**: suite `{s['suite']}`, backend `{s.get('backend')}`, "
                     f"{s.get('n_items')} items, started {s.get('created')}{_partial(s)}")
    prov = provenance(summaries)
    lines += ["", "## What was measured", ""]
    for key, title_ in (("data", "Data"), ("methods", "Methods"), ("judges", "Judges")):
        if prov[key]:
            lines += [f"### {title_}", "", md_rows(_PROV_HEAD[key], prov[key]), ""]
    lines += ["## Headline metrics", "", INTERVALS, "",
              _md_table(metrics, cols, lambda ms: ms["metrics"]), ""]
    groups = _keys(cols, "groups")
    if groups:
        lines += ["## By group", ""]
        for g in groups:
            t = _md_table(metrics, cols, lambda ms, g=g: ms["groups"].get(g, {}))
            if t:
                lines += [f"### {g}", "", t, ""]
    lines += ["## Judge parse status", "", "| column | judge | judged | parsed | unparsed | errors "
              "| model calls | seconds |", "|---|---|---|---|---|---|---|---|"]
    for label, _, ms in cols:
        for judge, st in ms.get("judges", {}).items():
            lines.append(f"| {label} | {judge} | {st['n']} | {st['parsed']} | {st['unparsed']} "
                         f"| {st['errors']} | {st.get('model_calls', '—')} "
                         f"| {st.get('seconds', '—')} |")
    lines += ["", "## Cost", "", "| column | records | errors | model calls | tokens | seconds "
              "| s / item | actions |", "|---|---|---|---|---|---|---|---|"]
    for label, _, ms in cols:
        c = ms["cost"]
        actions = ", ".join(f"{k}: {v}" for k, v in sorted(ms.get("actions", {}).items())) or "—"
        lines.append(f"| {label} | {ms['n_records']} | {ms['errors']} | {c['model_calls']} | "
                     f"{c['prompt_tokens'] + c['completion_tokens']} | {c['seconds']:.1f} | "
                     f"{c['per_item_seconds']} | {actions} |")
    return "\n".join(lines) + "\n"


def write_report(runs: list[str | Path], out_dir: str | Path, title: str | None = None
                 ) -> tuple[Path, Path]:
    summaries = load_summaries(runs)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    html_path, md_path = folder / "report.html", folder / "report.md"
    html_path.write_text(render_html(summaries, title), encoding="utf-8")
    md_path.write_text(render_markdown(summaries, title), encoding="utf-8")
    return html_path, md_path
